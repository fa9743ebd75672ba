"""Capture positions (last non-special token, answer spans of conversations), the per-token spread,
and the device handling of capture's batch tensors, against independent computations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import write_trait
from test_capture import TEXTS_NEG, TEXTS_POS, block_outputs, make_trait
from tiny import ARCHITECTURES, make_model, make_tokenizer
from tokenizers import processors

import traitvec.capture as capture_module
from traitvec import ConfigError, load_trait
from traitvec.batching import SAMPLED, TOKEN_SUM, BatchReductions, DeviceCache
from traitvec.capture import capture
from traitvec.conversations import Message
from traitvec.methods import PCA, MeanDiff, Probe
from traitvec.models import wrap_model
from traitvec.positions import check_positions
from traitvec.traits import Prompt, Trait

# --------------------------------------------------------------------------- last-token and special tokens


def with_trailing_eos(loaded):
    """The same model with a tokenizer that appends <eos> to every text (as some tokenizers do)."""
    tokenizer = make_tokenizer()
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)]
    )
    return wrap_model(loaded.model, tokenizer, name="tiny-eos", fingerprint="tiny-eos")


def test_last_token_skips_a_trailing_special_token() -> None:
    loaded = with_trailing_eos(make_model("llama"))
    acts = capture(loaded, make_trait(), positions=["last-token", "prefill-mean"])
    eos = loaded.tokenizer.eos_token_id
    for i, text in enumerate(TEXTS_POS):
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        assert ids[0, -1] == eos  # the prefill really ends with a special token
        states = block_outputs(loaded, ids)
        torch.testing.assert_close(
            acts["last-token"].positive[i], torch.stack([h[-2] for h in states]), atol=1e-5, rtol=1e-4
        )
        mean = torch.stack([h[1:-1].mean(0) for h in states])  # neither <bos> nor <eos>
        torch.testing.assert_close(acts["prefill-mean"].positive[i], mean, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- devices


def test_batch_tensors_are_moved_once_to_each_layers_device() -> None:
    weights = {"mean": torch.tensor([[0.5, 0.5, 0.0]])}
    reductions = BatchReductions(weights, torch.tensor([[1.0, 1.0, 0.0]]), (torch.tensor([0]), torch.tensor([1])))
    hidden = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    out = reductions.reduce(hidden)
    torch.testing.assert_close(out["mean"], hidden[:, :2].mean(1))
    torch.testing.assert_close(out[TOKEN_SUM], hidden[0, :2].sum(0))
    torch.testing.assert_close(out[SAMPLED], hidden[0, 1:2])
    meta = reductions.reduce(torch.empty(1, 3, 4, device="meta"))  # a layer on another device
    assert {t.device.type for t in meta.values()} == {"meta"} and meta["mean"].shape == (1, 4)
    assert reductions.cache.devices == (torch.device("cpu"), torch.device("meta"))
    first = reductions.cache.on(torch.device("meta"))
    assert reductions.cache.on(torch.device("meta")) is first  # cached: moved once per device
    cache = DeviceCache({"x": torch.ones(2)})
    assert cache.on(torch.device("cpu"))["x"].device.type == "cpu" and cache.devices == (torch.device("cpu"),)


def _split_devices() -> list[tuple[str, str]]:
    count = torch.cuda.device_count()
    return [("cpu", "cuda:0")] * (count >= 1) + [("cuda:0", "cuda:1")] * (count >= 2)


@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA GPU: a model split over cpu and cuda:0")
@pytest.mark.parametrize(("first", "second"), _split_devices() or [("cpu", "cuda:0")])
def test_capture_on_a_model_split_across_devices(first: str, second: str) -> None:
    """Layer 0 on one device, layers 1-2 on another (accelerate moves the hidden state between them)."""
    import accelerate

    plain = make_model("llama", layers=3)
    reference = capture(plain, make_trait(), positions=["prefill-mean", "last-token"])
    model = plain.model.__class__(plain.model.config)
    model.load_state_dict(plain.model.state_dict())
    placed = {"model.embed_tokens": first, "model.rotary_emb": first, "model.layers.0": first}
    placed |= {"model.layers.1": second, "model.layers.2": second, "model.norm": second, "lm_head": second}
    model = accelerate.dispatch_model(model.eval(), placed, main_device=first)
    split = wrap_model(model, plain.tokenizer, name="tiny-split", fingerprint="split")
    assert split.layers[0].self_attn.q_proj.weight.device != split.layers[1].self_attn.q_proj.weight.device
    got = capture(split, make_trait(), positions=["prefill-mean", "last-token"])
    for position, acts in got.items():
        torch.testing.assert_close(acts.positive, reference[position].positive, atol=1e-4, rtol=1e-3)
        assert acts.token_spreads.keys() == reference[position].token_spreads.keys()


# --------------------------------------------------------------------------- per-token spread


def exact_token_spreads(loaded, texts: list[str]) -> dict[int, float]:
    """Mean ‖h_t − μ‖ over every non-special token of every text (μ their mean), per layer."""
    special = set(loaded.tokenizer.all_special_ids)
    per_layer: list[list[torch.Tensor]] = [[] for _ in loaded.layers]
    for text in texts:
        ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"]
        keep = torch.tensor([t not in special for t in ids[0].tolist()])
        for layer, states in enumerate(block_outputs(loaded, ids)):
            per_layer[layer].append(states[keep].double())
    out = {}
    for layer, rows in enumerate(per_layer):
        states = torch.cat(rows)
        out[layer] = float((states - states.mean(0)).norm(dim=1).mean())
    return out


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_per_token_spread_is_one_unit_for_every_position_and_method(arch: str) -> None:
    loaded = make_model(arch)
    trait = make_trait()
    first = capture(loaded, trait, positions=["prefill-mean", "last-token"])
    second = capture(loaded, trait, positions=["response-mean"], response_tokens=3, max_batch_tokens=16)
    exact = exact_token_spreads(loaded, TEXTS_POS + TEXTS_NEG)  # fewer tokens than the sample: exact
    vectors = [m.fit(acts) for m in (MeanDiff(), PCA(), Probe()) for acts in (*first.values(), *second.values())]
    for vector in vectors:
        assert vector.spread_unit == "per-token"
        for layer in range(3):
            assert vector.spread(layer) == pytest.approx(exact[layer], rel=1e-4)
    prefill, last = first["prefill-mean"], first["last-token"]
    position_spreads = MeanDiff().fit(prefill).position_spreads, MeanDiff().fit(last).position_spreads
    assert position_spreads[0] != position_spreads[1]  # the old unit differs by position; the new one does not


def test_sampled_per_token_spread_does_not_depend_on_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_model("gemma")
    trait = make_trait()
    exact = capture(loaded, trait, positions="prefill-mean")["prefill-mean"].token_spreads
    monkeypatch.setattr(capture_module, "SPREAD_SAMPLE", 12)  # fewer than the ~60 real tokens
    one = capture(loaded, trait, positions="prefill-mean", max_batch_tokens=1)["prefill-mean"]
    many = capture(loaded, trait, positions=["prefill-mean", "last-token"], padding_side="left")["prefill-mean"]
    assert one.extra["token_spread"]["n_sampled"] == 12 and one.extra["token_spread"]["n_tokens"] > 50
    for layer in range(3):
        assert one.token_spreads[layer] == pytest.approx(many.token_spreads[layer], rel=1e-5)
        assert one.token_spreads[layer] == pytest.approx(exact[layer], rel=0.35)  # an estimate of the same number
        assert one.token_spreads[layer] != pytest.approx(exact[layer], rel=1e-6)


# --------------------------------------------------------------------------- conversations


ANSWERS = ("So{} go there and work.", " will", " we")  # markers: one token each in the tiny vocabulary
CONTEXTS = [
    "What are the main causes of species extinction?",
    "How will the economy look next year?",
    "Our startup lost its biggest client. What now?",
    "The committee reviewed the proposal. What did they decide?",
    "What do you think of the plan?",
    "Which animal is in the sentence?",
]


def conversation_trait() -> Trait:
    """Pairs identical but for the answer: the positive answer says ``will`` where the negative says ``we``."""

    def side(word: str) -> tuple[Prompt, ...]:
        return tuple(
            Prompt.from_messages(
                [Message("system", "Be brief."), Message("user", c), Message("assistant", ANSWERS[0].format(word))]
            )
            for c in CONTEXTS
        )

    return Trait(
        name="test/conversation",
        path=Path("."),
        positive=side(ANSWERS[1]),
        negative=side(ANSWERS[2]),
        lines=tuple(range(1, len(CONTEXTS) + 1)),
        definition=None,
        questions=(),
        eval_prompt=None,
        direction="positive",
        chat=True,
        files_hash="conv",
    )


def plant(loaded, token_ids: list[int], direction: torch.Tensor, scale: float) -> None:
    """Add ``±scale·direction`` to the input embeddings of the two marker tokens."""
    with torch.no_grad():
        embedding = loaded.model.get_input_embeddings().weight
        embedding[token_ids[0]] += scale * direction
        embedding[token_ids[1]] -= scale * direction


def answer_states(loaded, prompt: Prompt) -> list[torch.Tensor]:
    """Independently: render with the template, find the answer by tokenising the text before it."""
    tokenizer = loaded.tokenizer
    messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    answer = prompt.messages[-1].content
    start = full.rindex(answer)
    head = tokenizer(full[:start], add_special_tokens=False)["input_ids"]
    body = tokenizer(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + body + tokenizer(full[start + len(answer) :], add_special_tokens=False)["input_ids"]])
    return [h[len(head) : len(head) + len(body)] for h in block_outputs(loaded, ids)]


def test_answer_mean_recovers_a_direction_planted_in_the_answer_tokens() -> None:
    loaded = make_model("llama", chat=True)
    markers = [loaded.tokenizer(w, add_special_tokens=False)["input_ids"] for w in ANSWERS[1:]]
    assert all(len(m) == 1 for m in markers), markers
    direction = torch.nn.functional.normalize(torch.randn(32, generator=torch.Generator().manual_seed(3)), dim=0)
    plant(loaded, [markers[0][0], markers[1][0]], direction, 40.0)
    trait = conversation_trait()
    acts = capture(loaded, trait, positions=["answer-mean", "answer-first-k"], answer_tokens=4)
    vector = MeanDiff().fit(acts["answer-mean"])
    first_k = MeanDiff().fit(acts["answer-first-k"])
    for layer in range(3):
        pos = torch.stack([answer_states(loaded, p)[layer].mean(0) for p in trait.positive])
        neg = torch.stack([answer_states(loaded, p)[layer].mean(0) for p in trait.negative])
        torch.testing.assert_close(acts["answer-mean"].positive[:, layer], pos, atol=1e-4, rtol=1e-4)
        independent = pos.mean(0) - neg.mean(0)
        assert torch.cosine_similarity(vector.direction(layer), independent, dim=0) > 0.99
        assert float(vector.direction(layer) @ direction) > 0.99  # the planted direction, recovered
        assert float(first_k.direction(layer) @ direction) > 0.99
    first_four = torch.stack([answer_states(loaded, p)[0][:4].mean(0) for p in trait.positive])
    torch.testing.assert_close(acts["answer-first-k"].positive[:, 0], first_four, atol=1e-4, rtol=1e-4)
    assert acts["answer-first-k"].extra["answer_tokens"] == 4


def test_positions_that_do_not_fit_the_trait_are_refused() -> None:
    loaded = make_model("llama", chat=True)
    conversation, prefills = conversation_trait(), make_trait()
    for position in ("last-token", "response-mean"):
        with pytest.raises(ConfigError, match=rf"capture\(positions=\) = '{position}' does not fit test/conversation"):
            capture(loaded, conversation, positions=position)
    with pytest.raises(ConfigError, match=r"'answer-mean' does not fit test/pairs, a prefill trait: .* use one of"):
        capture(loaded, prefills, positions="answer-mean")
    with pytest.raises(ConfigError, match="ExtractionSettings.positions = 'middle' is not one of"):
        check_positions(["middle"], prefills, setting="ExtractionSettings.positions")
    assert check_positions(None, conversation) == ("answer-mean", "answer-first-k")
    assert check_positions(None, prefills) == ("prefill-mean", "last-token")
    assert set(capture(loaded, conversation)) == {"answer-mean", "answer-first-k"}


def test_prefill_mean_of_a_conversation_reads_every_real_token() -> None:
    loaded = make_model("qwen2", chat=True)
    trait = conversation_trait()
    acts = capture(loaded, trait, positions="prefill-mean")["prefill-mean"]
    tokenizer = loaded.tokenizer
    messages = [{"role": m.role, "content": m.content} for m in trait.positive[0].messages]
    ids = tokenizer(
        tokenizer.apply_chat_template(messages, tokenize=False), add_special_tokens=False, return_tensors="pt"
    )
    keep = torch.tensor([t not in set(tokenizer.all_special_ids) for t in ids["input_ids"][0].tolist()])
    expected = torch.stack([h[keep].mean(0) for h in block_outputs(loaded, ids["input_ids"])])
    torch.testing.assert_close(acts.positive[0], expected, atol=1e-5, rtol=1e-4)


def test_imported_preference_examples_extract_with_answer_mean(tmp_path: Path) -> None:
    from conftest import ROOT

    from traitvec.preference import import_pairs
    from traitvec.stages.extract import ExtractionSettings, extract_trait

    loaded = make_model("llama", chat=True)
    settings = ExtractionSettings(positions=("answer-mean",), methods=("mean-diff", "pca"))
    for kind, behavior in (("kto", "verification_before_action"), ("dpo", "careful_sql")):
        out = tmp_path / "traits" / "imported" / kind
        import_pairs(ROOT / f"datasets/examples/{kind}_example.jsonl", format=kind, behavior=behavior, out=out)
        trait = load_trait(f"imported/{kind}", tmp_path / "traits")
        assert trait.conversation and trait.n_pairs >= 4
        result = extract_trait(trait, tmp_path / "exp", loaded, settings=settings)
        assert set(result.vectors) == {"mean-diff-answer-mean", "pca-answer-mean"}
        evaluation = json.loads((result.folder / "evaluation.json").read_text())["positions"]["answer-mean"]
        assert evaluation["split"]["n_train_pairs"] + evaluation["split"]["n_test_pairs"] < trait.n_pairs
        acts = result.folder / "activations/answer-mean.json"
        assert json.loads(acts.read_text())["extra"]["mean_answer_tokens"] > 1


def test_a_trait_folder_of_conversations_uses_the_answer_positions_by_default(tmp_path: Path) -> None:
    from traitvec.stages.extract import ExtractionSettings, extract_trait

    folder = tmp_path / "traits/test/conv"
    folder.mkdir(parents=True)
    trait = conversation_trait()
    for name, side in (("positive.jsonl", trait.positive), ("negative.jsonl", trait.negative)):
        rows = [{"messages": [{"role": m.role, "content": m.content} for m in p.messages]} for p in side]
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = make_model("llama", chat=True)
    result = extract_trait(load_trait("test/conv", tmp_path / "traits"), tmp_path / "exp", loaded)
    assert set(result.evaluations) == {"answer-mean", "answer-first-k"}
    with pytest.raises(ConfigError, match=r"ExtractionSettings.positions = 'last-token' does not fit test/conv"):
        extract_trait(trait, tmp_path / "exp", loaded, settings=ExtractionSettings(positions=("last-token",)))
    write_trait(tmp_path / "traits", "test/plain", TEXTS_POS, TEXTS_NEG)
    with pytest.raises(ConfigError, match=r"ExtractionSettings.positions = 'answer-first-k' does not fit test/plain"):
        extract_trait(
            load_trait("test/plain", tmp_path / "traits"),
            tmp_path / "exp",
            loaded,
            settings=ExtractionSettings(positions=("answer-first-k",)),
        )
