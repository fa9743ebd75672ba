"""The judge, against a real OpenAI-protocol HTTP server on 127.0.0.1 started here.

Every API test talks to :class:`traitvec.judge.testing.JudgeServer` through the real ``openai`` client:
exact logprob arithmetic, abstention, the text fallback, retries (429 with Retry-After, 500,
timeouts, malformed bodies), recorded failures, the SQLite cache, and that the API key never
reaches a file, a log line, an exception or a repr. The local judge's digit tree is checked with a
hand-built distribution and against a full-recompute reference on tiny random models; a ``slow``
test runs the embedded smollm2-135m-instruct.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from traitvec.errors import ConfigError, JudgeError
from traitvec.judge import (
    JudgeScore,
    ScoreSummary,
    gate_coherence,
    make_judge,
    parse_text_score,
    summarize,
    weighted_score,
)
from traitvec.judge._http import retry_after
from traitvec.judge.cache import ScoreCache
from traitvec.judge.openai import OpenAIJudge
from traitvec.judge.prompts import (
    COHERENCE_TEMPLATE,
    RELEVANCE_TEMPLATE,
    coherence_prompts,
    continuation_prompts,
    fill,
    relevance_prompts,
    template_hashes,
    trait_prompts,
)
from traitvec.judge.testing import Completion, Fault, JudgeServer, KeywordResponder, ScriptedResponder
from traitvec.traits import Trait, load_trait

KEY = "sk-test-SECRET-123"
DEFINITION = """Score optimism (0-100).

HIGH (70-100): "hopeful", "bright", "opportunity" - upside focus
MID (40-70): Balanced or neutral
LOW (0-40): "doomed", "hopeless" - downside focus

