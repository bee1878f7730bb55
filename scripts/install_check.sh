#!/bin/sh
# Installs the build into a scratch prefix, then builds a consumer through pkg-config (shared
# library) and through the CMake package, once per target name the README's recipe shows
# (redpat::redpat, redpat::redpat_static, ...), and runs each.
# Usage: install_check.sh BUILD_DIR
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd)
PREFIX=$BUILD/install-check
rm -rf "$PREFIX"
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
LIBDIR=$(ls -d "$PREFIX"/lib*/pkgconfig | head -1)
PKG_CONFIG_PATH=$LIBDIR cc -o "$PREFIX/consumer_pc" "$ROOT/tests/install/consumer.c" \
    $(PKG_CONFIG_PATH=$LIBDIR pkg-config --cflags --libs redpat hiredis)
LD_LIBRARY_PATH=$(dirname "$LIBDIR") "$PREFIX/consumer_pc"
# the target names come from the README, so the recipe a user copies is the one tested
TARGETS=$(grep -o 'redpat::[A-Za-z0-9_]*' "$ROOT/README.md" | sort -u)
[ -n "$TARGETS" ] || { echo "install check: README shows no redpat:: target" >&2; exit 1; }
for t in $TARGETS; do
    dir=$PREFIX/cmake-consumer-$(echo "$t" | sed 's/::/-/')
    cmake -S "$ROOT/tests/install" -B "$dir" -DCMAKE_PREFIX_PATH="$PREFIX" \
        -DREDPAT_TARGET="$t" >/dev/null || { echo "install check: $t not found" >&2; exit 1; }
    cmake --build "$dir" >/dev/null || { echo "install check: $t failed to build" >&2; exit 1; }
    # no LD_LIBRARY_PATH: a shared target must run through the build RPATH CMake gives it
    "$dir/consumer_cmake"
    echo "install check: CMake consumer linked with $t"
done
echo "install check: pkg-config and CMake package consumers built and ran ($(echo $TARGETS))"
