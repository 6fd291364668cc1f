#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh Debian bookworm machine for daskbox development:
# system packages, the Docker engine, the project's virtualenv from poetry.lock, and the
# local stand-in for the default base image (Docker Hub is unreachable here).
set -euo pipefail
cd "$(dirname "$0")/.."

POETRY_VERSION=2.5.1            # only used to export poetry.lock into hashed requirements
EXPORT_PLUGIN_VERSION=1.10.1
# qemu-user-static + binfmt-support: the arm64 tests run (and build sdists) under emulation;
# build-essential: a fixture project's C extension is compiled on the host; chromium: the
# dashboard test's browser; graphviz: the docs' pipeline diagram, drawn offline by Sphinx.
APT_PACKAGES=(docker.io docker-registry debootstrap apache2-utils cloud-init curl git
              qemu-user-static binfmt-support build-essential chromium graphviz)

say() { printf '[setup] %s\n' "$*"; }

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v gcloud >/dev/null || say "warning: gcloud is not installed; the gcloud tests need the Google Cloud SDK"

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (host networking only, as on Compute Engine)"
  nohup dockerd --bridge=none --iptables=false >/var/log/daskbox-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/daskbox-dockerd.log; exit 1; }
fi

if [[ ! -x .venv/bin/python ]] || [[ poetry.lock -nt .venv/.installed ]]; then
  say "creating .venv from poetry.lock (hash-checked)"
  bootstrap=$(mktemp -d)
  python3 -m venv "$bootstrap"
  "$bootstrap/bin/pip" install -q --disable-pip-version-check \
    "poetry==$POETRY_VERSION" "poetry-plugin-export==$EXPORT_PLUGIN_VERSION"
  "$bootstrap/bin/poetry" export --with dev,docs -f requirements.txt -o "$bootstrap/requirements.txt"
  python3 -m venv .venv
  # --no-compile: modules get their bytecode when first imported; most are never imported.
  .venv/bin/pip install -q --disable-pip-version-check --no-compile --require-hashes \
    -r "$bootstrap/requirements.txt"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  rm -rf "$bootstrap"
  touch .venv/.installed
fi

# Emulation of arm64 binaries (Docker Desktop ships its own; here binfmt_misc + QEMU).
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  say "enabling qemu-aarch64 in binfmt_misc"
  update-binfmts --enable qemu-aarch64
fi

python3 scripts/standin_base_image.py
python3 scripts/standin_base_image.py --platform linux/arm64
say "ready"
