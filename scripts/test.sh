#!/usr/bin/env bash
# Set up (idempotent), lint, then run the whole test suite against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/pytest "$@"
