"""The architecture's rules, checked on the source (AST) and, where it matters, by importing it.

Each rule is a function over a package directory that returns its violations as readable lines,
so it can be run on a small package with a planted violation (the ``test_rule_*`` self-tests:
every rule is shown to fail when broken) and on ``traitvec/`` itself (the ``test_traitvec_*``
tests). The tables below describe the final layout of docs/architecture.md; change them there
and here together.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "traitvec"

# Layer of each top-level module or package of traitvec (a package counts as one unit). A module
# imports only from lower layers, or from the same-layer units SAME_LAYER names.
LAYERS: dict[str, int] = {
    "cli": 5, "commands": 5, "__main__": 5,
    "stages": 4, "executors": 4,
    "judge": 3, "audit": 3, "render": 3,
    "capture": 2, "capture_nnsight": 2, "positions": 2, "generation": 2, "steering": 2, "fluency": 2,
    "activations": 1, "methods": 1, "vectors": 1, "evaluation": 1, "metrics": 1, "preference": 1, "_preference_rows": 1,
    "monitor": 2,  # per-token projections of texts
    "traits": 0, "_trait_files": 0, "_trait_paths": 0, "conversations": 0, "experiments": 0, "embedded": 0,
    "models": 0, "_model_source": 0, "_fingerprint": 0, "layers": 0,
    "hooks": 0, "prompting": 0, "batching": 0, "_io": 0, "stats": 0, "errors": 0,
    "": 0,  # traitvec/__init__.py: __version__ and the lazy export table; it imports nothing at import time
}  # fmt: skip
SAME_LAYER: dict[str, frozenset[str]] = {
    "__main__": frozenset({"cli"}),
    "cli": frozenset({"commands"}),
    "stages": frozenset({"executors"}),  # stages/parallel.py runs the pipeline's per-trait tasks on an executor
    "capture": frozenset({"capture_nnsight", "generation", "positions"}),
    "positions": frozenset({"generation"}),
    "generation": frozenset({"steering"}),
    "fluency": frozenset({"generation"}),
    "methods": frozenset({"activations", "vectors"}),
    "evaluation": frozenset({"activations", "methods", "metrics", "vectors"}),
    "preference": frozenset({"_preference_rows"}),
    "models": frozenset({"_fingerprint", "_model_source", "embedded", "errors", "experiments", "layers"}),
    "_model_source": frozenset({"_fingerprint", "embedded", "errors"}),
    "_fingerprint": frozenset({"_io", "embedded"}),
    "prompting": frozenset({"conversations", "errors", "models", "traits"}),
    "traits": frozenset({"_io", "_trait_files", "_trait_paths", "conversations", "errors"}),
    "_trait_files": frozenset({"_io", "conversations", "errors"}),
    "_trait_paths": frozenset({"errors"}),
    "_io": frozenset({"errors"}),
    "conversations": frozenset({"errors"}),
    "experiments": frozenset({"errors", "traits"}),
    "embedded": frozenset({"_io", "errors"}),
    "layers": frozenset({"errors"}),
}
# Modules that must stay free of the judge and its HTTP client, even through other traitvec modules.
JUDGE_FREE = (
    "capture", "capture_nnsight", "positions", "activations", "methods", "vectors", "steering", "hooks", "layers"
)  # fmt: skip
HOOK_OWNER = "hooks"
HOOK_NAMES = frozenset(
    {
        "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
        "register_full_backward_pre_hook", "register_backward_hook", "register_module_forward_hook",
        "register_module_forward_pre_hook", "_forward_hooks", "_forward_pre_hooks",
    }
)  # fmt: skip
COMMAND_LINE_EDGE = ("cli", "commands")  # the only units that may import argparse or call print()
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80  # code lines: from ``def`` to the end, the docstring not counted
# Modules allowed over MAX_MODULE_LINES, and functions over MAX_FUNCTION_LINES ("module:qualname"),
# each with the reason. An entry that is no longer needed is itself reported.
ALLOW_LONG: dict[str, str] = {}
ALLOW_LONG_FUNCTIONS: dict[str, str] = {}


# --------------------------------------------------------------------------- reading a package


@dataclass(frozen=True)
class Module:
    name: str  # dotted, "traitvec.judge.openai"; a package's __init__.py is the package
    path: Path
    root: Path  # the folder holding the package
    is_package: bool
    tree: ast.Module

    @property
    def unit(self) -> str:
        """The top-level module or package it belongs to ("" for the package root)."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class Import:
    target: str  # a dotted traitvec module, or the top-level name of a third-party one
    line: int
    internal: bool


