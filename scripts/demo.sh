#!/usr/bin/env bash
# make demo: the linreg Octave sweep on the embedded default. Starts a
# coordinator with 2 local agents and a file:// bucket under .cloudml/demo,
# submits examples/linreg, follows its logs, prints the results table, and
# stops the coordinator. Needs no cloud account.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
make --no-print-directory build

home="${CLOUDML_DEMO_HOME:-$PWD/.cloudml/demo}"
addr="127.0.0.1:${CLOUDML_DEMO_PORT:-7071}"
mkdir -p "$home"
export CLOUDML_COORDINATOR="$addr"
# The coordinator writes its admin credential here; the client reads it.
export CLOUDML_CONFIG="$home/config"
client=bin/cloudml-client

bin/coordinator serve --listen "$addr" --provider local --nodes 2 \
  --state "$home/state" --bucket "file://$home/bucket" --log-level warn \
  2> "$home/coordinator.log" &
coord=$!
trap 'kill $coord 2>/dev/null; wait $coord 2>/dev/null || true' EXIT

echo "demo: coordinator on $addr (log: $home/coordinator.log); waiting for 2 agents"
for _ in $(seq 1 100); do
  ready=$($client -o json cluster nodes 2>/dev/null | grep -c NODE_STATE_READY || true)
  [ "$ready" -ge 2 ] && break
  kill -0 $coord 2>/dev/null || { cat "$home/coordinator.log" >&2; exit 1; }
  sleep 0.2
done
$client cluster nodes

job=$($client submit -f examples/linreg/cloudml.yaml)
echo "demo: submitted $job; following its logs"
status=0
$client logs -f "$job" || status=$?
echo
$client status "$job"
echo
$client results "$job"
echo
echo "demo: each task's model, metrics, logs and manifest.json are in $home/bucket/results/$job/"
exit $status
