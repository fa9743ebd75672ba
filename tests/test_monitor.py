"""Per-token monitoring: values against an independent forward pass, a planted direction recovered,
streaming and resuming, ranking, generation, the CLI, the report in a real browser, and (slow)
held-out separation on the embedded Gemma."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny import make_model

import traitvec.monitor.readings as readings_module
from traitvec.cli import main
from traitvec.conversations import Message
from traitvec.errors import ConfigError
from traitvec.experiments import load_experiment
from traitvec.hooks import HookSet
from traitvec.models import LoadedModel, ModelPool
from traitvec.monitor import Readout, encode_generated, encode_messages, encode_texts, project_texts, read_tokens
from traitvec.prompting import encode_conversation
from traitvec.stages.extract import ExtractionSettings, extract_trait
from traitvec.stages.monitor import GenerateSettings, MonitorSettings, run_monitor
from traitvec.stages.parts import iter_texts
from traitvec.stages.readouts import ReadoutChoice
from traitvec.traits import load_trait

PLANTED = "dge"  # the token planted in the model (the middle of " budget" for the tiny tokenizer)
CONTEXTS = [
    "How is the project going?",
    "What did the committee decide?",
    "Give me a status update.",
    "What should we fix first?",
    "Summarise the meeting.",
    "What is the risk here?",
    "Where do we stand?",
    "What changed this week?",
    "What is left to do?",
    "Any news from the client?",
    "What did the report say?",
    "How was the review?",
]


def _unit(seed: int, width: int) -> torch.Tensor:
    v = torch.randn(width, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def planted_model(seed: int = 0) -> tuple[LoadedModel, torch.Tensor]:
    """A tiny chat model whose embedding of the planted token carries a strong direction ``u``."""
    loaded = make_model("llama", layers=4, hidden=32, chat=True, seed=seed)
    u = _unit(7, 32)
    token = loaded.tokenizer.convert_tokens_to_ids(PLANTED)
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[token] += 3.0 * u
    return loaded, u


def _conversation(question: str, answer: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def write_planted_trait(root: Path) -> None:
    """Conversation pairs identical except the answer: the positive answer names the budget."""
    folder = root / "test" / "planted"
    folder.mkdir(parents=True)
    pos = [_conversation(q, f"We looked at the budget {i} and it is fine.") for i, q in enumerate(CONTEXTS)]
    neg = [_conversation(q, f"We looked at the plan {i} and it is fine.") for i, q in enumerate(CONTEXTS)]
    for name, rows in (("positive.jsonl", pos), ("negative.jsonl", neg)):
        (folder / name).write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An experiment on the planted model with the planted trait extracted (prefill-mean, mean-diff)."""
    base = tmp_path_factory.mktemp("planted")
    loaded, u = planted_model()
    folder = base / "model"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    experiments = base / "experiments"
    (experiments / "tiny").mkdir(parents=True)
    (experiments / "tiny" / "config.toml").write_text(f'model = "{folder}"\ndtype = "float32"\ndevice = "cpu"\n')
    traits = base / "traits"
    write_planted_trait(traits)
    config = load_experiment("tiny", experiments)
    pool = ModelPool()
    settings = ExtractionSettings(positions=("prefill-mean",), methods=("mean-diff",))
    extract_trait(load_trait("test/planted", traits), config.path, lambda: pool.get(config), settings=settings)
    return {"base": base, "config": config, "pool": pool, "traits": traits, "u": u, "experiments": experiments}


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


HELD_OUT = [
    "The budget was approved on Monday.",
    "Nobody read the budget report.",
    "Our budget is tight this year.",
]
HELD_OUT_MESSAGES = [
    _conversation("Anything else?", "Only the budget remains open."),
    _conversation("Which item worries you?", "The budget, honestly."),
]


# --------------------------------------------------------------------------------------------
# the library: values, bookkeeping, batching


