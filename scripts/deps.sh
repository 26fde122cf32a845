#!/usr/bin/env bash
# Installs the Debian packages CloudML's demos and tests need. Idempotent:
# installs only what is missing. Needs root (or sudo).
#   scripts/deps.sh          what `make demo` needs (Octave, figures)
#   scripts/deps.sh --swarm  also what the swarm needs (docker.io, ufw, ...)
set -euo pipefail

pkgs=(octave gnuplot-nox fonts-freefont-otf ghostscript busybox-static iproute2 tcpdump cloud-init systemd)
if [ "${1:-}" = "--swarm" ]; then
  pkgs+=(docker.io iptables ufw debootstrap)
fi

want=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || want+=("$p")
done
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
