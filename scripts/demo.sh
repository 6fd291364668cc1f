#!/usr/bin/env bash
# The main job end to end on the local target (local Docker + local registry, no cloud):
# build the quickstart's image, push it, launch it, connect with the environment check,
# run the grid search on the cluster, then tear everything down (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
# Bytecode is written as modules are first imported, as on a user's machine. Under
# PYTHONDONTWRITEBYTECODE (set on some CI machines) every Dask, invoke and gcloud-driving
# process would compile distributed, dask and the Docker SDK from source again: 3.3 s
# instead of 1.0 s to import distributed, measured here.
unset PYTHONDONTWRITEBYTECODE
ROOT=$PWD
QUICKSTART=$ROOT/examples/quickstart
REGISTRY_ADDR=127.0.0.1:5000 # examples/quickstart pushes to localhost:5000/quickstart
REGISTRY_DIR=${DASKBOX_DEMO_REGISTRY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/daskbox/demo-registry}

say() { printf '\n[demo] %s\n' "$*"; }

registry_pid=
launched=
cleanup() {
  if [[ -n $launched ]]; then
    say "invoke teardown --local"
    (cd "$QUICKSTART" && "$QUICKSTART/.venv/bin/invoke" teardown --local) || true
  fi
  # The registry's storage stays, so the next run's push has nothing to upload.
  if [[ -n $registry_pid ]]; then kill "$registry_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

bash scripts/setup.sh

# The demo's own registry, so what it pushes is what it launches: a registry some earlier run
# left on that address would hold its images already.
if curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1; then
  echo "error: something already serves a registry on $REGISTRY_ADDR: stop it, then run the demo again" >&2
  exit 1
fi
say "starting a local registry on $REGISTRY_ADDR (storage: $REGISTRY_DIR)"
mkdir -p "$REGISTRY_DIR"
cat >"$REGISTRY_DIR/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
http:
  addr: $REGISTRY_ADDR
YAML
docker-registry serve "$REGISTRY_DIR/config.yml" >"$REGISTRY_DIR/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null 2>&1 ||
  { tail -5 "$REGISTRY_DIR/registry.log" >&2; echo "error: the demo's registry did not start on $REGISTRY_ADDR" >&2; exit 1; }

# The quickstart's own environment, exactly as its poetry.lock says (daskbox is in its dev
# group as a path dependency, installed editable the way `poetry install` would).
if [[ ! -x $QUICKSTART/.venv/bin/python ]] || [[ $QUICKSTART/poetry.lock -nt $QUICKSTART/.venv/.installed ]]; then
  say "creating examples/quickstart/.venv from its poetry.lock"
  requirements=$(mktemp)
  (cd "$QUICKSTART" && "$ROOT/.venv/bin/poetry" export --with dev -f requirements.txt) |
    grep -v -e '^daskbox @' -e '^-e ' >"$requirements"
  python3 -m venv "$QUICKSTART/.venv"
  "$QUICKSTART/.venv/bin/pip" install -q --disable-pip-version-check --no-compile --require-hashes \
    -r "$requirements"
  "$QUICKSTART/.venv/bin/pip" install -q --disable-pip-version-check --no-deps \
    -e "$ROOT" -e "$QUICKSTART"
  # --no-deps: the lock alone decides what is installed, so a lock whose daskbox entry lacks a
  # dependency daskbox declares fails here, by name, not later inside a build.
  "$QUICKSTART/.venv/bin/pip" check --disable-pip-version-check ||
    { echo "error: examples/quickstart/poetry.lock does not satisfy the packages above: run \`poetry lock\` in examples/quickstart" >&2; exit 1; }
  rm -f "$requirements"
  touch "$QUICKSTART/.venv/.installed"
fi

cd "$QUICKSTART"
# The quickstart's own environment first; daskbox reads the lock with the user's own `poetry`
# (with poetry-plugin-export): here the one in daskbox's development environment.
export PATH=$QUICKSTART/.venv/bin:$PATH:$ROOT/.venv/bin

say "invoke build push"
invoke build push
say "invoke launch --local"
launched=yes
invoke launch --local
say "connect (with the environment check) + the grid search on the cluster"
python -m daskbox.demo "$QUICKSTART"
