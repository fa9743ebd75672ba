"""The prefill checks behind :mod:`traitvec.audit`: text features, thresholds, one function per check.

Everything here is pure computation on the prefills of a loaded :class:`~traitvec.traits.Trait`
(a regex tokenizer, no model). Each check returns one :class:`Finding` whatever the outcome, so a
passing check is visible too. The cross-distribution classifier lives in
:mod:`traitvec._audit_crossdist`, the definition.txt and steering.json checks in
:mod:`traitvec._audit_files`.

Definitions used throughout (they are repeated, with the guide's rationale, in ``docs/audit.md``):

- **token**: the regex ``TOKEN_RE`` below: a number (``3,000``), a word with inner hyphens or
  apostrophes (``don't``, ``peer-reviewed``), an ellipsis, or one punctuation character. A *word*
  is a token starting with a letter or digit, lower-cased, curly apostrophes made straight.
- **frame** of a line: its clause skeleton. Every token becomes a symbol: punctuation stays
  (curly quotes become ``"`` or ``'``, dashes and hyphens between spaces become ``—``), the
  connectives in ``CONNECTIVES`` (``and but so because when if though ...``) stay as themselves,
  and every other word or number becomes ``X``; runs of the same symbol collapse to one, and the
  frame is the first ``frame_length`` (8) symbols. ``He asked me to write malware. This violated my
  principles, so I`` has frame ``X . X , so X``. Frames are counted over lines (both files; a pair
  whose sides share a frame counts twice), so shares are fractions of ``2 × pairs`` lines.
- **trait words** (cross-distribution check): the words in the symmetric difference of a pair's
  two word sets, taken (a) from every *scenario-matched* pair (its sides share >= 20% of their
  content words, template words found in > 10% of all lines left out: the scenario is fixed, so
  what differs is the trait, however varied its wording)
  and (b) from any pair when the word differs inside at least 3 pairs (the trait's recurring
  vocabulary). Words that differ inside only one or two pairs whose sides are about different
  things stay, which is what lets a topic spread over many different words show
  (see :mod:`traitvec._audit_crossdist`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .errors import ConfigError
from .traits import Prompt, Trait

__all__ = ["Severity", "Example", "Finding", "AuditConfig", "PairText", "content_words", "frame", "tokenize", "words"]

Severity = Literal["error", "warning", "ok", "info"]

TOKEN_RE = re.compile(r"\d+(?:[.,:]\d+)*|[^\W_]+(?:[-'’][^\W_]+)*|\.{2,}|…|[^\w\s]")
CONNECTIVES = frozenset(
    "and but or so yet nor because although though while whereas when whenever if unless until since after "
    "before once despite".split()
)
FIRST_PERSON = frozenset(
    "i me my mine myself we us our ours ourselves i'm i've i'd i'll we're we've we'd we'll".split()
)
STOPWORDS = frozenset(
    """a an the this that these those some any every each no another such what which who whom whose why how
    i me my mine myself you your yours yourself yourselves he him his himself she her hers herself it its itself
    we us our ours ourselves they them their theirs themselves one ones
    i'm i've i'd i'll you're you've you'd you'll he's he'd he'll she's she'd she'll it's it'd we're we've we'd we'll
    they're they've they'd they'll that's there's here's what's who's let's
    and but or nor so yet for if because although though while whereas when whenever where wherever since until
    unless after before once than as whether despite
    of in on at to from by with about into onto over under through during without within between among against
    across toward towards upon around behind beyond up down out off near past like along
    is am are was were be been being have has had having do does did doing done will would shall should can
    could may might must isn't aren't wasn't weren't hasn't haven't hadn't don't doesn't didn't won't wouldn't
    can't couldn't shouldn't mustn't not no nor never
    there here then now also just very too even still only all both either neither more most much many few
    less least own same other again ever yes ok okay really quite rather almost already""".split()
)
_PUNCT_MAP = {"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'", "`": "'"}
_PUNCT_MAP |= {"–": "—", "-": "—", "―": "—", "...": "…"}


def tokenize(text: str) -> list[str]:
    """Split ``text`` into word, number and punctuation tokens (see the module docstring)."""
    return TOKEN_RE.findall(text)


def _is_word(token: str) -> bool:
    return token[0].isalnum()


def _norm_punct(token: str) -> str:
    if token.startswith(".."):
        return "…"
    return _PUNCT_MAP.get(token, token)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (punctuation dropped, curly apostrophes straightened)."""
    return [t.lower().replace("’", "'") for t in tokenize(text) if _is_word(t)]