def modules(package: Path) -> dict[str, Module]:
    """Every module of the package under ``package``, by dotted name."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        found[name] = Module(
            name, path, package.parent, is_package, ast.parse(path.read_text(encoding="utf-8"), str(path))
        )
    return found


def imports(module: Module, known: dict[str, Module]) -> Iterator[Import]:
    """Every import statement in the module (function-level and TYPE_CHECKING ones included)."""
    root = module.name.split(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    yield Import(_longest_known(alias.name, known), node.lineno, True)
                else:
                    yield Import(alias.name.split(".")[0], node.lineno, False)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] != root:
                yield Import((node.module or "").split(".")[0], node.lineno, False)
                continue
            base = node.module or ""
            if node.level:
                here = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield Import(sub if sub in known else _longest_known(base, known), node.lineno, True)


def _longest_known(name: str, known: dict[str, Module]) -> str:
    parts = name.split(".")
    while len(parts) > 1 and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts)


def graph(package: Path) -> tuple[dict[str, Module], dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Modules, internal edges ``{a: {b: line}}`` and third-party imports ``{a: {name: line}}``."""
    known = modules(package)
    internal: dict[str, dict[str, int]] = {name: {} for name in known}
    external: dict[str, dict[str, int]] = {name: {} for name in known}
    for name, module in known.items():
        for imp in imports(module, known):
            table = internal if imp.internal else external
            if imp.target != name:
                table[name].setdefault(imp.target, imp.line)
    return known, internal, external


def _where(module: Module, line: int) -> str:
    return f"{module.path.relative_to(module.root).as_posix()}:{line}"


# --------------------------------------------------------------------------- the rules


