#!/bin/sh
# build.sh: build the CloudML Octave image from Debian packages, with no
# image registry: debootstrap a minimal bookworm, install Octave into it,
# and `docker import` the result. Same contents as ./Dockerfile.
#
# Usage: images/octave/build.sh [--force] [--save FILE] [IMAGE_NAME]
#
#   IMAGE_NAME   image to create (default cloudml/octave:7)
#   --force      rebuild even if IMAGE_NAME already exists in the daemon
#   --save FILE  also `docker save` the image to FILE (a tar to docker load)
#
# Environment:
#   DOCKER_HOST            daemon to import into (default: the local one)
#   CLOUDML_DEBIAN_MIRROR  Debian mirror URL; by default the bookworm mirror
#                          configured in this machine's apt sources is used
#   TMPDIR                 where the root filesystem is assembled (/var/tmp)
#
# Needs root, debootstrap and the docker CLI.
set -eu

# Keep in step with ./Dockerfile. ghostscript: `print -dpng` and `saveas`
# go through it with the gnuplot toolkit. fontconfig: its trigger builds the
# font cache, so a non-root task does not try (and fail) to write one.
PACKAGES="octave gnuplot-nox fonts-freefont-otf fontconfig ghostscript ca-certificates"
SUITE=bookworm
IMAGE=cloudml/octave:7
FORCE=0
SAVE=

usage() { sed -n '2,19s/^# \{0,1\}//p' "$0"; }
die() { echo "build.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
	case "$1" in
	--force) FORCE=1 ;;
	--save)
		[ $# -ge 2 ] || die "--save needs a file name"
		SAVE=$2
		shift
		;;
	--save=*) SAVE=${1#--save=} ;;
	-h | --help) usage; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) IMAGE=$1 ;;
	esac
	shift
done

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it)"
for b in debootstrap docker chroot mount umount tar; do
	command -v "$b" >/dev/null 2>&1 || die "$b is missing (apt-get install debootstrap docker.io)"
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "cannot reach the docker daemon at ${DOCKER_HOST:-the default socket}"

START=$(date +%s)
STEP_START=$START
step() {
	now=$(date +%s)
	echo "build.sh: $1 ($((now - STEP_START)) s, $((now - START)) s total)"
	STEP_START=$now
}

# apt_sources prints "URI SUITE" for every enabled deb source of this
# machine, from both the one-line (.list) and deb822 (.sources) formats.
apt_sources() {
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" {
			i = 2
			if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
			print $i, $(i + 1)
		}' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk '
		function flush() {
			if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
				n = split(uris, u, " "); m = split(suites, s, " ")
				for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) print u[a], s[b]
			}
			types = uris = suites = ""; enabled = "yes"
		}
		BEGIN { enabled = "yes" }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		{
			key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
			if (key == "types") types = val
			else if (key == "uris") uris = val
			else if (key == "suites") suites = val
			else if (key == "enabled") enabled = val
		}
		END { flush() }' "$f"
	done
}

if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "$FORCE" -eq 0 ]; then
	echo "build.sh: $IMAGE already exists in ${DOCKER_HOST:-the local daemon}; use --force to rebuild"
else
	SOURCES=$(apt_sources | sort -u)
	MIRROR=${CLOUDML_DEBIAN_MIRROR:-$(echo "$SOURCES" | awk -v s="$SUITE" '$2 == s { print $1; exit }')}
	[ -n "$MIRROR" ] ||
		die "no '$SUITE' source in /etc/apt/sources.list(.d); set CLOUDML_DEBIAN_MIRROR=http://your-debian-mirror/debian"
	echo "build.sh: building $IMAGE from $MIRROR $SUITE"

	ROOT=$(mktemp -d "${TMPDIR:-/var/tmp}/cloudml-octave.XXXXXX")
	chmod 755 "$ROOT" # apt's _apt user must reach the chroot's cache
	LOG=$ROOT.log
	cleanup() {
		# Ours (/proc) and any debootstrap left behind when interrupted.
		awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount "$m" || umount -l "$m" || true; done
		# Never delete through a mount that is still there.
		if grep -q " $ROOT/" /proc/mounts; then
			echo "build.sh: mounts left under $ROOT; not removing it" >&2
		else
			rm -rf --one-file-system "$ROOT"
		fi
		rm -f "$LOG"
	}
	trap cleanup EXIT
	trap 'echo "build.sh: interrupted" >&2; exit 130' INT TERM

	# Output goes to $LOG; its tail is shown when a step fails.
	logged() {
		"$@" >>"$LOG" 2>&1 || {
			tail -n 30 "$LOG" >&2
			die "failed: $*"
		}
	}
	logged debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR"
	step "debootstrap done"

	# Same apt sources as this machine for bookworm, its updates and security.
	if [ -n "${CLOUDML_DEBIAN_MIRROR:-}" ]; then
		echo "deb $MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"
	else
		echo "$SOURCES" | awk -v s="$SUITE" '$2 == s || index($2, s "-") == 1 { print "deb", $1, $2, "main" }' \
			>"$ROOT/etc/apt/sources.list"
	fi
	# What debian:bookworm-slim does: keep docs, man pages and locales out.
	cat >"$ROOT/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# Keep files containers do not need out of the image (as debian:*-slim does).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 755 "$ROOT/usr/sbin/policy-rc.d"
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
	mount -t proc proc "$ROOT/proc"
	# The mirror may serve a dated snapshot whose Release files have expired.
	logged chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
		apt-get -q -o Acquire::Check-Valid-Until=false update
	logged chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
		apt-get -q -y --no-install-recommends install $PACKAGES
	logged chroot "$ROOT" apt-get clean
	# Font caches record directory mtimes to the nanosecond; image layers keep
	# whole seconds. Round the mtimes first so the caches stay valid in the
	# image and a non-root task never tries (and fails) to rebuild them.
	# (Inside the chroot: font dirs hold absolute symlinks.)
	logged chroot "$ROOT" find -L /usr/share/fonts /usr/local/share/fonts -type d \
		-exec touch -c -m -d "@$(date +%s)" {} +
	logged chroot "$ROOT" fc-cache -fs
	umount "$ROOT/proc"
	step "apt-get install $PACKAGES done"

	rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/resolv.conf" "$ROOT/etc/hostname"
	rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/var/cache/debconf/*-old \
		"$ROOT"/var/log/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* \
		"$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/usr/share/locale/* \
		"$ROOT"/usr/share/groff/* "$ROOT"/usr/share/lintian/* "$ROOT"/usr/share/linda/*
	find "$ROOT/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "$ROOT/usr/share/doc" -mindepth 1 -type d -empty -delete
	mkdir -p "$ROOT/cloudml/run"
	chmod 1777 "$ROOT/cloudml/run"
	echo "build.sh: root filesystem is $(du -sh --one-file-system "$ROOT" | cut -f1)"

	docker image rm "$IMAGE" >/dev/null 2>&1 || true
	tar --numeric-owner -C "$ROOT" -c . | docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV LANG=C.UTF-8' \
		--change 'WORKDIR /cloudml/run' \
		--change 'CMD ["octave-cli"]' \
		--message "cloudml octave image from Debian $SUITE ($MIRROR)" \
		- "$IMAGE" >/dev/null
	step "docker import $IMAGE done"
fi

echo "build.sh: $IMAGE is $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
if [ -n "$SAVE" ]; then
	docker save -o "$SAVE" "$IMAGE"
	step "docker save to $SAVE done ($(du -h "$SAVE" | cut -f1))"
fi
