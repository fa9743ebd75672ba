"""The extraction stage on disk: staleness keys, corrupt state, read-only reruns, streamed activations."""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import write_trait
from test_capture import TEXTS_NEG, TEXTS_POS
from tiny import make_model

import traitvec.capture as capture_module
from traitvec import load_trait
from traitvec.activations import Activations
from traitvec.capture import capture
from traitvec.models import wrap_model
from traitvec.stages.extract import ExtractionSettings, extract_trait, loaded_model_key
from traitvec.vectors import TraitVector

SETTINGS = ExtractionSettings(positions=("prefill-mean", "last-token"), methods=("mean-diff", "pca"))
MORE_POS = TEXTS_POS + ["The harvest failed again this year, yet they said", "Rain flooded the basement; Dad laughed"]
MORE_NEG = TEXTS_NEG + ["The harvest failed again this year, and they said", "Rain flooded the basement; Dad sighed"]


def write_jsonl_trait(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for file, texts in (("positive.jsonl", MORE_POS), ("negative.jsonl", MORE_NEG)):
        rows = [{"prompt": t, "system_prompt": "Be brief."} for t in texts]
        (folder / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_toggling_the_chat_template_recomputes_a_chat_traits_activations(tmp_path: Path) -> None:
    templated = make_model("llama", chat=True)
    plain = wrap_model(templated.model, templated.tokenizer, name="tiny-llama", chat_template=False)
    assert templated.fingerprint == plain.fingerprint  # the same weights: only the template differs
    write_jsonl_trait(tmp_path / "traits", "test/chat")
    write_trait(tmp_path / "traits", "test/text", MORE_POS, MORE_NEG)
    chat, text = load_trait("test/chat", tmp_path / "traits"), load_trait("test/text", tmp_path / "traits")
    settings = ExtractionSettings(positions=("last-token",), methods=("mean-diff",))
    extract_trait(chat, tmp_path / "exp", templated, settings=settings)
    again = extract_trait(chat, tmp_path / "exp", plain, settings=settings)
    assert "activations/last-token" in again.recomputed  # other tokens: other activations
    folder = tmp_path / "exp/extraction/test/chat"
    saved = Activations.load(folder / "activations/last-token.safetensors")
    fresh = capture(plain, chat, positions="last-token")["last-token"]
    torch.testing.assert_close(saved.positive, fresh.positive)
    extract_trait(text, tmp_path / "exp", templated, settings=settings)
    assert extract_trait(text, tmp_path / "exp", plain, settings=settings).recomputed == ()  # prefills: no template


def test_the_key_covers_the_model_key_and_the_capture_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_model("llama")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    trait = load_trait("test/pairs", tmp_path / "traits")
    key = loaded_model_key(loaded)
    settings = ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",))
    extract_trait(trait, tmp_path / "exp", loaded, settings=settings, model_key=key)
    same = extract_trait(trait, tmp_path / "exp", lambda: pytest.fail("loaded"), settings=settings, model_key=key)
    assert same.recomputed == ()
    nnsight = ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",), backend="nnsight")
    assert extract_trait(trait, tmp_path / "exp", loaded, settings=nnsight, model_key=key).recomputed == ()
    for changed in ({**key, "dtype": "bfloat16"}, {**key, "layers_path": "model.other"}, {**key, "revision": "abc"}):
        redone = extract_trait(trait, tmp_path / "exp", loaded, settings=settings, model_key=changed)
        assert "activations/prefill-mean" in redone.recomputed
    monkeypatch.setattr("traitvec.stages.extract.CAPTURE_FORMAT", 99)
    assert "activations/prefill-mean" in extract_trait(trait, tmp_path / "exp", loaded, settings=settings).recomputed
    calls = []
    unknown = {**key, "fingerprint": "unloaded:tiny@None"}  # weights not identified without loading: load them
    extract_trait(trait, tmp_path / "exp", lambda: calls.append(1) or loaded, settings=settings, model_key=unknown)
    assert calls == [1]


def _corrupt_binary(path: Path) -> None:
    path.write_bytes(os.urandom(300))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _tamper(path: Path, field: str) -> None:
    data = json.loads(path.read_text())
    data[field] = "not what it should be"
    path.write_text(json.dumps(data))


def _tamper_evaluation(path: Path) -> None:
    data = json.loads(path.read_text())
    data["positions"]["prefill-mean"]["metrics"] = [{"layer": "x"}]
    path.write_text(json.dumps(data))


CORRUPTIONS = {
    "activations tensors, truncated": ("activations/prefill-mean.safetensors", _truncate, "activations/prefill-mean"),
    "activations tensors, random bytes": (
        "activations/prefill-mean.safetensors",
        _corrupt_binary,
        "activations/prefill-mean",
    ),
    "activations sidecar, binary garbage": ("activations/last-token.json", _corrupt_binary, "activations/last-token"),
    "activations sidecar, wrong structure": (
        "activations/last-token.json",
        lambda p: _tamper(p, "layers"),
        "activations/last-token",
    ),
    "vector tensors, random bytes": ("vectors/pca-last-token.safetensors", _corrupt_binary, "vectors/pca-last-token"),
    "vector sidecar, binary garbage": (
        "vectors/mean-diff-prefill-mean.json",
        _corrupt_binary,
        "vectors/mean-diff-prefill-mean",
    ),
    "vector sidecar, wrong structure": (
        "vectors/mean-diff-prefill-mean.json",
        lambda p: _tamper(p, "raw_norms"),
        "vectors/mean-diff-prefill-mean",
    ),
    "evaluation, binary garbage": ("evaluation.json", _corrupt_binary, "evaluation/prefill-mean"),
    "evaluation, wrong structure": ("evaluation.json", _tamper_evaluation, "evaluation/prefill-mean"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupt_file_is_recomputed_with_a_warning_naming_it(
    case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    relative, corrupt, piece = CORRUPTIONS[case]
    loaded = make_model("gpt2")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    trait = load_trait("test/pairs", tmp_path / "traits")
    first = extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS)
    path = first.folder / relative
    corrupt(path)
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        second = extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS)
    assert piece in second.recomputed
    assert any(str(path) in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert second.evaluations["prefill-mean"].to_dict() == first.evaluations["prefill-mean"].to_dict()
    caplog.clear()
    assert extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS).recomputed == ()  # repaired for good
    assert not caplog.records


def test_a_corrupt_extraction_record_is_written_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loaded = make_model("gpt2")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    trait = load_trait("test/pairs", tmp_path / "traits")
    first = extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS)
    record = first.folder / "extraction.json"
    _corrupt_binary(record)
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        assert extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS).recomputed == ()
    assert any(str(record) in r.getMessage() for r in caplog.records)
    assert json.loads(record.read_text())["recomputed"] == []


def test_a_current_stage_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_model("llama")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    trait = load_trait("test/pairs", tmp_path / "traits")
    extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS)
    folder = tmp_path / "exp"
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}
    for path in [*folder.rglob("*"), folder]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    def refuse(*args, **kwargs):  # read-only for root too: any attempt to write a file fails
        raise PermissionError("read-only experiment folder")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(os, "replace", refuse)
    try:
        again = extract_trait(
            trait, folder, lambda: pytest.fail("loaded"), settings=SETTINGS, model_key=loaded_model_key(loaded)
        )
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert again.recomputed == ()
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")} == before


