"""What a stage records about its judge: its description and usage for one trait's run.

A judge shared by several traits (the sequential pipeline builds one for all of them) notes the
prompt of every trait it scored and counts every request since it was made. One trait's outputs
record only that trait's part, so they are the same whether the trait ran alone, after others, or
in its own executor task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["judge_for_trait", "usage_since"]


def judge_for_trait(description: Mapping[str, Any], trait: str) -> dict[str, Any]:
    """A judge's description with only the prompt hashes of ``trait`` among the per-trait ones.

    A judge notes each trait's prompt (``trait:{name}``, ``continuation:{name}``) as it scores it,
    so a judge shared by several traits describes them all; one trait's results name its own.
    """
    found = dict(description)
    hashes = found.get("prompt_hashes")
    if isinstance(hashes, Mapping):
        found["prompt_hashes"] = {k: v for k, v in hashes.items() if ":" not in k or k.split(":", 1)[1] == trait}
    return found


def usage_since(now: Mapping[str, Any], before: Mapping[str, Any] | None) -> dict[str, Any]:
    """The judge's usage counted from ``before`` (every number is a difference); ``now`` when ``before`` is None.

    ``last_error`` is kept when it changed or failures were counted since ``before``, else ``None``.
    """
    if before is None:
        return dict(now)
    found: dict[str, Any] = {}
    for key, value in now.items():
        earlier = before.get(key, 0)
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        found[key] = value - earlier if numeric and isinstance(earlier, int | float) else value
    if now.get("last_error") == before.get("last_error") and not found.get("failures"):
        found["last_error"] = None
    return found