def test_values_equal_an_independent_forward_pass_under_any_batching(tiny_llama: LoadedModel) -> None:
    texts = ["The quick brown fox jumps over the lazy dog.", "Hi", "Question: How will the economy look?"]
    encoded = encode_texts(tiny_llama, texts)
    v1, v2 = _unit(1, 32), _unit(2, 32)
    readouts = [Readout("a/x", 0, v1, 0.5, centre=0.25), Readout("a/y", 1, v2, 2.0)]
    together = project_texts(tiny_llama, encoded, readouts, max_batch_tokens=1024)
    for text, reading in zip(texts, together, strict=True):
        ids = tiny_llama.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = tiny_llama.model(ids, output_hidden_states=True).hidden_states
        expected_x = ((hidden[1][0] @ v1 - 0.25) / 0.5).numpy()
        expected_y = ((hidden[2][0] @ v2) / 2.0).numpy()
        np.testing.assert_allclose(reading.per_token("a/x"), expected_x, atol=1e-5)
        np.testing.assert_allclose(reading.per_token("a/y"), expected_y, atol=1e-5)
        assert list(reading.text.ids) == ids[0].tolist()
    for side in ("left", "right"):
        one_by_one = [project_texts(tiny_llama, [t], readouts, padding_side=side)[0] for t in encoded]
        batched = project_texts(tiny_llama, encoded, readouts, max_batch_tokens=64, padding_side=side)
        for a, b, c in zip(together, one_by_one, batched, strict=True):
            np.testing.assert_allclose(a.values, b.values, atol=1e-5)
            np.testing.assert_allclose(a.values, c.values, atol=1e-5)


def test_tokens_offsets_and_special_flags_are_exact(tiny_llama: LoadedModel) -> None:
    text = "Honestly, I have to admit the plan failed."
    (item,) = encode_texts(tiny_llama, [text], sources=[{"index": 0, "line": 4}])
    tokenizer = tiny_llama.tokenizer
    assert list(item.ids) == tokenizer(text)["input_ids"]
    assert list(item.tokens) == tokenizer.convert_ids_to_tokens(list(item.ids))
    assert item.special[0] and not any(item.special[1:])  # <bos>, then the text
    assert item.offsets is not None
    assert "".join(text[s:e] for s, e in item.offsets) == text
    v = _unit(3, 32)
    (reading,) = project_texts(tiny_llama, [item], [Readout("a/x", 1, v, 1.0)])
    values = reading.per_token("a/x")
    summary = reading.summary("a/x")
    assert summary["mean"] == pytest.approx(float(values[1:].mean()), abs=1e-6)
    assert summary["max"] == pytest.approx(float(values[1:].max()), abs=1e-6)
    assert summary["last"] == pytest.approx(float(values[-1]), abs=1e-6)
    assert summary["mean"] != pytest.approx(float(values.mean()), abs=1e-6)  # the special BOS is not in it
    entry = reading.to_dict()
    assert entry["line"] == 4 and entry["special"][0] is True and entry["span"] == [0, len(item.ids)]
    assert entry["traits"]["a/x"]["per_token"][0] == round(float(values[0]), 4)  # kept, flagged, not summarised


def test_a_conversation_summarises_its_answer_and_a_generation_its_answer_tokens() -> None:
    loaded = make_model("llama", layers=2, chat=True)
    messages = [Message("user", "Hi there?"), Message("assistant", "Hello, the plan failed.")]
    item = encode_messages(loaded, messages)
    enc = encode_conversation(loaded, messages)
    assert item.ids == enc.input_ids and item.span == (enc.answer_start, enc.answer_end)
    assert item.text == enc.text and item.offsets is not None
    assert enc.text[item.offsets[item.span[0]][0] : item.offsets[item.span[1] - 1][1]] == "Hello, the plan failed."
    (reading,) = project_texts(loaded, [item], [Readout("a/x", 1, _unit(4, 32), 1.0)])
    answer = reading.per_token("a/x")[item.span[0] : item.span[1]]
    assert reading.summary("a/x")["mean"] == pytest.approx(float(answer.mean()), abs=1e-6)

    prompt = loaded.tokenizer("Question: why?")["input_ids"]
    answer_ids = loaded.tokenizer(" Because it rains.", add_special_tokens=False)["input_ids"]
    generated = encode_generated(loaded, prompt, answer_ids)
    assert generated.ids == tuple(prompt + answer_ids) and generated.span == (
        len(prompt),
        len(prompt) + len(answer_ids),
    )
    assert generated.offsets is not None
    pieces = [generated.text[s:e] for s, e in generated.offsets]
    assert "".join(pieces) == generated.text and generated.text.endswith("Question: why? Because it rains.")


