#!/usr/bin/env bash
# Installs the system packages CloudML's demo and tests need, on Debian.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

want=()
command -v octave-cli >/dev/null || want+=(octave)
command -v busybox >/dev/null || want+=(busybox-static)
command -v ip >/dev/null || want+=(iproute2)
[ ${#want[@]} -eq 0 ] && { echo "deps: everything is installed"; exit 0; }

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to install: ${want[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "deps: installing ${want[*]} (Debian packages)"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
echo "deps: done"
