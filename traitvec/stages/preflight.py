"""Checks made before any model loads: the traits load, the judge answers, the output folders can be written.

A command that judges builds its judge first and checks it with one cheap request
(:func:`prepare_judge`): a smoke-test judge announces itself before any other work, and a judge
that cannot be reached fails within seconds, naming its URL, instead of after extraction. Each
API judge sends its check request once, so the command line can check it before it imports the
heavy stages and :func:`~traitvec.stages.pipeline.run_pipeline` does not ask again. An
experiment folder is checked writable (:func:`check_writable`) just before a model is loaded to
compute its outputs (:class:`~traitvec.stages.pipeline.CheckedPool`).

This module imports neither torch nor transformers, so the checks run before those load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ConfigError, TraitvecError
from ..judge import Judge, JudgeSettings, make_judge
from ..judge.prompts import trait_template
from ..traits import DEFAULT_TRAITS_ROOT, Trait, load_trait, resolve_trait_name

__all__ = ["JudgeSource", "prepare_judge", "check_writable", "load_traits", "resolve_trait"]

JudgeSource = Judge | JudgeSettings | Callable[[], Judge] | None
"""A judge, its settings, a function that makes one, or None for :func:`~traitvec.judge.make_judge`."""


def prepare_judge(source: JudgeSource, scored: Sequence[Trait] = ()) -> Judge:
    """The judge ``source`` describes, built now, with a rubric for the ``scored`` traits, checked with one request.

    Building it first means its warnings (a smoke-test local judge) come before any other work; a
    local judge loads its model only when it first scores. A trait it will score that has no rubric
    (no ``definition.txt``, no ``eval_prompt``) is refused next, and ``judge.check()`` fails within
    seconds, naming the URL, when an API judge cannot be reached (an API judge sends its check
    request once; a local judge only checks its score cache).

    Args:
        source: a judge (used as it is), :class:`~traitvec.judge.JudgeSettings` (``.make()``), a
            function that makes one, or ``None`` for :func:`~traitvec.judge.make_judge`.
        scored: the traits whose trait scores it will give (steering, ``traitvec judge``; vetting
            scores continuations, which need no rubric).

    Raises:
        JudgeError: a bad judge setting, a trait without a rubric, or an unreachable or refusing judge.

    Example:
        >>> judge = prepare_judge(JudgeSettings(base_url="http://localhost:8000/v1"), [trait])
    """
    if isinstance(source, Judge):
        judge = source
    elif isinstance(source, JudgeSettings):
        judge = source.make()
    elif source is not None:
        judge = source()
    else:
        judge = make_judge()
    for trait in scored:
        trait_template(trait)  # raises JudgeError naming the trait's folder
    judge.check()
    return judge


def check_writable(folder: Path, setting: str) -> None:
    """Refuse an output folder traitvec cannot write in, before any work is spent on its outputs.

    Checks ``folder`` (which exists: it holds ``config.toml``) and its ``extraction/`` and
    ``steering/`` folders when they exist, by creating and removing an empty file in each.

    Args:
        folder: an experiment folder.
        setting: the setting (or argument) that chose the folder, named in the error.

    Raises:
        ConfigError: the folder is read-only (or otherwise refuses new files).
    """
    for where in (folder, folder / "extraction", folder / "steering"):
        if not where.is_dir():
            continue
        try:
            handle, name = tempfile.mkstemp(prefix=".traitvec-write-check-", dir=where)
            os.close(handle)
            os.unlink(name)
        except OSError as err:
            raise ConfigError(
                f"cannot write in {where} ({err.strerror or err}): every output of an experiment is written "
                f"beneath its folder; make it writable, or copy the experiment folder (its config.toml) to a "
                f"writable {setting}",
                setting=setting,
            ) from None


def resolve_trait(name: str, root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> str:
    """``category/trait`` for a trait name or a trait folder path inside ``root`` (as tab completion gives).

    :func:`traitvec.traits.resolve_trait_name`; a category named instead of a trait is refused when
    the trait is loaded, with the category's traits listed.
    """
    return resolve_trait_name(name, root)


def load_traits(traits: Sequence[str | Trait], root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT) -> list[Trait]:
    """Load every named trait (Trait objects pass through); one error listing every trait that failed.

    A name may also be the trait's folder inside ``root`` (:func:`resolve_trait`).
    """
    loaded, errors = [], []
    for item in traits:
        if isinstance(item, Trait):
            loaded.append(item)
            continue
        try:
            loaded.append(load_trait(resolve_trait(item, root), root))
        except TraitvecError as err:
            errors.append(str(err))
    if errors:
        raise ConfigError(" | ".join(errors))
    return loaded
