#!/usr/bin/env bash
# make demo-swarm: the linreg Octave sweep as swarm services on a local
# 3-node Docker Swarm (one network namespace, dockerd and agent per node).
# Needs root and Debian's docker.io; installs what is missing, builds the
# Octave image from Debian packages (about 90 s the first time), and tears
# the cluster down when done.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo-swarm: needs root (network namespaces and dockerd)" >&2; exit 1; }
./scripts/deps.sh --swarm
./scripts/dockerd.sh
make --no-print-directory build
./images/octave/build.sh cloudml/octave:7

home="$PWD/.cloudml/demo-swarm"
name=cmldemo
addr="127.0.0.1:${CLOUDML_DEMO_PORT:-7072}"
rm -rf "$home/state"
mkdir -p "$home"
export CLOUDML_COORDINATOR="$addr"
# The coordinator writes its admin credential here; the client reads it.
export CLOUDML_CONFIG="$home/config"
client=bin/cloudml-client

bin/coordinator serve --listen "$addr" --provider netns --nodes 3 --slots 2 --netns-name "$name" \
  --state "$home/state" --bucket "file://$home/bucket" --log-level warn 2> "$home/coordinator.log" &
coord=$!
trap 'kill $coord 2>/dev/null; wait $coord 2>/dev/null || true' EXIT

echo "demo-swarm: building a 3-node swarm (log: $home/coordinator.log)"
for _ in $(seq 1 300); do
  in=$($client -o json cluster nodes 2>/dev/null | grep -c '"swarmNodeId"' || true)
  [ "$in" -ge 3 ] && break
  kill -0 $coord 2>/dev/null || { cat "$home/coordinator.log" >&2; exit 1; }
  sleep 0.2
done
$client cluster nodes

# No registry here: submit pushes the image from this machine's Docker to
# the coordinator, and every node fetches it from there while it stages.
job=$($client submit -f examples/linreg/cloudml.yaml --image cloudml/octave:7)
echo "demo-swarm: submitted $job; following its logs"
status=0
$client logs -f "$job" || status=$?
echo
$client status "$job"
echo
$client results "$job"
echo
echo "demo-swarm: results in $home/bucket/results/$job/"
exit $status