def frame(text: str, length: int = 8) -> str:
    """The clause skeleton of a line (see the module docstring).

    Example:
        >>> frame("The paper had been retracted, but I needed a citation so I")
        'X , but X so X'
    """
    out: list[str] = []
    for token in tokenize(text):
        if _is_word(token):
            low = token.lower()
            symbol = low if low in CONNECTIVES else "X"
        else:
            symbol = _norm_punct(token)
        if out and out[-1] == symbol:
            continue
        out.append(symbol)
        if len(out) >= length:
            break
    return " ".join(out)


@dataclass(frozen=True)
class Example:
    """A line that triggered a finding: the file's name, its 1-based line number and the text."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class Finding:
    """The outcome of one check on one trait.

    Attributes:
        check: the check's name (``"lexical_leak"``, ``"length_confound"``, ...).
        severity: ``"error"`` and ``"warning"`` are problems; ``"ok"`` passed; ``"info"`` did not apply.
        message: what was found, with the numbers.
        threshold: the rule the value was held against, in words.
        value: the measured number the threshold applies to, when there is one.
        examples: lines that triggered it (file, 1-based line, text), most telling first.
        fix: what to do about it (from the dataset guide).
        details: the full measurements (JSON-friendly), e.g. every flagged token with its shares.
    """

    check: str
    severity: Severity
    message: str
    threshold: str = ""
    value: float | None = None
    examples: tuple[Example, ...] = ()
    fix: str = ""
    details: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return {
            "check": self.check,
            "severity": self.severity,
            "message": self.message,
            "threshold": self.threshold,
            "value": self.value,
            "fix": self.fix,
            "examples": [dataclasses.asdict(e) for e in self.examples],
            "details": _jsonable(self.details),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of every check (defaults from the dataset guide; see ``docs/audit.md``).

    Shares are fractions of a class's lines (0-1). A check that needs statistics is skipped, as
    ``info``, for traits with fewer than ``min_pairs`` pairs, and a token or frame is only flagged
    when at least ``min_lines`` lines carry it, so tiny datasets do not flag noise.

    Example:
        >>> strict = AuditConfig(leak_share=0.7)
        >>> report = audit_trait(trait, config=strict)
    """

    min_pairs: int = 10
    min_lines: int = 5
    leak_share: float = 0.8
    leak_gap: float = 0.6
    opener_share: float = 0.5
    opener_gap: float = 0.5
    punct_share: float = 0.5
    punct_gap: float = 0.5
    person_share: float = 0.5
    person_gap: float = 0.3
    length_rel_diff: float = 0.10
    length_consistency: float = 0.70
    length_p: float = 0.05
    frame_length: int = 8
    template_share: float = 0.20
    min_frames: int = 3
    frame_coverage: float = 0.80
    vocab_share: float = 0.10
    xdist_error: float = 0.80
    xdist_warning: float = 0.70
    xdist_p: float = 0.05
    xdist_folds: int = 5
    trait_word_pairs: int = 3
    scenario_jaccard: float = 0.2
    steering_min_questions: int = 15
    steering_max_questions: int = 20
    overlap_ngram: int = 5
    overlap_jaccard: float = 0.5
    definition_max_lines: int = 12
    definition_max_words: int = 200

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"AuditConfig.{f.name} = {value!r}; expected a positive integer")
            if f.type == "float" and (not isinstance(value, int | float) or not 0.0 <= value <= 1.0):
                raise ConfigError(f"AuditConfig.{f.name} = {value!r}; expected a fraction between 0 and 1")
        if self.steering_min_questions > self.steering_max_questions:
            raise ConfigError(
                f"AuditConfig.steering_min_questions = {self.steering_min_questions} exceeds "
                f"steering_max_questions = {self.steering_max_questions}; make min <= max"
            )
        if self.xdist_warning > self.xdist_error:
            raise ConfigError(
                f"AuditConfig.xdist_warning = {self.xdist_warning} exceeds xdist_error = {self.xdist_error}; "
                "the warning band must lie below the error threshold"
            )


