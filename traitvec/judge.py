"""The LLM judge: the scores it returns, how they are summarised, and how a judge is chosen.

A judge turns (question, answer) pairs into 0–100 scores for a trait, for coherence, or — in
scenario vetting — for the continuation a model wrote after a prefill. Two implementations share
the :class:`Judge` protocol:

- :class:`~traitvec.judge_openai.OpenAIJudge` — any OpenAI-compatible chat-completions API (OpenAI,
  vLLM, llama.cpp server, Ollama): one request per score with ``max_tokens=1`` and
  ``top_logprobs=20``, the score being the probability-weighted mean of the integer tokens 0–100;
  retried, cached in SQLite, and accounted.
- :class:`~traitvec.judge_local.LocalJudge` — an in-process Hugging Face model (the embedded
  ``smollm2-135m-instruct`` by default): a smoke test that needs no network, not a measurement.

Every score is a :class:`JudgeScore`. A call that failed after its retries, or where the judge put
too little probability on numbers, has ``score=None`` and says why — it is never a 0 and is never
dropped — and :func:`summarize` reports ``n``, ``n_failed`` and ``n_abstained`` next to the mean.

Sync and async: every judge has ``score_*`` methods for plain code and ``ascore_*`` coroutines for
code already inside an event loop. A ``score_*`` call made while an event loop is running (a
notebook, an async app) runs its work on a fresh loop in a worker thread and blocks until done, so
it works everywhere; inside async code prefer ``await judge.ascore_*``.

Prompts live in :mod:`traitvec.judge_prompts`; the cache in :mod:`traitvec.judge_cache`; a test
server speaking the protocol in :mod:`traitvec.testing`. See ``docs/judge.md``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import re
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from .stats import t975
from .traits import Trait

if TYPE_CHECKING:
    from .judge_local import LocalJudge
    from .judge_openai import OpenAIJudge
    from .models import LoadedModel

__all__ = [
    "DEFAULT_JUDGE_MODEL",
    "DEFAULT_LOCAL_JUDGE",
    "AsyncJudge",
    "Judge",
    "JudgeScore",
    "LocalJudge",
    "OpenAIJudge",
    "ScoreSummary",
    "make_judge",
    "parse_text_score",
    "summarize",
    "weighted_score",
]

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_MODEL = "gpt-4.1-mini"
DEFAULT_LOCAL_JUDGE = "smollm2-135m-instruct"

Status = Literal["ok", "abstained", "failed"]
Mode = Literal["logprobs", "text", "local"]
Kind = Literal["trait", "coherence", "continuation"]
T = TypeVar("T")


@dataclass(frozen=True)
class JudgeScore:
    """One judged item.

    Attributes:
        score: 0–100, or ``None`` when the judge failed or abstained (never 0 as a stand-in).
        status: ``"ok"``; ``"abstained"`` (the judge answered but gave no usable number, e.g. the
            probability mass on numbers was below the threshold); ``"failed"`` (no answer after
            every retry).
        mode: what produced it: ``"logprobs"``, ``"text"`` (a number parsed from a short text reply,
            for servers without logprobs) or ``"local"``; ``None`` when nothing was attempted.
        kind: ``"trait"``, ``"coherence"`` or ``"continuation"``.
        reason: why it abstained or failed (``None`` when ok).
        mass: probability on the numbers 0–100 (logprob and local modes).
        prompt_hash: SHA-256 of the prompt template (see :mod:`traitvec.judge_prompts`).
        judge: the judge model's name.
        cached: True when it came from the score cache (no request made).
    """

    score: float | None
    status: Status
    mode: Mode | None
    kind: Kind
    reason: str | None
    mass: float | None
    prompt_hash: str
    judge: str
    cached: bool = False

    @property
    def ok(self) -> bool:
        """True when the score is usable."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON outputs."""
        return asdict(self)


