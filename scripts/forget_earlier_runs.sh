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

# By id: an image tagged several times (a registry's name, a stage name) goes at once, and
# untagged ones have no name to give.
earlier_images() {
  {
    docker images -q --filter label=dev.daskbox.version
    docker images --format '{{.ID}} {{.Repository}}' |
      awk '$2 ~ /^(daskbox-stages\/|127\.0\.0\.1:|localhost:)/ {print $1}'
  } | sort -u
}
images=$(earlier_images)
if [[ -n $images ]]; then
  say "removing $(wc -l <<<"$images") image(s) of earlier runs"
  # An image may already be gone with its parent or its other id: only what remains counts.
  xargs docker rmi -f <<<"$images" >/dev/null 2>&1 || true
  left=$(earlier_images)
  if [[ -n $left ]]; then
    echo "error: images of earlier runs could not be removed: $(tr '\n' ' ' <<<"$left")" >&2
    exit 1
  fi
fi
docker image prune -f >/dev/null
say "left: $(docker images -q | wc -l) image(s) (the stand-in bases), $(docker ps -aq | wc -l) container(s)"
