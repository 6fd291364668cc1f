#!/usr/bin/env bash
# Set up (idempotent), lint, type-check and build the docs, then the whole suite against real services, in
# two halves side by side: tests/gcloud (mostly waiting on emulated VMs) and everything
# else, each followed by half of the other CPythons (from daskbox's floor up) running the
# in-process unit tests.
# Arguments go to one plain pytest run instead. The summary lines close the log.
set -euo pipefail
cd "$(dirname "$0")/.."
# Bytecode is written as modules are first imported, as on a user's machine. Under
# PYTHONDONTWRITEBYTECODE (set on some CI machines) every Dask, invoke and gcloud-driving
# process would compile distributed, dask and the Docker SDK from source again: 3.3 s
# instead of 1.0 s to import distributed, measured here.
unset PYTHONDONTWRITEBYTECODE
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks scripts examples tasks.py
.venv/bin/ruff format --check src tests benchmarks scripts examples tasks.py
# The formatter's layout is the layout: none of the project's own files opts out of it (the
# tracked ones: a venv under examples/ holds other projects' code).
if git ls-files -z -- '*.py' | xargs -0 grep -nE '# fmt: (skip|off)'; then
  echo "error: remove the fmt: skip/off markers above (ruff format's layout is enforced)" >&2
  exit 1
fi
.venv/bin/mypy
# The documentation (docs/, Sphinx): any warning fails, so a broken link, page or docstring
# stops here. A fresh output folder, so every page is read again (about 10 s).
docs_out=$(mktemp -d)
.venv/bin/sphinx-build -W --keep-going -q -b html docs "$docs_out" || { rm -rf "$docs_out"; exit 1; }
rm -rf "$docs_out"
if (($# > 0)); then
  exec .venv/bin/pytest "$@"
fi

side_log=$(mktemp)
side_status=$(mktemp)
side_pid=
trap 'rm -f "$side_log" "$side_status"; [[ -n $side_pid ]] && kill "$side_pid" 2>/dev/null || true' EXIT
(
  gcloud=passed others=passed
  .venv/bin/pytest --durations=15 tests/gcloud --basetemp "${TMPDIR:-/tmp}/daskbox-tests-gcloud" || gcloud=FAILED
  bash scripts/other-pythons.sh --part 2/2 || others=FAILED
  echo "$gcloud $others" >"$side_status"
) >"$side_log" 2>&1 &
side_pid=$!

rest=passed
.venv/bin/pytest --durations=15 --ignore=tests/gcloud || rest=FAILED
bash scripts/other-pythons.sh --part 1/2 || others_here=FAILED
wait "$side_pid" || true
side_pid=
cat "$side_log"
read -r gcloud others <"$side_status" || { gcloud=FAILED others=FAILED; }
[[ ${others_here:-passed} == passed ]] || others=FAILED
printf '[test] tests/gcloud: %s; the rest: %s; unit tests on the other CPythons: %s\n' \
  "$gcloud" "$rest" "$others"
[[ $gcloud == passed && $rest == passed && $others == passed ]]
