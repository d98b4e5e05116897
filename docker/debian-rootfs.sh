#!/usr/bin/env bash
# Build a minimal Debian root filesystem for an offline base image.
#   usage: debian-rootfs.sh DIST DIR [MIRROR]      (DIST: bullseye | bookworm | trixie)
# Then: tar -C DIR -c . | docker import - swelego/base:DIST
# swelego does both steps itself (`swelego env base DIST`); this script is the recipe.
set -euo pipefail
dist=${1:?usage: debian-rootfs.sh DIST DIR [MIRROR]}
dir=${2:?usage: debian-rootfs.sh DIST DIR [MIRROR]}
mirror=${3:-${SWELEGO_DEBIAN_MIRROR:-http://deb.debian.org/debian}}
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 3; }
# python3-venv: repo deps go into /opt/venv (system pip is externally managed);
# patch: swebench's last patch-apply fallback; tini: a PID 1 that forwards SIGTERM, so
# `docker stop` of harness containers (PID 1 = tail) takes milliseconds, not 15 s.
pkgs=python3,python3-venv,python3-pip,git,ca-certificates,patch,tini,procps
debootstrap --variant=minbase --include="$pkgs" "$dist" "$dir" "$mirror"
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/* 
# Identity for commits made inside the sandbox (the agent's or the harness's).
printf '[user]\n\tname = swelego\n\temail = swelego@localhost\n[safe]\n\tdirectory = *\n' > "$dir/etc/gitconfig"
