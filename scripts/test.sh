#!/usr/bin/env bash
# Set up (idempotent), lint and type-check, then the whole suite against real services and,
# beside it, the unit tests on every other CPython from daskbox's floor up (most of the full
# suite waits on containers and VMs, so the two share the machine well). Arguments go to the
# full suite's pytest and skip the other CPythons. The summary lines close the log.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks scripts examples
.venv/bin/mypy

others_pid=
others_log=$(mktemp)
trap 'rm -f "$others_log"; [[ -n $others_pid ]] && kill "$others_pid" 2>/dev/null || true' EXIT
if (($# == 0)); then
  bash scripts/other-pythons.sh >"$others_log" 2>&1 &
  others_pid=$!
fi
suite=0
.venv/bin/pytest "$@" || suite=$?
others="skipped"
if [[ -n $others_pid ]]; then
  others="passed"
  wait "$others_pid" || others="FAILED"
  others_pid=
  cat "$others_log"
fi
printf '[test] full suite: %s; unit tests on the other CPythons: %s\n' \
  "$([[ $suite == 0 ]] && echo passed || echo "FAILED (exit $suite)")" "$others"
[[ $suite == 0 && $others != FAILED ]]
