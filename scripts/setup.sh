#!/usr/bin/env bash
# Install what kran and its tests need on a Debian 12 machine (as root), and kran itself into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
# docker.io is here for its docker CLI only (the API tests drive kran with the real client): its
# dockerd must never start, so no daemon competes with kran for bridges, nft rules or the socket.
PKGS=(python3 python3-venv busybox-static skopeo umoci runc tini tar zstd iproute2 util-linux procps docker-registry apache2-utils openssl nftables libnftables1 curl gcc libc6-dev docker-compose docker.io uidmap slirp4netns passt fuse-overlayfs sqlite3)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  # policy-rc.d answering 101 ("action forbidden") keeps package scripts from starting any service
  # (dockerd, containerd) during the install; ours only if there was none, and removed after.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# kran setup.sh: no service starts while packages install\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap 'if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; made_policy=; fi
fi
# Where systemd runs, the units docker.io ships would start dockerd at boot or on the first
# connection to /run/docker.sock: keep them off.
# (disable works on the unit files even where systemd is not running; stop only where it is)
if command -v systemctl >/dev/null 2>&1; then
  for u in docker.socket docker.service; do
    if systemctl is-enabled --quiet "$u" 2>/dev/null; then
      systemctl disable "$u" >/dev/null 2>&1 || true
    fi
    if [ -d /run/systemd/system ] && systemctl is-active --quiet "$u" 2>/dev/null; then
      systemctl stop "$u" >/dev/null 2>&1 || true
    fi
  done
fi
# Debian's own interpreter: its files are world-readable, which a container process in a user
# namespace needs (an interpreter under /root, like pyenv's, is out of its reach).
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
# (compat: a plain path in a .pth file; the default editable finder costs every kran start ~20 ms
# of imports: pathlib, re, urllib...)
.venv/bin/python -m compileall -q kran  # bytecode up front: every kran process starts faster
echo "kran is installed: $(pwd)/.venv/bin/kran"
