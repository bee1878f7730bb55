#!/bin/sh
# Installs the build into a scratch prefix, then builds a consumer through pkg-config (shared
# library) and through the CMake package (static library), and runs both.
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
cmake -S "$ROOT/tests/install" -B "$PREFIX/cmake-consumer" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$PREFIX/cmake-consumer" >/dev/null
"$PREFIX/cmake-consumer/consumer_cmake"
echo "install check: pkg-config and CMake package consumers built and ran"
