#!/usr/bin/env bash
# Makes sure the host's Docker daemon runs (Debian's docker.io), starting it
# in the background if it does not answer. The swarm nodes of
# `--provider netns` run daemons of their own; this one builds and holds the
# images they load.
set -euo pipefail
docker info >/dev/null 2>&1 && { echo "dockerd: running"; exit 0; }
command -v dockerd >/dev/null || { echo "dockerd: not installed (scripts/deps.sh --swarm)" >&2; exit 1; }
log=${DOCKERD_LOG:-/var/log/cloudml-dockerd.log}
echo "dockerd: starting (log $log)"
nohup dockerd >"$log" 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && { echo "dockerd: ready"; exit 0; }
  sleep 0.5
done
echo "dockerd: did not start; see $log" >&2
tail -20 "$log" >&2
exit 1
