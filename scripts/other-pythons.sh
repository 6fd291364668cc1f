#!/usr/bin/env bash
# The in-process unit tests (no Docker, not slow, no command-line programs driven in
# subprocesses) on every other CPython that pyenv has here, from daskbox's Python floor up,
# each in its own .venv-X.Y installed from poetry.lock (hashes checked). The full suite runs
# on .venv's CPython (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[pythons] %s\n' "$*"; }

floor=$(.venv/bin/python - <<'PY'
from daskbox._pyproject import read_project
from pathlib import Path
spec = read_project(Path(".")).requires_python or ""
print(spec.removeprefix(">=").split(",")[0])
PY
)
main_version=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
requirements=$(mktemp)
trap 'rm -f "$requirements"' EXIT
.venv/bin/poetry export --with dev -f requirements.txt -o "$requirements" 2>/dev/null

# `--part K/N`: only every N-th of those CPythons from the K-th (scripts/test.sh runs two
# parts side by side).
part=1 parts=1
if [[ ${1:-} == --part ]]; then IFS=/ read -r part parts <<<"$2"; fi

failed=()
index=0
for python in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3; do
  [[ -x $python ]] || continue
  version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  full=$("$python" -c 'import platform; print(platform.python_version())')
  older=$("$python" -c "import sys; print(int(sys.version_info[:2] < tuple(map(int, '$floor'.split('.')))))")
  if [[ $older == 1 || $version == "$main_version" ]]; then continue; fi
  index=$((index + 1))
  if (( (index - part) % parts != 0 )); then continue; fi
  venv=.venv-$version
  if [[ ! -x $venv/bin/python ]] || [[ poetry.lock -nt $venv/.installed ]]; then
    say "creating $venv for CPython $full from poetry.lock"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # --no-compile: pytest compiles what it imports; the rest never needs bytecode here.
    "$venv/bin/pip" install -q --disable-pip-version-check --no-compile --require-hashes \
      -r "$requirements"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
    touch "$venv/.installed"
  fi
  say "unit tests on CPython $full"
  # Its own temporary folder: this may run beside the full suite (scripts/test.sh).
  if ! "$venv/bin/pytest" -q -p no:cacheprovider -m "not docker and not slow and not cli" --no-header -x \
      --basetemp "${TMPDIR:-/tmp}/daskbox-unit-tests-$version"; then
    failed+=("$full")
  fi
done
if ((${#failed[@]})); then
  say "unit tests failed on CPython ${failed[*]}"
  exit 1
fi
