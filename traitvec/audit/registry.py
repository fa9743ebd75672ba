"""The registry of audit checks: each check registers itself with its name and the data it reads.

A check is a function returning one :class:`~traitvec.audit.findings.Finding`, decorated where it
is defined::

    @pair_check("lexical_leak")
    def check_lexical_leak(data: PairText, cfg: AuditConfig) -> Finding: ...

    @trait_check("definition_format")
    def check_definition_format(trait: Trait, cfg: AuditConfig) -> Finding: ...

:func:`pair_check` checks read the prefills as :class:`~traitvec.audit.text.PairText`;
:func:`trait_check` checks read the loaded :class:`~traitvec.traits.Trait` (its files).
:func:`catalog` lists the registered checks family by family (a family is the module a check is
defined in), each family's checks in the order they are defined; :mod:`traitvec.audit.checks`
names the families and their order, which is the order of every report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..traits import Trait
from .config import AuditConfig
from .findings import Finding
from .text import PairText

__all__ = ["AuditInput", "Check", "Needs", "PairCheck", "TraitCheck", "catalog", "pair_check", "trait_check"]

Needs = Literal["pairs", "trait"]
PairCheck = Callable[[PairText, AuditConfig], Finding]
TraitCheck = Callable[[Trait, AuditConfig], Finding]


@dataclass(frozen=True)
class AuditInput:
    """Everything a check may read about one loaded trait."""

    trait: Trait
    pairs: PairText

    @classmethod
    def from_trait(cls, trait: Trait) -> AuditInput:
        """The trait and its prefills as audited text."""
        return cls(trait, PairText.from_trait(trait))


@dataclass(frozen=True)
class Check:
    """One registered check.

    Attributes:
        name: the name its findings carry (``"lexical_leak"``).
        needs: what it reads: ``"pairs"`` (the prefills) or ``"trait"`` (the trait's files).
        family: the module it is defined in (``"leaks"``).
        doc: the first line of its docstring.
    """

    name: str
    needs: Needs
    family: str
    doc: str
    runner: Callable[[AuditInput, AuditConfig], Finding]

    def run(self, data: AuditInput, cfg: AuditConfig) -> Finding:
        """The check's finding on ``data``."""
        return self.runner(data, cfg)


_REGISTRY: dict[str, Check] = {}


def pair_check(name: str) -> Callable[[PairCheck], PairCheck]:
    """Register a check that reads the prefills (:class:`~traitvec.audit.text.PairText`)."""

    def register(function: PairCheck) -> PairCheck:
        _add(name, "pairs", function, lambda data, cfg: function(data.pairs, cfg))
        return function

    return register


def trait_check(name: str) -> Callable[[TraitCheck], TraitCheck]:
    """Register a check that reads the loaded :class:`~traitvec.traits.Trait` (definition.txt, steering.json)."""

    def register(function: TraitCheck) -> TraitCheck:
        _add(name, "trait", function, lambda data, cfg: function(data.trait, cfg))
        return function

    return register


def _add(
    name: str, needs: Needs, function: PairCheck | TraitCheck, runner: Callable[[AuditInput, AuditConfig], Finding]
) -> None:
    family = function.__module__.rsplit(".", 1)[-1]
    if name in _REGISTRY:
        raise ValueError(f"audit check {name!r} is registered twice (families {_REGISTRY[name].family}, {family})")
    doc = (function.__doc__ or "").strip().split("\n")[0]
    _REGISTRY[name] = Check(name, needs, family, doc, runner)


def catalog(families: Sequence[str]) -> tuple[Check, ...]:
    """Every registered check, family by family in ``families`` order, each in definition order.

    Raises:
        ValueError: a registered check's family is not in ``families``, or a family has no check.
    """
    order = {family: index for index, family in enumerate(families)}
    unknown = sorted({c.family for c in _REGISTRY.values()} - set(order))
    empty = [f for f in families if not any(c.family == f for c in _REGISTRY.values())]
    if unknown or empty:
        raise ValueError(f"audit check families {unknown} are not listed, and {empty} have no checks")
    checks = list(_REGISTRY.values())  # dicts keep registration order, which is definition order within a module
    return tuple(sorted(checks, key=lambda c: order[c.family]))
