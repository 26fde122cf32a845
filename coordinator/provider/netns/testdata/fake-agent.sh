#!/bin/sh
# A stand-in for cloudml-agent inside a node's namespace: records its argv,
# DOCKER_HOST and network namespace, greets the coordinator address over
# TCP, says hello on both streams, and exits cleanly on SIGTERM.
# The trap comes first: the tests may stop it as soon as it says hello.
trap 'echo "stopping"; exit 0' TERM
rec="$FAKE_AGENT_OUT/args-$$"
{
	printf '%s\n' "$@"
	echo "DOCKER_HOST=$DOCKER_HOST"
	echo "NETNS=$(stat -L -c %i /proc/self/ns/net)"
} > "$FAKE_AGENT_OUT/.args-$$" # aside: the test reads every args-PID it sees
mv "$FAKE_AGENT_OUT/.args-$$" "$rec"
coord= name=
while [ $# -gt 0 ]; do
	case "$1" in
	--coordinator) coord=$2 ;;
	--hostname) name=$2 ;;
	esac
	shift
done
echo "hello from $name" | busybox nc -w 5 "${coord%:*}" "${coord##*:}"
echo "hello from the fake agent"
echo "warning on stderr" >&2
while :; do sleep 0.05; done