def hook_registrations(package: Path, owner: str = HOOK_OWNER) -> list[str]:
    """(a) Only the ``owner`` module registers (or touches) forward hooks."""
    problems = []
    for module in modules(package).values():
        if module.unit == owner:
            continue
        for node in sorted(ast.walk(module.tree), key=lambda n: getattr(n, "lineno", 0)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
            if name in HOOK_NAMES:
                problems.append(f"{_where(module, node.lineno)}: {name} outside {owner}.py; use HookSet")
    return problems


def judge_reach(package: Path, guarded: Sequence[str] = JUDGE_FREE) -> list[str]:
    """(b) The guarded modules reach neither the judge package nor ``openai``, even transitively."""
    known, internal, external = graph(package)
    root = package.name
    problems = set()
    for start in (f"{root}.{name}" for name in guarded):
        if start not in known:
            continue
        paths = {start: [start]}
        queue = [start]
        while queue:
            current = queue.pop(0)
            chain = " → ".join(paths[current])
            if known[current].unit == "judge":
                problems.add(f"{start} reaches the judge: {chain}")
            if "openai" in external[current]:
                problems.add(f"{start} reaches openai: {chain} → openai")
            for target in internal[current]:
                if target not in paths:
                    paths[target] = [*paths[current], target]
                    queue.append(target)
    return sorted(problems)


def import_cycles(package: Path) -> list[str]:
    """(c) No import cycle between modules (strongly connected components of the import graph)."""
    _, internal, _ = graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in internal[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(internal):
        if node not in index:
            visit(node)
    problems = []
    for component in sorted(cycles):
        lines = [f"{a} → {b} (line {line})" for a in component for b, line in internal[a].items() if b in component]
        problems.append(f"import cycle among {', '.join(component)}: " + "; ".join(lines))
    return problems


def layer_violations(package: Path) -> list[str]:
    """(d) A module imports only from lower layers, or from same-layer units SAME_LAYER allows."""
    known, internal, _ = graph(package)
    problems = []
    for name, targets in internal.items():
        unit = known[name].unit
        if unit not in LAYERS:
            problems.append(f"{name} is in no layer; place it in the layout (docs/architecture.md) and LAYERS")
            continue
        for target, line in targets.items():
            other = known[target].unit
            if other == unit or other not in LAYERS:
                continue
            if LAYERS[other] < LAYERS[unit] or (LAYERS[other] == LAYERS[unit] and other in SAME_LAYER.get(unit, ())):
                continue
            problems.append(
                f"{_where(known[name], line)}: {name} (L{LAYERS[unit]}) imports {target} (L{LAYERS[other]}); "
                "import only from lower layers"
            )
    return problems


def import_side_effects(imported: Sequence[str], path: Path, forbidden: Sequence[str], quiet: bool) -> list[str]:
    """(b, e) Importing ``imported`` (from ``path``, in a fresh interpreter) loads none of ``forbidden``
    (top-level names or dotted prefixes) and, when ``quiet``, writes nothing to stdout or stderr."""
    code = "; ".join(f"import {name}" for name in imported)
    probe = "import sys; print('\\n'.join(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")])}
    run = [sys.executable, "-c"]
    silent = subprocess.run([*run, code], capture_output=True, text=True, env=env, cwd=path, timeout=300)
    loaded = subprocess.run([*run, f"{code}; {probe}"], capture_output=True, text=True, env=env, cwd=path, timeout=300)
    if silent.returncode or loaded.returncode:
        return [f"importing {', '.join(imported)} failed: {(silent.stderr or loaded.stderr).strip()[-500:]}"]
    problems = []
    if quiet and (silent.stdout or silent.stderr):
        problems.append(f"importing {', '.join(imported)} printed {(silent.stdout + silent.stderr)[:300]!r}")
    names = loaded.stdout.split()
    for bad in forbidden:
        if any(name == bad or name.startswith(f"{bad}.") for name in names):
            problems.append(f"importing {', '.join(imported)} loads {bad}")
    return problems


def export_table(package: Path) -> list[str]:
    """(f) The lazy export table ``_EXPORTS`` matches ``__all__`` and every entry resolves."""
    tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    public: list[str] = []
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if target == "_EXPORTS":
                table = ast.literal_eval(node.value)
            elif target == "__all__":
                public = ast.literal_eval(node.value)
            else:
                defined.add(target)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
    problems = [f"__all__ lists {name} twice" for name in sorted({n for n in public if public.count(n) > 1})]
    problems += [f"_EXPORTS has {name}, __all__ does not" for name in sorted(set(table) - set(public))]
    problems += [f"__all__ has {name}, which is neither in _EXPORTS nor defined in __init__.py" for name in public
                 if name not in table and name not in defined]  # fmt: skip
    sys.path.insert(0, str(package.parent))
    try:
        for name, module in sorted(table.items()):
            try:
                value = getattr(importlib.import_module(f"{package.name}.{module}"), name)
            except (ImportError, AttributeError) as err:
                problems.append(f"_EXPORTS[{name!r}] = {module!r} does not resolve: {err}")
                continue
            public_value = getattr(importlib.import_module(package.name), name)
            # a module named like the function it exports replaces it as the package attribute once
            # imported; it must then forward calls to that function (see traitvec.capture)
            if public_value is not value and not (callable(public_value) and public_value.__call__ is value):
                problems.append(f"{package.name}.{name} is {public_value!r}, not {package.name}.{module}.{name}")
    finally:
        sys.path.remove(str(package.parent))
    return problems


def long_modules(package: Path, allow: dict[str, str] = ALLOW_LONG, limit: int = MAX_MODULE_LINES) -> list[str]:
    """(g) No module over ``limit`` lines unless ``allow`` names it with a reason."""
    problems = []
    for name, module in modules(package).items():
        lines = len(module.path.read_text(encoding="utf-8").splitlines())
        if lines > limit and name not in allow:
            problems.append(f"{name} has {lines} lines (limit {limit}); split it or add it to ALLOW_LONG with why")
        elif lines <= limit and name in allow:
            problems.append(f"{name} has {lines} lines; remove its ALLOW_LONG entry")
    return problems + [
        f"ALLOW_LONG names {name}, which does not exist" for name in allow if name not in modules(package)
    ]


