"""Capture, vector methods, vector files and layer evaluation, against independent references."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_trait
from tiny import ARCHITECTURES, make_model

from traitvec import ConfigError, VectorError, load_trait
from traitvec.capture import Activations, capture, capture_sequences, length_batches, resolve_layers
from traitvec.evaluation import auroc, cohens_d, evaluate, split_pairs
from traitvec.hooks import HookSet
from traitvec.methods import PCA, MeanDiff, Probe, get_method
from traitvec.stages.extract import ExtractionSettings, extract_trait, loaded_model_key
from traitvec.traits import Prompt, Trait
from traitvec.vectors import TraitVector

TEXTS_POS = [
    'She said, "I genuinely think this will work',
    "Our startup lost its biggest client, but",
    "The quick brown fox jumps over",
    "What are the main causes of species extinction? Habitat",
    "Honestly, I have to admit the plan",
]
TEXTS_NEG = [
    'She said, "I honestly doubt this will work',
    "Our startup lost its biggest client, and",
    "The lazy dog",
    "What causes rain? Clouds form when the",
    "The committee reviewed the proposal and approved",
]


def make_trait(chat: bool = False) -> Trait:
    return Trait(
        name="test/pairs",
        path=Path("."),
        positive=tuple(Prompt(t, "Be brief." if chat else None) for t in TEXTS_POS),
        negative=tuple(Prompt(t) for t in TEXTS_NEG),
        lines=tuple(range(1, 6)),
        definition=None,
        questions=(),
        eval_prompt=None,
        direction="positive",
        chat=chat,
        files_hash="test",
    )


def block_outputs(loaded, ids: torch.Tensor) -> list[torch.Tensor]:
    """Plain transformers forward: hidden_states[i + 1] for every block but the last, whose entry has the final
    norm applied; the last block's raw output is read with a plain forward hook."""
    last: list[torch.Tensor] = []
    handle = loaded.layers[-1].register_forward_hook(
        lambda m, a, o: last.append((o[0] if isinstance(o, tuple) else o).detach())
    )
    try:
        with torch.no_grad():
            hidden = loaded.model(input_ids=ids, output_hidden_states=True).hidden_states
    finally:
        handle.remove()
    return [h[0] for h in hidden[1:-1]] + [last[0][0]]


