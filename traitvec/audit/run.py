"""Running the audit: :func:`audit_trait` and :func:`audit_traits` run every registered check on a trait."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import TraitDataError, TraitNotFoundError
from ..traits import DEFAULT_TRAITS_ROOT, Trait, load_trait, trait_dir
from .checks import CATALOG, CHECKS, STRUCTURE
from .config import AuditConfig
from .findings import Example, Finding
from .registry import AuditInput
from .report import AuditReport

__all__ = ["audit_trait", "audit_traits"]

logger = logging.getLogger(__name__)


def audit_trait(trait: Trait | str | os.PathLike[str], *, config: AuditConfig | None = None) -> AuditReport:
    """Audit one trait: a loaded :class:`~traitvec.traits.Trait`, or the path of a trait folder.

    A folder the loader refuses is not an exception here: the report carries one ``structure``
    error with the loader's message, and every other check is ``info`` (not run).

    Args:
        trait: a loaded trait, or a folder holding ``positive.txt`` / ``negative.txt`` (or ``.jsonl``).
        config: thresholds; the defaults follow the dataset guide.

    Returns:
        The :class:`AuditReport`, one finding per check.

    Raises:
        TraitNotFoundError: ``trait`` is a path that is not a folder.

    Example:
        >>> report = audit_trait("datasets/traits/states/optimism")
        >>> report.passed, report.finding("length_confound").severity
        (True, 'ok')
    """
    cfg = config or AuditConfig()
    if isinstance(trait, Trait):
        return _audit_loaded(trait, cfg)
    folder = Path(trait).resolve()
    if not folder.is_dir():
        raise TraitNotFoundError(f"{trait}: no such trait folder; pass a folder holding positive.txt and negative.txt")
    name = f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name
    root = folder.parent.parent if folder.parent.name else folder.parent
    try:
        loaded = load_trait(name, root)
    except TraitDataError as err:
        return _structure_failure(name, folder, err)
    return _audit_loaded(loaded, cfg)


def audit_traits(
    names: Sequence[str], root: str | os.PathLike[str] = DEFAULT_TRAITS_ROOT, *, config: AuditConfig | None = None
) -> list[AuditReport]:
    """Audit several traits by name (``category/trait`` under ``root``).

    Every name is resolved before any audit runs, so a typo fails fast. A folder that exists but
    fails the loader's validation becomes a report with a ``structure`` error, so one broken folder
    does not hide the reports on the others.

    Args:
        names: trait names relative to ``root``.
        root: the traits root.
        config: thresholds; the defaults follow the dataset guide.

    Raises:
        TraitNotFoundError: a name is not a folder under ``root``.
        TraitDataError: a name would leave ``root``.

    Example:
        >>> reports = audit_traits(list_traits("datasets/traits"), "datasets/traits")
        >>> print(format_reports(reports))
    """
    cfg = config or AuditConfig()
    folders = [trait_dir(name, root) for name in names]
    reports = []
    for name, folder in zip(names, folders, strict=True):
        logger.debug("auditing %s", name)
        try:
            trait = load_trait(name, root)
        except TraitDataError as err:
            reports.append(_structure_failure(name, folder, err))
            continue
        reports.append(_audit_loaded(trait, cfg))
    return reports


def _audit_loaded(trait: Trait, cfg: AuditConfig) -> AuditReport:
    data = AuditInput.from_trait(trait)
    target = "" if trait.n_pairs >= 150 else " (the guide targets 150-200+ pairs)"
    structure = Finding(
        STRUCTURE,
        "ok",
        f"{trait.n_pairs} pairs in {data.pairs.pos_file} / {data.pairs.neg_file}, paired by line, no blank, "
        f"duplicate or identical pairs{target}",
        "the loader's validation (traitvec.traits.load_trait)",
        float(trait.n_pairs),
    )
    findings = [structure, *(check.run(data, cfg) for check in CATALOG)]
    return AuditReport(trait.name, trait.path, trait.n_pairs, tuple(findings))


_WHERE = re.compile(r"([\w.-]+\.(?:txt|jsonl|json)) line (\d+)")


def _structure_failure(name: str, folder: Path, err: TraitDataError) -> AuditReport:
    message = " ".join(str(err).split())
    examples: tuple[Example, ...] = ()
    match = _WHERE.search(message)
    if match:
        file, line = match.group(1), int(match.group(2))
        try:
            lines = (folder / file).read_text(encoding="utf-8-sig").splitlines()
            examples = (Example(file, line, lines[line - 1] if 0 < line <= len(lines) else ""),)
        except (OSError, UnicodeDecodeError):
            examples = (Example(file, line, ""),)
    structure = Finding(
        STRUCTURE,
        "error",
        message,
        "the loader's validation (traitvec.traits.load_trait)",
        examples=examples,
        fix="Fix the folder as the message says; nothing else can be audited until it loads.",
    )
    skipped = [Finding(check, "info", "not run: the folder failed to load (see structure)") for check in CHECKS[1:]]
    return AuditReport(name, folder, None, (structure, *skipped))