def prompt_text(prompt: Prompt) -> str:
    """The text audited for one prompt: the system prompt (when there is one), a space, the prompt."""
    return f"{prompt.system_prompt} {prompt.text}" if prompt.system_prompt else prompt.text


@dataclass(frozen=True)
class PairText:
    """The two sides of a trait as audited text, with per-line tokens computed once."""

    pos: tuple[str, ...]
    neg: tuple[str, ...]
    lines: tuple[int, ...]
    pos_file: str
    neg_file: str

    @classmethod
    def from_trait(cls, trait: Trait) -> PairText:
        """Build from a loaded trait (chat prompts are audited as ``system_prompt + " " + prompt``)."""
        ext = "jsonl" if trait.chat else "txt"
        return cls(
            pos=tuple(prompt_text(p) for p in trait.positive),
            neg=tuple(prompt_text(p) for p in trait.negative),
            lines=trait.lines,
            pos_file=f"positive.{ext}",
            neg_file=f"negative.{ext}",
        )

    @property
    def n(self) -> int:
        return len(self.pos)

    def example(self, side: int, index: int) -> Example:
        """Example for pair ``index``; ``side`` 1 is positive, 0 negative."""
        text = self.pos[index] if side else self.neg[index]
        return Example(self.pos_file if side else self.neg_file, self.lines[index], text)


# --------------------------------------------------------------------------------------------
# shared helpers


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _pts(x: float) -> str:
    return f"{100 * x:.0f} points"


def _side(side: int) -> str:
    return "positive" if side else "negative"


def _skipped(check: str, data: PairText, cfg: AuditConfig) -> Finding:
    return Finding(
        check,
        "info",
        f"skipped: {data.n} pairs is below the {cfg.min_pairs} this check needs to tell a pattern from noise",
        threshold=f">= {cfg.min_pairs} pairs",
    )


@dataclass(frozen=True)
class _Flag:
    feature: str
    side: int  # the class the feature is common in
    share: float
    other: float
    pairs: tuple[int, ...]  # pairs where the dominant side has it and the other side does not


def _predictive(
    pos: Sequence[set[str]], neg: Sequence[set[str]], share: float, gap: float, min_lines: int
) -> list[_Flag]:
    """Features present in >= ``share`` of one class's lines and at least ``gap`` less often in the other."""
    n = len(pos)
    count_pos: Counter[str] = Counter(f for s in pos for f in s)
    count_neg: Counter[str] = Counter(f for s in neg for f in s)
    flags = []
    for feature in set(count_pos) | set(count_neg):
        p, q = count_pos[feature] / n, count_neg[feature] / n
        side = 1 if p >= q else 0
        hi, lo = (p, q) if side else (q, p)
        if hi >= share and hi - lo >= gap and max(count_pos[feature], count_neg[feature]) >= min_lines:
            mine, theirs = (pos, neg) if side else (neg, pos)
            pairs = tuple(i for i in range(n) if feature in mine[i] and feature not in theirs[i])
            flags.append(_Flag(feature, side, hi, lo, pairs))
    flags.sort(key=lambda f: (-(f.share - f.other), f.feature))
    return flags


def _pair_examples(data: PairText, flags: Sequence[_Flag], limit: int = 3) -> tuple[Example, ...]:
    """For each of the first ``limit`` flags, the first pair showing it: dominant line, then its partner."""
    out: list[Example] = []
    for flag in flags[:limit]:
        if flag.pairs:
            i = flag.pairs[0]
            out += [data.example(flag.side, i), data.example(1 - flag.side, i)]
    return tuple(dict.fromkeys(out))


