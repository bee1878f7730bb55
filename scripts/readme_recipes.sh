#!/bin/sh
# Runs the README's install recipes verbatim, each in a fresh copy of the tree (the files git
# tracks plus new ones it does not ignore, as they are in the working tree), then checks that
# what it built works. A recipe is the fenced block right after a `<!-- recipe: NAME -->` line
# of README.md; its text is run as it is, with `sh -e`. Where it installs is chosen through
# the environment only, never by editing the text:
#   c           DESTDIR (CMake's staged install) for `cmake --install`; the ```cmake block
#               marked c-cmake becomes a consumer's CMakeLists.txt, once as written and once
#               per other target name it shows ("# or redpat::redpat_static")
#   python      the recipe makes its own .venv in the copy; redpat is imported and a lock
#               taken and released from it against a private redis-server
#   lua-54, luajit
#               LUAROCKS_CONFIG names a config with the one tree to install into (--tree) and
#               the CFLAGS (--cflags); afterwards the copy must hold no file it did not hold
#               before (no object, no generated source: `git status --porcelain --ignored`)
#   lua-src-rock
#               `luarocks pack` clones the rockspec's source.url at its tag: git's
#               url.<base>.insteadOf (GIT_CONFIG_* variables) sends that URL to the copy,
#               committed and tagged; then the packed rock is installed into a fresh tree
#               for Lua 5.4 and LuaJIT and each loads redpat and takes a lock
# Two commands the recipes contain are replaced by shims in PATH: `apt-get install P...`
# checks that every package P is installed (bootstrap.sh installs them; a test must not
# install or upgrade system packages) and `sudo CMD` runs CMD as the current user (the
# install goes to DESTDIR).
# Usage: readme_recipes.sh [--work DIR] [--tree DIR] [--cflags FLAGS] RECIPE...
#   --work: scratch directory (emptied first; default a temporary one, removed on success)
# Prints `readme[NAME]: 1 passed, 0 failed` (or `0 passed, 1 failed`) per recipe.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS="python3 $ROOT/tests/harness/harness.py run --"
WORK=""
TREE=""
CFLAGS_ROCK=""
while [ $# -gt 0 ]; do
    case $1 in
    --work) WORK=$2; shift 2 ;;
    --tree) TREE=$2; shift 2 ;;
    --cflags) CFLAGS_ROCK=$2; shift 2 ;;
    -*) echo "readme_recipes.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: readme_recipes.sh [--work DIR] [--tree DIR] [--cflags FLAGS] RECIPE..." >&2; exit 2; }
git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    { echo "readme_recipes.sh: $ROOT is not a git checkout (the copies are of the files git tracks)" >&2; exit 2; }
if [ -n "$WORK" ]; then
    rm -rf "$WORK"
    mkdir -p "$WORK"
    WORK=$(cd "$WORK" && pwd)
    KEEP=1
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/redpat-readme.XXXXXX")
    KEEP=0
fi

# The text of README.md's block marked NAME (without its fences).
recipe() {
    awk -v name="$1" '
        $0 == "<!-- recipe: " name " -->" { want = 1; next }
        want == 1 && /^```/ { want = 2; next }
        want == 1 { exit 1 }
        want == 2 && /^```/ { found = 1; exit }
        want == 2 { print }
        END { if (!found) exit 1 }' "$ROOT/README.md" ||
        { echo "readme_recipes.sh: README.md has no block marked <!-- recipe: $1 -->" >&2; return 1; }
}

# A copy of the tree in $1, committed to a git repository of its own (to tell afterwards
# what the recipe left there).
copy_tree() {
    mkdir -p "$1"
    (cd "$ROOT" && git ls-files -c -o --exclude-standard | sort -u >"$1.files" &&
        git ls-files -d | sort -u >"$1.deleted")
    comm -23 "$1.files" "$1.deleted" | tar -C "$ROOT" -cf - -T - | tar -C "$1" -xf -
    rm -f "$1.files" "$1.deleted"
    (cd "$1" && git init -q && git add -A &&
        git -c user.name=readme -c user.email=readme@example.invalid commit -q -m copy)
}

