"""What a judge returns: :class:`JudgeScore`, and the arithmetic on scores.

- :class:`JudgeScore` — one judged item, with its status (``ok``, ``abstained``, ``failed``), the
  mode that produced it and, when it is not ok, why. A failure is never a 0 and is never dropped.
- :func:`summarize` → :class:`ScoreSummary` — counts and the mean of the ok scores with a
  Student-t interval; failed and abstained items are counted, never averaged in.
- :func:`weighted_score` — the probability-weighted mean of the integer tokens 0–100 among a
  reply's top logprobs (the API judge's score).
- :func:`parse_text_score` — the score a short text reply clearly gives (text mode; the parser
  is :mod:`traitvec.judge.textscore`).
- :func:`gate_coherence` — the relevance gate: an answer that does not address its question has
  its coherence capped (two-stage coherence, as trait-interp scores it).

Plain data and arithmetic only: nothing here talks to a server or loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from ..errors import ConfigError
from ..stats import t975
from .textscore import parse_text_score

__all__ = [
    "Kind",
    "Mode",
    "Status",
    "JudgeScore",
    "RELEVANCE_CAP",
    "RELEVANCE_THRESHOLD",
    "ScoreSummary",
    "gate_coherence",
    "parse_text_score",
    "summarize",
    "weighted_score",
]

Status = Literal["ok", "abstained", "failed"]
Mode = Literal["logprobs", "text", "local"]
Kind = Literal["trait", "coherence", "continuation", "relevance"]

RELEVANCE_THRESHOLD = 50.0
"""Default of :func:`gate_coherence`: an answer whose relevance is below this is off-topic."""
RELEVANCE_CAP = 50.0
"""Default of :func:`gate_coherence`: the coherence an off-topic answer keeps at most."""


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
        kind: ``"trait"``, ``"coherence"``, ``"continuation"`` or ``"relevance"`` (does the answer
            address the question; see :func:`gate_coherence`).
        reason: why it abstained or failed (``None`` when ok).
        mass: probability on the numbers 0–100 (logprob and local modes).
        prompt_hash: SHA-256 of the prompt template (see :mod:`traitvec.judge.prompts`).
        judge: the judge model's name.
        cached: True when it came from the score cache (no request made).
        relevance: for a coherence score passed through :func:`gate_coherence`, the relevance score
            of the same answer (``None`` when relevance was not scored, failed or abstained).
        relevance_status: that relevance score's status; ``None`` when no gate was applied.
        uncapped: the coherence before the gate capped it; ``None`` when it was not capped.
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
    relevance: float | None = None
    relevance_status: Status | None = None
    uncapped: float | None = None

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


def gate_coherence(
    coherence: JudgeScore,
    relevance: JudgeScore,
    *,
    threshold: float = RELEVANCE_THRESHOLD,
    cap: float = RELEVANCE_CAP,
) -> JudgeScore:
    """The coherence score of an answer after the relevance gate (pure; nothing is scored here).

    A fluent answer about something else is not what a steering search should call coherent: when
    the answer's relevance (``kind="relevance"``, see :meth:`Judge.score_relevance`) is an ok score
    below ``threshold``, its coherence is capped at ``cap`` (the value before is kept in
    ``uncapped``). An unscored relevance (failed or abstained) leaves the coherence as it is. Either
    way the relevance score and its status are recorded on the result.

    Args:
        coherence: the answer's coherence score (``kind="coherence"``).
        relevance: the same answer's relevance score (``kind="relevance"``).
        threshold: relevance below this (0–100) makes the answer off-topic.
        cap: the highest coherence an off-topic answer keeps (0–100).

    Returns:
        The coherence score, capped or not, with ``relevance``, ``relevance_status`` and
        ``uncapped`` filled in.

    Raises:
        ConfigError: the scores are of the wrong kinds, or ``threshold``/``cap`` are outside 0–100.

    Example:
        >>> gated = gate_coherence(judge.score_coherence([q], [a])[0], judge.score_relevance([q], [a])[0])
        >>> gated.score, gated.uncapped, gated.relevance
        (50.0, 91.2, 12.0)
    """
    if coherence.kind != "coherence" or relevance.kind != "relevance":
        raise ConfigError(
            f"gate_coherence takes a coherence score and a relevance score, not {coherence.kind!r} and "
            f"{relevance.kind!r}; pass judge.score_coherence(...)[i] and judge.score_relevance(...)[i]"
        )
    for name, value in (("threshold", threshold), ("cap", cap)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0.0 <= value <= 100.0:
            raise ConfigError(f"gate_coherence {name}={value!r} is invalid; expected a number in [0, 100]")
    known = relevance.score if relevance.status == "ok" else None
    gated = replace(coherence, relevance=known, relevance_status=relevance.status, uncapped=None)
    off_topic = known is not None and known < threshold
    if off_topic and coherence.status == "ok" and coherence.score is not None and coherence.score > cap:
        return replace(gated, score=float(cap), uncapped=coherence.score)
    return gated