def command_line_leaks(package: Path, edge: Sequence[str] = COMMAND_LINE_EDGE) -> list[str]:
    """(h) Only the command-line edge imports argparse or calls print()."""
    problems = []
    for module in modules(package).values():
        if module.unit in edge:
            continue
        for node in sorted(ast.walk(module.tree), key=lambda n: getattr(n, "lineno", 0)):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "argparse" for a in node.names):
                problems.append(f"{_where(module, node.lineno)}: imports argparse outside {' and '.join(edge)}")
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "argparse":
                problems.append(f"{_where(module, node.lineno)}: imports argparse outside {' and '.join(edge)}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                problems.append(f"{_where(module, node.lineno)}: print() in the library; log or return text")
    return problems


def long_functions(
    package: Path, allow: dict[str, str] = ALLOW_LONG_FUNCTIONS, limit: int = MAX_FUNCTION_LINES
) -> list[str]:
    """(i) No function over ``limit`` code lines (docstring not counted) unless ``allow`` names it."""
    problems, seen = [], set()

    def visit(node: ast.AST, module: Module, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualname = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    key = f"{module.name}:{qualname}"
                    seen.add(key)
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1 - _docstring_lines(child)
                    if lines > limit and key not in allow:
                        problems.append(f"{_where(module, child.lineno)}: {qualname} has {lines} code lines")
                visit(child, module, f"{qualname}.")
            else:
                visit(child, module, prefix)

    for module in modules(package).values():
        visit(module.tree, module, "")
    return problems + [f"ALLOW_LONG_FUNCTIONS names {key}, which does not exist" for key in allow if key not in seen]


def _docstring_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return (first.end_lineno or first.lineno) - first.lineno + 1
    return 0


# --------------------------------------------------------------------------- traitvec itself


def test_traitvec_registers_hooks_in_one_module() -> None:
    assert hook_registrations(PACKAGE) == []


def test_traitvec_core_never_reaches_the_judge() -> None:
    assert judge_reach(PACKAGE) == []
    modules = [f"traitvec.{name}" for name in JUDGE_FREE]
    assert import_side_effects(modules, ROOT, forbidden=["openai", "traitvec.judge"], quiet=False) == []


def test_traitvec_has_no_import_cycles() -> None:
    assert import_cycles(PACKAGE) == []


def test_traitvec_imports_follow_the_layers() -> None:
    assert layer_violations(PACKAGE) == []


def test_import_traitvec_is_silent_and_light() -> None:
    assert import_side_effects(["traitvec"], ROOT, forbidden=["torch"], quiet=True) == []


def test_traitvec_export_table_matches_all() -> None:
    assert export_table(PACKAGE) == []


def test_traitvec_modules_are_short() -> None:
    assert long_modules(PACKAGE) == []


def test_traitvec_command_line_stays_at_the_edge() -> None:
    assert command_line_leaks(PACKAGE) == []


def test_traitvec_functions_are_short() -> None:
    assert long_functions(PACKAGE) == []


# --------------------------------------------------------------------------- each rule fails when broken


def plant(root: Path, files: dict[str, str], package: str = "traitvec") -> Path:
    """Write a package ``root/package`` from ``{relative path: source}`` (``__init__.py`` files added)."""
    for relative, source in {"__init__.py": "", **files}.items():
        path = root / package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return root / package


def test_rule_hook_registrations(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "hooks.py": "def add(m, f):\n    return m.register_forward_hook(f)\n",
            "capture.py": "def grab(m, f):\n    m.register_forward_pre_hook(f)\n    m._forward_hooks.clear()\n",
        },
    )
    assert hook_registrations(package) == [
        "traitvec/capture.py:2: register_forward_pre_hook outside hooks.py; use HookSet",
        "traitvec/capture.py:3: _forward_hooks outside hooks.py; use HookSet",
    ]


def test_rule_judge_reach(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "methods.py": "from . import helpers\n",
            "helpers.py": "def ask():\n    import openai\n",
            "steering.py": "if False:\n    from .judge.scores import JudgeScore\n",
            "judge/scores.py": "JudgeScore = 1\n",
            "vectors.py": "from . import errors\n",
            "errors.py": "",
        },
    )
    assert judge_reach(package) == [
        "traitvec.methods reaches openai: traitvec.methods → traitvec.helpers → openai",
        "traitvec.steering reaches the judge: traitvec.steering → traitvec.judge.scores",
    ]
    plant(tmp_path, {"core.py": "import heavy_client\n"}, package="planted_reach")
    (tmp_path / "heavy_client.py").write_text("", encoding="utf-8")
    assert import_side_effects(["planted_reach.core"], tmp_path, forbidden=["heavy_client"], quiet=False) == [
        "importing planted_reach.core loads heavy_client"
    ]


