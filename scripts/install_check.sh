#!/bin/sh
# The README's C recipe ("Linking"), run as written in a clean copy of the tree: the library
# built and installed (into a scratch DESTDIR), the pkg-config consumer it compiles, and its
# CMake snippet as a consumer's CMakeLists.txt once per target name it shows
# (redpat::redpat, redpat::redpat_static), each built and run. See scripts/readme_recipes.sh.
# Usage: install_check.sh BUILD_DIR (scratch files go to BUILD_DIR/install-check)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$1" && pwd)
exec sh "$ROOT/scripts/readme_recipes.sh" --work "$BUILD/install-check" c
