#!/usr/bin/env python3
"""Scenario vetting: greedy base-model completions of every prefill, scored by the judge.

    python extraction/vet_scenarios.py --experiment E --trait cat/trait [--traits-root R]

Same as ``traitvec vet``; see ``--help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from traitvec.cli import run_subcommand  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_subcommand("vet", sys.argv[1:], prog="vet_scenarios.py"))