def test_extraction_streams_activations_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = make_model("qwen2")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    trait = load_trait("test/pairs", tmp_path / "traits")
    in_memory = capture(loaded, trait, positions=["prefill-mean", "last-token"], max_batch_tokens=40)

    def no_memory_rows(*args, **kwargs):
        raise AssertionError("the stage must not hold [2 n_pairs, n_layers, width] in memory")

    monkeypatch.setattr(capture_module, "MemoryRows", no_memory_rows)
    settings = ExtractionSettings(positions=("prefill-mean", "last-token"), methods=("mean-diff",), max_batch_tokens=40)
    result = extract_trait(trait, tmp_path / "exp", loaded, settings=settings)
    for position in ("prefill-mean", "last-token"):
        saved = Activations.load(result.folder / f"activations/{position}.safetensors")
        torch.testing.assert_close(saved.positive, in_memory[position].positive)
        torch.testing.assert_close(saved.negative, in_memory[position].negative)
        assert saved.token_spreads == pytest.approx(in_memory[position].token_spreads, rel=1e-6)
        meta = json.loads((result.folder / f"activations/{position}.json").read_text())
        assert meta["format"] == "traitvec.activations/2" and meta["extra"]["capture_format"] == 2
    vector = TraitVector.load(result.vectors["mean-diff-prefill-mean"])
    assert vector.spreads == pytest.approx(in_memory["prefill-mean"].token_spreads, rel=1e-6)
    assert vector.spread_unit == "per-token"