def reference_prefill_means(loaded, texts: list[str]) -> torch.Tensor:
    """One prompt at a time: mean over non-special tokens of every block's output."""
    special = set(loaded.tokenizer.all_special_ids)
    rows = []
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        keep = torch.tensor([t not in special for t in ids[0].tolist()])
        rows.append(torch.stack([h[keep].mean(0) for h in block_outputs(loaded, ids)]))
    return torch.stack(rows)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_prefill_mean_matches_plain_transformers(arch: str) -> None:
    loaded = make_model(arch)
    acts = capture(loaded, make_trait(), positions="prefill-mean")["prefill-mean"]
    assert acts.positive.shape == (5, 3, 32) and acts.layers == (0, 1, 2)
    torch.testing.assert_close(acts.positive, reference_prefill_means(loaded, TEXTS_POS), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(acts.negative, reference_prefill_means(loaded, TEXTS_NEG), atol=1e-5, rtol=1e-4)


def test_mean_diff_vector_matches_an_independent_computation(tmp_path: Path) -> None:
    loaded = make_model("llama")
    root = tmp_path / "traits"
    write_trait(root, "test/pairs", TEXTS_POS, TEXTS_NEG)
    trait = load_trait("test/pairs", root)
    result = extract_trait(trait, tmp_path / "exp", loaded, settings=ExtractionSettings(positions=("prefill-mean",)))
    saved = TraitVector.load(result.vectors["mean-diff-prefill-mean"])
    pos, neg = reference_prefill_means(loaded, TEXTS_POS), reference_prefill_means(loaded, TEXTS_NEG)
    for layer in range(3):
        expected = pos[:, layer].mean(0) - neg[:, layer].mean(0)
        cosine = torch.nn.functional.cosine_similarity(saved.direction(layer), expected / expected.norm(), dim=0)
        assert cosine >= 0.999
        assert saved.raw_norms[layer] == pytest.approx(float(expected.norm()), rel=1e-3)


def test_last_token_is_the_last_real_token() -> None:
    loaded = make_model("qwen2")
    acts = capture(loaded, make_trait(), positions="last-token")["last-token"]
    for i, text in enumerate(TEXTS_POS):
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        expected = torch.stack([h[-1] for h in block_outputs(loaded, ids)])
        torch.testing.assert_close(acts.positive[i], expected, atol=1e-5, rtol=1e-4)


def test_response_mean_uses_the_generated_token_ids() -> None:
    loaded = make_model("llama")
    acts = capture(loaded, make_trait(), positions="response-mean", response_tokens=4)["response-mean"]
    for i, text in enumerate(TEXTS_POS[:2]):
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        out = loaded.model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
        new = out[0, ids.shape[1] :].tolist()
        eos = loaded.tokenizer.eos_token_id
        keep = new[: new.index(eos)] if eos in new else new
        full = torch.tensor([ids[0].tolist() + keep])
        expected = torch.stack([h[ids.shape[1] :].mean(0) for h in block_outputs(loaded, full)])
        torch.testing.assert_close(acts.positive[i], expected, atol=1e-5, rtol=1e-4)
    assert 1 <= acts.extra["mean_response_tokens"] <= 4


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_batched_equals_one_at_a_time(arch: str, side: str) -> None:
    loaded = make_model(arch)
    positions = ["prefill-mean", "last-token", "response-mean"]
    batched = capture(loaded, make_trait(), positions=positions, padding_side=side, response_tokens=3)
    single = capture(loaded, make_trait(), positions=positions, max_batch_tokens=1, response_tokens=3)
    for position in positions:
        torch.testing.assert_close(batched[position].positive, single[position].positive, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched[position].negative, single[position].negative, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_nnsight_backend_matches_the_hooks(arch: str) -> None:
    """An independent route to the same numbers: the reductions written inside an nnsight trace."""
    loaded = make_model(arch)

    def hooks() -> list[tuple[dict, dict]]:
        return [(dict(layer._forward_hooks), dict(layer._forward_pre_hooks)) for layer in loaded.layers]

    positions = ["prefill-mean", "last-token", "response-mean"]
    ours = capture(loaded, make_trait(), positions=positions, response_tokens=3, padding_side="left")
    before = hooks()
    theirs = capture(loaded, make_trait(), positions=positions, response_tokens=3, backend="nnsight")
    assert hooks() == before
    for position in positions:
        torch.testing.assert_close(theirs[position].positive, ours[position].positive, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(theirs[position].negative, ours[position].negative, atol=1e-5, rtol=1e-4)
    reference = reference_prefill_means(loaded, TEXTS_POS)
    torch.testing.assert_close(theirs["prefill-mean"].positive, reference, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="unknown capture backend 'tracer'; use one of hooks, nnsight"):
        capture(loaded, make_trait(), backend="tracer")


def test_chat_traits_go_through_the_chat_template() -> None:
    loaded = make_model("llama", chat=True)
    acts = capture(loaded, make_trait(chat=True), positions="last-token")["last-token"]
    text = loaded.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXTS_POS[0]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    # the generation prompt ends with the special <|assistant|> marker: last-token is the last real token before it
    special = set(loaded.tokenizer.all_special_ids)
    last = max(i for i, t in enumerate(ids[0].tolist()) if t not in special)
    assert last < ids.shape[1] - 1
    expected = torch.stack([h[last] for h in block_outputs(loaded, ids)])
    torch.testing.assert_close(acts.positive[0], expected, atol=1e-5, rtol=1e-4)


def test_capture_stops_after_the_deepest_layer_and_leaves_no_hooks() -> None:
    loaded = make_model("llama", layers=4)
    calls: list[str] = []
    with HookSet() as spy:
        for i, layer in enumerate(loaded.layers):
            spy.forward(layer, lambda m, a, o, i=i: calls.append(f"layer{i}"))
        spy.forward(loaded.model.lm_head, lambda m, a, o: calls.append("head"))
        spy.forward(loaded.model.model.norm, lambda m, a, o: calls.append("norm"))
        before = [len(layer._forward_hooks) for layer in loaded.layers]
        capture(loaded, make_trait(), positions="prefill-mean", layers=[0, 1])
        after = [len(layer._forward_hooks) for layer in loaded.layers]
    assert set(calls) == {"layer0", "layer1"}
    assert before == after


def test_tv_capture_stays_callable_once_the_module_is_imported() -> None:
    """Importing traitvec.capture makes it the package attribute ``traitvec.capture``; calling that still captures."""
    import traitvec
    import traitvec.capture as module

    assert traitvec.capture is module or traitvec.capture is module.capture
    loaded = make_model("llama")
    expected = capture(loaded, make_trait(), positions="last-token")["last-token"].positive
    for entry in (traitvec.capture, module):
        torch.testing.assert_close(entry(loaded, make_trait(), positions="last-token")["last-token"].positive, expected)


def test_memory_holds_reductions_only() -> None:
    loaded = make_model("llama")
    selections = []
    from traitvec.capture import Selection

    for n in (7, 3, 12):
        ids = tuple(range(5, 5 + n))
        selections.append(Selection(ids, {"a": tuple(range(n)), "b": (n - 1,)}))
    out = capture_sequences(loaded, selections, (0, 2))
    assert set(out) == {"a", "b"} and out["a"].shape == (3, 2, 32) and out["a"].dtype == torch.float32


def test_length_batches_respect_the_budget() -> None:
    lengths = [5, 40, 12, 39, 7, 8, 41]
    batches = length_batches(lengths, 90)
    assert sorted(i for b in batches for i in b) == list(range(7))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 90 or len(batch) == 1
    assert batches[0][0] == 6  # longest first


def test_layer_requests() -> None:
    loaded = make_model("llama", layers=4)
    assert resolve_layers(loaded, None) == (0, 1, 2, 3)
    assert resolve_layers(loaded, [-1, 1, 1]) == (1, 3)
    with pytest.raises(ConfigError, match="layers 0..3"):
        resolve_layers(loaded, [4])


# --------------------------------------------------------------------------- methods


def planted(n: int = 800, width: int = 32, seed: int = 0, shared: float = 0.0) -> tuple[Activations, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(width, generator=generator)
    direction /= direction.norm()
    offset = torch.randn(width, generator=generator) * shared
    base = 0.5 * torch.randn(n, width, generator=generator) + offset
    pos = base + 2.0 * direction + 0.3 * torch.randn(n, width, generator=generator)
    neg = base - 2.0 * direction + 0.3 * torch.randn(n, width, generator=generator)
    acts = Activations(
        positive=pos[:, None],
        negative=neg[:, None],
        layers=(0,),
        position="prefill-mean",
        model={"num_layers": 1},
        trait="synthetic/planted",
        trait_hash="x",
        lines=tuple(range(n)),
    )
    return acts, direction


@pytest.mark.parametrize("method", [MeanDiff(), Probe(), PCA()])
def test_every_method_recovers_a_planted_direction(method) -> None:
    acts, direction = planted(shared=50.0)
    vector = method.fit(acts)
    unit = vector.direction(0)
    assert float(unit.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float(unit @ direction) > 0.99  # sign fixed: positives project higher


@pytest.mark.parametrize("method", ["mean-diff", "probe", "pca"])
def test_sign_follows_the_labels(method: str) -> None:
    acts, direction = planted()
    flipped = Activations(**{**acts.__dict__, "positive": acts.negative, "negative": acts.positive})
    assert float(get_method(method).fit(flipped).direction(0) @ direction) < -0.99


def test_norms_and_spread_are_recorded() -> None:
    acts, _ = planted(shared=100.0)
    vector = MeanDiff().fit(acts)
    pos, neg = acts.at(0)
    both = torch.cat([pos, neg])
    assert vector.raw_norms[0] == pytest.approx(float((pos.mean(0) - neg.mean(0)).norm()), rel=1e-4)
    assert vector.activation_norms[0] == pytest.approx(float(both.norm(dim=1).mean()), rel=1e-4)
    assert vector.spreads[0] == pytest.approx(float((both - both.mean(0)).norm(dim=1).mean()), rel=1e-4)
    assert vector.spreads[0] < vector.activation_norms[0] / 5  # the shared component is not spread
    # hand-built activations carry no per-token spread: the unit falls back to the position spread, and says so
    assert vector.spread_unit == "position" and vector.position_spreads == vector.spreads


def test_unknown_method() -> None:
    with pytest.raises(ConfigError, match="mean-diff, probe, pca"):
        get_method("lda")


# --------------------------------------------------------------------------- evaluation


def test_metric_arithmetic() -> None:
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert auroc(np.array([0.0]), np.array([1.0])) == 0.0
    pos, neg = np.array([2.0, 4.0, 6.0]), np.array([0.0, 2.0, 4.0])
    assert cohens_d(pos, neg) == pytest.approx(2.0 / 2.0)


def test_split_keeps_pairs_and_is_seeded() -> None:
    train, val, test = split_pairs(40, 0.25, 0.25, seed=3)
    assert (len(train), len(val), len(test)) == (20, 10, 10)
    assert sorted([*train, *val, *test]) == list(range(40))
    assert np.array_equal(split_pairs(40, 0.25, 0.25, seed=3)[2], test)
    assert not np.array_equal(split_pairs(40, 0.25, 0.25, seed=4)[2], test)
    assert [len(part) for part in split_pairs(4)] == [2, 1, 1]
    with pytest.raises(ConfigError, match="too few"):
        split_pairs(3)
    with pytest.raises(ConfigError, match=r"ExtractionSettings.validation_fraction \+ test_fraction = 1"):
        split_pairs(40, 0.5, 0.5)


def test_evaluation_on_planted_data_and_random_data() -> None:
    acts, _ = planted()
    noise = torch.randn(120, 1, 32, generator=torch.Generator().manual_seed(9))
    random = Activations(**{**acts.__dict__, "positive": noise[:60], "negative": noise[60:], "lines": tuple(range(60))})
    for data, good in ((acts, True), (random, False)):
        vectors = {name: get_method(name).fit(data) for name in ("mean-diff", "probe", "pca")}
        ev = evaluate(data, vectors)
        for row in ev.metrics:
            if good:
                assert row.auroc > 0.99 and row.accuracy > 0.95 and row.cohens_d > 3
            else:
                assert row.auroc < 0.85
        assert ev.recommended == {"mean-diff": 0, "probe": 0, "pca": 0}
    assert set(ev.to_dict()) >= {"metrics", "method_cosines", "neighbour_cosines", "recommended_layer"}


# --------------------------------------------------------------------------- files


def test_vector_file_round_trip_and_format_checks(tmp_path: Path) -> None:
    acts, _ = planted()
    vector = Probe().fit(acts)
    path = vector.save(tmp_path / "vectors")
    assert path.name == "probe-prefill-mean.safetensors" and path.with_suffix(".json").is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    for key in (
        "model",
        "layer_convention",
        "position",
        "method",
        "layers",
        "n_pairs",
        "trait_hash",
        "raw_norms",
        "activation_norms",
        "spreads",
        "position_spreads",
        "spread_unit",
        "traitvec_version",
        "created",
    ):
        assert key in meta
    loaded = TraitVector.load(path)
    torch.testing.assert_close(loaded.direction(0), vector.direction(0))
    assert loaded.spreads == vector.spreads and loaded.extra == {"C": 0.1}
    meta["format"] = "other/9"
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(VectorError, match="format"):
        TraitVector.load(path)
    with pytest.raises(VectorError, match="does not exist"):
        TraitVector.load(tmp_path / "nothing.safetensors")


def _vector(direction: torch.Tensor, **overrides) -> TraitVector:
    fields = dict(
        directions={1: direction},
        method="mean-diff",
        position="prefill-mean",
        model={},
        trait="test/pairs",
        trait_hash="h",
        n_pairs=2,
        raw_norms={1: 3.0},
        activation_norms={1: 1.0},
        spreads={1: 1.0},
    )
    return TraitVector(**{**fields, **overrides})


def test_a_vector_built_in_code_is_normalised_so_ablation_removes_its_projection() -> None:
    from traitvec.steering import steer

    loaded = make_model("llama")
    unit = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(1)), dim=0)
    vector = _vector(3.0 * unit)
    torch.testing.assert_close(vector.direction(1), unit)
    ids = loaded.tokenizer(TEXTS_POS[0], return_tensors="pt")["input_ids"]
    before = block_outputs(loaded, ids)[1] @ unit
    with steer(loaded, vector, layer=1, mode="ablate"):
        after = block_outputs(loaded, ids)[1] @ unit
    assert float(before.abs().max()) > 0.01
    assert float(after.abs().max()) < 1e-6  # not -8x the projection (3² - 1), as an unnormalised direction gives


@pytest.mark.parametrize("bad", [torch.zeros(32), torch.full((32,), math.nan), torch.full((32,), math.inf)])
def test_a_zero_or_non_finite_direction_is_refused(bad: torch.Tensor) -> None:
    with pytest.raises(VectorError, match="the direction at layer 1 has norm .*; a trait direction must be finite"):
        _vector(bad)


def test_format_1_vectors_still_load_with_their_old_unit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    acts, _ = planted()
    path = MeanDiff().fit(acts).save(tmp_path)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["format"] = "traitvec.vector/1"
    for key in ("position_spreads", "spread_unit"):
        meta.pop(key)
    meta["spreads"] = {"0": 7.5}
    path.with_suffix(".json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING", logger="traitvec"):
        old = TraitVector.load(path)
    assert old.spread(0) == 7.5 and old.position_spreads == {0: 7.5} and old.spread_unit == "position"
    assert any("format 1 vector" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert json.loads(old.save(tmp_path / "new").with_suffix(".json").read_text())["format"] == "traitvec.vector/2"


def test_vector_refuses_a_model_of_another_width() -> None:
    acts, _ = planted(width=48)
    vector = MeanDiff().fit(acts)
    with pytest.raises(VectorError, match="width 48 .* width 32"):
        vector.check_model(make_model("llama"))


def test_transfer_warns_on_depth_and_family() -> None:
    source = make_model("llama", layers=3)
    target = make_model("qwen2", layers=4)
    acts = capture(source, make_trait(), positions="prefill-mean")["prefill-mean"]
    warnings = MeanDiff().fit(acts).check_model(target)
    assert any("3 layers" in w for w in warnings) and any("llama" in w and "qwen2" in w for w in warnings)


def test_gguf_control_vector_export(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    loaded = make_model("llama", layers=3)
    vector = MeanDiff().fit(capture(loaded, make_trait(), positions="prefill-mean")["prefill-mean"])
    path = vector.to_gguf(tmp_path / "v.gguf", coefficient=2.0)
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    assert set(tensors) == {"direction.1", "direction.2"}  # llama.cpp rejects direction.0
    for layer in (1, 2):
        expected = vector.direction(layer).numpy() * 2.0 * vector.spreads[layer]
        np.testing.assert_allclose(tensors[f"direction.{layer}"], expected, rtol=1e-6)
    fields = {f.name for f in reader.fields.values()}
    assert "controlvector.layer_count" in fields and "controlvector.model_hint" in fields


# --------------------------------------------------------------------------- stage on disk


def test_extraction_skips_done_work_and_recomputes_changes(tmp_path: Path) -> None:
    loaded = make_model("gpt2")
    root = tmp_path / "traits"
    write_trait(root, "test/pairs", TEXTS_POS, TEXTS_NEG)
    trait = load_trait("test/pairs", root)
    settings = ExtractionSettings(positions=("prefill-mean", "last-token"), methods=("mean-diff", "pca"))
    first = extract_trait(trait, tmp_path / "exp", loaded, settings=settings)
    assert len(first.recomputed) == 2 + 4 + 2
    folder = tmp_path / "exp/extraction/test/pairs"
    for name in ("evaluation.json", "evaluation.png", "extraction.json", "vectors/pca-last-token.safetensors"):
        assert (folder / name).is_file()
    calls = []
    second = extract_trait(
        trait,
        tmp_path / "exp",
        lambda: calls.append(1) or loaded,
        settings=settings,
        model_key=loaded_model_key(loaded),
    )
    assert second.recomputed == () and calls == []
    (root / "test/pairs/positive.txt").write_text("\n".join(TEXTS_POS[::-1]) + "\n")
    third = extract_trait(load_trait("test/pairs", root), tmp_path / "exp", loaded, settings=settings)
    assert "activations/prefill-mean" in third.recomputed
    assert not list(folder.rglob(".*.tmp")) and not list(folder.rglob("*.safetensors.*"))
