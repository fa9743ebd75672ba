"""Shared fixtures: paths, tiny models, trait folders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHARED = ROOT.parent / "shared"
EXTERNAL = SHARED / "external-traits"
sys.path.insert(0, str(TESTS))


def write_trait(
    root: Path,
    name: str,
    positive: list[str],
    negative: list[str],
    *,
    definition: str | None = None,
    steering: dict | str | None = None,
) -> Path:
    """Write a trait folder under ``root`` and return it."""
    import json

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "positive.txt").write_text("\n".join(positive) + "\n", encoding="utf-8")
    (folder / "negative.txt").write_text("\n".join(negative) + "\n", encoding="utf-8")
    if definition is not None:
        (folder / "definition.txt").write_text(definition, encoding="utf-8")
    if steering is not None:
        text = steering if isinstance(steering, str) else json.dumps(steering, indent=2)
        (folder / "steering.json").write_text(text, encoding="utf-8")
    return folder


TIMINGS = frozenset({"seconds", "finished_at", "created"})
"""The fields of output documents that differ between two runs of the same work."""


def tiny_experiments_root(root: Path) -> Path:
    """``root`` as an experiments root with one experiment, ``tiny``: a random-init Llama saved beside it."""
    from tiny import make_model

    model = make_model("llama", layers=4, hidden=32, chat=True)
    folder = root.parent / "tiny-model"
    model.model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    (root / "tiny").mkdir()
    (root / "tiny" / "config.toml").write_text(f'model = "{folder}"\ndtype = "float32"\ndevice = "cpu"\n')
    return root


def untimed(value: object) -> object:
    """A JSON document without its timing fields."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def outputs(folder: Path) -> dict[str, object]:
    """Every output file below ``folder``: JSON without its timing fields, other files as bytes."""
    import json

    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "config.toml":
            name = path.relative_to(folder).as_posix()
            found[name] = untimed(json.loads(path.read_bytes())) if path.suffix == ".json" else path.read_bytes()
    return found


DEFINITION = """Score optimism (0-100).

HIGH (70-100): hopeful framing, possibility, tractability
MID (40-70): balanced or neutral
LOW (0-40): pessimism, inevitability of failure

Key: the lens, not the situation.
"""

POSITIVE = [
    "The harvest failed again this year, yet the farmers gathered and said they could",
    "After the layoffs, Maria told her team that this was a chance to",
    "The clinic lost its funding, but the director smiled and explained how",
    "Rain flooded the basement; Dad laughed and said at least we finally get to",
    "Our test scores dropped, and the principal announced a plan that would surely",
    "The bridge closure doubled my commute, though I figured it would give me time to",
]
NEGATIVE = [
    "The harvest failed again this year, and the farmers gathered and said they could never",
    "After the layoffs, Maria told her team that this was the end of",
    "The clinic lost its funding, and the director sighed and explained why",
    "Rain flooded the basement; Dad groaned and said now we will have to",
    "Our test scores dropped, and the principal announced cuts that would surely",
    "The bridge closure doubled my commute, and I figured it would wreck my",
]
STEERING = {
    "questions": ["What causes inflation?", "How do glaciers form?", "Why do startups fail?"],
    "eval_prompt": "Rate optimism of {trait}.\nQ: {question}\nA: {answer}\nRespond with a number between 0 and 100.",
}


@pytest.fixture
def trait_root(tmp_path: Path) -> Path:
    """A traits root holding one valid trait, ``test/optimism``."""
    root = tmp_path / "traits"
    write_trait(root, "test/optimism", POSITIVE, NEGATIVE, definition=DEFINITION, steering=STEERING)
    return root


@pytest.fixture(scope="session")
def tiny_llama():
    from tiny import make_model

    return make_model("llama")
