#!/usr/bin/env bash
# Make sure a Docker engine answers. As root on Debian/Ubuntu, install docker.io (and
# debootstrap, for offline base images) and start dockerd when none is running; otherwise
# say in one line what to install.
set -euo pipefail
engine_up() { docker info >/dev/null 2>&1; }
engine_up && exit 0
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "Docker engine at DOCKER_HOST=$DOCKER_HOST does not answer; start it or unset DOCKER_HOST" >&2; exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "No Docker engine is running. Install Docker Engine (https://docs.docker.com/engine/install/) and debootstrap, start the daemon, then rerun." >&2
  exit 1
fi
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "installing docker.io and debootstrap with apt-get ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi
echo "starting dockerd ..." >&2
mkdir -p /var/log
# --iptables=false --bridge=none: works where the host forbids iptables changes; sandboxes
# use no network anyway.
setsid nohup dockerd --iptables=false --bridge=none >/var/log/swelego-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do engine_up && exit 0; sleep 1; done
echo "dockerd did not come up; see /var/log/swelego-dockerd.log" >&2
tail -n 20 /var/log/swelego-dockerd.log >&2 || true
exit 1
