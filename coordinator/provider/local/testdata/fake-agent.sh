#!/bin/sh
# A stand-in for cloudml-agent: records its argv, says hello on both
# streams, and exits cleanly on SIGTERM.
# The trap comes first: the tests may stop it as soon as it says hello.
trap 'echo "stopping"; exit 0' TERM
# Written aside and renamed: the test reads every args-PID it sees.
printf '%s\n' "$@" > "$FAKE_AGENT_OUT/.args-$$"
printf '%s\n' "$CLOUDML_JOIN_TOKEN" > "$FAKE_AGENT_OUT/token-$$"
mv "$FAKE_AGENT_OUT/.args-$$" "$FAKE_AGENT_OUT/args-$$"
echo "hello from the fake agent"
echo "warning on stderr" >&2
while :; do sleep 0.05; done
