#!/usr/bin/env bash
# make demo-do: the DigitalOcean path with no DigitalOcean account. dofake
# serves the DigitalOcean API on this machine; its droplets are network
# namespaces with their own dockerd that boot the user-data the
# coordinator renders (cloud-init: fetch the agent over pinned TLS, check
# its sha256, start it with a single-use join token). Then, as a user
# would with a real token: cluster up, the linreg Octave sweep on the
# droplets' swarm with results in a (fake) GCS bucket, cluster down. It
# ends with dofake's count of droplets created, deleted and left, and
# fails unless 0 are left. Needs root and Debian's docker.io.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "demo-do: needs root (network namespaces and dockerd)" >&2; exit 1; }
./scripts/deps.sh --swarm
./scripts/dockerd.sh
make --no-print-directory build
go build -o bin/dofake ./internal/dofake/cmd/dofake
./images/octave/build.sh cloudml/octave:7

home="$PWD/.cloudml/demo-do"
rm -rf "$home"
mkdir -p "$home"
client=bin/cloudml-client
nodes="${CLOUDML_DEMO_NODES:-2}"

# The test cloud: API, droplets and bucket. Its environment file appears
# once it is ready.
bin/dofake --nodes "$nodes" --bucket cloudml-demo --env-file "$home/dofake.env" \
  --console "$home/droplets.log" > "$home/dofake.out" 2>&1 &
dofake=$!
coord=
cleanup() {
  [ -z "$coord" ] || { kill "$coord" 2>/dev/null; wait "$coord" 2>/dev/null || true; }
  kill -TERM "$dofake" 2>/dev/null || true
  wait "$dofake" 2>/dev/null || true
}
trap cleanup EXIT
echo "demo-do: starting the DigitalOcean test server with room for $nodes droplets"
for _ in $(seq 1 600); do
  [ -f "$home/dofake.env" ] && break
  kill -0 $dofake 2>/dev/null || { cat "$home/dofake.out" >&2; exit 1; }
  sleep 0.2
done
set -a
. "$home/dofake.env" # DIGITALOCEAN_TOKEN, DOFAKE_API_URL, DOFAKE_HOST_ADDR, ...
set +a

# The coordinator listens where the droplets reach it, as it would on a
# host with a public address; --do-api-url is the one thing a real
# DigitalOcean run leaves out.
addr="$DOFAKE_HOST_ADDR:${CLOUDML_DEMO_PORT:-7443}"
export CLOUDML_COORDINATOR="$addr" CLOUDML_CONFIG="$home/config"
bin/coordinator serve --provider digitalocean --do-api-url "$DOFAKE_API_URL" \
  --listen "$addr" --advertise "$addr" --swarm-peers "$DOFAKE_SUBNET" --cluster-name demo \
  --state "$home/state" --admin-config "$CLOUDML_CONFIG" --bucket "$DOFAKE_BUCKET/runs" \
  --log-level warn 2> "$home/coordinator.log" &
coord=$!
for _ in $(seq 1 300); do
  [ -f "$CLOUDML_CONFIG" ] && break
  kill -0 $coord 2>/dev/null || { cat "$home/coordinator.log" >&2; exit 1; }
  sleep 0.1
done

echo "demo-do: what $nodes droplets would cost, and the user-data each boots (nothing is created)"
$client cluster up --nodes "$nodes" --dry-run | sed -n '1,3p'
echo
echo "demo-do: cluster up (droplets, cloud-init, agents registered over mTLS, one swarm)"
$client cluster up --nodes "$nodes"
echo
$client cluster nodes
echo

# No registry here: submit pushes the image from this machine's Docker to
# the coordinator, and every droplet fetches it from there while it stages.
job=$($client submit -f examples/linreg/cloudml.yaml --image cloudml/octave:7)
echo "demo-do: submitted $job; following its logs"
status=0
$client logs -f "$job" || status=$?
echo
$client status "$job"
echo
$client results "$job"
echo
echo "demo-do: cluster down (returns once the API answers 404 for every droplet)"
$client cluster down
echo

kill "$coord"
wait "$coord" 2>/dev/null || true
coord=
kill -TERM "$dofake"
wait "$dofake" || status=$?
trap - EXIT
summary=$(tail -n 1 "$home/dofake.out")
echo "demo-do: $summary"
case "$summary" in
*", left 0") ;;
*) echo "demo-do: droplets were left behind (see $home/dofake.out)" >&2; status=1 ;;
esac
exit $status