Key: framing, not topic."""
EVAL_PROMPT = (
    'Does the answer show **{trait}**? Example JSON: {"score": 50}.\n'
    "[QUESTION START]\n{question}\n[QUESTION END]\n[ANSWER START]\n{answer}\n[ANSWER END]\n"
    "Respond with a number between 0 and 100."
)


# ------------------------------------------------------------------------------------ fixtures


def _write_trait(root: Path, name: str, *, definition: str | None, eval_prompt: str | None) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "positive.txt").write_text("It will work out because\nThe future looks\n")
    (folder / "negative.txt").write_text("It will fail because\nThe future seems\n")
    if definition is not None:
        (folder / "definition.txt").write_text(definition + "\n")
    steering: dict[str, object] = {"questions": ["How will the economy look next year?", "What causes extinction?"]}
    if eval_prompt is not None:
        steering["eval_prompt"] = eval_prompt
    (folder / "steering.json").write_text(json.dumps(steering))


@pytest.fixture()
def traits_root(tmp_path: Path) -> Path:
    root = tmp_path / "traits"
    _write_trait(root, "hum/optimism", definition=DEFINITION, eval_prompt=None)
    _write_trait(root, "hum/first_person-hope", definition=DEFINITION, eval_prompt=EVAL_PROMPT)
    _write_trait(root, "hum/bare", definition=None, eval_prompt=None)
    return root


@pytest.fixture()
def trait(traits_root: Path) -> Trait:
    return load_trait("hum/optimism", traits_root)


@pytest.fixture()
def eval_trait(traits_root: Path) -> Trait:
    return load_trait("hum/first_person-hope", traits_root)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TRAITVEC_JUDGE_MODEL", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def server() -> Iterator[JudgeServer]:
    with JudgeServer() as s:
        yield s


def judge_for(server: JudgeServer, tmp_path: Path, **kwargs: object) -> OpenAIJudge:
    options: dict[str, object] = {
        "base_url": server.base_url,
        "api_key": KEY,
        "cache_path": tmp_path / "judge-cache.sqlite",
        "backoff_base": 0.01,
        "timeout": 2.0,
    }
    options.update(kwargs)
    return OpenAIJudge("test-judge", **options)  # type: ignore[arg-type]


def _lp(p: float) -> float:
    return math.log(p)


# ------------------------------------------------------------------------------ arithmetic


def test_weighted_score_by_hand() -> None:
    score, mass = weighted_score([("85", _lp(0.6)), (" 90", _lp(0.2)), ("foo", _lp(0.1)), ("101", _lp(0.05))])
    assert mass == pytest.approx(0.8)
    assert score == pytest.approx((85 * 0.6 + 90 * 0.2) / 0.8)
    assert weighted_score([("x", 0.0)]) == (None, 0.0)
    score, mass = weighted_score([("7.5", _lp(0.5)), ("-3", _lp(0.2)), ("\u00b3", _lp(0.2)), ("0", _lp(0.1))])
    assert (score, mass) == (pytest.approx(0.0), pytest.approx(0.1))


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        (" 72", 72.0), ("Score: 85/100", 85.0), ("7.5", 7.5), ("Score: 100", 100.0), ("0", 0.0),
        # the replies of issues 10.7 and 14.4: the first number anywhere read them as 0, 1, 0, 100 and 4
        ("On a scale of 0-100 I'd say 85", 85.0), ("1. 85", 85.0),
        ("On a scale of 0 to 100, I would give it 85.", 85.0), ("Rating (out of 100): 85", 85.0),
        ("I cannot rate this as GPT4 would.", None),
        # ranges, denominators, list markers, words, other scales, out of range, several numbers
        ("a number between 0 and 100: 40", 40.0), ("0 – 100: 60", 60.0), ("Score (0-100): 85", 85.0),
        ("85 out of 100", 85.0), ("I'd rate it 70", 70.0), ("The score is 55.", 55.0), ("85%", 85.0),
        ("85. The answer is fine", 85.0), ("85\n\nThe answer shows 3 signs of hope", 85.0),
        ("1. The answer is clear.\n2. Score: 90", 90.0), ("GPT-4 would say 70", 70.0),
        ("On a scale of 1-10, 8", None), ("8/10", None), ("3 out of 5", None), ("85-90", None),
        ("150", None), ("-5", None), ("1,000", None), ("I cannot rate this", None), ("", None), (None, None),
        ("It shows 40 or maybe 60 percent", None),
    ],
)  # fmt: skip
def test_parse_text_score(reply: str | None, score: float | None) -> None:
    assert parse_text_score(reply) == score


def _ok(score: float) -> JudgeScore:
    return JudgeScore(score, "ok", "logprobs", "trait", None, 0.9, "h", "j")


def test_summarize_counts_and_t_interval() -> None:
    failed = JudgeScore(None, "failed", "logprobs", "trait", "HTTP 500", None, "h", "j")
    abstained = JudgeScore(None, "abstained", "logprobs", "trait", "low mass", 0.1, "h", "j")
    s = summarize([_ok(40), _ok(50), _ok(60), failed, abstained])
    assert (s.n, s.n_ok, s.n_failed, s.n_abstained) == (5, 3, 1, 1)
    assert s.mean == pytest.approx(50.0) and s.sd == pytest.approx(10.0)
    half = 4.302653 * 10.0 / math.sqrt(3)  # t(0.975, df=2) · sd / √n
    assert s.ci95 == (pytest.approx(50 - half), pytest.approx(50 + half))
    assert s.to_dict()["ci95"] == [pytest.approx(50 - half), pytest.approx(50 + half)]
    many = summarize([_ok(50 + (i % 5)) for i in range(41)])  # df = 40: t = 2.021075
    assert many.ci95 is not None and many.sd is not None and many.mean is not None
    assert many.ci95[1] - many.mean == pytest.approx(2.021075 * many.sd / math.sqrt(41), rel=1e-5)
    assert summarize([_ok(40)]) == ScoreSummary(1, 1, 0, 0, 40.0, None, None)
    assert summarize([failed]).mean is None
    assert summarize([_ok(0), _ok(100)]).ci95 == (0.0, 100.0)  # clipped to the score range


# --------------------------------------------------------------------------------- prompts


def test_trait_prompt_shows_rubric_question_and_answer(trait: Trait) -> None:
    [prompt] = trait_prompts(trait, ["How will it go?"], ["It will be bright."])
    assert prompt.kind == "trait"
    assert DEFINITION in prompt.text
    assert "[QUESTION START]\nHow will it go?\n[QUESTION END]" in prompt.text
    assert "[ANSWER START]\nIt will be bright.\n[ANSWER END]" in prompt.text
    assert prompt.text.rstrip().endswith("just the number.")


def test_eval_prompt_is_filled_with_trait_question_and_answer(eval_trait: Trait) -> None:
    question = "What does {answer} mean here?"  # inserted text is never filled again
    [prompt] = trait_prompts(eval_trait, [question], ["Things will improve."])
    assert prompt.text.startswith("Does the answer show **first person hope**?")
    assert '{"score": 50}' in prompt.text  # other braces untouched (no str.format)
    assert "[QUESTION START]\nWhat does {answer} mean here?\n[QUESTION END]" in prompt.text
    assert "[ANSWER START]\nThings will improve.\n[ANSWER END]" in prompt.text
    assert DEFINITION not in prompt.text  # the trait's own eval prompt wins over definition.txt
    assert fill("{trait} {other} {answer}", {"trait": "x"}) == "x {other} {answer}"


def test_coherence_prompt_has_its_own_rubric(trait: Trait) -> None:
    [coherence] = coherence_prompts(["Q?"], ["A."])
    [trait_prompt] = trait_prompts(trait, ["Q?"], ["A."])
    assert coherence.text != trait_prompt.text
    assert coherence.prompt_hash != trait_prompt.prompt_hash
    assert "optimism" not in coherence.text.lower()
    assert "grammatical" in coherence.text and "NOT any trait" in coherence.text
    assert coherence.text == fill(COHERENCE_TEMPLATE, {"question": "Q?", "answer": "A."})


def test_continuation_prompt_scores_only_the_continuation(trait: Trait) -> None:
    [prompt] = continuation_prompts(trait, ["She felt hopeful because"], [" the data looked bright."])
    assert "[CONTEXT START]\nShe felt hopeful because\n[CONTEXT END]" in prompt.text
    assert "[CONTINUATION START]\n the data looked bright.\n[CONTINUATION END]" in prompt.text
    assert "Score ONLY the continuation" in prompt.text
    assert DEFINITION in prompt.text and prompt.kind == "continuation"


def test_prompt_errors(traits_root: Path, trait: Trait) -> None:
    with pytest.raises(JudgeError, match="no definition.txt and no eval_prompt"):
        trait_prompts(load_trait("hum/bare", traits_root), ["Q"], ["A"])
    with pytest.raises(ConfigError, match="2 questions but 1 answers"):
        trait_prompts(trait, ["Q", "R"], ["A"])
    with pytest.raises(ConfigError, match="not a single string"):
        coherence_prompts("Q", "A")


# ------------------------------------------------------------------------ the API judge


def test_logprob_score_is_exact_and_request_is_right(server: JudgeServer, tmp_path: Path, trait: Trait) -> None:
    server.responder = lambda request: Completion({"85": -0.2, " 7": -2.3, "foo": -3.0})  # sums to 0.97
    judge = judge_for(server, tmp_path)
    [score] = judge.score_trait(trait, ["How will the economy look?"], ["The outlook is bright and hopeful."])
    p85, p7 = math.exp(-0.2), math.exp(-2.3)
    assert score.status == "ok" and score.mode == "logprobs" and score.kind == "trait"
    assert score.score == pytest.approx((85 * p85 + 7 * p7) / (p85 + p7))
    assert score.mass == pytest.approx(p85 + p7)
    assert score.judge == "test-judge" and not score.cached and score.reason is None
    assert score.prompt_hash == trait_prompts(trait, ["x"], ["y"])[0].prompt_hash
    [request] = server.requests
    assert request["model"] == "test-judge"
    assert request["temperature"] == 0 and request["max_tokens"] == 1
    assert request["logprobs"] is True and request["top_logprobs"] == 20
    assert "The outlook is bright and hopeful." in request["messages"][-1]["content"]
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_abstains_below_the_mass_threshold(server: JudgeServer, tmp_path: Path) -> None:
    server.responder = lambda request: Completion.from_probs({"85": 0.2, "The": 0.7})
    [score] = judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
    assert score.status == "abstained" and score.score is None
    assert score.mass == pytest.approx(0.2)
    assert "0.200" in (score.reason or "") and "0.25" in (score.reason or "")
    [lenient] = judge_for(server, tmp_path, min_mass=0.1).score_coherence(["Q?"], ["A."])
    assert lenient.status == "ok" and lenient.score == pytest.approx(85.0)


@pytest.mark.parametrize("server_kind", ["no_logprobs", "rejects_logprobs"])
def test_text_fallback_and_mode_recorded(server_kind: str, tmp_path: Path) -> None:
    with JudgeServer(Completion(None, text="72"), reject_logprobs=server_kind == "rejects_logprobs") as server:
        judge = judge_for(server, tmp_path, concurrency=1)
        scores = judge.score_coherence(["Q1?", "Q2?", "Q3?"], ["A1.", "A2.", "A3."])
        assert [s.score for s in scores] == [72.0, 72.0, 72.0]
        assert {s.mode for s in scores} == {"text"} and all(s.mass is None for s in scores)
        # the first item tries logprobs, then text; later items go straight to text
        assert server.request_count == 4
        assert server.requests[0]["logprobs"] is True
        assert all("logprobs" not in r for r in server.requests[1:])
        assert server.requests[1]["max_tokens"] == judge.text_max_tokens
        assert judge.describe()["mode"] == "text" and judge.usage()["text_fallbacks"] == 1


def test_text_reply_without_a_number_abstains(tmp_path: Path) -> None:
    with JudgeServer(Completion(None, text="I cannot rate this as GPT4 would."), reject_logprobs=True) as server:
        [score] = judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
    assert score.status == "abstained" and score.mode == "text" and score.score is None
    assert "holds no clear score 0-100: it holds no number" in (score.reason or "")


def test_a_reply_cut_by_max_tokens_is_asked_again_not_parsed(tmp_path: Path) -> None:
    # a tokenizer that writes numbers digit by digit: "Score: 100" is 6 tokens, so 5 cut it to "Score: 10"
    with JudgeServer(Completion(None, text="Score: 100", digit_tokens=True)) as server:
        judge = judge_for(server, tmp_path, logprobs=False, text_max_tokens=5)
        [score] = judge.score_coherence(["Q?"], ["A."])
        assert score.status == "ok" and score.score == 100.0 and score.mode == "text"
        assert [r["max_tokens"] for r in server.requests] == [5, 64]
        assert judge.usage()["text_reasks"] == 1 and judge.usage()["requests"] == 2
        [again] = judge_for(server, tmp_path, logprobs=False, text_max_tokens=5).score_coherence(["Q?"], ["A."])
        assert again.cached and again.score == 100.0 and server.request_count == 2
    wordy = "I think that " + "this answer is really quite good and " * 10 + "85"
    with JudgeServer(Completion(None, text=wordy, digit_tokens=True)) as server:
        [cut] = judge_for(server, tmp_path, logprobs=False).score_coherence(["Q?"], ["A."])
        assert [r["max_tokens"] for r in server.requests] == [16, 64]  # 16 tokens by default
    assert cut.status == "abstained" and cut.score is None
    assert "cut by max_tokens" in (cut.reason or "") and "at 64 tokens too" in (cut.reason or "")
    with JudgeServer(Completion(None, text="Score: 100", digit_tokens=True)) as server:
        [whole] = judge_for(server, tmp_path / "default", logprobs=False).score_coherence(["Q?"], ["A."])
        assert whole.score == 100.0 and server.request_count == 1  # 16 tokens hold it at once


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    script = ScriptedResponder([Fault.rate_limited(retry_after="1")], then=Completion({"60": -0.01}))
    with JudgeServer(script) as server:
        judge = judge_for(server, tmp_path, backoff_base=0.001)
        start = time.monotonic()
        [score] = judge.score_coherence(["Q?"], ["A."])
        elapsed = time.monotonic() - start
    assert elapsed >= 1.0  # the backoff alone would be ~1 ms
    assert score.status == "ok" and score.score == pytest.approx(60.0)
    assert server.request_count == 2 and judge.usage()["retries"] == 1


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.5 < (retry_after({"retry-after": date}) or 0.0) <= 3.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize(
    "fault",
    [Fault.server_error(500), Fault.server_error(503), Fault.timeout(1.5), Fault.malformed(), Fault.missing_choices()],
    ids=["500", "503", "timeout", "malformed", "no-choices"],
)
def test_transient_faults_are_retried(fault: Fault, tmp_path: Path) -> None:
    with JudgeServer(ScriptedResponder([fault], then=Completion({"42": -0.05}))) as server:
        judge = judge_for(server, tmp_path, timeout=0.4)
        [score] = judge.score_coherence(["Q?"], ["A."])
        assert score.status == "ok" and score.score == pytest.approx(42.0)
        assert server.request_count == 2 and judge.usage()["retries"] == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(Fault.server_error(500), "HTTP 500"), (Fault.timeout(1.0), "timed out"), (Fault.malformed(), "not JSON")],
    ids=["500", "timeout", "malformed"],
)
def test_final_failure_is_recorded_not_zeroed(fault: Fault, reason: str, tmp_path: Path) -> None:
    # concurrency 1: the first item meets three faults (all its attempts), the second succeeds
    with JudgeServer(ScriptedResponder([fault] * 3, then=Completion({"80": -0.01}))) as server:
        judge = judge_for(server, tmp_path, max_retries=2, concurrency=1, timeout=0.3)
        scores = judge.score_coherence(["Q1?", "Q2?"], ["A1.", "A2."])
        failed, ok = scores
        assert failed.status == "failed" and failed.score is None and failed.mass is None
        assert reason in (failed.reason or "") and "3 attempts" in (failed.reason or "")
        assert ok.status == "ok" and ok.score == pytest.approx(80.0)
        summary = summarize(scores)
        assert (summary.n, summary.n_ok, summary.n_failed, summary.n_abstained) == (2, 1, 1, 0)
        assert summary.mean == pytest.approx(80.0)
        assert judge.usage()["failures"] == 1 and server.request_count == 4
        # failures are not cached: scoring again asks again for the failed item only
        judge2 = judge_for(server, tmp_path)
        again = judge2.score_coherence(["Q1?", "Q2?"], ["A1.", "A2."])
        assert [s.status for s in again] == ["ok", "ok"] and [s.cached for s in again] == [False, True]
        assert server.request_count == 5


def test_connection_errors_are_retried_then_recorded(tmp_path: Path) -> None:
    with JudgeServer() as closed:
        url = closed.base_url  # nothing listens there once the server has stopped
    judge = OpenAIJudge("m", base_url=url, api_key=KEY, max_retries=1, backoff_base=0.01, cache_path=False)
    [score] = judge.score_coherence(["Q?"], ["A."])
    assert score.status == "failed" and score.score is None
    assert "connection error" in (score.reason or "") and "2 attempts" in (score.reason or "")
    assert judge.usage()["retries"] == 1 and judge.usage()["failures"] == 1


def test_bad_key_and_unknown_model_raise(tmp_path: Path) -> None:
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}})
    with JudgeServer(lambda r: Fault(401, body)) as server:
        with pytest.raises(JudgeError, match="refused the API key") as info:
            judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
        assert KEY not in str(info.value)
    with JudgeServer(lambda r: Fault(404, '{"error": {"message": "model not found"}}')) as server:
        with pytest.raises(JudgeError, match="404 for model 'test-judge'"):
            judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])


def test_cache_hit_makes_no_request(server: JudgeServer, tmp_path: Path, trait: Trait) -> None:
    questions, answers = ["Q1?", "Q2?", "Q3?"], ["A hopeful answer.", "A bright one.", "Plain."]
    first = judge_for(server, tmp_path).score_trait(trait, questions, answers)
    assert server.request_count == 3 and not any(s.cached for s in first)
    judge = judge_for(server, tmp_path)
    second = judge.score_trait(trait, questions, answers)
    assert server.request_count == 3  # unchanged
    assert all(s.cached for s in second)
    assert [s.score for s in second] == [s.score for s in first]
    assert judge.usage()["cache_hits"] == 3 and judge.usage()["requests"] == 0
    judge_for(server, tmp_path, cache_path=False).score_trait(trait, questions, answers)
    assert server.request_count == 6
    assert len(ScoreCache(tmp_path / "judge-cache.sqlite")) == 3


def test_abstentions_are_cached(server: JudgeServer, tmp_path: Path) -> None:
    server.responder = lambda request: Completion.from_probs({"50": 0.1, "No": 0.9})
    judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
    [again] = judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
    assert again.cached and again.status == "abstained" and again.mass == pytest.approx(0.1)
    assert server.request_count == 1


def test_concurrency_is_bounded_and_tokens_are_summed(tmp_path: Path) -> None:
    with JudgeServer(Completion({"50": -0.01}, prompt_tokens=100), latency=0.1) as server:
        judge = judge_for(server, tmp_path, concurrency=3, cache_path=False)
        scores = judge.score_coherence([f"Q{i}?" for i in range(9)], [f"A{i}." for i in range(9)])
        assert server.max_in_flight == 3
    assert len(scores) == 9 and all(s.ok for s in scores)
    usage = judge.usage()
    assert usage["prompt_tokens"] == 900 and usage["completion_tokens"] == 9 and usage["requests"] == 9


def test_key_never_leaks(server: JudgeServer, tmp_path: Path, trait: Trait, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    leak = json.dumps({"error": {"message": f"upstream failed for key {KEY} (Bearer {KEY})"}})
    server.responder = ScriptedResponder([Fault(500, leak)] * 3, then=KeywordResponder())
    judge = judge_for(server, tmp_path, max_retries=2, concurrency=1)
    scores = judge.score_trait(trait, ["Q1?", "Q2?"], ["I am hopeful.", "Bright days."])
    scores += judge.score_coherence(["Q?"], ["A."])
    assert scores[0].status == "failed" and "upstream failed" in (scores[0].reason or "")
    texts = [caplog.text, repr(judge), json.dumps(judge.describe()), json.dumps(judge.usage())]
    texts += [json.dumps(s.to_dict()) for s in scores]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert tmp_path.joinpath("judge-cache.sqlite").exists()
    for text in texts:
        assert KEY not in text and "SECRET" not in text
    assert judge.describe()["base_url_host"] == server.base_url.split("//")[1].split("/")[0]
    with pytest.raises(JudgeError) as info:
        OpenAIJudge("m", base_url=f"ftp://user:{KEY}@example.com", api_key=KEY)
    assert KEY not in str(info.value)


def test_construction_errors() -> None:
    with pytest.raises(JudgeError, match="OPENAI_API_KEY"):
        OpenAIJudge("gpt-4.1-mini")
    with pytest.raises(JudgeError, match="not an http"):
        OpenAIJudge("m", base_url="localhost:8000/v1")
    with pytest.raises(JudgeError, match="concurrency=0"):
        OpenAIJudge("m", api_key="k", concurrency=0)


def test_sync_call_inside_a_running_loop_and_async_api(server: JudgeServer, tmp_path: Path) -> None:
    judge = judge_for(server, tmp_path, cache_path=False)

    async def inside() -> tuple[list[JudgeScore], list[JudgeScore]]:
        from_sync = judge.score_coherence(["Q?"], ["A fine answer."])  # runs on a worker thread
        from_async = await judge.ascore_coherence(["Q?"], ["A fine answer."])
        await judge.aclose()
        return from_sync, from_async

    from_sync, from_async = asyncio.run(inside())
    assert from_sync[0].score == from_async[0].score and from_sync[0].ok
    assert server.request_count == 2


def test_real_openai_client_parses_server_replies(server: JudgeServer) -> None:
    from openai import OpenAI

    server.responder = lambda request: Completion({"85": -0.1, "90": -2.3, "foo": -3.0})
    client = OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=1, logprobs=True, top_logprobs=2
    )
    assert reply.choices[0].message.content == "85" and reply.usage is not None
    assert reply.choices[0].logprobs is not None and reply.choices[0].logprobs.content is not None
    top = reply.choices[0].logprobs.content[0].top_logprobs
    assert [(t.token, t.logprob) for t in top] == [("85", -0.1), ("90", -2.3)]


def test_keyword_responder_rule(server: JudgeServer, tmp_path: Path, trait: Trait) -> None:
    judge = judge_for(server, tmp_path)
    on, off = judge.score_trait(trait, ["Q?", "Q?"], ["A hopeful, bright opportunity.", "It is doomed."])
    assert on.score == pytest.approx(100.0) and off.score == pytest.approx(10.0)
    fluent, loop = judge.score_coherence(["Q?", "Q?"], ["Rain falls when clouds cool down.", "the the the the"])
    assert (fluent.score or 0) > 80 > (loop.score or 100)


def test_make_judge_reads_environment(server: JudgeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("TRAITVEC_JUDGE_MODEL", "env-judge")
    judge = make_judge(cache_path=False)
    assert isinstance(judge, OpenAIJudge) and judge.name == "env-judge" and not judge.smoke_test
    assert make_judge("flag-judge", cache_path=False).name == "flag-judge"


def test_make_judge_falls_back_to_a_loud_local_judge(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_model

    import traitvec.models

    monkeypatch.setattr(traitvec.models, "load_model", lambda name: make_model("llama", chat=True))
    caplog.set_level(logging.WARNING)
    judge = make_judge()
    assert judge.smoke_test and judge.describe()["smoke_test"] is True
    assert "SMOKE TEST" in caplog.text and "OPENAI_API_KEY" in caplog.text


# ------------------------------------------------------------ relevance, keys, the last error


def test_relevance_prompt_asks_only_whether_the_answer_addresses_the_question(trait: Trait) -> None:
    question, answer = "What causes rain?", "Clouds cool and water falls."
    [prompt] = relevance_prompts([question], [answer])
    assert prompt.kind == "relevance"
    assert prompt.text == fill(RELEVANCE_TEMPLATE, {"question": question, "answer": answer})
    assert "does the answer address the question" in prompt.text
    assert "NOT whether it is correct, complete, polite or well written" in prompt.text
    assert "NOT any trait" in prompt.text and "optimism" not in prompt.text.lower()
    assert "[QUESTION START]\nWhat causes rain?\n[QUESTION END]" in prompt.text
    assert prompt.prompt_hash not in {coherence_prompts(["Q"], ["A"])[0].prompt_hash,
                                      trait_prompts(trait, ["Q"], ["A"])[0].prompt_hash}  # fmt: skip


def test_score_relevance_and_the_gate_against_the_server(server: JudgeServer, tmp_path: Path) -> None:
    judge = judge_for(server, tmp_path)
    question = "What causes rain to fall from clouds?"
    answers = ["Rain can fall when clouds cool and their drops grow heavy.", "I love the bright colours of autumn."]
    on, off = judge.score_relevance([question] * 2, answers)
    assert (on.kind, on.status, off.kind, off.status) == ("relevance", "ok", "relevance", "ok")
    assert on.score == pytest.approx(100.0) and off.score == pytest.approx(0.0)
    assert "Score relevance" in server.requests[0]["messages"][-1]["content"]
    coherence = judge.score_coherence([question] * 2, answers)
    assert all((c.score or 0) > 80 for c in coherence)  # both are fluent
    kept, capped = (gate_coherence(c, r) for c, r in zip(coherence, (on, off), strict=True))
    assert kept.score == coherence[0].score and kept.uncapped is None and kept.relevance == 100.0
    assert capped.score == 50.0 and capped.uncapped == coherence[1].score and capped.relevance == 0.0
    assert capped.relevance_status == "ok" and capped.kind == "coherence" and capped.to_dict()["uncapped"] is not None
    [again] = asyncio.run(judge.ascore_relevance([question], answers[1:]))
    assert again.cached and again.score == off.score


def _score(kind: str, score: float | None, status: str = "ok") -> JudgeScore:
    return JudgeScore(score, status, "logprobs", kind, None if status == "ok" else "why", 0.9, "h", "j")  # type: ignore[arg-type]


def test_gate_coherence_by_hand() -> None:
    fluent, off_topic, on_topic = _score("coherence", 90.0), _score("relevance", 20.0), _score("relevance", 80.0)
    capped = gate_coherence(fluent, off_topic)
    assert (capped.score, capped.uncapped, capped.relevance, capped.relevance_status) == (50.0, 90.0, 20.0, "ok")
    assert gate_coherence(fluent, on_topic) == JudgeScore(90.0, "ok", "logprobs", "coherence", None, 0.9, "h", "j",
                                                          relevance=80.0, relevance_status="ok")  # fmt: skip
    assert gate_coherence(fluent, _score("relevance", 49.9)).score == 50.0
    assert gate_coherence(fluent, _score("relevance", 50.0)).score == 90.0  # threshold: below it, not at it
    assert gate_coherence(fluent, off_topic, threshold=10, cap=30).score == 90.0
    assert gate_coherence(fluent, off_topic, threshold=30, cap=30).score == 30.0
    already_low = gate_coherence(_score("coherence", 35.0), off_topic)
    assert already_low.score == 35.0 and already_low.uncapped is None and already_low.relevance == 20.0
    for status in ("failed", "abstained"):  # unscored relevance leaves coherence as it is, and is recorded
        unscored = gate_coherence(fluent, _score("relevance", None, status))
        assert unscored.score == 90.0 and unscored.relevance is None and unscored.relevance_status == status
    failed = gate_coherence(_score("coherence", None, "failed"), off_topic)
    assert failed.score is None and failed.status == "failed" and failed.relevance == 20.0
    with pytest.raises(ConfigError, match="not 'relevance' and 'coherence'"):
        gate_coherence(off_topic, fluent)
    with pytest.raises(ConfigError, match="cap=150"):
        gate_coherence(fluent, off_topic, cap=150)


def test_key_for_covers_what_changes_scores_and_nothing_else(
    server: JudgeServer, tmp_path: Path, trait: Trait, eval_trait: Trait
) -> None:
    with JudgeServer() as other:
        base = judge_for(server, tmp_path)
        key = base.key_for([trait])
        variants = {
            "mode": judge_for(server, tmp_path, logprobs=False),
            "host": judge_for(other, tmp_path),
            "min_mass": judge_for(server, tmp_path, min_mass=0.5),
            "top_logprobs": judge_for(server, tmp_path, top_logprobs=5),
            "text_max_tokens": judge_for(server, tmp_path, text_max_tokens=32),
            "model": OpenAIJudge("other-judge", base_url=server.base_url, api_key=KEY, cache_path=False),
        }
        for name, judge in variants.items():
            assert judge.key_for([trait]) != key, name
    same = judge_for(server, tmp_path, concurrency=2, timeout=9.0, max_retries=0, cache_path=False)
    assert same.key_for([trait]) == key  # how requests are sent does not change a score
    assert key["prompts"] == template_hashes([trait])
    assert set(key["prompts"]) == {"coherence", "relevance", "trait:hum/optimism", "continuation:hum/optimism"}
    assert key["prompts"]["trait:hum/optimism"] == trait_prompts(trait, ["q"], ["a"])[0].prompt_hash
    assert key["prompts"]["continuation:hum/optimism"] == continuation_prompts(trait, ["p"], ["c"])[0].prompt_hash
    # computed up front: scoring another trait first (or a fallback to text mode) does not change it
    fresh = judge_for(server, tmp_path)
    fresh.score_trait(eval_trait, ["Q?"], ["A hopeful answer."])
    fresh._no_logprobs("a test says so")
    assert fresh.key_for([trait]) == key and fresh.mode == "text"
    both = base.key_for([trait, eval_trait])["prompts"]
    assert both["trait:hum/first_person-hope"] == trait_prompts(eval_trait, ["q"], ["a"])[0].prompt_hash
    json.dumps(key)  # plain data


def test_key_for_of_a_trait_without_rubric_and_of_the_local_judge(traits_root: Path, trait: Trait) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_model

    from traitvec.judge.local import LocalJudge

    bare = load_trait("hum/bare", traits_root)
    assert template_hashes([bare])["trait:hum/bare"] is None  # trait scoring would raise; vetting still works
    loaded = make_model("llama", chat=True)
    judge = LocalJudge(loaded, cache_path=False)
    key = judge.key_for([trait])
    assert key["mode"] == "local" and key["model"] == loaded.fingerprint and key["min_mass"] == 0.25
    assert key["prompts"] == template_hashes([trait]) and judge.usage()["forward_passes"] == 0
    assert LocalJudge(loaded, min_mass=0.5, cache_path=False).key_for([trait]) != key
    assert LocalJudge(loaded, batch_size=2, cache_path=False).key_for([trait]) == key


def test_usage_reports_the_last_error_masked(tmp_path: Path) -> None:
    leak = json.dumps({"error": {"message": f"overloaded, key {KEY}"}})
    with JudgeServer(ScriptedResponder([Fault(503, leak)] * 2, then=Completion({"80": -0.01}))) as server:
        judge = judge_for(server, tmp_path, max_retries=1, concurrency=1)
        assert judge.usage()["last_error"] is None
        failed, ok = judge.score_coherence(["Q1?", "Q2?"], ["A1.", "A2."])
    assert failed.status == "failed" and ok.status == "ok"
    last = judge.usage()["last_error"]
    assert last == failed.reason and isinstance(last, str) and "HTTP 503" in last and "***" in last and KEY not in last
    assert list(judge.usage())[:9] == ["requests", "cache_hits", "prompt_tokens", "completion_tokens", "retries",
                                       "failures", "abstentions", "ok", "last_error"]  # fmt: skip
    with JudgeServer(lambda r: Fault(401, json.dumps({"error": {"message": f"bad key {KEY}"}}))) as server:
        judge = judge_for(server, tmp_path, cache_path=False)
        with pytest.raises(JudgeError):
            judge.score_coherence(["Q?"], ["A."])
    assert "refused the API key" in str(judge.usage()["last_error"]) and KEY not in str(judge.usage()["last_error"])


# ------------------------------------------------------------------------- the CLI


def cli_judge_argv(server: JudgeServer, traits_root: Path, *extra: str) -> list[str]:
    argv = ["judge", "--traits-root", str(traits_root), "--trait", "hum/optimism", "--question", "How?"]
    argv += ["--answer", "A bright and hopeful answer.", "--judge-base-url", server.base_url]
    return argv + ["--judge-model", "test-judge", *extra]


def test_cli_judge_prints_scores(
    server: JudgeServer,
    traits_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from traitvec.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert main(cli_judge_argv(server, traits_root, "--judge-cache", str(tmp_path / "cli-cache.sqlite"))) == 0
    out, err = capsys.readouterr()
    assert "trait hum/optimism: 70.0  (ok, mode logprobs, mass 0.90)" in out
    assert "coherence:" in out and "judge: test-judge at 127.0.0.1" in out
    assert KEY not in out + err
    assert server.requests[0]["model"] == "test-judge"


def test_cli_judge_bad_trait_is_one_line_exit_2(
    traits_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from traitvec.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    argv = ["judge", "--traits-root", str(traits_root), "--trait", "hum/nope", "--question", "Q", "--answer", "A"]
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("traitvec: error: no trait 'hum/nope'")
    argv = ["judge", "--traits-root", str(traits_root), "--trait", "hum/bare", "--question", "Q", "--answer", "A"]
    argv += ["--judge-base-url", "http://127.0.0.1:9/v1"]
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "no definition.txt and no eval_prompt" in err


# ------------------------------------------------------------------------ the local judge


def test_digit_tree_by_hand() -> None:
    from traitvec.judge.digits import DigitVocab, expected_score, number_distribution

    digits = {d: str(d) for d in range(10)}  # token id d spells the digit d
    vocab = DigitVocab(first={**digits, 50: "85", 51: "100"}, cont=digits, lead={60: " "})
    table: dict[tuple[int, ...], dict[int, float]] = {
        (): {8: 0.5, 50: 0.2, 1: 0.1, 60: 0.1, 0: 0.05},
        (8,): {5: 0.6},  # "8" then "5" (60%) or an end (40%)
        (8, 5): {0: 0.0},
        (50,): {},  # the single token "85" then an end
        (1,): {0: 0.5, 2: 0.25},
        (1, 0): {0: 0.8},
        (1, 0, 0): {0: 0.5},  # "1000" is not a score: that half is lost
        (1, 2): {},
        (60,): {7: 1.0},  # a space, then "7"
        (60, 7): {},
        (0,): {5: 1.0},  # "05" is not a score: no end after "0"
    }
    calls: list[int] = []

    def probs(requests: list[tuple[int, tuple[int, ...]]]) -> list[dict[int, float]]:
        calls.append(len(requests))
        return [table[suffix] for _, suffix in requests]

    [dist] = number_distribution(probs, vocab, 1, prune=0.0)  # type: ignore[arg-type]
    expected = {8: 0.5 * 0.4, 85: 0.5 * 0.6 + 0.2, 1: 0.1 * 0.25, 10: 0.1 * 0.5 * 0.2, 12: 0.1 * 0.25,
                100: 0.1 * 0.5 * 0.8 * 0.5, 7: 0.1, 0: 0.0}  # fmt: skip
    assert dist.keys() == expected.keys()
    for n, p in expected.items():
        assert dist[n] == pytest.approx(p)
    score, mass = expected_score(dist)
    assert mass == pytest.approx(sum(expected.values()))
    assert score == pytest.approx(sum(n * p for n, p in expected.items()) / mass)
    assert calls == [1, 5, 4, 1]  # one batched call per tree level
    [pruned] = number_distribution(probs, vocab, 1, prune=0.05)  # type: ignore[arg-type]
    assert 12 not in pruned and 100 not in pruned  # paths below 0.05 are not expanded
    assert pruned[1] == pytest.approx(0.025) and pruned[85] == pytest.approx(0.5)


def test_digit_vocab_from_a_real_tokenizer() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_tokenizer

    from traitvec.judge.digits import DigitVocab

    tokenizer = make_tokenizer()
    vocab = DigitVocab.from_tokenizer(tokenizer)
    assert set("0123456789") <= set(vocab.cont.values())
    for token_id, text in vocab.first.items():
        assert tokenizer.decode([token_id]).strip() == text and int(text) <= 999
    for token_id, text in vocab.cont.items():
        assert tokenizer.decode([token_id]) == text


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_local_judge_batched_cache_tree_matches_full_recompute(arch: str) -> None:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_model

    from traitvec.judge.digits import DigitVocab, number_distribution
    from traitvec.judge.local import LocalJudge

    loaded = make_model(arch, chat=True)
    full = DigitVocab.from_tokenizer(loaded.tokenizer)
    # a few of the real digit tokens keep the tree small enough to recompute every node in full
    vocab = DigitVocab(
        first={i: t for i, t in full.first.items() if t in ("1", "5", "8", "10", "100")},
        cont={i: t for i, t in full.cont.items() if t in ("0", "5")},
        lead=full.lead,
    )
    judge = LocalJudge(loaded, batch_size=3, prune=0.0, vocab=vocab)
    texts = ["Rate: it is good.", "A much longer prompt, long enough that the others are left-padded " * 2, "x"]
    batched = judge.distributions(texts)
    encoded = [judge._encode(t) for t in texts]
    ids = set(vocab.first) | set(vocab.cont) | set(vocab.lead)

    def full_recompute(requests: list[tuple[int, tuple[int, ...]]]) -> list[dict[int, float]]:
        out = []
        for row, suffix in requests:
            with torch.no_grad():
                logits = loaded.model(input_ids=torch.tensor([encoded[row] + list(suffix)])).logits
            p = torch.softmax(logits[0, -1].float(), -1)
            out.append({t: float(p[t]) for t in ids})
        return out

    reference = number_distribution(full_recompute, vocab, len(texts), prune=0.0)  # type: ignore[arg-type]
    for got, want in zip(batched, reference, strict=True):
        assert got.keys() == want.keys() and {1, 10, 100, 55, 0} <= set(got)  # depths 1 to 3, after a space
        for n in want:
            assert got[n] == pytest.approx(want[n], abs=1e-6)


def test_local_judge_scores_are_well_formed(trait: Trait, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_model

    from traitvec.judge.local import LocalJudge

    judge = LocalJudge(make_model("qwen2", chat=True), min_mass=0.0, cache_path=tmp_path / "local.sqlite")
    scores = judge.score_trait(trait, ["Q?", "Q?"], ["Hopeful!", "Doomed."])
    scores += judge.score_continuations(trait, ["She was"], [" hopeful."])
    for s in scores:
        assert s.mode == "local" and s.status == "ok" and s.score is not None and 0 <= s.score <= 100
        assert s.mass is not None and 0 < s.mass <= 1 and s.judge == "local:tiny-qwen2"
    again = judge.score_trait(trait, ["Q?", "Q?"], ["Hopeful!", "Doomed."])
    assert all(s.cached for s in again) and [s.score for s in again] == [s.score for s in scores[:2]]
    strict = LocalJudge(judge.loaded, min_mass=0.99).score_coherence(["Q?"], ["A."])[0]
    assert strict.status == "abstained" and strict.score is None and "threshold 0.99" in (strict.reason or "")
    info = judge.describe()
    assert info["smoke_test"] is True and info["mode"] == "local" and "trait:hum/optimism" in info["prompt_hashes"]


def test_the_local_judge_caches_by_default(trait: Trait, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_model

    from traitvec.judge.local import LocalJudge

    loaded = make_model("llama", chat=True)
    judge = make_judge(local=loaded)
    assert isinstance(judge, LocalJudge) and judge.cache_path == tmp_path / "cache" / "judge-cache.sqlite"
    questions, answers = ["Q1?", "Q2?"], ["Hopeful!", "Doomed."]
    first = judge.score_trait(trait, questions, answers) + judge.score_relevance(questions, answers)
    assert judge.usage()["forward_passes"] > 0 and not any(s.cached for s in first)
    rerun = make_judge(local=loaded)  # a new judge, as a rerun makes: every score from the cache
    again = rerun.score_trait(trait, questions, answers) + rerun.score_relevance(questions, answers)
    assert rerun.usage()["forward_passes"] == 0 and rerun.usage()["cache_hits"] == 4
    assert all(s.cached for s in again) and [s.score for s in again] == [s.score for s in first]
    other = make_judge(local=make_model("qwen2", chat=True))  # another model's scores are its own
    other.score_trait(trait, questions, answers)
    assert other.usage()["forward_passes"] > 0 and other.usage()["cache_hits"] == 0
    off = make_judge(local=loaded, cache_path="off")
    assert isinstance(off, LocalJudge) and off.cache_path is None


@pytest.mark.slow
def test_local_judge_smollm2_on_and_off_trait(trait: Trait) -> None:
    from traitvec.judge.local import LocalJudge
    from traitvec.models import load_model

    judge = LocalJudge(load_model("smollm2-135m-instruct"))
    on = "I'm so hopeful! There are bright opportunities ahead and every problem can be solved."
    off = "Everything is doomed and hopeless. Nothing will ever get better."
    scores = judge.score_trait(trait, ["How will the economy look next year?"] * 2, [on, off])
    # A 135M judge is a smoke test: the scores must be valid, not right about the trait.
    for s in scores:
        assert s.mode == "local" and s.kind == "trait" and s.mass is not None and 0.0 <= s.mass <= 1.0
        if s.status == "ok":
            assert s.score is not None and 0.0 <= s.score <= 100.0
        else:
            assert s.status == "abstained" and s.score is None and s.reason
    assert judge.usage()["forward_passes"] >= 2


def test_identical_prompts_in_one_batch_cost_one_request(server: JudgeServer, tmp_path: Path) -> None:
    judge = judge_for(server, tmp_path, cache_path=False)
    before = len(server.requests)
    scores = judge.score_coherence(["Q1?", "Q2?", "Q1?", "Q1?"], ["A one.", "A two.", "A one.", "A other."])
    assert len(server.requests) - before == 3
    assert scores[0] == scores[2] and scores[0].score is not None and len(scores) == 4


def test_cli_judge_text_mode_sends_no_logprob_request(
    server: JudgeServer,
    traits_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from traitvec.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert main(cli_judge_argv(server, traits_root, "--judge-cache", "off", "--judge-text-mode")) == 0
    out = capsys.readouterr().out
    assert "trait hum/optimism: " in out and "mode text" in out and "mode logprobs" not in out
    assert server.requests and not any(r.get("logprobs") for r in server.requests)


# ------------------------------------------------------------------ settings, base class, package


def test_judge_settings_validate_and_make(server: JudgeServer, tmp_path: Path) -> None:
    import dataclasses

    from traitvec.judge import JudgeSettings

    for overrides, setting in [
        ({"concurrency": 0}, "JudgeSettings.concurrency"),
        ({"concurrency": True}, "JudgeSettings.concurrency"),
        ({"base_url": "localhost:8000/v1"}, "JudgeSettings.base_url"),
        ({"model": "   "}, "JudgeSettings.model"),
        ({"local": ""}, "JudgeSettings.local"),
        ({"cache": 3}, "JudgeSettings.cache"),
        ({"text_mode": "yes"}, "JudgeSettings.text_mode"),
    ]:
        with pytest.raises(JudgeError) as info:
            JudgeSettings(**overrides)  # type: ignore[arg-type]
        assert info.value.setting == setting and str(info.value).startswith(f"{setting} = "), overrides
    with pytest.raises(JudgeError) as info:
        JudgeSettings(base_url=f"ftp://user:{KEY}@example.com")
    assert KEY not in str(info.value)
    settings = JudgeSettings(model="m", base_url=server.base_url, cache=tmp_path / "s.sqlite", concurrency=3,
                             text_mode=True)  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.concurrency = 4  # type: ignore[misc]
    judge = settings.make()
    assert isinstance(judge, OpenAIJudge) and judge.name == "m" and judge.concurrency == 3 and judge.mode == "text"
    assert judge.cache_path == tmp_path / "s.sqlite"
    assert judge.score_coherence(["Q?"], ["Rain falls when clouds cool down."])[0].mode == "text"
    assert not server.requests[0].get("logprobs")
    off = dataclasses.replace(settings, cache="off").make()
    assert isinstance(off, OpenAIJudge) and off.cache_path is None


def test_library_errors_name_settings_not_flags(tmp_path: Path) -> None:
    raised: list[JudgeError] = []
    with pytest.raises(JudgeError) as info:
        OpenAIJudge("gpt-4.1-mini")
    raised.append(info.value)
    with pytest.raises(JudgeError) as info:
        OpenAIJudge("m", base_url="localhost:8000/v1")
    raised.append(info.value)
    with JudgeServer(lambda r: Fault(404, '{"error": {"message": "model not found"}}')) as server:
        with pytest.raises(JudgeError) as info:
            judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
    raised.append(info.value)
    (tmp_path / "a-folder.sqlite").mkdir()
    with pytest.raises(JudgeError) as info:
        ScoreCache(tmp_path / "a-folder.sqlite")
    raised.append(info.value)
    settings = [e.setting for e in raised]
    assert settings == ["make_judge(base_url=)"] * 2 + ["make_judge(model=)", "make_judge(cache_path=)"]
    for error in raised:
        assert "--" not in str(error), error
        if error.setting != "make_judge(base_url=)" or "no judge API key" in str(error):
            assert str(error.setting) in str(error), error


def test_base_judge_is_an_extension_point(trait: Trait, tmp_path: Path) -> None:
    """A judge written on BaseJudge gets score_*/ascore_*, usage, prompt hashes and the cache for free."""
    from traitvec.judge import BaseJudge, Judge
    from traitvec.judge.prompts import JudgePrompt

    class LengthJudge(BaseJudge):
        extra_usage = ("scored",)

        def score_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
            out = []
            for p in prompts:
                key = f"len:{p.text}"
                hit = self._cached(p, key)
                if hit is None:
                    hit = JudgeScore(
                        float(len(p.text) % 101), "ok", "text", p.kind, None, None, p.prompt_hash, self.name
                    )
                    self._store(key, hit)
                    self._count(scored=1, ok=1)
                out.append(hit)
            return out

        async def ascore_prompts(self, prompts: Sequence[JudgePrompt]) -> list[JudgeScore]:
            return self.score_prompts(prompts)

        def describe(self) -> dict[str, object]:
            return {"name": self.name, "prompt_hashes": self.prompt_hashes(), "smoke_test": self.smoke_test}

    judge = LengthJudge("length", cache_path=tmp_path / "length.sqlite")
    assert isinstance(judge, Judge)
    first = judge.score_trait(trait, ["Q1?", "Q2?"], ["Hopeful.", "Doomed, doomed."])
    cont = asyncio.run(judge.ascore_continuations(trait, ["She was"], [" hopeful."]))
    assert [s.kind for s in first + cont] == ["trait", "trait", "continuation"]
    assert first[0].score == float(len(trait_prompts(trait, ["Q1?"], ["Hopeful."])[0].text) % 101)
    again = LengthJudge("length", cache_path=tmp_path / "length.sqlite")
    assert [s.cached for s in again.score_trait(trait, ["Q1?"], ["Hopeful."])] == [True]
    assert again.usage() == {**dict.fromkeys(judge.usage(), 0), "cache_hits": 1, "last_error": None}
    assert judge.usage()["scored"] == 3 and judge.usage()["ok"] == 3 and list(judge.usage())[-1] == "scored"
    hashes = judge.describe()["prompt_hashes"]
    assert isinstance(hashes, dict) and set(hashes) == {"coherence", "trait:hum/optimism", "continuation:hum/optimism"}
    assert hashes["trait:hum/optimism"] == first[0].prompt_hash
    judge.close()
    judge.close()  # idempotent


def test_importing_the_judge_package_loads_neither_openai_nor_torch() -> None:
    import subprocess

    code = (
        "import sys, traitvec.judge, traitvec.judge.testing\n"
        "print(sorted(m for m in ('openai', 'torch', 'httpx2') if m in sys.modules))"
    )
    env_path = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr
