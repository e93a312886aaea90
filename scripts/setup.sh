#!/usr/bin/env bash
# Install what kran and its tests need on a Debian 12 machine (as root), and kran itself into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PKGS=(python3 python3-venv busybox-static skopeo umoci runc tini tar zstd iproute2 util-linux procps docker-registry apache2-utils openssl nftables libnftables1 curl gcc libc6-dev docker-compose)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