# Runs recipe $1 in directory $2, its output kept in $WORK/$1.out (shown if it fails).
run_recipe() {
    recipe "$1" >"$WORK/$1.sh"
    echo "== readme recipe $1 (in $2):"
    sed 's/^/   /' "$WORK/$1.sh"
    (cd "$2" && PATH="$WORK/shims:$PATH" sh -e "$WORK/$1.sh") >"$WORK/$1.out" 2>&1 ||
        { cat "$WORK/$1.out"; echo "readme recipe $1 failed" >&2; return 1; }
}

mkdir -p "$WORK/shims"
cat >"$WORK/shims/apt-get" <<'EOF'
#!/bin/sh
# readme_recipes.sh: the README's `apt-get install P...` line, checked instead of run
[ "${1:-}" = install ] || { echo "apt-get shim: only 'apt-get install' is expected" >&2; exit 1; }
shift
for p; do
    case $p in -*) continue ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        { echo "apt-get shim: $p, named by the README, is not installed" >&2; exit 1; }
done
echo "apt-get shim: installed: $*"
EOF
printf '#!/bin/sh\n# readme_recipes.sh: the install goes to DESTDIR, no privileges needed\nexec "$@"\n' \
    >"$WORK/shims/sudo"
chmod +x "$WORK/shims/apt-get" "$WORK/shims/sudo"

# A LuaRocks config with the one tree $2, in file $1.
rock_config() {
    {
        echo "rocks_trees = { { name = \"readme\", root = \"$2\" } }"
        [ -z "$CFLAGS_ROCK" ] || echo "variables = { CFLAGS = \"$CFLAGS_ROCK\" }"
    } >"$1"
}

# Loads the rock from tree $1 with interpreter $2 (Lua version directory $3) and takes and
# releases a lock on a private redis-server.
rock_use() {
    LUA_PATH="$1/share/lua/$3/?.lua;$1/share/lua/$3/?/init.lua" LUA_CPATH="$1/lib/lua/$3/?.so" \
        LUA_PATH_5_4="$1/share/lua/$3/?.lua;$1/share/lua/$3/?/init.lua" LUA_CPATH_5_4="$1/lib/lua/$3/?.so" \
        $HARNESS "$2" -e '
        local redpat = require "redpat"
        local c = assert(redpat.connect(os.getenv("REDPAT_TEST_URL")))
        local l = assert(c:lock("readme-recipe", { ttl = 5000 }))
        assert(l:acquire() == true, "acquire")
        assert(l:release())
        print("readme: " .. _VERSION .. (jit and " (" .. jit.version .. ")" or "") ..
              " loaded redpat from " .. package.searchpath("redpat.core", package.cpath) ..
              ", took and released a lock")'
}

recipe_c() {
    src=$WORK/c/src
    copy_tree "$src"
    cp "$ROOT/tests/install/consumer.c" "$src/app.c"
    DESTDIR=$WORK/c/root PKG_CONFIG_PATH=$WORK/c/root/usr/local/lib/pkgconfig run_recipe c "$src"
    # pkg-config's consumer: the recipe built it as a.out
    LD_LIBRARY_PATH=$WORK/c/root/usr/local/lib "$src/a.out"
    block=$(recipe c-cmake)
    targets=$(echo "$block" | grep -o 'redpat::[A-Za-z0-9_]*' | awk '!seen[$0]++')
    first=$(echo "$targets" | head -n 1)
    [ -n "$first" ] || { echo "readme_recipes.sh: the c-cmake block names no redpat:: target" >&2; return 1; }
    for t in $targets; do
        dir=$WORK/c/consumer-$(echo "$t" | sed 's/::/-/')
        mkdir -p "$dir"
        cp "$ROOT/tests/install/consumer.c" "$dir/app.c"
        {
            echo 'cmake_minimum_required(VERSION 3.16)'
            echo 'project(app C)'
            echo 'add_executable(app app.c)'
            # the block as written; for another target it names, that name in its place
            echo "$block" | sed "s/$first\([^A-Za-z0-9_]\)/$t\1/"
        } >"$dir/CMakeLists.txt"
        cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$WORK/c/root/usr/local" >"$dir/cmake.out" 2>&1 &&
            cmake --build "$dir/build" >>"$dir/cmake.out" 2>&1 ||
            { cat "$dir/cmake.out"; echo "readme recipe c-cmake: $t failed" >&2; return 1; }
        # no LD_LIBRARY_PATH: a shared target runs through the RPATH CMake gives it
        "$dir/build/app"
        echo "readme: CMake consumer linked with $t"
    done
}

