#!/bin/sh
# Installs the Debian packages redpat's build, tests, demo and benchmarks need; does
# nothing when all are present. Runs apt-get as root (or through sudo).
set -eu
PACKAGES="gcc make cmake pkg-config libc6-dev libhiredis-dev libssl-dev libcjson-dev redis-server redis-tools openssl
python3 python3-venv python3-dev python3-pip swig
lua5.4 liblua5.4-dev luarocks lua-cjson luajit2 libluajit2-5.1-dev
nginx libnginx-mod-http-lua lua-resty-core
clang libclang-rt-14-dev"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "bootstrap: installing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "bootstrap: need root (or sudo) to install:$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