@dataclass(frozen=True)
class ScoreSummary:
    """Counts and mean of a list of scores.

    The mean and its 95% confidence interval are over the ``ok`` scores only; failed and abstained
    items are counted, never averaged in. The interval is Student's t: ``mean ± t(0.975, n_ok−1) ×
    sd / √n_ok`` with the sample standard deviation, clipped to the score range [0, 100] (``None``
    with fewer than two ok scores).

    Attributes:
        n: items scored.
        n_ok: items with a score.
        n_failed: items whose calls failed after every retry.
        n_abstained: items where the judge gave no usable number.
        mean: mean of the ok scores (``None`` when there are none).
        ci95: t-interval of the mean (``None`` when ``n_ok < 2``).
        sd: sample standard deviation of the ok scores (``None`` when ``n_ok < 2``).
    """

    n: int
    n_ok: int
    n_failed: int
    n_abstained: int
    mean: float | None
    ci95: tuple[float, float] | None
    sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``ci95`` as a two-item list), for JSON outputs."""
        data = asdict(self)
        data["ci95"] = list(self.ci95) if self.ci95 is not None else None
        return data


def summarize(scores: Sequence[JudgeScore]) -> ScoreSummary:
    """Count outcomes and average the ok scores, with a t-interval.

    Args:
        scores: judged items (any mix of ok, abstained and failed).

    Returns:
        A :class:`ScoreSummary`; failures and abstentions are counted, not averaged.

    Example:
        >>> s = summarize(judge.score_trait(trait, questions, answers))
        >>> f"{s.mean:.1f} (n={s.n}, failed {s.n_failed}, abstained {s.n_abstained})"
    """
    values = [float(s.score) for s in scores if s.status == "ok" and s.score is not None]
    n_failed = sum(1 for s in scores if s.status == "failed")
    n_abstained = sum(1 for s in scores if s.status == "abstained")
    mean = math.fsum(values) / len(values) if values else None
    ci95: tuple[float, float] | None = None
    sd: float | None = None
    if mean is not None and len(values) >= 2:
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
        half = t975(len(values) - 1) * sd / math.sqrt(len(values))
        ci95 = (max(0.0, mean - half), min(100.0, mean + half))
    return ScoreSummary(len(scores), len(values), n_failed, n_abstained, mean, ci95, sd)


def weighted_score(top_logprobs: Iterable[tuple[str, float]]) -> tuple[float | None, float]:
    """Probability-weighted mean of the top tokens that are integers 0–100.

    Token text is stripped of surrounding whitespace (``" 7"`` counts as 7); tokens that are not
    an integer 0–100 (``"foo"``, ``"7.5"``, ``"101"``, ``"-3"``) carry no weight. Two tokens that
    read as the same number (``"85"`` and ``" 85"``) both count.

    Args:
        top_logprobs: (token text, natural-log probability) pairs.

    Returns:
        ``(score, mass)``: the weighted mean divided by the mass on numeric tokens (``None`` when
        that mass is 0), and the mass itself.

    Example:
        >>> weighted_score([("85", math.log(0.6)), (" 90", math.log(0.2)), ("foo", math.log(0.2))])
        (86.25, 0.8)
    """
    total = 0.0
    mass = 0.0
    for token, logprob in top_logprobs:
        text = token.strip()
        if not (text.isascii() and text.isdigit()):
            continue
        value = int(text)
        if value > 100 or logprob is None or not math.isfinite(logprob):
            continue
        p = math.exp(logprob)
        total += value * p
        mass += p
    return (total / mass if mass > 0 else None), mass


_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")


def parse_text_score(text: str | None) -> float | None:
    """The first number in a judge's text reply, if it lies in 0–100 (``"Score: 85/100"`` → 85.0).

    Example:
        >>> parse_text_score(" 72"), parse_text_score("I cannot rate this"), parse_text_score("150")
        (72.0, None, None)
    """
    if not text:
        return None
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group(0))
    return value if 0.0 <= value <= 100.0 else None


@runtime_checkable
class Judge(Protocol):
    """What the rest of traitvec needs from a judge.

    Attributes:
        name: the judge model's name (recorded with every score).
        smoke_test: True for a tiny local judge whose results are a smoke test, not a measurement.
    """

    name: str
    smoke_test: bool

    def score_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for the trait (its ``eval_prompt``, else its ``definition.txt`` rubric)."""
        ...

    def score_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Score each answer for coherence (grammar and sense, not the trait)."""
        ...

    def score_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Score only each continuation for the trait, with its prefill shown as context."""
        ...

    def usage(self) -> dict[str, Any]:
        """Requests, cache hits, tokens, retries and failures summed since the judge was made."""
        ...

    def describe(self) -> dict[str, Any]:
        """Plain data recorded with outputs: name, mode, host (never a key), prompt hashes, smoke_test."""
        ...


