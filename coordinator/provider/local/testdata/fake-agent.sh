#!/bin/sh
# A stand-in for cloudml-agent: records its argv, says hello on both
# streams, and exits cleanly on SIGTERM.
printf '%s\n' "$@" > "$FAKE_AGENT_OUT/args-$$.tmp"
mv "$FAKE_AGENT_OUT/args-$$.tmp" "$FAKE_AGENT_OUT/args-$$"
echo "hello from the fake agent"
echo "warning on stderr" >&2
trap 'echo "stopping"; exit 0' TERM
while :; do sleep 0.05; done