def _flag_text(flag: _Flag, label: Callable[[str], str]) -> str:
    dominant, other = _side(flag.side), _side(1 - flag.side)
    return f"{label(flag.feature)} in {_pct(flag.share)} of {dominant} lines vs {_pct(flag.other)} of {other}"


def _flag_details(flags: Sequence[_Flag]) -> list[dict[str, Any]]:
    return [{"feature": f.feature, "class": _side(f.side), "share": f.share, "other_share": f.other} for f in flags]


def _binom_tail(k: int, m: int) -> float:
    """P(X >= k) for X ~ Binomial(m, 1/2)."""
    if m == 0:
        return 1.0
    return sum(math.comb(m, j) for j in range(k, m + 1)) / 2**m


# --------------------------------------------------------------------------------------------
# lexical label leaks


def check_lexical_leak(data: PairText, cfg: AuditConfig) -> Finding:
    """Words and word pairs (bigrams) common in one class and rare in the other."""
    name = "lexical_leak"
    threshold = (
        f"a word or bigram in >= {_pct(cfg.leak_share)} of one class's lines and at least "
        f"{_pts(cfg.leak_gap)} less often in the other (so <= {_pct(cfg.leak_share - cfg.leak_gap)} "
        f"at the threshold); >= {cfg.min_lines} lines"
    )
    if data.n < cfg.min_pairs:
        return _skipped(name, data, cfg)
    pos_w, neg_w = [words(t) for t in data.pos], [words(t) for t in data.neg]
    unigrams = _predictive(
        [set(w) for w in pos_w], [set(w) for w in neg_w], cfg.leak_share, cfg.leak_gap, cfg.min_lines
    )
    flagged = {f.feature for f in unigrams}

    def bigrams(ws: list[str]) -> set[str]:
        return {f"{a} {b}" for a, b in zip(ws, ws[1:], strict=False) if a not in flagged and b not in flagged}

    pairs = _predictive(
        [bigrams(w) for w in pos_w], [bigrams(w) for w in neg_w], cfg.leak_share, cfg.leak_gap, cfg.min_lines
    )
    flags = unigrams + pairs
    fix = (
        "Use both words on both sides, or restructure to eliminate the pattern entirely; otherwise the "
        "vector learns the word, not the trait (guide, Phase 5: lexical label leak)."
    )
    if not flags:
        return Finding(name, "ok", "no word or bigram is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: f'"{s}"') for f in flags[:8])
    more = f" (and {len(flags) - 8} more)" if len(flags) > 8 else ""
    return Finding(
        name,
        "error",
        f"{len(flags)} label-predicting word(s)/bigram(s): {listed}{more}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"words": _flag_details(unigrams), "bigrams": _flag_details(pairs)}),
    )


def _openers(text: str) -> set[str]:
    ws = words(text)
    return {f"{ws[0]} …", f"{ws[0]} {ws[1]} …"} if len(ws) > 1 else ({f"{ws[0]} …"} if ws else set())


def check_opener_leak(data: PairText, cfg: AuditConfig) -> Finding:
    """First word / first two words of a line that predict its label."""
    name = "opener_leak"
    threshold = (
        f"one opener (first word or first two words) starts >= {_pct(cfg.opener_share)} of one class's lines "
        f"and at least {_pts(cfg.opener_gap)} fewer of the other's; >= {cfg.min_lines} lines"
    )
    if data.n < cfg.min_pairs:
        return _skipped(name, data, cfg)
    flags = _predictive(
        [_openers(t) for t in data.pos],
        [_openers(t) for t in data.neg],
        cfg.opener_share,
        cfg.opener_gap,
        cfg.min_lines,
    )
    one_word = {f.feature[:-2] for f in flags if f.feature.count(" ") == 1}
    flags = [f for f in flags if f.feature.count(" ") == 1 or f.feature.split(" ")[0] not in one_word]
    fix = (
        "Vary how lines start and use each opener on both sides; a model learns 'Despite...' = trait "
        "instead of the trait (guide, Phase 5: sentence opener predicts label)."
    )
    if not flags:
        return Finding(name, "ok", "no opener is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: f'"{s}"') for f in flags[:6])
    return Finding(
        name,
        "error",
        f"lines start differently by label: {listed}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"openers": _flag_details(flags)}),
    )


def _punct_features(text: str) -> set[str]:
    marks = [_norm_punct(t) for t in tokenize(text) if not _is_word(t)]
    feats = {f"contains {m}" for m in marks}
    stripped = text.strip()
    if stripped:
        first, last = tokenize(stripped)[0], tokenize(stripped)[-1]
        if not _is_word(first):
            feats.add(f"starts with {_norm_punct(first)}")
        if not _is_word(last):
            feats.add(f"ends with {_norm_punct(last)}")
    return feats


def check_punctuation_leak(data: PairText, cfg: AuditConfig) -> Finding:
    """Punctuation or quote marks whose presence, or use as first/last character, predicts the label."""
    name = "punctuation_leak"
    threshold = (
        f"a mark contained in, starting or ending >= {_pct(cfg.punct_share)} of one class's lines and at least "
        f"{_pts(cfg.punct_gap)} fewer of the other's; >= {cfg.min_lines} lines"
    )
    if data.n < cfg.min_pairs:
        return _skipped(name, data, cfg)
    flags = _predictive(
        [_punct_features(t) for t in data.pos],
        [_punct_features(t) for t in data.neg],
        cfg.punct_share,
        cfg.punct_gap,
        cfg.min_lines,
    )
    edge = {(f.feature.split(" ")[-1], f.side) for f in flags if not f.feature.startswith("contains")}
    flags = [f for f in flags if not f.feature.startswith("contains") or (f.feature.split(" ")[-1], f.side) not in edge]
    fix = (
        "Use the mark on both sides or on neither, and end the two prefills of a pair the same way "
        "(quote marks, '!', '?', dashes); the model can read the label off punctuation."
    )
    if not flags:
        return Finding(name, "ok", "no punctuation mark is specific to one class", threshold, 0.0, fix=fix)
    listed = "; ".join(_flag_text(f, lambda s: s.replace("contains ", "containing ").join("''")) for f in flags[:6])
    return Finding(
        name,
        "error",
        f"punctuation predicts the label: {listed}",
        threshold,
        max(f.share - f.other for f in flags),
        _pair_examples(data, flags),
        fix,
        MappingProxyType({"marks": _flag_details(flags)}),
    )


def check_person_confound(data: PairText, cfg: AuditConfig) -> Finding:
    """One side mostly first-person (I/me/my/we...) and the other not."""
    name = "person_confound"
    threshold = (
        f"first-person lines >= {_pct(cfg.person_share)} of one class and at least {_pts(cfg.person_gap)} "
        "fewer in the other"
    )
    if data.n < cfg.min_pairs:
        return _skipped(name, data, cfg)
    pos = [bool(FIRST_PERSON & set(words(t))) for t in data.pos]
    neg = [bool(FIRST_PERSON & set(words(t))) for t in data.neg]
    p, q = sum(pos) / data.n, sum(neg) / data.n
    side = 1 if p >= q else 0
    hi, lo = (p, q) if side else (q, p)
    fix = "Balance voice: write first-person and third-person pairs on both sides (guide, Phase 5: person confound)."
    message = f"first-person voice in {_pct(p)} of positive and {_pct(q)} of negative lines"
    if hi >= cfg.person_share and hi - lo >= cfg.person_gap:
        mine, theirs = (pos, neg) if side else (neg, pos)
        pairs = [i for i in range(data.n) if mine[i] and not theirs[i]][:2]
        examples = tuple(e for i in pairs for e in (data.example(side, i), data.example(1 - side, i)))
        return Finding(name, "warning", message, threshold, hi - lo, examples, fix)
    return Finding(name, "ok", message, threshold, abs(p - q), fix=fix)


# --------------------------------------------------------------------------------------------
# length


def check_length_confound(data: PairText, cfg: AuditConfig) -> Finding:
    """A systematic length difference between the two sides of the pairs."""
    name = "length_confound"
    threshold = (
        f"|mean paired difference| > {_pct(cfg.length_rel_diff)} of the mean length AND the same side longer in "
        f">= {_pct(cfg.length_consistency)} of pairs AND sign-test p < {cfg.length_p}"
    )
    if data.n < cfg.min_pairs:
        return _skipped(name, data, cfg)
    lp = np.array([len(tokenize(t)) for t in data.pos], dtype=float)
    ln = np.array([len(tokenize(t)) for t in data.neg], dtype=float)
    diff = lp - ln
    mean_len = float(np.concatenate([lp, ln]).mean())
    rel = float(diff.mean()) / mean_len if mean_len else 0.0
    n_pos, n_neg = int((diff > 0).sum()), int((diff < 0).sum())
    side = 1 if n_pos >= n_neg else 0
    consistency = max(n_pos, n_neg) / data.n
    p_value = min(1.0, 2 * _binom_tail(max(n_pos, n_neg), n_pos + n_neg))
    message = (
        f"mean length {lp.mean():.1f} tokens (positive) vs {ln.mean():.1f} (negative); mean paired difference "
        f"{diff.mean():+.1f} tokens ({rel:+.0%} of the mean); {_side(side)} longer in {_pct(consistency)} of pairs"
    )
    details = {
        "mean_positive": float(lp.mean()),
        "mean_negative": float(ln.mean()),
        "mean_paired_difference": float(diff.mean()),
        "relative_difference": rel,
        "longer_side": _side(side),
        "consistency": consistency,
        "sign_test_p": p_value,
    }
    fix = "Trim or extend so the two prefills of each pair are about the same length (guide, Phase 5: length confound)."
    flagged = abs(rel) > cfg.length_rel_diff and consistency >= cfg.length_consistency and p_value < cfg.length_p
    flagged = flagged and (rel > 0) == (side == 1)
    if not flagged:
        return Finding(name, "ok", message, threshold, abs(rel), fix=fix, details=MappingProxyType(details))
    order = np.argsort(-diff if side else diff)[:2]
    examples = tuple(e for i in order for e in (data.example(side, int(i)), data.example(1 - side, int(i))))
    return Finding(name, "error", message, threshold, abs(rel), examples, fix, MappingProxyType(details))


# --------------------------------------------------------------------------------------------
# frames and vocabulary


def _frames(data: PairText, cfg: AuditConfig) -> tuple[list[str], Counter[str]]:
    frames = [frame(t, cfg.frame_length) for t in (*data.pos, *data.neg)]
    return frames, Counter(frames)


def _frame_examples(data: PairText, frames: list[str], wanted: str, limit: int = 3) -> tuple[Example, ...]:
    out = []
    for j, f in enumerate(frames):
        if f == wanted:
            out.append(data.example(1 if j < data.n else 0, j % data.n))
            if len(out) == limit:
                break
    return tuple(out)


def check_template_clustering(data: PairText, cfg: AuditConfig) -> Finding:
    """One frame covering more than ``template_share`` of the lines."""
    name = "template_clustering"
    threshold = f"one frame in > {_pct(cfg.template_share)} of lines (both files) and >= {cfg.min_lines} lines"
    frames, counts = _frames(data, cfg)
    top, count = counts.most_common(1)[0]
    share = count / len(frames)
    top3 = [{"frame": f, "share": c / len(frames)} for f, c in counts.most_common(3)]
    message = f'most common frame "{top}" covers {_pct(share)} of {len(frames)} lines ({len(counts)} distinct frames)'
    fix = "Vary structure: rewrite some pairs in other frames (guide, Phase 5: template clustering)."
    details = MappingProxyType({"top_frames": top3, "distinct": len(counts)})
    if share > cfg.template_share and count >= cfg.min_lines:
        examples = _frame_examples(data, frames, top)
        return Finding(name, "warning", message, threshold, share, examples, fix, details)
    return Finding(name, "ok", message, threshold, share, fix=fix, details=details)


def check_syntactic_uniformity(data: PairText, cfg: AuditConfig) -> Finding:
    """Fewer than ``min_frames`` frames needed to cover ``frame_coverage`` of the lines."""
    name = "syntactic_uniformity"
    threshold = (
        f"fewer than {cfg.min_frames} distinct frames, counting the most common frames that together cover "
        f"{_pct(cfg.frame_coverage)} of lines"
    )
    if data.n < cfg.min_pairs:
        return _skipped(name, data, cfg)
    frames, counts = _frames(data, cfg)
    covered, needed = 0, 0
    for _, c in counts.most_common():
        covered += c
        needed += 1
        if covered >= cfg.frame_coverage * len(frames):
            break
    top = counts.most_common(3)
    listed = ", ".join(f'"{f}" {_pct(c / len(frames))}' for f, c in top)
    message = f"{needed} frame(s) cover {_pct(cfg.frame_coverage)} of lines ({len(counts)} distinct); top: {listed}"
    fix = (
        "Add frame types: at least 3-4 fundamentally different syntactic patterns (actions, documents, "
        "dialogue, internal states), or the vector may only fire in one frame (guide, Phase 5)."
    )
    details = MappingProxyType({"frames_for_coverage": needed, "distinct": len(counts)})
    if needed < cfg.min_frames:
        examples = _frame_examples(data, frames, top[0][0], 2)
        return Finding(name, "error", message, threshold, float(needed), examples, fix, details)
    return Finding(name, "ok", message, threshold, float(needed), fix=fix, details=details)


def content_words(text: str) -> set[str]:
    return {w for w in words(text) if w not in STOPWORDS and not w[0].isdigit() and len(w) > 1}


def check_vocabulary_clustering(data: PairText, cfg: AuditConfig) -> Finding:
    """One content word (not a stopword) in more than ``vocab_share`` of one class's lines."""
    name = "vocabulary_clustering"
    threshold = f"a content word in > {_pct(cfg.vocab_share)} of one class's lines and >= {cfg.min_lines} lines"
    n = data.n
    sets = {1: [content_words(t) for t in data.pos], 0: [content_words(t) for t in data.neg]}
    counts = {side: Counter(w for s in sets[side] for w in s) for side in (1, 0)}
    hits = []
    for w in set(counts[1]) | set(counts[0]):
        side = 1 if counts[1][w] >= counts[0][w] else 0
        c = counts[side][w]
        if c / n > cfg.vocab_share and c >= cfg.min_lines:
            hits.append((c / n, w, side, counts[1 - side][w] / n))
    hits.sort(key=lambda h: (-h[0], h[1]))
    fix = "Use synonyms and vary wording across pairs (guide, Phase 5: vocabulary clustering)."
    if not hits:
        top = max(((c / n, w) for side in (1, 0) for w, c in counts[side].items()), default=(0.0, "-"))
        msg = f'no content word is over-used (most common: "{top[1]}" in {_pct(top[0])} of one class)'
        return Finding(name, "ok", msg, threshold, top[0], fix=fix)
    listed = "; ".join(
        f'"{w}" {_pct(s)} of {_side(side)} ({_pct(o)} of {_side(1 - side)})' for s, w, side, o in hits[:8]
    )
    more = f" (and {len(hits) - 8} more)" if len(hits) > 8 else ""
    examples = []
    for _, w, side, _ in hits[:3]:
        i = next(i for i in range(n) if w in sets[side][i])
        examples.append(data.example(side, i))
    examples = list(dict.fromkeys(examples))
    details = MappingProxyType(
        {"words": [{"word": w, "class": _side(sd), "share": s, "other_share": o} for s, w, sd, o in hits]}
    )
    return Finding(
        name,
        "warning",
        f"{len(hits)} over-used content word(s): {listed}{more}",
        threshold,
        hits[0][0],
        tuple(examples),
        fix,
        details,
    )