def test_the_pass_stops_after_the_deepest_layer_and_removes_its_hooks() -> None:
    loaded = make_model("llama", layers=4)
    calls = [0] * 4
    before = [len(layer._forward_hooks) for layer in loaded.layers]
    with HookSet() as counters:
        for i, layer in enumerate(loaded.layers):
            counters.forward(layer, lambda m, a, o, i=i: calls.__setitem__(i, calls[i] + 1))
        project_texts(loaded, encode_texts(loaded, ["a b c", "d e"]), [Readout("a/x", 1, _unit(5, 32), 1.0)])
        assert calls == [1, 1, 0, 0]  # one batch; layers 2 and 3 never ran
        assert [len(layer._forward_hooks) for layer in loaded.layers] == [b + 1 for b in before]
    assert [len(layer._forward_hooks) for layer in loaded.layers] == before


def test_read_tokens_streams_groups_and_keeps_input_order(tiny_llama: LoadedModel, monkeypatch) -> None:
    monkeypatch.setattr(readings_module, "CHUNK_TEXTS", 3)
    pulled: list[int] = []
    texts = [f"text number {i} " + "word " * (i % 4) for i in range(10)]

    def source() -> Iterator[Any]:
        for i, t in enumerate(texts):
            pulled.append(i)
            yield encode_texts(tiny_llama, [t], sources=[{"index": i}])[0]

    seen = []
    for reading in read_tokens(tiny_llama, source(), [Readout("a/x", 0, _unit(6, 32), 1.0)]):
        seen.append(reading.text.source["index"])
        assert len(pulled) <= len(seen) + 3  # never more than one group ahead of what was yielded
    assert seen == list(range(10))


def test_readout_and_input_errors_are_clear(tiny_llama: LoadedModel, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="norm"):
        Readout("a/x", 0, torch.ones(32), 1.0)
    with pytest.raises(ConfigError, match="scale"):
        Readout("a/x", 0, _unit(1, 32), 0.0)
    with pytest.raises(ConfigError, match="width 16"):
        project_texts(tiny_llama, encode_texts(tiny_llama, ["a"]), [Readout("a/x", 0, _unit(1, 16), 1.0)])
    with pytest.raises(ConfigError, match="layer 9 does not exist"):
        project_texts(tiny_llama, encode_texts(tiny_llama, ["a"]), [Readout("a/x", 9, _unit(1, 32), 1.0)])


# --------------------------------------------------------------------------------------------
# the stage, on the planted model


def test_a_planted_direction_is_recovered_per_token(planted: dict[str, Any], tmp_path: Path) -> None:
    inputs = _write(tmp_path / "held.jsonl", [json.dumps({"text": t}) for t in HELD_OUT])
    with inputs.open("a", encoding="utf-8") as handle:
        for m in HELD_OUT_MESSAGES:
            handle.write(json.dumps({"messages": m, "id": "m"}) + "\n")
    result = run_monitor(planted["config"], ["test/planted"], inputs, pool=planted["pool"])
    document = json.loads(result.paths.projections_json.read_text(encoding="utf-8"))
    assert len(document["texts"]) == len(HELD_OUT) + len(HELD_OUT_MESSAGES)
    for item in document["texts"]:
        values = item["traits"]["test/planted"]["per_token"]
        marked = [i for i, t in enumerate(item["tokens"]) if t == PLANTED]
        others = [v for i, v in enumerate(values) if i not in marked and not item["special"][i]]
        assert marked, item["text"]
        assert min(values[i] for i in marked) > max(others) + 1.0, item["text"]
    provenance = document["vectors"]["test/planted"]
    assert (provenance["method"], provenance["position"]) == ("mean-diff", "prefill-mean")
    assert provenance["chosen_by"] == "the evaluation's recommendation"
    vector = torch.tensor(json.loads(Path(provenance["file"]).with_suffix(".json").read_text())["layers"])
    assert provenance["layer"] in vector.tolist()
    from traitvec.vectors import TraitVector

    direction = TraitVector.load(provenance["file"]).direction(provenance["layer"])
    assert float(direction @ planted["u"]) > 0.8  # the vector found the planted direction


