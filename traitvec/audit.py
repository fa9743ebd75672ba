"""Audit trait datasets for label leaks, clustering and confounds (the dataset guide's Phases 5-7).

``traitvec audit`` and :func:`audit_trait` run every check below on a trait folder and report
each one, passing or not, as a :class:`Finding` with a severity, the threshold it was held to, the
measured value and the lines (file and line number) that triggered it.

==========================  ========  =================================================================
check                       severity  flagged when
==========================  ========  =================================================================
structure                   error     the loader refuses the folder (unpaired lines, blanks, duplicates,
                                      identical pairs, a bad steering.json or eval_prompt)
lexical_leak                error     a word or bigram is in >= 80% of one class's lines and >= 60 points
                                      less often in the other (<= 20% at the threshold)
opener_leak                 error     a first word / first two words start >= 50% of one class's lines
                                      and >= 50 points fewer of the other's
punctuation_leak            error     a mark is contained in / starts / ends >= 50% of one class's lines
                                      and >= 50 points fewer of the other's
person_confound             warning   first-person lines >= 50% of one class, >= 30 points fewer in the other
length_confound             error     |mean paired length difference| > 10% of the mean length, the same
                                      side longer in >= 70% of pairs, sign test p < 0.05
template_clustering         warning   one frame covers > 20% of lines
syntactic_uniformity        error     fewer than 3 frames are needed to cover 80% of lines
vocabulary_clustering       warning   a content word is in > 10% of one class's lines
cross_distribution          error     a bag-of-words classifier without the trait words reaches paired
                                      accuracy >= 0.80 (warning from 0.70), binomial p < 0.05
definition_format           error     definition.txt missing, or no HIGH/MID/LOW band or Key line
                                      (warning: bands without score ranges)
definition_length           warning   > 12 non-empty lines or > 200 words
steering_questions          warning   steering.json missing, outside 15-20 questions, or repeats
steering_overlap            warning   a question shares 5 consecutive words with a prefill, or half its
                                      content words
==========================  ========  =================================================================

Statistical checks are skipped (``info``) below 10 pairs, and a token or frame is only flagged
when at least 5 lines carry it. The *frame* of a line and the *trait words* of the classifier are
defined in :mod:`traitvec._audit_checks` and :mod:`traitvec._audit_crossdist`; ``docs/audit.md``
explains every check, its rationale and how to fix what it finds.

The checks live in three private modules (text features and prefill checks; the classifier;
definition.txt and steering.json) so that each stays one concept of a readable size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _audit_checks as checks
from ._audit_checks import AuditConfig, Example, Finding, PairText, Severity
from ._audit_crossdist import check_cross_distribution, trait_words
from ._audit_files import (
    check_definition_format,
    check_definition_length,
    check_steering_overlap,
    check_steering_questions,
)
from .errors import TraitDataError, TraitNotFoundError
from .traits import DEFAULT_TRAITS_ROOT, Trait, load_trait, trait_dir

__all__ = [
    "AuditConfig",
    "AuditReport",
    "Example",
    "Finding",
    "Severity",
    "CHECKS",
    "audit_trait",
    "audit_traits",
    "format_reports",
    "reports_to_dict",
    "trait_words",
]

logger = logging.getLogger(__name__)

_PAIR_CHECKS: tuple[Callable[[PairText, AuditConfig], Finding], ...] = (
    checks.check_lexical_leak,
    checks.check_opener_leak,
    checks.check_punctuation_leak,
    checks.check_person_confound,
    checks.check_length_confound,
    checks.check_template_clustering,
    checks.check_syntactic_uniformity,
    checks.check_vocabulary_clustering,
    check_cross_distribution,
)
_FILE_CHECKS: tuple[Callable[[Trait, AuditConfig], Finding], ...] = (
    check_definition_format,
    check_definition_length,
    check_steering_questions,
    check_steering_overlap,
)
CHECKS: tuple[str, ...] = (
    "structure",
    "lexical_leak",
    "opener_leak",
    "punctuation_leak",
    "person_confound",
    "length_confound",
    "template_clustering",
    "syntactic_uniformity",
    "vocabulary_clustering",
    "cross_distribution",
    "definition_format",
    "definition_length",
    "steering_questions",
    "steering_overlap",
)
_RANK: dict[str, int] = {"error": 0, "warning": 1, "ok": 2, "info": 3}


@dataclass(frozen=True)
class AuditReport:
    """Every check's finding for one trait.

    Attributes:
        trait: ``"category/trait"``.
        path: the trait folder.
        n_pairs: number of pairs, or ``None`` when the folder failed to load.
        findings: one :class:`Finding` per check in :data:`CHECKS` order.
    """

    trait: str
    path: Path
    n_pairs: int | None
    findings: tuple[Finding, ...]

    @property
    def errors(self) -> tuple[Finding, ...]:
        """Findings of severity ``"error"``."""
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """Findings of severity ``"warning"``."""
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def passed(self) -> bool:
        """True when no check failed at error level."""
        return not self.errors

    @property
    def status(self) -> Severity:
        """``"error"``, ``"warning"`` or ``"ok"``: the worst severity found."""
        return "error" if self.errors else "warning" if self.warnings else "ok"

    def finding(self, check: str) -> Finding:
        """The finding of one check by name.

        Raises:
            LookupError: no such check; the message lists the valid names.
        """
        for f in self.findings:
            if f.check == check:
                return f
        raise LookupError(f"no check named {check!r}; checks are: {', '.join(CHECKS)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the report."""
        return {
            "trait": self.trait,
            "path": str(self.path),
            "pairs": self.n_pairs,
            "status": self.status,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }


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
    data = PairText.from_trait(trait)
    target = "" if trait.n_pairs >= 150 else " (the guide targets 150-200+ pairs)"
    structure = Finding(
        "structure",
        "ok",
        f"{trait.n_pairs} pairs in {data.pos_file} / {data.neg_file}, paired by line, no blank, duplicate or "
        f"identical pairs{target}",
        "the loader's validation (traitvec.traits.load_trait)",
        float(trait.n_pairs),
    )
    findings = [
        structure,
        *(check(data, cfg) for check in _PAIR_CHECKS),
        *(check(trait, cfg) for check in _FILE_CHECKS),
    ]
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
        "structure",
        "error",
        message,
        "the loader's validation (traitvec.traits.load_trait)",
        examples=examples,
        fix="Fix the folder as the message says; nothing else can be audited until it loads.",
    )
    skipped = [Finding(check, "info", "not run: the folder failed to load (see structure)") for check in CHECKS[1:]]
    return AuditReport(name, folder, None, (structure, *skipped))


