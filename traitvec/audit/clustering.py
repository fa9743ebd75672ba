"""Clustering: too few sentence frames, or the same frame or word everywhere (guide, Phase 5).

- ``template_clustering`` (warning): one frame covers > 20% of lines;
- ``syntactic_uniformity`` (error): fewer than 3 frames are needed to cover 80% of lines;
- ``vocabulary_clustering`` (warning): a content word is in > 10% of one class's lines.

A line's *frame* is defined in :mod:`traitvec.audit.text`.
"""

from __future__ import annotations

from collections import Counter
from types import MappingProxyType

from ._common import pct, side_name, skipped
from .config import AuditConfig
from .findings import Example, Finding
from .registry import pair_check
from .text import PairText, content_words, frame

__all__ = ["check_syntactic_uniformity", "check_template_clustering", "check_vocabulary_clustering"]


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


@pair_check("template_clustering")
def check_template_clustering(data: PairText, cfg: AuditConfig) -> Finding:
    """One frame covering more than ``template_share`` of the lines."""
    name = "template_clustering"
    threshold = f"one frame in > {pct(cfg.template_share)} of lines (both files) and >= {cfg.min_lines} lines"
    frames, counts = _frames(data, cfg)
    top, count = counts.most_common(1)[0]
    share = count / len(frames)
    top3 = [{"frame": f, "share": c / len(frames)} for f, c in counts.most_common(3)]
    message = f'most common frame "{top}" covers {pct(share)} of {len(frames)} lines ({len(counts)} distinct frames)'
    fix = "Vary structure: rewrite some pairs in other frames (guide, Phase 5: template clustering)."
    details = MappingProxyType({"top_frames": top3, "distinct": len(counts)})
    if share > cfg.template_share and count >= cfg.min_lines:
        examples = _frame_examples(data, frames, top)
        return Finding(name, "warning", message, threshold, share, examples, fix, details)
    return Finding(name, "ok", message, threshold, share, fix=fix, details=details)


@pair_check("syntactic_uniformity")
def check_syntactic_uniformity(data: PairText, cfg: AuditConfig) -> Finding:
    """Fewer than ``min_frames`` frames needed to cover ``frame_coverage`` of the lines."""
    name = "syntactic_uniformity"
    threshold = (
        f"fewer than {cfg.min_frames} distinct frames, counting the most common frames that together cover "
        f"{pct(cfg.frame_coverage)} of lines"
    )
    if data.n < cfg.min_pairs:
        return skipped(name, data, cfg)
    frames, counts = _frames(data, cfg)
    covered, needed = 0, 0
    for _, c in counts.most_common():
        covered += c
        needed += 1
        if covered >= cfg.frame_coverage * len(frames):
            break
    top = counts.most_common(3)
    listed = ", ".join(f'"{f}" {pct(c / len(frames))}' for f, c in top)
    message = f"{needed} frame(s) cover {pct(cfg.frame_coverage)} of lines ({len(counts)} distinct); top: {listed}"
    fix = (
        "Add frame types: at least 3-4 fundamentally different syntactic patterns (actions, documents, "
        "dialogue, internal states), or the vector may only fire in one frame (guide, Phase 5)."
    )
    details = MappingProxyType({"frames_for_coverage": needed, "distinct": len(counts)})
    if needed < cfg.min_frames:
        examples = _frame_examples(data, frames, top[0][0], 2)
        return Finding(name, "error", message, threshold, float(needed), examples, fix, details)
    return Finding(name, "ok", message, threshold, float(needed), fix=fix, details=details)


@pair_check("vocabulary_clustering")
def check_vocabulary_clustering(data: PairText, cfg: AuditConfig) -> Finding:
    """One content word (not a stopword) in more than ``vocab_share`` of one class's lines."""
    name = "vocabulary_clustering"
    threshold = f"a content word in > {pct(cfg.vocab_share)} of one class's lines and >= {cfg.min_lines} lines"
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
        msg = f'no content word is over-used (most common: "{top[1]}" in {pct(top[0])} of one class)'
        return Finding(name, "ok", msg, threshold, top[0], fix=fix)
    listed = "; ".join(
        f'"{w}" {pct(s)} of {side_name(side)} ({pct(o)} of {side_name(1 - side)})' for s, w, side, o in hits[:8]
    )
    more = f" (and {len(hits) - 8} more)" if len(hits) > 8 else ""
    examples = []
    for _, w, side, _ in hits[:3]:
        i = next(i for i in range(n) if w in sets[side][i])
        examples.append(data.example(side, i))
    examples = list(dict.fromkeys(examples))
    details = MappingProxyType(
        {"words": [{"word": w, "class": side_name(sd), "share": s, "other_share": o} for s, w, sd, o in hits]}
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
