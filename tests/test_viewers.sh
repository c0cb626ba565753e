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
#   - speedscope loading the demo's pprof profile (DIAGNOSE_PPROF): busy
#     time, every frame as the busy.folded file has it;
#   - the page of DIAGNOSE_HTTP, served by a program that runs meanwhile:
#     the table as served, a stuck run, a flame graph that reloads, zooms
#     and switches metric, nothing fetched from elsewhere;
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
    (cd "$tmp/demo" && DIAGNOSE_SVG=1 DIAGNOSE_PPROF=1 DIAGNOSE_QUIET=1 "$demo" >/dev/null 2>&1)
    for m in polls busy wall; do
        jobs+=(svg "$tmp/demo/diagnose.$m.svg" "$tmp/demo/diagnose.$m.folded")
        jobs+=(speedscope "$NODE_DIR/node_modules/speedscope/dist/release" "$tmp/demo/diagnose.$m.folded")
    done
    jobs+=(pprof "$NODE_DIR/node_modules/speedscope/dist/release" "$tmp/demo/diagnose.pb.gz" "$tmp/demo/diagnose.busy.folded")
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

# ---- the page of DIAGNOSE_HTTP, from a program that runs meanwhile ----
# A server's shape: accept, then connections that read and write; one run
# stuck from the start. It polls until the file "stop" appears (60 s at most).
cat >"$tmp/live.c" <<'EOF'
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include <time.h>
#include <unistd.h>
struct step { diag_future base; int n, polls; long spin_ns; struct step *child[2]; };
static void spin(long ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < ns);
}
static diag_status step_poll(diag_future *self, void *cx)
{
    struct step *s = (struct step *)self;
    int i;
    spin(s->spin_ns);
    for (i = 0; i < 2; i++)
        if (s->child[i]) diag_poll(&s->child[i]->base, cx);
    return ++s->n % s->polls == 0 ? DIAG_READY : DIAG_PENDING;
}
int main(void)
{
    struct step read = { DIAG_FUTURE_INIT(step_poll), 0, 3, 40000, { 0, 0 } };
    struct step write = { DIAG_FUTURE_INIT(step_poll), 0, 2, 25000, { 0, 0 } };
    struct step conn = { DIAG_FUTURE_INIT(step_poll), 0, 6, 5000, { &read, &write } };
    struct step accept = { DIAG_FUTURE_INIT(step_poll), 0, 1, 10000, { 0, 0 } };
    struct step server = { DIAG_FUTURE_INIT(step_poll), 0, 1000000, 5000, { &accept, &conn } };
    struct step timer = { DIAG_FUTURE_INIT(step_poll), 0, 1, 15000, { 0, 0 } };
    struct step stuck = { DIAG_FUTURE_INIT(step_poll), 0, 1000000, 1000, { 0, 0 } };
    struct timespec ms = { 0, 1000000 };
    int i;
    DIAGNOSE_AS(&read.base, "read");
    DIAGNOSE_AS(&write.base, "write");
    DIAGNOSE_AS(&conn.base, "conn");
    DIAGNOSE_AS(&accept.base, "accept");
    diag_poll(DIAGNOSE_AS(&stuck.base, "live.stuck"), NULL);
    for (i = 0; i < 60000 && access("stop", F_OK) != 0; i++) {
        diag_poll(DIAGNOSE_AS(&server.base, "server"), NULL);
        if (i % 3 == 0) diag_poll(DIAGNOSE_AS(&timer.base, "timer"), NULL);
        nanosleep(&ms, NULL);
    }
    return 0;
}
EOF
live_pid=
if "$CC" -std=c99 -O2 -I. "$tmp/live.c" -o "$tmp/live" -pthread; then
    (cd "$tmp" && exec env DIAGNOSE_HTTP=127.0.0.1:0 DIAGNOSE_QUIET=0 DIAGNOSE_STUCK_S=0.2 ./live 2>live.err) &
    live_pid=$!
    for _ in $(seq 100); do grep -q 'serving the profile at' "$tmp/live.err" 2>/dev/null && break; sleep 0.1; done
    url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$tmp/live.err" | head -n 1)
    if [ -n "$url" ]; then
        sleep 0.5 # the stuck run passes DIAGNOSE_STUCK_S
        curl -s "${url}?refresh=0" >"$tmp/page.html"
        if sed -n '/<pre id="table">/,/<\/pre>/p' "$tmp/page.html" | grep -Eq '^ +[0-9]+ .*  server;conn;read$'; then
            ok "the page of DIAGNOSE_HTTP: the table is in the HTML as served"
        else
            fail "the page of DIAGNOSE_HTTP: the table is in the HTML as served"
            status=1
        fi
        jobs+=(page "$url")
        [ -n "${PAGE_PNG:-}" ] && jobs+=(page-png "$url" "$PAGE_PNG") # a new picture for docs/http.md
    else
        cat "$tmp/live.err"
        fail "viewers: the live program serves no HTTP"
        status=1
    fi
else
    fail "viewers: the live program did not build"
    status=1
fi

# one browser for all the pages
[ ${#jobs[@]} -gt 0 ] && { node tests/test_viewers.mjs "${jobs[@]}" || status=1; }
if [ -n "$live_pid" ]; then
    touch "$tmp/stop"
    wait "$live_pid"
fi
exit $status

