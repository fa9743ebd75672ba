"""The thresholds of every audit check: :class:`AuditConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["AuditConfig"]


@dataclass(frozen=True)
class AuditConfig:
    """Thresholds of every check (defaults from the dataset guide; see ``docs/audit.md``).

    Shares are fractions of a class's lines (0-1). A check that needs statistics is skipped, as
    ``info``, for traits with fewer than ``min_pairs`` pairs, and a token or frame is only flagged
    when at least ``min_lines`` lines carry it, so tiny datasets do not flag noise.

    Example:
        >>> strict = AuditConfig(leak_share=0.7)
        >>> report = audit_trait(trait, config=strict)
    """

    min_pairs: int = 10
    min_lines: int = 5
    leak_share: float = 0.8
    leak_gap: float = 0.6
    opener_share: float = 0.5
    opener_gap: float = 0.5
    punct_share: float = 0.5
    punct_gap: float = 0.5
    person_share: float = 0.5
    person_gap: float = 0.3
    length_rel_diff: float = 0.10
    length_consistency: float = 0.70
    length_p: float = 0.05
    frame_length: int = 8
    template_share: float = 0.20
    min_frames: int = 3
    frame_coverage: float = 0.80
    vocab_share: float = 0.10
    xdist_error: float = 0.80
    xdist_warning: float = 0.70
    xdist_p: float = 0.05
    xdist_folds: int = 5
    trait_word_pairs: int = 3
    scenario_jaccard: float = 0.2
    steering_min_questions: int = 15
    steering_max_questions: int = 20
    overlap_ngram: int = 5
    overlap_jaccard: float = 0.5
    definition_max_lines: int = 12
    definition_max_words: int = 200

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(
                    f"AuditConfig.{f.name} = {value!r}; expected a positive integer", setting=f"AuditConfig.{f.name}"
                )
            if f.type == "float" and (not isinstance(value, int | float) or not 0.0 <= value <= 1.0):
                raise ConfigError(
                    f"AuditConfig.{f.name} = {value!r}; expected a fraction between 0 and 1",
                    setting=f"AuditConfig.{f.name}",
                )
        if self.steering_min_questions > self.steering_max_questions:
            raise ConfigError(
                f"AuditConfig.steering_min_questions = {self.steering_min_questions} exceeds "
                f"steering_max_questions = {self.steering_max_questions}; make min <= max",
                setting="AuditConfig.steering_min_questions",
            )
        if self.xdist_warning > self.xdist_error:
            raise ConfigError(
                f"AuditConfig.xdist_warning = {self.xdist_warning} exceeds xdist_error = {self.xdist_error}; "
                "the warning band must lie below the error threshold",
                setting="AuditConfig.xdist_warning",
            )
