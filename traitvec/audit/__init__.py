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
answer_only_difference      error     (conversation traits) a pair differs before the final answer or has
                                      the same answer (warning: only case/spacing/argument order differ)
answer_length_confound      error     (conversation traits) length_confound on the final answers
answer_opener_leak          error     (conversation traits) opener_leak on the final answers; a tool-call
                                      answer opens with "[tool call]" and its function
definition_format           error     definition.txt missing, or no HIGH/MID/LOW band or Key line
                                      (warning: bands without score ranges)
definition_length           warning   > 12 non-empty lines or > 200 words
steering_questions          warning   steering.json missing, outside 15-20 questions, or repeats
steering_overlap            warning   a question shares 5 consecutive words with a prefill, or half its
                                      content words
==========================  ========  =================================================================

Statistical checks are skipped (``info``) below 10 pairs, and a token or frame is only flagged
when at least 5 lines carry it. The *frame* of a line and the *trait words* of the classifier are
defined in :mod:`traitvec.audit.text` and :mod:`traitvec.audit.crossdist`; ``docs/audit.md``
explains every check, its rationale and how to fix what it finds.

The package: :mod:`~traitvec.audit.registry` (checks register themselves with a decorator, by
name and by what they read), one module per family of checks (:mod:`~traitvec.audit.leaks`,
:mod:`~traitvec.audit.confounds`, :mod:`~traitvec.audit.clustering`,
:mod:`~traitvec.audit.crossdist`, :mod:`~traitvec.audit.conversations`, :mod:`~traitvec.audit.files`),
:mod:`~traitvec.audit.checks`
(the families in report order), :mod:`~traitvec.audit.text` (tokens, frames, :class:`PairText`),
:mod:`~traitvec.audit.findings`, :mod:`~traitvec.audit.config`, :mod:`~traitvec.audit.run`
(:func:`audit_trait`, :func:`audit_traits`) and :mod:`~traitvec.audit.report` (text and JSON).
"""

from __future__ import annotations

from .checks import CHECKS
from .config import AuditConfig
from .crossdist import trait_words
from .findings import Example, Finding, Severity
from .report import AuditReport, format_reports, reports_to_dict
from .run import audit_trait, audit_traits

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
