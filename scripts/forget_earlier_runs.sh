#!/usr/bin/env bash
# Makes this Docker engine look like a fresh machine's to CI: removes every container and image
# that an earlier daskbox run (demo, tests, benchmarks) left on it, so nothing built or started
# before can make this run pass. The stand-in base images stay: a fresh machine makes the same
# ones in scripts/setup.sh.
set -euo pipefail

say() { printf '[fresh] %s\n' "$*"; }

containers=$( {
  docker ps -aq --filter label=dev.daskbox.instance
  docker ps -aq --filter label=dev.daskbox.project
  docker ps -aq --filter label=gce-emulator.vm
} | sort -u)
if [[ -n $containers ]]; then
  say "removing $(wc -l <<<"$containers") container(s) of earlier runs"
  xargs docker rm -f <<<"$containers" >/dev/null
fi

images=$( {
  docker images -q --filter label=dev.daskbox.version
  docker images --format '{{.Repository}}:{{.Tag}}' |
    grep -E '^(daskbox-stages/|127\.0\.0\.1:|localhost:)' || true
} | sort -u)
if [[ -n $images ]]; then
  say "removing $(wc -l <<<"$images") image(s) of earlier runs"
  xargs docker rmi -f <<<"$images" >/dev/null
fi
docker image prune -f >/dev/null
say "left: $(docker images -q | wc -l) image(s) (the stand-in bases), $(docker ps -aq | wc -l) container(s)"
