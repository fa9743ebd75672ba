"""Audit reports: :class:`AuditReport` (one trait's findings), the text report and the JSON report."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import CHECKS
from .config import AuditConfig
from .findings import Finding, Severity

__all__ = ["AuditReport", "format_reports", "reports_to_dict"]

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
