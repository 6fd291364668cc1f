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

# Labelled images by id: an image tagged several times (a stage name) goes at once, and untagged
# ones have no name to give. Registry names by name: a test may have tagged a stand-in base for a
# registry, and removing that by id would take the base (or fail on its children).
labelled_images() { docker images -aq --filter label=dev.daskbox.version | sort -u; }
registry_names() {
  # A base pulled by digest has no tag, only its digest to be named by.
  docker images --digests --format '{{.Repository}} {{.Tag}} {{.Digest}}' |
    awk '$1 ~ /^(daskbox-stages\/|127\.0\.0\.1:|localhost:)/ {
      if ($2 != "<none>") print $1 ":" $2; else if ($3 != "<none>") print $1 "@" $3 }' | sort -u
}
images=$(labelled_images)
names=$(registry_names)
if [[ -n $images || -n $names ]]; then
  say "removing $(wc -w <<<"$images") image(s) and $(wc -w <<<"$names") registry name(s) of earlier runs"
  # Children before parents: a pass removes what has no child left; an image may also be gone
  # already with another name, so only what remains after the passes counts.
  for _ in 1 2 3 4 5; do
    [[ -z $images && -z $names ]] && break
    [[ -n $names ]] && xargs docker rmi <<<"$names" >/dev/null 2>&1 || true
    [[ -n $images ]] && xargs docker rmi -f <<<"$images" >/dev/null 2>&1 || true
    images=$(labelled_images)
    names=$(registry_names)
  done
  if [[ -n $images || -n $names ]]; then
    echo "error: images of earlier runs could not be removed: $(tr '\n' ' ' <<<"$images $names")" >&2
    exit 1
  fi
fi
docker image prune -f >/dev/null
say "left: $(docker images -q | wc -l) image(s) (the stand-in bases), $(docker ps -aq | wc -l) container(s)"
