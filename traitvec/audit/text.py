"""The text the audit reads: tokens, words, frames and content words, and :class:`PairText`.

Pure computation on the prefills of a loaded :class:`~traitvec.traits.Trait` (a regex tokenizer,
no model); every check family (:mod:`~traitvec.audit.leaks`, :mod:`~traitvec.audit.confounds`,
:mod:`~traitvec.audit.clustering`, :mod:`~traitvec.audit.crossdist`, :mod:`~traitvec.audit.files`)
reads its features from here.

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
  (see :mod:`traitvec.audit.crossdist`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..traits import Prompt, Trait
from .findings import Example

__all__ = [
    "CONNECTIVES",
    "FIRST_PERSON",
    "STOPWORDS",
    "TOKEN_RE",
    "PairText",
    "content_words",
    "frame",
    "is_word",
    "norm_punct",
    "prompt_text",
    "tokenize",
    "words",
]

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


def is_word(token: str) -> bool:
    """True for a word or number token (it starts with a letter or digit), False for punctuation."""
    return token[0].isalnum()


def norm_punct(token: str) -> str:
    """A punctuation token in its normal form: curly quotes straight, dashes as ``—``, ``...`` as ``…``."""
    if token.startswith(".."):
        return "…"
    return _PUNCT_MAP.get(token, token)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (punctuation dropped, curly apostrophes straightened)."""
    return [t.lower().replace("’", "'") for t in tokenize(text) if is_word(t)]


def frame(text: str, length: int = 8) -> str:
    """The clause skeleton of a line (see the module docstring).

    Example:
        >>> frame("The paper had been retracted, but I needed a citation so I")
        'X , but X so X'
    """
    out: list[str] = []
    for token in tokenize(text):
        if is_word(token):
            low = token.lower()
            symbol = low if low in CONNECTIVES else "X"
        else:
            symbol = norm_punct(token)
        if out and out[-1] == symbol:
            continue
        out.append(symbol)
        if len(out) >= length:
            break
    return " ".join(out)


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` that are not stopwords, numbers or single letters."""
    return {w for w in words(text) if w not in STOPWORDS and not w[0].isdigit() and len(w) > 1}


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
        """Number of pairs."""
        return len(self.pos)

    def example(self, side: int, index: int) -> Example:
        """Example for pair ``index``; ``side`` 1 is positive, 0 negative."""
        text = self.pos[index] if side else self.neg[index]
        return Example(self.pos_file if side else self.neg_file, self.lines[index], text)
