#!/usr/bin/env bash
# The profiles in the viewers people open them with, checked by what the
# page shows in headless Chromium (tests/test_viewers.mjs):
#   - the built-in SVG flame graphs of the demo (DIAGNOSE_SVG=1) and of a
#     program whose frame names need XML escaping: frames, widths, titles,
#     hover and click-to-zoom;
#   - speedscope (npm package) loading the demo's folded files: every frame
#     with the total and self the file says;
#   - speedscope loading the demo's timeline (DIAGNOSE_TRACE): every frame
#     with the total and self time the trace file says;
#   - examples/diff_folded.sh: byte-exact two-column output.
# Installs Debian's chromium and nodejs when missing, and speedscope and
# playwright-core (to drive Chromium) into $BUILD/node.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
NODE_DIR=$BUILD/node
SPEEDSCOPE_VERSION=1.25.0
PLAYWRIGHT_VERSION=1.60.0 # the last to run on node 18 (Debian 12)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { echo "[   OK ] $1"; }
fail() { echo "[ FAIL ] $1"; }

apt_install() { # package...: as root, only what is missing
    local need=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
    [ ${#need[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || return 1
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >"$tmp/apt.log" 2>&1
}

# ---- the differential: no browser needed ----
diff_ok=1
printf 'main 10\nmain;a 5\nmain;b 7\n' >"$tmp/before.folded"
printf 'main 12\nmain;b 3\nmain;c 9\nmain;b 1\nnot a line\n' >"$tmp/after.folded"
examples/diff_folded.sh "$tmp/before.folded" "$tmp/after.folded" >"$tmp/diff" 2>"$tmp/diff.err" || diff_ok=0
printf 'main 10 12\nmain;a 5 0\nmain;b 7 4\nmain;c 0 9\n' | cmp -s - "$tmp/diff" || { diff_ok=0; cat "$tmp/diff"; }
grep -qx "$tmp/after.folded: ignored 1 line(s) that are not \"stack integer\"" "$tmp/diff.err" || { diff_ok=0; cat "$tmp/diff.err"; }
[ $diff_ok -eq 1 ] && ok "diff_folded.sh: union of stacks, 0 where missing, duplicates summed" ||
    fail "diff_folded.sh: union of stacks, 0 where missing, duplicates summed"
# -n: before scaled to the after total, 22 -> 25, rounded down
examples/diff_folded.sh -n "$tmp/before.folded" "$tmp/after.folded" 2>/dev/null >"$tmp/diffn"
printf 'main 11 12\nmain;a 5 0\nmain;b 7 4\nmain;c 0 9\n' | cmp -s - "$tmp/diffn" &&
    ok "diff_folded.sh -n: before normalized to the after total" ||
    { cat "$tmp/diffn"; fail "diff_folded.sh -n: before normalized to the after total"; }
: >"$tmp/empty.folded"
examples/diff_folded.sh "$tmp/empty.folded" "$tmp/before.folded" >"$tmp/diffe"
printf 'main 0 10\nmain;a 0 5\nmain;b 0 7\n' | cmp -s - "$tmp/diffe" &&
    ok "diff_folded.sh: an empty before file" || { cat "$tmp/diffe"; fail "diff_folded.sh: an empty before file"; }

# ---- what the browser tests need ----
if ! command -v chromium >/dev/null 2>&1 && ! apt_install chromium; then
    fail "viewers: chromium is not installed and apt-get install chromium failed (see below)"
    cat "$tmp/apt.log" 2>/dev/null | tail -5
    exit 1
fi
if ! command -v node >/dev/null 2>&1 && ! apt_install nodejs npm; then
    fail "viewers: node is not installed and apt-get install nodejs npm failed"
    exit 1
fi
installed() { # package version: installed in $NODE_DIR at that version
    grep -qs "\"version\": \"$2\"" "$NODE_DIR/node_modules/$1/package.json"
}
if ! installed speedscope "$SPEEDSCOPE_VERSION" || ! installed playwright-core "$PLAYWRIGHT_VERSION"; then
    mkdir -p "$NODE_DIR"
    if ! npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error \
        "speedscope@$SPEEDSCOPE_VERSION" "playwright-core@$PLAYWRIGHT_VERSION" >"$tmp/npm.log" 2>&1; then
        tail -5 "$tmp/npm.log"
        fail "viewers: npm install speedscope playwright-core into $NODE_DIR failed"
        exit 1
    fi
fi
export VIEWERS_NODE=$NODE_DIR CHROMIUM=$(command -v chromium)
status=0

jobs=()

# ---- the demo's profile ----
if make --no-print-directory -s BUILD="$BUILD" "$BUILD/examples/demo" >"$tmp/make.log" 2>&1; then
    mkdir -p "$tmp/demo"
    demo=$(cd "$BUILD/examples" && pwd)/demo # BUILD may be relative or absolute
    (cd "$tmp/demo" && DIAGNOSE_SVG=1 DIAGNOSE_QUIET=1 "$demo" >/dev/null 2>&1)
    for m in polls busy wall; do
        jobs+=(svg "$tmp/demo/diagnose.$m.svg" "$tmp/demo/diagnose.$m.folded")
        jobs+=(speedscope "$NODE_DIR/node_modules/speedscope/dist/release" "$tmp/demo/diagnose.$m.folded")
    done
    # the timeline: the demo's 8441 polls fit in the ring
    mkdir -p "$tmp/trace"
    (cd "$tmp/trace" && DIAGNOSE_TRACE=10000 DIAGNOSE_SLOW_NS=0 DIAGNOSE_QUIET=1 "$demo" >/dev/null 2>&1)
    if [ "$(grep -c '"ph": "X"' "$tmp/trace/diagnose.trace.json" 2>/dev/null)" = 8441 ]; then
        ok "DIAGNOSE_TRACE=10000: the demo's trace holds all its 8441 polls"
    else
        fail "DIAGNOSE_TRACE=10000: the demo's trace holds all its 8441 polls"
        status=1
    fi
    jobs+=(trace "$NODE_DIR/node_modules/speedscope/dist/release" "$tmp/trace/diagnose.trace.json")
else
    cat "$tmp/make.log"
    fail "viewers: make $BUILD/examples/demo"
    status=1
fi

# ---- names that need escaping, and exact values (polls) ----
cat >"$tmp/names.c" <<'EOF'
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
struct leaf { diag_future base; int n; };
static diag_status leaf_poll(diag_future *self, void *cx)
{
    (void)cx;
    return ++((struct leaf *)self)->n == 3 ? DIAG_READY : DIAG_PENDING;
}
static diag_status outer_poll(diag_future *self, void *cx)
{
    struct leaf a = { DIAG_FUTURE_INIT(leaf_poll), 0 }, b = { DIAG_FUTURE_INIT(leaf_poll), 0 };
    (void)self;
    while (diag_poll(DIAGNOSE_AS(&a.base, "req<&>"), cx) == DIAG_PENDING) {}
    while (diag_poll(DIAGNOSE_AS(&b.base, "a&&b"), cx) == DIAG_PENDING) {}
    return DIAG_READY;
}
int main(void)
{
    diag_future outer = DIAG_FUTURE_INIT(outer_poll);
    int i;
    for (i = 0; i < 2; i++) diag_poll(DIAGNOSE_AS(&outer, "<server>"), 0);
    return diag_write_svg("names") != 0;
}
EOF
printf '<server> 2\n<server>;a&&b 6\n<server>;req<&> 6\n' >"$tmp/names.want.folded"
if "$CC" -std=c99 -O2 -I. "$tmp/names.c" -o "$tmp/names" -pthread && (cd "$tmp" && DIAGNOSE_QUIET=1 ./names); then
    jobs+=(svg "$tmp/names.polls.svg" "$tmp/names.want.folded")
else
    fail "viewers: the escaping program did not build or run"
    status=1
fi

# one browser for all the pages
[ ${#jobs[@]} -gt 0 ] && { node tests/test_viewers.mjs "${jobs[@]}" || status=1; }
exit $status
