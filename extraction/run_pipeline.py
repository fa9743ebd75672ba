#!/usr/bin/env python3
"""Run the traitvec pipeline per trait: vetting (--vet), extraction, evaluation, steering evaluation.

    python extraction/run_pipeline.py --experiment E --steer-experiment S --traits cat/trait [cat/trait ...]

Same as ``traitvec run``; see ``--help``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from traitvec.cli import run_subcommand  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_subcommand("run", sys.argv[1:], prog="run_pipeline.py"))