def test_rule_import_cycles(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "capture.py": "from .generation import generate\n",
            "generation.py": "def generate():\n    from .capture import capture\n",
            "judge/__init__.py": "from .openai import OpenAIJudge\n",  # a package importing its parts: no cycle
            "judge/openai.py": "from .scores import JudgeScore\nOpenAIJudge = 1\n",
            "judge/scores.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..stages import run\n",
            "stages/__init__.py": "from traitvec.judge.scores import JudgeScore\nrun = 1\n",
        },
    )
    assert import_cycles(package) == [
        "import cycle among traitvec.capture, traitvec.generation: "
        "traitvec.capture → traitvec.generation (line 1); traitvec.generation → traitvec.capture (line 2)",
        "import cycle among traitvec.judge.scores, traitvec.stages: "
        "traitvec.judge.scores → traitvec.stages (line 3); traitvec.stages → traitvec.judge.scores (line 1)",
    ]


def test_rule_layer_violations(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "methods.py": "def fit():\n    from .steering import Steer\n",
            "generation.py": "from .steering import Steer\n",  # same layer, allowed by SAME_LAYER
            "steering.py": "from .vectors import TraitVector\nfrom . import errors\nSteer = 1\n",
            "vectors.py": "TraitVector = 1\n",
            "errors.py": "from .stages.pipeline import run\n",
            "stages/pipeline.py": "from ..judge import make_judge\nrun = 1\n",
            "judge/__init__.py": "make_judge = 1\n",
            "newthing.py": "",
        },
    )
    assert sorted(layer_violations(package)) == [
        "traitvec.newthing is in no layer; place it in the layout (docs/architecture.md) and LAYERS",
        "traitvec/errors.py:1: traitvec.errors (L0) imports traitvec.stages.pipeline (L4); "
        "import only from lower layers",
        "traitvec/methods.py:2: traitvec.methods (L1) imports traitvec.steering (L2); import only from lower layers",
    ]


def test_rule_import_side_effects(tmp_path: Path) -> None:
    plant(tmp_path, {"__init__.py": "print('loading')\nfrom . import core\n", "core.py": "import heavy_lib\n"}, "loud")
    (tmp_path / "heavy_lib.py").write_text("", encoding="utf-8")
    assert import_side_effects(["loud"], tmp_path, forbidden=["heavy_lib"], quiet=True) == [
        "importing loud printed 'loading\\n'",
        "importing loud loads heavy_lib",
    ]


