#!/usr/bin/env bash
# docker-py's own integration suite against kran: the yardstick of issue 11 ("as broadly as against
# dockerd").  The suite is not on PyPI (the sdist has no tests), so it is read from a checkout:
#
#   git clone -b 7.1.0 https://github.com/docker/docker-py /tmp/docker-py
#   sudo scripts/dockerpy-integration.sh /tmp/docker-py [pytest args...]
#
# What it sets up, under a temporary directory removed at the end:
# - a venv with docker==7.1.0 and the suite's test dependencies (in /var/tmp, kept for the next run);
# - a docker-registry on 127.0.0.1 acting as kran's mirror for docker.io, holding a busybox image
#   made alpine-like (the suite's users and directories) under the names the suite pulls
#   (alpine:3.10, alpine:latest, busybox:latest, busybox:buildroot-2014.02), and a one-file
#   hello-world:latest;
# - `kran system service` on its own state root and socket;
# all in a private network namespace of their own;
# - DOCKER_HOST and a fresh DOCKER_CONFIG (the context tests write there).
# Swarm, services, nodes, secrets, configs and plugins need a swarm manager, which kran never is;
# their suites, and the credential-helper tests (no daemon involved), are left out unless pytest
# args name them.
set -euo pipefail
# the client side: docker-py 7.1.0 and the suite's test dependencies (kept between runs)
VENV=${KRAN_DOCKERPY_VENV:-/var/tmp/kran-dockerpy-venv}
if [ ! -x "$VENV/bin/pytest" ]; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q docker==7.1.0 pytest pytest-timeout websocket-client paramiko
fi
# everything else (registry, service, the bridges the suite makes) in a private network namespace
if [ -z "${KRAN_DOCKERPY_NETNS:-}" ]; then
  KRAN_DOCKERPY_NETNS=1 exec unshare -n "$0" "$@"
fi
ip link set lo up
SRC=${1:?usage: $0 DOCKER_PY_CHECKOUT [pytest args...]}; shift
SRC=$(cd "$SRC" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
KRAN=$REPO/.venv/bin/kran
W=$(mktemp -d /tmp/kran-dockerpy.XXXXXX)
SVC= REG=
cleanup() {
  [ -n "$SVC" ] && kill "$SVC" 2>/dev/null && wait "$SVC" 2>/dev/null || true
  if [ -d "$W/root" ]; then
    ids=$(KRAN_CONFIG=$W/kran.toml "$KRAN" --root "$W/root" ps -aq 2>/dev/null || true)
    [ -n "$ids" ] && KRAN_CONFIG=$W/kran.toml "$KRAN" --root "$W/root" rm -f $ids >/dev/null 2>&1 || true
  fi
  [ -n "$REG" ] && kill "$REG" 2>/dev/null && wait "$REG" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT


PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/registry"
cat > "$W/registry/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/registry/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
YML
/usr/bin/docker-registry serve "$W/registry/config.yml" >"$W/registry/log" 2>&1 & REG=$!
printf 'registry-mirrors = ["http://127.0.0.1:%s"]\n' "$PORT" > "$W/kran.toml"
export KRAN_CONFIG=$W/kran.toml
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

# the image: busybox, with what the suite expects of alpine (a postgres user, /var/opt)
K() { "$KRAN" --root "$W/root" "$@"; }
sh "$REPO/scripts/busybox-rootfs.sh" > "$W/busybox.tar"
K import -c "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" -c 'CMD ["/bin/sh"]' \
  "$W/busybox.tar" kran-dockerpy-base >/dev/null
mkdir -p "$W/ctx"
cat > "$W/ctx/Dockerfile" <<'DF'
FROM kran-dockerpy-base
RUN mkdir -p /var/opt /var/lib/postgresql && echo 'postgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh' >> /etc/passwd && echo 'postgres:x:70:' >> /etc/group
DF
K build -q -t kran-dockerpy-alpine "$W/ctx" >/dev/null
# hello-world: an image of its own (the prune tests expect its removal to free space)
mkdir -p "$W/hello"
echo "Hello from a kran test image" > "$W/hello/hello"
printf 'FROM scratch\nCOPY hello /hello\nCMD ["/hello"]\n' > "$W/hello/Dockerfile"
K build -q -t kran-dockerpy-hello "$W/hello" >/dev/null
for name in alpine:3.10 alpine:latest busybox:latest busybox:buildroot-2014.02 hello-world:latest; do
  src=kran-dockerpy-alpine; [ "$name" = hello-world:latest ] && src=kran-dockerpy-hello
  K tag "$src" "127.0.0.1:$PORT/library/$name"
  K push "127.0.0.1:$PORT/library/$name" >/dev/null
  K rmi "127.0.0.1:$PORT/library/$name" >/dev/null
done
K rmi kran-dockerpy-hello >/dev/null
K tag kran-dockerpy-alpine alpine:3.10  # the session fixture's image, present up front as in CI

SOCK=$W/kran.sock
"$KRAN" --root "$W/root" system service "unix://$SOCK" >"$W/service.log" 2>&1 & SVC=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
  args=(tests/integration -rf)
  for s in api_swarm api_service api_plugin api_secret api_config models_swarm models_services models_nodes; do
    args+=(--ignore="tests/integration/${s}_test.py")
  done
  # credentials/ tests docker-credential-* helpers, not a daemon (and its utils_test replaces
  # os.environ, dropping DOCKER_HOST for every test after it)
  args+=(--ignore=tests/integration/credentials)
fi
# only its tests: the checkout's own docker/ package lacks its generated _version.py
mkdir -p "$W/suite" && cp -r "$SRC/tests" "$W/suite/"
cd "$W/suite"
set +e
DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=$W/docker-config "$VENV/bin/python" -m pytest -p no:cacheprovider -q \
  --timeout 120 "${args[@]}"
rc=$?
if ! kill -0 "$SVC" 2>/dev/null; then
  wait "$SVC"; echo "--- the kran service ended during the run (exit status $?) ---"; SVC=
fi
[ $rc -ne 0 ] && { echo "--- kran service log (last 30 lines) ---"; tail -30 "$W/service.log"; }
exit $rc
