"""The catalogue of audit checks: every family of checks, in report order.

Importing a family module registers its checks (:mod:`traitvec.audit.registry`); :data:`FAMILIES`
fixes the order of the families, and so of every report's findings and of :data:`CHECKS`.
A new check goes into the module of its family, decorated with
:func:`~traitvec.audit.registry.pair_check` or :func:`~traitvec.audit.registry.trait_check`; a new
family is a new module, imported here and named in :data:`FAMILIES`.
"""

from __future__ import annotations

from .clustering import check_syntactic_uniformity, check_template_clustering, check_vocabulary_clustering
from .confounds import check_length_confound, check_person_confound
from .conversations import check_answer_length_confound, check_answer_only_difference, check_answer_opener_leak
from .crossdist import check_cross_distribution
from .files import check_definition_format, check_definition_length, check_steering_overlap, check_steering_questions
from .leaks import check_lexical_leak, check_opener_leak, check_punctuation_leak
from .registry import Check, catalog

__all__ = [
    "CATALOG",
    "CHECKS",
    "FAMILIES",
    "STRUCTURE",
    "check_answer_length_confound",
    "check_answer_only_difference",
    "check_answer_opener_leak",
    "check_cross_distribution",
    "check_definition_format",
    "check_definition_length",
    "check_length_confound",
    "check_lexical_leak",
    "check_opener_leak",
    "check_person_confound",
    "check_punctuation_leak",
    "check_steering_overlap",
    "check_steering_questions",
    "check_syntactic_uniformity",
    "check_template_clustering",
    "check_vocabulary_clustering",
]

FAMILIES: tuple[str, ...] = ("leaks", "confounds", "clustering", "crossdist", "conversations", "files")
"""Family modules (under :mod:`traitvec.audit`) in report order: prefill checks first, then the answers of
conversation traits, then the files."""

STRUCTURE = "structure"
"""The first finding of every report: the loader's verdict on the folder (not a registered check)."""

CATALOG: tuple[Check, ...] = catalog(FAMILIES)
"""Every registered check, in report order."""

CHECKS: tuple[str, ...] = (STRUCTURE, *(check.name for check in CATALOG))
"""The name of every finding of a report, in order."""