# --------------------------------------------------------------------------------------------
# reports


def _clip(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_reports(reports: Sequence[AuditReport], *, max_examples: int = 4) -> str:
    """The text report: one block per trait (errors first, then warnings, then passing checks) and a summary.

    Example:
        >>> print(format_reports([audit_trait("datasets/traits/states/optimism")]))
    """
    blocks = []
    for report in reports:
        pairs = f"{report.n_pairs} pairs" if report.n_pairs is not None else "not loaded"
        verdict = {"error": "FAIL", "warning": "PASS with warnings", "ok": "PASS"}[report.status]
        head = (
            f"== {report.trait} ({pairs}): {verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        )
        lines = [head]
        findings = sorted(report.findings, key=lambda f: _RANK[f.severity])
        if report.n_pairs is None:  # failed to load: the other checks did not run
            findings = [f for f in findings if f.check == "structure"]
        for f in findings:
            label = f.severity.upper() if f.severity in ("error", "warning") else f.severity
            lines.append(f"  {label:<8} {f.check:<22} {f.message}")
            if f.severity in ("error", "warning"):
                indent = " " * 34
                if f.threshold:
                    lines.append(f"{indent}threshold: {f.threshold}")
                if f.fix:
                    lines.append(f"{indent}fix: {f.fix}")
                for e in f.examples[:max_examples]:
                    lines.append(f"{indent}{e.file}:{e.line}: {_clip(e.text)}")
        if report.n_pairs is None:
            lines.append(f"  {'info':<8} {'(other checks)':<22} not run: fix the structure error first")
        blocks.append("\n".join(lines))
    blocks.append(_summary(reports))
    return "\n\n".join(blocks)


def _summary(reports: Sequence[AuditReport]) -> str:
    failed = sum(1 for r in reports if r.status == "error")
    warned = sum(1 for r in reports if r.status == "warning")
    clean = len(reports) - failed - warned
    by_check = Counter(f.check for r in reports for f in r.errors)
    line = f"audited {len(reports)} trait(s): {failed} with errors, {warned} with warnings only, {clean} clean"
    if by_check:
        line += "; errors by check: " + ", ".join(f"{c} {n}" for c, n in by_check.most_common())
    return line


def reports_to_dict(reports: Sequence[AuditReport], *, config: AuditConfig | None = None) -> dict[str, Any]:
    """The JSON report: a summary, the thresholds used, and every trait's findings."""
    return {
        "format": "traitvec-audit/1",
        "summary": {
            "traits": len(reports),
            "with_errors": sum(1 for r in reports if r.status == "error"),
            "with_warnings_only": sum(1 for r in reports if r.status == "warning"),
            "clean": sum(1 for r in reports if r.status == "ok"),
            "text": _summary(reports),
        },
        "config": dataclasses.asdict(config or AuditConfig()),
        "traits": [r.to_dict() for r in reports],
    }
