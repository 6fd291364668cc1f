#!/usr/bin/env bash
# Set up (idempotent), lint and type-check, run the unit tests on every other CPython from
# daskbox's floor up, then the whole suite against real services (last, so its summary closes
# the log). Arguments go to the full suite's pytest and skip the other CPythons.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/mypy
if (($# == 0)); then
  bash scripts/other-pythons.sh
fi
.venv/bin/pytest "$@"
