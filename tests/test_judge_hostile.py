"""The API judge against hostile servers, played by the real JudgeServer on 127.0.0.1.

Each test reproduces one failure the outside probe of issue 14 found: a server that serves the API
key back (in top-logprob tokens, text replies, error bodies, response headers, the status line),
logprobs that are no distribution, a reply dripped a byte a second, nonsense ``Retry-After``
values, a corrupt score cache, and an unreachable judge that should fail before any model work.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from traitvec.errors import JudgeError
from traitvec.judge import summarize
from traitvec.judge._http import retry_after
from traitvec.judge._secrets import Secret
from traitvec.judge.cache import ScoreCache, cache_key
from traitvec.judge.local import LocalJudge
from traitvec.judge.openai import OpenAIJudge
from traitvec.judge.testing import Completion, EchoKeyResponder, Fault, JudgeServer, ScriptedResponder
from traitvec.traits import Trait, load_trait

LONG_KEY = "sk-test-SECRET-123"
SHORT_KEY = "k9z"
DEFINITION = "Score optimism (0-100).\n\nHIGH (70-100): hopeful\nLOW (0-40): doomed\n\nKey: framing."


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TRAITVEC_JUDGE_MODEL", "OPENAI_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRAITVEC_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def traits_root(tmp_path: Path) -> Path:
    folder = tmp_path / "traits" / "hum" / "optimism"
    folder.mkdir(parents=True)
    (folder / "positive.txt").write_text("It will work out because\n")
    (folder / "negative.txt").write_text("It will fail because\n")
    (folder / "definition.txt").write_text(DEFINITION + "\n")
    (folder / "steering.json").write_text(json.dumps({"questions": ["How will the economy look next year?"]}))
    return tmp_path / "traits"


@pytest.fixture()
def trait(traits_root: Path) -> Trait:
    return load_trait("hum/optimism", traits_root)


def judge_for(server: JudgeServer, tmp_path: Path, key: str = LONG_KEY, **kwargs: object) -> OpenAIJudge:
    options: dict[str, object] = {"base_url": server.base_url, "api_key": key, "backoff_base": 0.01, "timeout": 2.0,
                                  "cache_path": tmp_path / "judge-cache.sqlite", "max_retries": 1}  # fmt: skip
    options.update(kwargs)
    return OpenAIJudge("test-judge", **options)  # type: ignore[arg-type]


def _files_text(root: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------ the key (14.1)


PLACES = ["tokens", "text", "error", "unauthorized", "headers", "status"]


@pytest.mark.parametrize("key", [LONG_KEY, SHORT_KEY], ids=["long-key", "3-char-key"])
@pytest.mark.parametrize("place", PLACES)
def test_a_key_served_back_reaches_no_file_log_score_or_cache(
    place: str, key: str, trait: Trait, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the HTTP client's too
    with JudgeServer(EchoKeyResponder(place)) as server:  # type: ignore[arg-type]
        judge = judge_for(server, tmp_path, key, logprobs=place != "text")
        texts: list[str] = []
        try:
            scores = judge.score_trait(trait, ["Q?"], ["A hopeful answer."])
            texts += [json.dumps(s.to_dict()) for s in scores]
        except JudgeError as err:
            assert place == "unauthorized" and "refused the API key" in str(err)
            texts.append(str(err))
        assert server.headers[0]["authorization"] == f"Bearer {key}"  # the server had the key to echo
    texts += [caplog.text, repr(judge), json.dumps(judge.describe()), json.dumps(judge.usage())]
    judge.close()
    texts.append(_files_text(tmp_path))
    for text in texts:
        assert key not in text and key.lower() not in text.lower()
    # the key was served and masked (so this test would see a leak), not merely never shown
    shown = {
        "tokens": json.dumps(scores[0].to_dict()) if place == "tokens" else "",
        "text": scores[0].reason if place == "text" else "",
        "error": scores[0].reason if place == "error" else "",
        "unauthorized": str(judge.usage()["last_error"]),
        "headers": caplog.text,
        "status": caplog.text,
    }[place]
    assert "***" in (shown or "")


def test_the_cli_prints_no_key_a_server_serves_back(
    traits_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from traitvec.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", SHORT_KEY)
    for place, status in [("tokens", 0), ("error", 1), ("headers", 0), ("unauthorized", 2)]:
        with JudgeServer(EchoKeyResponder(place)) as server:  # type: ignore[arg-type]
            argv = ["judge", "--traits-root", str(traits_root), "--trait", "hum/optimism", "--question", "How?",
                    "--answer", "Bright.", "--judge-base-url", server.base_url, "--judge-model", "m",
                    "--judge-cache", str(tmp_path / f"cli-{place}.sqlite")]  # fmt: skip
            assert main(argv) == status, place
        out, err = capsys.readouterr()
        assert SHORT_KEY not in out + err, place
        assert "***" in out + err or place == "headers", place
    assert SHORT_KEY not in _files_text(tmp_path)


def test_masking_any_length_and_fragments() -> None:
    assert Secret("k9z").scrub("Incorrect API key provided: k9z.") == "Incorrect API key provided: ***."
    assert Secret("k9z").scrub("K9Z echoed in capitals") == "*** echoed in capitals"
    key = "proj-0123456789abcdefXYZ"
    cut = f"the key {key[:12]}"  # a key cut short by a length limit
    assert Secret(key).mask(cut) == "the key ***"
    split = f"tokens '{key[:10]}', '{key[10:]}'"  # split across two tokens
    assert key[:10] not in Secret(key).mask(split) and key[10:] not in Secret(key).mask(split)
    assert Secret(None).mask("no key here, Bearer abc and sk-abcdef") == "no key here, Bearer *** and sk-***"
    assert repr(Secret(key)) == "'***'" and Secret(None).reveal() == "no-key"


# --------------------------------------------------------------------- invalid logprobs (14.5)


@pytest.mark.parametrize(
    ("top", "why"),
    [({"85": 2.0, "90": -1.0}, "sum to"), ({"85": -0.1, "90": -0.2}, "sum to"), ({"85": math.nan}, "NaN")],
    ids=["logprob-above-0", "mass-above-1", "nan"],
)
def test_a_distribution_that_is_not_one_is_a_failed_response(top: dict[str, float], why: str, tmp_path: Path) -> None:
    with JudgeServer(Completion(top)) as server:
        judge = judge_for(server, tmp_path, max_retries=3)
        [score] = judge.score_coherence(["Q?"], ["A."])
        assert score.status == "failed" and score.score is None and score.mass is None
        assert "invalid logprobs" in (score.reason or "") and why in (score.reason or "")
        assert judge.usage()["failures"] == 1 and judge.usage()["ok"] == 0
        assert server.request_count == 1  # the server answered; asking it again would get the same
        assert summarize([score]).n_failed == 1
        [again] = judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
        assert not again.cached and server.request_count == 2  # a failure is not cached


def test_rounding_just_past_one_is_still_a_distribution(tmp_path: Path) -> None:
    top = {"85": -1e-6, **{f"w{i}": -9.0 for i in range(19)}}  # sums to 1.0023, as rounded API logprobs do
    with JudgeServer(Completion(top)) as server:
        [score] = judge_for(server, tmp_path).score_coherence(["Q?"], ["A."])
    assert score.status == "ok" and score.score == pytest.approx(85.0)


# ------------------------------------------------------------------ bounded waits (14.6, 14.7)


def test_a_dripping_reply_is_cut_at_the_overall_deadline(tmp_path: Path) -> None:
    # ~420 bytes at 0.5 s each: every read gets a byte in time, so a per-read timeout would wait ~3.5 minutes
    import httpx2  # noqa: F401 - the HTTP stack is imported before the clock starts
    import openai  # noqa: F401

    with JudgeServer(Fault.dripping(seconds_per_byte=0.5)) as server:
        judge = judge_for(server, tmp_path, timeout=2, max_retries=0, cache_path=False)
        start = time.monotonic()
        [score] = judge.score_coherence(["Q?"], ["A."])
        elapsed = time.monotonic() - start
    assert score.status == "failed" and "2 s deadline" in (score.reason or "")
    assert elapsed < 3 * 2  # a correctness bound (the deadline holds), not a speed measurement
    assert judge.usage()["last_error"] == score.reason


@pytest.mark.parametrize(
    "headers",
    [{"retry-after": "-5"}, {"retry-after": "0"}, {"retry-after": "nan"}, {"retry-after": "inf"},
     {"retry-after": "1e9"}, {"retry-after-ms": "-100"}, {"retry-after": "7200"},
     {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, {"retry-after": "soon"}],
    ids=["negative", "zero", "nan", "inf", "1e9", "negative-ms", "two-hours", "past-date", "words"],
)  # fmt: skip
def test_nonsense_retry_after_falls_back_to_backoff(headers: dict[str, str]) -> None:
    assert retry_after(headers) is None


def test_sane_retry_after_is_honoured_and_capped() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after-ms": "-1", "retry-after": "3"}) == 3.0  # the readable one wins
    assert retry_after({"retry-after": "600"}) == 120.0


def test_negative_retry_after_waits_the_exponential_backoff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="traitvec.judge")
    script = ScriptedResponder([Fault.rate_limited(retry_after="-5")] * 3, then=Completion({"60": -0.01}))
    with JudgeServer(script) as server:
        judge = judge_for(server, tmp_path, max_retries=3, backoff_base=0.05, backoff_max=10.0, cache_path=False)
        [score] = judge.score_coherence(["Q?"], ["A."])
    assert score.status == "ok" and server.request_count == 4
    waits = [float(w) for w in re.findall(r"retry \d/3 in ([0-9.]+) s", caplog.text)]
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):  # base · 2^attempt, jittered to 50–100%
        assert 0.05 * 2**attempt * 0.5 <= wait <= 0.05 * 2**attempt


# ------------------------------------------------------------------------ corrupt cache (14.10)


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _other_schema(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE scores (key TEXT PRIMARY KEY, value REAL)")


def _other_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")


@pytest.mark.parametrize(
    ("spoil", "detail"),
    [(_garbage, "file is not a database"), (_other_schema, "columns key, value"), (_other_database, "tables users")],
    ids=["garbage", "other-schema", "other-database"],
)
def test_a_corrupt_cache_is_one_error_naming_the_file_and_the_fix(
    spoil: object, detail: str, tmp_path: Path, trait: Trait
) -> None:
    path = tmp_path / "judge-cache.sqlite"
    spoil(path)  # type: ignore[operator]
    before = path.read_bytes()
    with JudgeServer() as server:
        judge = judge_for(server, tmp_path, cache_path=path)
        with pytest.raises(JudgeError) as info:
            judge.score_trait(trait, ["Q?"], ["A."])
        assert server.request_count == 0
    message = str(info.value)
    assert "\n" not in message and str(path) in message and detail in message
    assert "delete it" in message and "make_judge(cache_path=) = off" in message
    assert info.value.setting == "make_judge(cache_path=)"
    assert path.read_bytes() == before  # never repaired, replaced or moved


def _cache_with_damaged_pages(path: Path) -> list[str]:
    cache = ScoreCache(path)
    keys = [cache_key("test-judge", f"prompt {i}", {}) for i in range(400)]
    for key in keys:
        cache.put(key, judge="test-judge", kind="coherence", prompt_hash="h" * 64, score=50.0, status="ok",
                  mode="logprobs", mass=0.9, reason="x" * 200)  # fmt: skip
    cache.close()
    data = bytearray(path.read_bytes())
    for page in (3, 5, 9):
        data[page * 4096 : (page + 1) * 4096] = bytes([0xA5]) * 4096
    path.write_bytes(bytes(data))
    return keys


def test_damaged_cache_pages_are_found_by_check_and_by_reads(tmp_path: Path) -> None:
    path = tmp_path / "judge-cache.sqlite"
    keys = _cache_with_damaged_pages(path)
    with JudgeServer() as server:
        with pytest.raises(JudgeError, match=r"not a usable score cache .*delete it") as info:
            judge_for(server, tmp_path, cache_path=path).check()
        assert "\n" not in str(info.value) and server.request_count == 0  # before any request
    cache = ScoreCache(path)  # the header is fine: only reading the damaged pages shows it
    errors = []
    for key in keys:
        try:
            cache.get(key)
        except JudgeError as err:
            errors.append(str(err))
    assert errors and all("database disk image is malformed" in e and str(path) in e for e in errors)


def test_the_cli_names_the_cache_flag(
    traits_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from traitvec.cli import main

    path = tmp_path / "judge-cache.sqlite"
    _garbage(path)
    monkeypatch.setenv("OPENAI_API_KEY", LONG_KEY)
    with JudgeServer() as server:
        argv = ["judge", "--traits-root", str(traits_root), "--trait", "hum/optimism", "--question", "Q",
                "--answer", "A", "--judge-base-url", server.base_url, "--judge-cache", str(path)]  # fmt: skip
        assert main(argv) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and str(path) in err and "--judge-cache off" in err and "make_judge" not in err


# ----------------------------------------------------------------------------- preflight (13.13)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_fails_at_once_on_a_refused_connection(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    judge = OpenAIJudge("m", base_url=url, api_key=LONG_KEY, cache_path=False)
    start = time.monotonic()
    with pytest.raises(JudgeError) as info:
        judge.check()
    assert time.monotonic() - start < 5  # a correctness bound: no retries, no 30 s timeout
    message = str(info.value)
    assert message.startswith(f"judge at {url} is unreachable (connection error") and "\n" not in message
    assert info.value.setting == "make_judge(base_url=)"
    assert judge.usage()["last_error"] == message and judge.usage()["requests"] == 0


def test_check_gives_up_on_a_silent_server_within_its_deadline(tmp_path: Path) -> None:
    import httpx2  # noqa: F401 - the HTTP stack is imported before the clock starts
    import openai  # noqa: F401

    with JudgeServer(Fault.timeout(30)) as server:
        judge = judge_for(server, tmp_path, timeout=30, cache_path=False)
        start = time.monotonic()
        with pytest.raises(JudgeError, match=r"is unreachable \(timed out: no complete reply within the 1 s"):
            judge.check(deadline=1)
        assert time.monotonic() - start < 3 * 1  # a correctness bound
        assert server.request_count == 1  # one try, no retries


def test_check_fails_within_its_deadline_on_a_host_that_does_not_resolve() -> None:
    import httpx2  # noqa: F401 - the HTTP stack is imported before the clock starts
    import openai  # noqa: F401

    url = "http://judge.invalid:8000/v1"  # .invalid never resolves (RFC 2606)
    judge = OpenAIJudge("m", base_url=url, api_key=LONG_KEY, cache_path=False)
    start = time.monotonic()
    with pytest.raises(JudgeError, match=r"^judge at http://judge\.invalid:8000/v1 is unreachable \("):
        judge.check(deadline=2)
    assert time.monotonic() - start < 3 * 2  # a correctness bound: a failed lookup, or the deadline


@pytest.mark.parametrize(
    ("fault", "match"),
    [(Fault(401, '{"error": {"message": "bad key"}}'), "refused the API key"),
     (Fault(404, '{"error": {"message": "no such model"}}'), "404 for model 'test-judge'"),
     (Fault.bad_request("max_tokens is not supported", "max_tokens"), "rejected a 1-token test request")],
    ids=["401", "404", "400"],
)  # fmt: skip
def test_check_raises_for_a_misconfigured_judge(fault: Fault, match: str, tmp_path: Path) -> None:
    with JudgeServer(fault) as server:
        with pytest.raises(JudgeError, match=match):
            judge_for(server, tmp_path, cache_path=False).check()


def test_check_passes_once_and_sends_a_one_token_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with JudgeServer(Completion(None, text="0")) as server:
        judge = judge_for(server, tmp_path)
        judge.check()
        judge.check()  # remembered: nothing sent
        [request] = server.requests
        assert request["max_tokens"] == 1 and "logprobs" not in request and request["model"] == "test-judge"
        assert judge.usage()["checks"] == 1 and judge.usage()["requests"] == 0
    caplog.set_level(logging.WARNING)
    with JudgeServer(Fault.rate_limited("1")) as busy:  # reachable and keyed: scores will retry a 429
        judge = judge_for(busy, tmp_path, cache_path=False)
        judge.check()
    assert "answered the test request with HTTP 429" in caplog.text
    assert "HTTP 429" in str(judge.usage()["last_error"])


def test_the_local_judge_check_reaches_nothing(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny import make_model

    judge = LocalJudge(make_model("llama", chat=True), cache_path=tmp_path / "local.sqlite")
    judge.check()
    assert judge.usage()["forward_passes"] == 0 and judge.usage()["requests"] == 0
    _garbage(tmp_path / "bad.sqlite")
    with pytest.raises(JudgeError, match="not a usable score cache"):
        LocalJudge(judge.loaded, cache_path=tmp_path / "bad.sqlite").check()
