#!/bin/sh
# Builds the core against hiredis 1.x (the C sources vendored in PyPI's hiredis sdist; the
# only hiredis 1.x Debian 12's registries offer) and runs the unit tests and the C matrix,
# so the 0.14 / 1.x guards are compiled and exercised, not just written.
# Usage: hiredis1_check.sh BUILD_DIR
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$1/hiredis1
VERSION=2.3.2 # hiredis-py release that vendors hiredis 1.2.0
mkdir -p "$WORK"
if [ ! -f "$WORK/inst/lib/libhiredis.a" ]; then
    rm -rf "$WORK/src" && mkdir -p "$WORK/src" "$WORK/obj" "$WORK/inst/include/hiredis" "$WORK/inst/lib/pkgconfig"
    python3 -m pip download -q --no-binary :all: --no-deps -d "$WORK/src" "hiredis==$VERSION"
    tar xzf "$WORK"/src/hiredis-*.tar.gz -C "$WORK/src"
    H=$(ls -d "$WORK"/src/hiredis-*/vendor/hiredis)
    cp "$H"/*.h "$WORK/inst/include/hiredis/"
    for f in alloc async hiredis net read sds sockcompat; do
        cc -O2 -fPIC -c "$H/$f.c" -o "$WORK/obj/$f.o"
    done
    ar rcs "$WORK/inst/lib/libhiredis.a" "$WORK"/obj/*.o
    cat > "$WORK/inst/lib/pkgconfig/hiredis.pc" <<PC
prefix=$WORK/inst
Name: hiredis
Description: hiredis 1.x vendored by hiredis-py $VERSION
Version: 1
Libs: -L\${prefix}/lib -lhiredis
Cflags: -I\${prefix}/include
PC
fi
PKG_CONFIG_PATH="$WORK/inst/lib/pkgconfig" cmake -S "$ROOT" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREDPAT_WERROR=ON >/dev/null
cmake --build "$WORK/build" -j2 --target unit_op matrix_runner >/dev/null
grep -q "HIREDIS_MAJOR 1" "$WORK/inst/include/hiredis/hiredis.h"
"$WORK/build/unit_op"
python3 "$ROOT/tests/harness/harness.py" run --servers 5 -- "$WORK/build/matrix_runner" "$ROOT/tests/matrix" \
    | sed 's/^matrix\[c\]/matrix[c-hiredis1]/'
