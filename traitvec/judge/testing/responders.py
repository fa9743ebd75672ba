"""Responders for :class:`~traitvec.judge.testing.JudgeServer`: rule-based scores, a scripted queue, a key echo."""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

from .replies import Completion, Fault, Reply, Responder, prompt_text, request_headers

__all__ = ["DEFAULT_KEYWORDS", "EchoKeyResponder", "KeywordResponder", "ScriptedResponder"]

DEFAULT_KEYWORDS = (
    "hope",
    "hopeful",
    "optimistic",
    "bright",
    "opportunity",
    "definitely",
    "certainly",
    "absolutely",
    "wonderful",
    "exciting",
)
_STOPWORDS = frozenset("with from that this than into onto about only their there over under more less also".split())


def _block(text: str, name: str) -> str | None:
    start, end = f"[{name} START]", f"[{name} END]"
    i = text.rfind(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start) : j].strip() if i >= 0 and j >= 0 else None


class KeywordResponder:
    """Deterministic scores derived from the answer text, for end-to-end tests and benchmarks.

    It reads the text between ``[ANSWER START]`` and ``[ANSWER END]`` (or ``[CONTINUATION START]``
    / ``[CONTINUATION END]``) of the request's prompt and answers with a logprob completion whose
    expected score is exactly the rule's value, with 0.9 of the probability on that number:

    - coherence prompts (they contain ``Score coherence``): ``100 × (alphabetic words / words) ×
      min(1, distinct words / words / 0.6)`` — fluent text scores high, loops and gibberish low;
      an empty answer scores 0;
    - relevance prompts (they contain ``Score relevance``): ``100 × min(1, 2 × shared / asked)``,
      where ``asked`` counts the question's distinct words of four letters or more (stopwords
      aside) and ``shared`` those of them the answer contains — an answer about the question
      scores high, one about something else 0; a question with no such words scores 100;
    - every other prompt (trait, continuation): ``min(100, 10 + 30 × k)`` where ``k`` counts the
      distinct keywords present as whole words (case-insensitive). Keywords are ``keywords`` plus
      the words of four letters or more on the rubric's ``HIGH`` lines.

    Args:
        keywords: words that signal the trait (default :data:`DEFAULT_KEYWORDS`).
        mass: probability put on the score token (the rest on non-number tokens).
    """

    def __init__(self, keywords: Iterable[str] = DEFAULT_KEYWORDS, *, mass: float = 0.9) -> None:
        self.keywords = frozenset(word.lower() for word in keywords)
        self.mass = mass

    def score(self, prompt: str) -> int:
        """The rule's score for one prompt."""
        if "Score coherence" in prompt:
            return self.coherence(_block(prompt, "ANSWER") or "")
        if "Score relevance" in prompt:
            return self.relevance(_block(prompt, "QUESTION") or "", _block(prompt, "ANSWER") or "")
        text = _block(prompt, "CONTINUATION")
        if text is None:
            text = _block(prompt, "ANSWER") or ""
        keywords = set(self.keywords)
        for line in prompt.splitlines():
            if line.strip().upper().startswith("HIGH"):
                words = re.findall(r"[a-z]{4,}", line.lower())
                keywords.update(w for w in words if w not in _STOPWORDS)
        present = set(re.findall(r"[a-z]+", text.lower()))
        return min(100, 10 + 30 * len(keywords & present))

    @staticmethod
    def coherence(text: str) -> int:
        """Coherence from text statistics: share of alphabetic words times a repetition penalty."""
        tokens = text.split()
        if not tokens:
            return 0
        words = [t.lower().strip(".,;:!?\"'()") for t in tokens if re.fullmatch(r"[A-Za-z'\-]+[.,;:!?\"')]*", t)]
        if not words:
            return 0
        alpha = len(words) / len(tokens)
        distinct = len(set(words)) / len(words)
        return round(100 * alpha * min(1.0, distinct / 0.6))

    @staticmethod
    def relevance(question: str, answer: str) -> int:
        """Relevance from shared words: the share of the question's content words the answer uses, doubled."""
        asked = {w for w in re.findall(r"[a-z]{4,}", question.lower()) if w not in _STOPWORDS}
        if not asked:
            return 100
        shared = asked & set(re.findall(r"[a-z]+", answer.lower()))
        return round(100 * min(1.0, 2 * len(shared) / len(asked)))

    def __call__(self, request: dict[str, Any]) -> Reply:
        value = self.score(prompt_text(request))
        rest = (1.0 - self.mass) / 2
        return Completion.from_probs({str(value): self.mass, "The": rest, "I": rest})


class ScriptedResponder:
    """Plays ``script`` one reply per request (in arrival order), then answers with ``then``.

    Args:
        script: replies for the first requests, e.g. ``[Fault.rate_limited("1"), Fault.server_error()]``.
        then: a reply or responder for every later request (default :class:`KeywordResponder`).
    """

    def __init__(self, script: Iterable[Reply], *, then: Reply | Responder | None = None) -> None:
        self._queue: deque[Reply] = deque(script)
        self._lock = threading.Lock()
        self._then = then if then is not None else KeywordResponder()

    @property
    def remaining(self) -> int:
        """Replies left in the script."""
        with self._lock:
            return len(self._queue)

    def __call__(self, request: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if isinstance(self._then, Completion | Fault):
            return self._then
        return self._then(request)


Place = Literal["tokens", "text", "error", "unauthorized", "headers", "status"]


class EchoKeyResponder:
    """A hostile proxy: it puts the request's bearer token (the API key) back into its reply.

    Args:
        place: where the key goes —
            ``"tokens"``: the top logprob tokens (no number among them, so the judge abstains and
            shows them in its reason), and the text;
            ``"text"``: the message content of a reply without logprobs (text mode);
            ``"error"``: the message of a 500 error body (retried, then recorded as failed);
            ``"unauthorized"``: the message of a 401 body (``Incorrect API key provided: KEY``);
            ``"headers"``: the ``x-request-id`` and another response header of a normal completion;
            ``"status"``: the reason phrase of a 500 status line, and its body.
        score: the score token of the ``"headers"`` completion.
    """

    def __init__(self, place: Place, *, score: str = "70") -> None:
        self.place = place
        self.score = score

    def __call__(self, request: dict[str, Any]) -> Reply:
        auth = request_headers().get("authorization", "")
        key = auth.split(" ", 1)[1] if " " in auth else auth
        message = f"upstream said: key {key} is over quota"
        if self.place == "tokens":
            return Completion.from_probs({key: 0.6, f" {key}": 0.3, "The": 0.1}, text=key)
        if self.place == "text":
            return Completion(None, text=f"I refuse; your key is {key}")
        if self.place == "error":
            return Fault(500, _error_body(message, "server_error"))
        if self.place == "unauthorized":
            return Fault(401, _error_body(f"Incorrect API key provided: {key}", "invalid_request_error"))
        if self.place == "headers":
            return Completion({self.score: -0.01}, headers={"x-request-id": f"req-{key}", "x-echo": auth})
        return Fault(500, _error_body(message, "server_error"), reason=f"Key {key} rejected")


def _error_body(message: str, kind: str) -> str:
    return json.dumps({"error": {"message": message, "type": kind}})