@runtime_checkable
class AsyncJudge(Judge, Protocol):
    """A :class:`Judge` that also offers coroutine versions of its scoring methods."""

    async def ascore_trait(self, trait: Trait, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`Judge.score_trait`."""
        ...

    async def ascore_coherence(self, questions: Sequence[str], answers: Sequence[str]) -> list[JudgeScore]:
        """Coroutine version of :meth:`Judge.score_coherence`."""
        ...

    async def ascore_continuations(
        self, trait: Trait, prefills: Sequence[str], continuations: Sequence[str]
    ) -> list[JudgeScore]:
        """Coroutine version of :meth:`Judge.score_continuations`."""
        ...


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``factory()`` to completion from synchronous code.

    With no event loop running this is ``asyncio.run``. Inside a running loop (a notebook, an
    async app) the coroutine runs on a new loop in a worker thread while the caller blocks.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="traitvec-judge") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def make_judge(
    model: str | None = None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    local: str | LoadedModel | bool | None = None,
    cache_path: str | os.PathLike[str] | Literal[False] | None = None,
    concurrency: int = 16,
    text_mode: bool = False,
) -> Judge:
    """The judge the configuration asks for.

    An API judge (:class:`~traitvec.judge_openai.OpenAIJudge`) when a key or a base URL is
    configured — by argument, else ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``; its model is ``model``,
    else ``$TRAITVEC_JUDGE_MODEL``, else ``gpt-4.1-mini``. Otherwise, or when ``local`` names a model
    (or is a loaded one, or ``True`` for the embedded default), a
    :class:`~traitvec.judge_local.LocalJudge`, with a loud warning: a tiny local judge is a smoke
    test, not a measurement. Environment variables are read when this is called.

    Args:
        model: judge model name for the API judge.
        base_url: OpenAI-compatible base URL (``http://localhost:8000/v1`` for vLLM).
        api_key: API key (default ``$OPENAI_API_KEY``); never written or logged.
        local: a model name (embedded, hub id or folder), a :class:`~traitvec.models.LoadedModel`,
            or True for ``smollm2-135m-instruct``.
        cache_path: score cache file; ``None`` for the default, ``False`` (or the strings ``"off"``,
            ``"none"``) for none.
        concurrency: API requests in flight.
        text_mode: ask the API judge for a written number instead of logprobs (for judge models whose
            tokenizer writes numbers digit by digit).

    Raises:
        JudgeError: a bad setting (e.g. a base URL without ``http://``).

    Example:
        >>> judge = make_judge()  # OPENAI_API_KEY set → gpt-4.1-mini; unset → local smoke-test judge
        >>> judge.describe()["smoke_test"]
    """
    cache_path = _cache_arg(cache_path)
    if local is None or local is False:
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if key or url:
            from .judge_openai import OpenAIJudge

            name = model or os.environ.get("TRAITVEC_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL
            return OpenAIJudge(
                name, base_url=url, api_key=key, concurrency=concurrency, cache_path=cache_path, logprobs=not text_mode
            )
        reason = "no judge API is configured (neither OPENAI_API_KEY nor OPENAI_BASE_URL is set)"
        local = DEFAULT_LOCAL_JUDGE
    else:
        reason = "a local judge was asked for"
    from .judge_local import LocalJudge
    from .models import LoadedModel, load_model

    loaded = local if isinstance(local, LoadedModel) else load_model(DEFAULT_LOCAL_JUDGE if local is True else local)
    logger.warning(
        "traitvec: WARNING: %s, so answers are scored by the tiny in-process model %s. Its scores are a SMOKE "
        "TEST of the pipeline, NOT a measurement of the trait. For real scores set OPENAI_API_KEY, or point "
        "--judge-base-url / OPENAI_BASE_URL at an OpenAI-compatible server (vLLM, llama.cpp, Ollama).",
        reason,
        loaded.name,
    )
    return LocalJudge(loaded, cache_path=False if cache_path is None else cache_path)


def _cache_arg(
    value: str | os.PathLike[str] | Literal[False] | None,
) -> str | os.PathLike[str] | Literal[False] | None:
    if isinstance(value, str) and value.strip().lower() in ("", "off", "none", "false", "no"):
        return False
    return value


def __getattr__(name: str) -> Any:
    # The implementations import openai / torch; load them only when asked for.
    if name == "OpenAIJudge":
        from .judge_openai import OpenAIJudge

        return OpenAIJudge
    if name == "LocalJudge":
        from .judge_local import LocalJudge

        return LocalJudge
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