def test_activation_files_round_trip_in_both_formats(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    loaded = make_model("llama")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    acts = capture(loaded, load_trait("test/pairs", tmp_path / "traits"), positions="last-token")["last-token"]
    path = acts.save(tmp_path / "a/last-token.safetensors")
    again = Activations.load(path)
    torch.testing.assert_close(again.positive, acts.positive)
    torch.testing.assert_close(again.at(1)[1], acts.at(1)[1])
    assert again.token_spreads == acts.token_spreads and again.lines == acts.lines
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:  # a valid safetensors file for any reader
        torch.testing.assert_close(handle.get_tensor("positive")[1], acts.positive[:, 1])
    old = tmp_path / "b/old.safetensors"
    old.parent.mkdir()
    save_file({"positive": acts.positive.contiguous(), "negative": acts.negative.contiguous()}, str(old))
    meta = {**acts.metadata(), "format": "traitvec.activations/1"}
    meta.pop("token_spreads")
    old.with_suffix(".json").write_text(json.dumps(meta))
    legacy = Activations.load(old)
    torch.testing.assert_close(legacy.negative, acts.negative)
    assert legacy.token_spreads == {}


@pytest.mark.slow
def test_the_per_token_spread_of_gemma_is_larger_than_the_prefill_mean_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """REFERENCE §7: on Gemma 3 270M (30 formality pairs) the prefill-mean spread is 2-5x smaller than the
    per-token spread (layer 3: 138 vs 719; layer 6: 283 vs 1093); last-token's is close to per-token."""
    from conftest import ROOT

    from traitvec import load_model
    from traitvec.methods import MeanDiff

    gemma = load_model("gemma-3-270m")
    trait = load_trait("styles/formality", ROOT / "datasets/traits").select(range(30))
    acts = capture(gemma, trait, positions=["prefill-mean", "last-token"], layers=[3, 6])
    prefill, last = MeanDiff().fit(acts["prefill-mean"]), MeanDiff().fit(acts["last-token"])
    monkeypatch.setattr(capture_module, "SPREAD_SAMPLE", 10**9)  # every token: the exact value
    exact = capture(gemma, trait, positions=["last-token"], layers=[3, 6])["last-token"].token_spreads
    for layer, (old, new) in {3: (138, 719), 6: (283, 1093)}.items():
        assert prefill.spread(layer) == last.spread(layer)  # one unit for every position
        assert prefill.spread(layer) == pytest.approx(exact[layer], rel=0.02)  # the 512-token sample's error
        assert exact[layer] == pytest.approx(new, rel=0.01)
        assert prefill.position_spreads[layer] == pytest.approx(old, rel=0.01)
        assert 2 < prefill.spread(layer) / prefill.position_spreads[layer] < 6
        assert 0.75 < last.position_spreads[layer] / last.spread(layer) < 1.05


def test_a_trait_with_few_pairs_is_warned_about_once_when_it_is_evaluated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = make_model("gpt2")
    write_trait(tmp_path / "traits", "test/pairs", MORE_POS, MORE_NEG)
    trait = load_trait("test/pairs", tmp_path / "traits")
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        first = extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS)
    n_test = first.evaluations["prefill-mean"].n_test_pairs
    (line,) = [r.getMessage() for r in caplog.records if "test pairs" in r.getMessage()]
    assert line.startswith(f"test/pairs: {trait.n_pairs} pairs leave") and f"and {n_test} test pairs" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="traitvec"):
        extract_trait(trait, tmp_path / "exp", loaded, settings=SETTINGS)  # current: said already
    assert not caplog.records