def test_rule_export_table(tmp_path: Path) -> None:
    init = (
        "__version__ = '1'\n"
        "_EXPORTS = {'Thing': 'things', 'Missing': 'things', 'Unlisted': 'things', 'Broken': 'nowhere', "
        "'shadowed': 'shadowed'}\n"
        "__all__ = ['__version__', 'Thing', 'Missing', 'Broken', 'Orphan', 'shadowed']\n"
        "def __getattr__(name):\n"
        "    import importlib\n"
        "    return getattr(importlib.import_module('.' + _EXPORTS[name], __name__), name)\n"
    )
    files = {
        "__init__.py": init,
        "things.py": "Thing = object()\nUnlisted = 1\n",
        "shadowed.py": "def shadowed(): ...\n",
    }
    package = plant(tmp_path, files, "planted_exports")
    try:
        problems = export_table(package)
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "planted_exports"]:
            del sys.modules[name]
    assert problems[:2] == [
        "_EXPORTS has Unlisted, __all__ does not",
        "__all__ has Orphan, which is neither in _EXPORTS nor defined in __init__.py",
    ]
    assert problems[2].startswith("_EXPORTS['Broken'] = 'nowhere' does not resolve: No module named")
    assert problems[3].startswith("_EXPORTS['Missing'] = 'things' does not resolve:")
    assert problems[4].startswith("planted_exports.shadowed is <module 'planted_exports.shadowed' from")
    assert len(problems) == 5


def test_rule_long_modules(tmp_path: Path) -> None:
    package = plant(tmp_path, {"big.py": "x = 1\n" * 401, "small.py": "x = 1\n" * 400})
    assert long_modules(package, allow={}) == [
        "traitvec.big has 401 lines (limit 400); split it or add it to ALLOW_LONG with why"
    ]
    assert long_modules(package, allow={"traitvec.big": "generated table"}) == []
    assert long_modules(package, allow={"traitvec.small": "stale", "traitvec.gone": "stale"}) == [
        "traitvec.big has 401 lines (limit 400); split it or add it to ALLOW_LONG with why",
        "traitvec.small has 400 lines; remove its ALLOW_LONG entry",
        "ALLOW_LONG names traitvec.gone, which does not exist",
    ]


def test_rule_command_line_leaks(tmp_path: Path) -> None:
    package = plant(
        tmp_path,
        {
            "steering.py": "import argparse\n\ndef run(args: argparse.Namespace):\n    print(args)\n",
            "stages/pipeline.py": "from argparse import Namespace\n",
            "cli.py": "import argparse\nprint('ok')\n",
            "commands/extract.py": "import argparse\nprint('ok')\n",
        },
    )
    assert sorted(command_line_leaks(package)) == [
        "traitvec/stages/pipeline.py:1: imports argparse outside cli and commands",
        "traitvec/steering.py:1: imports argparse outside cli and commands",
        "traitvec/steering.py:4: print() in the library; log or return text",
    ]


def test_rule_long_functions(tmp_path: Path) -> None:
    docstring = '    """A long docstring.\n' + "    text\n" * 30 + '    """\n'
    short = "def short():\n" + docstring + "    x = 1\n" * 79  # 80 code lines: at the limit
    long = "class Runner:\n    def run(self):\n" + "        x = 1\n" * 80  # 81 code lines
    source = short + long
    package = plant(tmp_path, {"stages/steer.py": source})
    assert long_functions(package, allow={}) == ["traitvec/stages/steer.py:114: Runner.run has 81 code lines"]
    assert long_functions(package, allow={"traitvec.stages.steer:Runner.run": "one table"}) == []
    assert long_functions(package, allow={"traitvec.stages.steer:gone": "stale"}) == [
        "traitvec/stages/steer.py:114: Runner.run has 81 code lines",
        "ALLOW_LONG_FUNCTIONS names traitvec.stages.steer:gone, which does not exist",
    ]


@pytest.mark.parametrize("rule", [hook_registrations, judge_reach, import_cycles, layer_violations, command_line_leaks])
def test_rules_accept_a_clean_package(tmp_path: Path, rule: object) -> None:
    package = plant(
        tmp_path,
        {
            "hooks.py": "def add(m, f):\n    return m.register_forward_hook(f)\n",
            "capture.py": "from .hooks import add\nfrom . import generation\n",
            "generation.py": "from .steering import Steer\n",
            "steering.py": "from .errors import ConfigError\nSteer = 1\n",
            "errors.py": "ConfigError = ValueError\n",
        },
    )
    assert callable(rule)
    assert rule(package) == []