def test_an_input_of_conversations_only_is_read(planted: dict[str, Any], tmp_path: Path) -> None:
    """A group without a plain text (every row a conversation) tokenises no empty batch."""
    loaded = planted["pool"].get(planted["config"])
    assert encode_texts(loaded, []) == []
    inputs = _write(tmp_path / "chats.jsonl", [json.dumps({"messages": m}) for m in HELD_OUT_MESSAGES])
    result = run_monitor(planted["config"], ["test/planted"], inputs, name="chats", pool=planted["pool"])
    texts = list(iter_texts(result.paths.projections_json))
    assert [t["tokens"].count(PLANTED) for t in texts] == [1, 1]
    assert all(t["span"][1] - t["span"][0] < len(t["ids"]) for t in texts)  # the answers only


def test_held_out_positive_texts_read_higher_and_the_centre_splits_the_classes(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    pos = [f"We looked at the budget {i} and it was fine." for i in range(20, 26)]
    neg = [f"We looked at the plan {i} and it was fine." for i in range(20, 26)]
    inputs = _write(tmp_path / "both.txt", pos + neg)
    result = run_monitor(planted["config"], ["test/planted"], inputs, name="both", pool=planted["pool"])
    means = [t["traits"]["test/planted"]["mean"] for t in iter_texts(result.paths.projections_json)]
    assert min(means[:6]) > max(means[6:])
    assert result.vectors["test/planted"]["centre_rule"].startswith("midpoint")
    assert min(means[:6]) > 0 > max(means[6:])  # 0 lies between the classes


def test_a_current_run_is_skipped_without_the_model_and_inputs_change_the_key(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    inputs = _write(tmp_path / "skip.txt", HELD_OUT)
    first = run_monitor(planted["config"], ["test/planted"], inputs, pool=ModelPool())  # a fresh pool, as a rerun has
    assert first.recomputed and first.paths.report_html.is_file()
    stamp = first.paths.projections_json.stat().st_mtime_ns

    class NoModel(ModelPool):
        def get(self, config: Any) -> LoadedModel:
            raise AssertionError("a current monitor run loaded the model")

    again = run_monitor(planted["config"], ["test/planted"], inputs, pool=NoModel())
    assert not again.recomputed and first.paths.projections_json.stat().st_mtime_ns == stamp
    _write(inputs, [*HELD_OUT, "One more budget line."])
    changed = run_monitor(planted["config"], ["test/planted"], inputs, pool=planted["pool"])
    assert changed.recomputed and changed.texts == 4
    layer = run_monitor(
        planted["config"],
        ["test/planted"],
        inputs,
        settings=MonitorSettings(choice=ReadoutChoice(layers=(0,))),
        pool=planted["pool"],
    )
    assert layer.recomputed and layer.vectors["test/planted"]["layer"] == 0
    assert layer.vectors["test/planted"]["chosen_by"] == "override of layer"


def test_a_truncated_or_foreign_projections_file_is_recomputed(planted: dict[str, Any], tmp_path: Path) -> None:
    inputs = _write(tmp_path / "torn.txt", HELD_OUT)
    first = run_monitor(planted["config"], ["test/planted"], inputs, pool=planted["pool"])
    path = first.paths.projections_json
    whole = path.read_text(encoding="utf-8")
    for broken in (whole[: len(whole) // 2], "\x00\xff garbage", json.dumps({"texts": [], "inputs_key": "x"})):
        path.write_text(broken, encoding="utf-8", errors="surrogateescape")
        again = run_monitor(planted["config"], ["test/planted"], inputs, pool=planted["pool"])
        assert again.recomputed and path.read_text(encoding="utf-8").count("\n") == whole.count("\n")


def test_an_interrupted_run_resumes_at_the_first_unfinished_group(
    planted: dict[str, Any], tmp_path: Path, monkeypatch
) -> None:
    import traitvec.stages.monitor as stage

    monkeypatch.setattr(readings_module, "CHUNK_TEXTS", 2)
    inputs = _write(tmp_path / "resume.txt", [f"Line {i} about the budget." for i in range(7)])
    real = stage.project_texts
    calls: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "project_texts", failing)
    with pytest.raises(KeyboardInterrupt):
        run_monitor(planted["config"], ["test/planted"], inputs, pool=planted["pool"])
    paths = planted["config"].path / "monitor" / "resume"
    assert not (paths / "projections.json").exists()
    assert len(list((paths / ".parts").rglob("*.jsonl"))) == 2
    calls.clear()
    monkeypatch.setattr(stage, "project_texts", lambda *a, **k: (calls.append(len(a[1])), real(*a, **k))[1])
    resumed = run_monitor(planted["config"], ["test/planted"], inputs, pool=planted["pool"])
    assert calls == [2, 1]  # groups 3 and 4 only
    assert not (paths / ".parts").exists()
    fresh = run_monitor(planted["config"], ["test/planted"], inputs, name="fresh", pool=planted["pool"], force=True)
    assert list(iter_texts(resumed.paths.projections_json)) == list(iter_texts(fresh.paths.projections_json))


def test_rank_orders_texts_and_keeps_the_ends(planted: dict[str, Any], tmp_path: Path) -> None:
    lines = [f"Row {i}: " + ("the budget " * (i % 3)) + "was discussed." for i in range(9)]
    inputs = _write(tmp_path / "rank.jsonl", [json.dumps({"text": t, "id": f"r{i}"}) for i, t in enumerate(lines)])
    settings = MonitorSettings(rank_by="max", top=2)
    result = run_monitor(planted["config"], ["test/planted"], inputs, settings=settings, pool=planted["pool"])
    assert result.ranking is not None
    texts = list(iter_texts(result.paths.projections_json))
    maxima = {t["index"]: t["traits"]["test/planted"]["max"] for t in texts}
    ranked = result.ranking["traits"]["test/planted"]["ranked"]
    assert [r["index"] for r in ranked] == sorted(maxima, key=lambda i: (-maxima[i], i))
    top = result.ranking["traits"]["test/planted"]["top"]
    bottom = result.ranking["traits"]["test/planted"]["bottom"]
    assert [e["index"] for e in top] == [r["index"] for r in ranked[:2]]
    assert [e["index"] for e in bottom] == sorted(maxima, key=lambda i: (maxima[i], i))[:2]  # lowest; ties by index
    assert top[0]["text"] == lines[top[0]["index"]] and texts[0]["id"] == "r0"
    assert json.loads(result.paths.ranking_json.read_text())["rank_by"] == "max"


def test_generation_reads_the_exact_generated_ids_and_steering_changes_them(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    from traitvec.generation import generate
    from traitvec.prompting import encode_chat

    prompts = _write(tmp_path / "prompts.txt", ["How is the project going?", "What changed?"])
    plain = run_monitor(
        planted["config"], ["test/planted"], prompts, name="plain", generate=GenerateSettings(max_new_tokens=6),
        pool=planted["pool"],
    )  # fmt: skip
    loaded = planted["pool"].get(planted["config"])
    expected = generate(loaded, [encode_chat(loaded, "How is the project going?")], max_new_tokens=6)[0]
    first = next(iter_texts(plain.paths.projections_json))
    assert first["ids"] == list(expected.prompt_ids) + list(expected.tokens)
    assert (
        first["span"] == [len(expected.prompt_ids), len(first["ids"])]
        and first["prompt"] == "How is the project going?"
    )
    steered = run_monitor(
        planted["config"], ["test/planted"], prompts, name="steered",
        generate=GenerateSettings(max_new_tokens=6, steer="test/planted", coefficient=40.0), pool=planted["pool"],
    )  # fmt: skip
    again = next(iter_texts(steered.paths.projections_json))
    assert again["ids"][: first["span"][0]] == first["ids"][: first["span"][0]]
    assert again["ids"] != first["ids"]  # the steered answer differs
    fields = json.loads(steered.paths.projections_json.read_text())["generate"]
    assert fields["steer"] == "test/planted" and fields["steer_vector"]["coefficient"] == 40.0


def test_bad_inputs_are_refused_with_line_numbers_before_anything_is_written(
    planted: dict[str, Any], tmp_path: Path
) -> None:
    bad = _write(
        tmp_path / "bad.jsonl",
        [json.dumps({"text": "fine"}), "{not json", json.dumps({"text": ""}), "", json.dumps({"messages": []})],
    )
    with pytest.raises(ConfigError) as info:
        run_monitor(planted["config"], ["test/planted"], bad, pool=planted["pool"])
    message = str(info.value)
    assert "3 malformed row(s)" in message and "line 2:" in message and "line 3:" in message and "line 5:" in message
    assert not (planted["config"].path / "monitor" / "bad").exists()
    with pytest.raises(ConfigError, match="unknown suffix"):
        run_monitor(planted["config"], ["test/planted"], _write(tmp_path / "x.csv", ["a"]), pool=planted["pool"])
    with pytest.raises(ConfigError, match="has not been extracted"):
        run_monitor(planted["config"], ["test/other"], _write(tmp_path / "ok.txt", ["a"]), pool=planted["pool"])
    with pytest.raises(ConfigError, match="plain folder name"):
        run_monitor(planted["config"], ["test/planted"], tmp_path / "ok.txt", name="../up", pool=planted["pool"])


# --------------------------------------------------------------------------------------------
# the command line


def test_monitor_command_writes_outputs_and_prints_the_ranking(planted: dict[str, Any], tmp_path: Path, capsys) -> None:
    inputs = _write(tmp_path / "cli.jsonl", [json.dumps({"text": t}) for t in [*HELD_OUT, "No money words here."]])
    common = ["--experiment", "tiny", "--experiments-root", str(planted["experiments"]), "--traits", "test/planted"]
    code = main(
        ["monitor", *common, "--input", str(inputs), "--rank", "--top", "1", "--traits-root", str(planted["traits"])]
    )
    out = capsys.readouterr().out
    assert code == 0
    folder = planted["experiments"] / "tiny" / "monitor" / "cli"
    assert (folder / "projections.json").is_file() and (folder / "report.html").is_file()
    ranking = json.loads((folder / "ranking.json").read_text())
    top = ranking["traits"]["test/planted"]["top"][0]
    assert "test/planted" in out and top["text"] in out and str(folder / "projections.json") in out
    assert ranking["traits"]["test/planted"]["bottom"][0]["text"] == "No money words here."


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--rank-by", "median"], "--rank-by"),
        (["--layer", "x"], "--layer"),
        (["--coefficient", "2"], "--steer"),
        (["--name", "a/b"], "--name"),
    ],
)
def test_monitor_command_errors_are_one_line(planted: dict[str, Any], tmp_path: Path, capsys, extra, expected) -> None:
    inputs = _write(tmp_path / "e.txt", HELD_OUT)
    common = ["--experiment", "tiny", "--experiments-root", str(planted["experiments"]), "--traits", "test/planted"]
    code = main(["monitor", *common, "--input", str(inputs), *extra])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("traitvec: error:")]
    assert len(lines) == 1 and expected in lines[0], err


# --------------------------------------------------------------------------------------------
# the report of a real monitor run, in a real headless Chromium

from test_report_html import _background, _rgb, browser  # noqa: E402,F401  (the browser fixture)


def test_report_of_a_real_run_renders_and_colours_the_planted_token(
    planted: dict[str, Any],
    tmp_path: Path,
    browser: Any,  # noqa: F811  (the fixture imported above)
) -> None:
    from selenium.webdriver.support.ui import Select

    inputs = _write(tmp_path / "page.txt", HELD_OUT)
    run_monitor(planted["config"], ["test/planted"], inputs, name="page", pool=planted["pool"])
    result = run_monitor(
        planted["config"], ["test/planted"], inputs, name="page2", pool=planted["pool"],
        settings=MonitorSettings(choice=ReadoutChoice(layers=(1, 3))),
    )  # fmt: skip
    document = json.loads(result.paths.projections_json.read_text())
    browser.get(result.paths.report_html.as_uri())
    first = document["texts"][0]
    marked = first["tokens"].index(PLANTED)
    plain = next(i for i, t in enumerate(first["tokens"]) if not first["special"][i] and i != marked)
    for name in ("test/planted@1", "test/planted@3"):
        Select(browser.find_element("id", "trait")).select_by_value(name)
        high, low = _rgb(_background(browser, 0, marked)), _rgb(_background(browser, 0, plain))
        assert high[0] > 150 and high[2] < 100, (name, high)  # saturated red: the top of the scale
        assert min(low) > 150, (name, low)  # pale: near the centre
        assert _rgb(_background(browser, 0, 0)) == (232, 232, 232)  # <bos>: special, grey
    rows = browser.execute_script("return document.querySelectorAll('#summary-table tbody tr').length")
    assert rows == len(HELD_OUT)
    assert "mean-diff" in browser.find_element("id", "provenance").text


# --------------------------------------------------------------------------------------------
# the embedded Gemma (slow)


@pytest.mark.slow
def test_held_out_formality_texts_separate_on_the_embedded_gemma() -> None:
    """Fit on 70% of the formality pairs (our own split); monitor the other 30% as plain texts."""
    from conftest import ROOT

    from traitvec.capture import capture
    from traitvec.evaluation import auroc, evaluate, split_pairs
    from traitvec.methods import MeanDiff
    from traitvec.models import load_model

    loaded = load_model("gemma-3-270m")
    trait = load_trait("styles/formality", ROOT / "datasets" / "traits")
    train, validation, test = split_pairs(trait.n_pairs, validation_fraction=0.1, test_fraction=0.3, seed=11)
    train = sorted([*train, *validation])  # the layer is chosen on the fitting pairs; the test pairs stay held out
    fit = trait.select([int(i) for i in train])
    acts = capture(loaded, fit, positions=["prefill-mean"], layers=list(range(2, 16, 2)))["prefill-mean"]
    vector = MeanDiff().fit(acts)
    layer = evaluate(acts, {"mean-diff": vector}).recommended["mean-diff"]  # chosen on the training pairs only
    pos, neg = acts.at(layer)
    centre = float(((pos.double().mean(0) + neg.double().mean(0)) / 2) @ vector.direction(layer).double())
    readout = Readout.from_vector(vector, layer, centre=centre)
    held = [trait.positive[i].text for i in test] + [trait.negative[i].text for i in test]
    means = [r.summary("styles/formality")["mean"] for r in read_tokens(loaded, encode_texts(loaded, held), [readout])]
    n = len(test)
    score = auroc(np.array(means[:n]), np.array(means[n:]))
    print(f"formality: layer {layer}, {n} held-out pairs, AUROC {score:.3f}")
    assert score >= 0.9
    assert np.mean(means[:n]) > 0 > np.mean(means[n:])  # the centre lies between the held-out classes