recipe_python() {
    src=$WORK/python/src
    copy_tree "$src"
    run_recipe python "$src"
    cat "$WORK/python.out" | tail -n 1
    (cd / && $HARNESS "$src/.venv/bin/python" -c '
import os, redpat
c = redpat.Client(os.environ["REDPAT_TEST_URL"])
lock = c.lock("readme-recipe", timeout=5.0)
assert lock.acquire()
lock.release()
print("readme: python imported redpat", redpat.__version__, "from", redpat.__file__, "and took a lock")')
}

# lua-54 / luajit: $1 recipe, $2 Lua version directory
recipe_lua() {
    src=$WORK/$1/src
    tree=${TREE:-$WORK/$1/tree}
    copy_tree "$src"
    rock_config "$WORK/$1/config.lua" "$tree"
    LUAROCKS_CONFIG=$WORK/$1/config.lua run_recipe "$1" "$src"
    left=$(cd "$src" && git status --porcelain --ignored)
    [ -z "$left" ] || { echo "readme recipe $1 left files in the source tree:"; echo "$left"; return 1; } >&2
    echo "readme: $1 installed redpat into $tree and left the source tree as it was"
    [ -f "$tree/lib/lua/$2/redpat/core.so" ] && [ -f "$tree/share/lua/$2/redpat.lua" ] ||
        { echo "readme recipe $1: no redpat in $tree" >&2; return 1; }
}

recipe_lua_src_rock() {
    src=$WORK/src-rock/repo
    copy_tree "$src"
    url=$(sed -n 's/^ *url *= *"git+\(.*\)",*$/\1/p' "$src/lua/redpat-0.1.0-1.rockspec")
    tag=$(sed -n 's/^ *tag *= *"\(.*\)",*$/\1/p' "$src/lua/redpat-0.1.0-1.rockspec")
    [ -n "$url" ] && [ -n "$tag" ] || { echo "readme_recipes.sh: no git source url/tag in the rockspec" >&2; return 1; }
    (cd "$src" && git tag "$tag")
    tree=$WORK/src-rock/tree
    rock_config "$WORK/src-rock/config.lua" "$tree"
    GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.$src.insteadOf" GIT_CONFIG_VALUE_0="$url" \
        LUAROCKS_CONFIG=$WORK/src-rock/config.lua run_recipe lua-src-rock "$src"
    rock_use "$tree" lua5.4 5.4
    rock_use "$tree" luajit 5.1
}

failed=0
for r; do
    case $r in
    c) fn=recipe_c ;;
    python) fn=recipe_python ;;
    lua-54) fn="recipe_lua lua-54 5.4" ;;
    luajit) fn="recipe_lua luajit 5.1" ;;
    lua-src-rock) fn=recipe_lua_src_rock ;;
    *) echo "readme_recipes.sh: unknown recipe $r" >&2; exit 2 ;;
    esac
    # not as an `if` condition: there `set -e` would be ignored inside the function too
    set +e
    (set -e; $fn)
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
        echo "readme[$r]: 1 passed, 0 failed"
    else
        echo "readme[$r]: 0 passed, 1 failed"
        failed=1
    fi
done
[ "$failed" = 1 ] || [ "$KEEP" = 1 ] || rm -rf "$WORK"
exit "$failed"
