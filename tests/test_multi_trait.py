"""Several traits at once: the steering searches share one ``generate`` per round, with the results of each alone.

A tiny random-init model saved to a folder, two bundled traits, the real judge server on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, outputs, tiny_experiments_root, untimed
from tiny import make_model

import traitvec.stages.multi_steer as multi_steer
from traitvec.generation import generate
from traitvec.judge import make_judge
from traitvec.judge.testing import JudgeServer, KeywordResponder
from traitvec.stages.extract import ExtractionSettings
from traitvec.stages.pipeline import run_pipeline
from traitvec.stages.steer import SteeringSettings

TRAITS = ("states/optimism", "styles/formality")
KEY = "sk-test-SECRET-multi-5150"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_experiments_root(tmp_path_factory.mktemp("experiments"))


def test_shared_steering_search_gives_each_trait_its_results_alone(
    tiny_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return generate(*args, **kwargs)

    monkeypatch.setattr(multi_steer, "generate", counted)
    folder = tiny_root / "tiny"
    with JudgeServer(KeywordResponder()) as server:

        def run(batch: bool) -> list[Any]:
            return run_pipeline(
                "tiny",
                list(TRAITS),
                extraction=ExtractionSettings(methods=("mean-diff",), positions=("prefill-mean",)),
                steering=SteeringSettings(questions=4, search_steps=2, n_layers=2, max_new_tokens=6),
                judge=lambda: make_judge("test-judge", base_url=server.base_url, api_key=KEY, cache_path=False),
                traits_root=ROOT / "datasets" / "traits",
                experiments_root=tiny_root,
                batch_traits=batch,
            )

        alone = run(False)
        assert calls == []  # one trait after another: nothing shared
        expected = outputs(folder)
        for sub in ("extraction", "steering"):
            shutil.rmtree(folder / sub)
        shared = run(True)
    assert [r.trait for r in shared] == list(TRAITS)
    got = outputs(folder)
    assert sorted(got) == sorted(expected)
    assert [name for name in expected if got[name] != expected[name]] == []
    for trait, a, b in zip(TRAITS, alone, shared, strict=True):
        assert untimed(b.steering) == untimed(a.steering)
        assert b.steering is not None and b.steering["trait"] == trait
        assert len(b.steering["responses"]) > 4  # a baseline and search rounds really ran
    rounds = [len(json.loads((folder / f"steering/{t}/results.json").read_text())["runs"]) for t in TRAITS]
    # each call answered both traits' rounds: 4 questions x the layers of each trait's round
    assert len(calls) <= 1 + max(rounds)
    assert calls[0] == 2 * 4  # the baselines of both traits (4 questions each, one layer) in one call


def test_greedy_requests_share_one_call_and_sampled_ones_run_alone() -> None:
    from traitvec.prompting import encode_chat
    from traitvec.steering import Steer
    from traitvec.traits import load_trait

    loaded = make_model("llama", layers=4, hidden=32, chat=True)
    traits = [load_trait(name, ROOT / "datasets" / "traits") for name in TRAITS]
    prompts = [[encode_chat(loaded, q) for q in t.questions[:5]] for t in traits]
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3))
    # the first trait's rows unsteered, the second's steered at layer 2: per-row steering in one batch
    steering = [[[] for _ in prompts[0]], [[Steer(direction, 2, 4.0, scale="absolute")] for _ in prompts[1]]]
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[1]))
        return generate(*args, **kwargs)

    requests = [
        multi_steer.GenerationRequest(loaded, p, {"max_new_tokens": 12, "steering": s, "seed": 7 + i, "desc": f"r{i}"})
        for i, (p, s) in enumerate(zip(prompts, steering, strict=True))
    ]
    multi_steer.share_generate(requests, counted)
    assert calls == [10]  # both traits' rows in one call (greedy: the seeds do not matter)
    for request, p, s in zip(requests, prompts, steering, strict=True):
        alone = generate(loaded, p, max_new_tokens=12, steering=s)
        assert request.result is not None and [g.tokens for g in request.result] == [g.tokens for g in alone]
    sampled = [
        multi_steer.GenerationRequest(loaded, p, {"max_new_tokens": 6, "do_sample": True, "seed": 11}) for p in prompts
    ]
    calls.clear()
    multi_steer.share_generate(sampled, counted)
    assert calls == [5, 5]  # one random stream per trait, as alone
    for request, p in zip(sampled, prompts, strict=True):
        alone = generate(loaded, p, max_new_tokens=6, do_sample=True, seed=11)
        assert request.result is not None and [g.tokens for g in request.result] == [g.tokens for g in alone]
