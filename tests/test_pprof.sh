#!/usr/bin/env bash
# The pprof profiles in go tool pprof (Debian's golang-go, installed when
# missing and run as root, as test_viewers.sh does with chromium):
#   - PREFIX.pb.gz of DIAGNOSE_PPROF=1: -traces gives every path with the
#     polls, busy and wall of the same dump's folded files, exactly; -top
#     gives each frame's busy time;
#   - /debug/pprof/profile of DIAGNOSE_HTTP, fetched by go tool pprof itself;
#   - -diff_base between two windows the script asks for: exactly the
#     change in polls the program made in each.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
export PPROF_TMPDIR=$tmp HOME=$tmp # where go tool pprof keeps what it fetches
status=0
ok() { echo "[   OK ] $1"; }
fail() { echo "[ FAIL ] $1"; status=1; }

if ! command -v go >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; } >"$tmp/apt.log" 2>&1
fi
if ! command -v go >/dev/null 2>&1; then
    tail -5 "$tmp/apt.log" 2>/dev/null
    fail "pprof: go is not installed and apt-get install golang-go failed"
    exit 1
fi

# Two nested paths under each of two roots; with "dump", DIAGNOSE_PPROF
# writes prof.pb.gz next to prof.*.folded. Else it serves (DIAGNOSE_HTTP)
# and, for each of the script's two pprof windows, polls window.a and
# window.b the counts of its phase, once it sees the window open; then it
# polls "loop" until the file "stop" appears.
cat >"$tmp/prog.c" <<'EOF'
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include <string.h>
#include <time.h>
#include <unistd.h>
struct node { diag_future base; int n, polls; struct node *child; };
static diag_status node_poll(diag_future *self, void *cx)
{
    struct node *t = (struct node *)self;
    if (t->child) diag_poll(&t->child->base, cx);
    return ++t->n % t->polls == 0 ? DIAG_READY : DIAG_PENDING;
}
static void run(struct node *t, const char *name, int polls)
{
    int i;
    for (i = 0; i < polls; i++) diag_poll(DIAGNOSE_AS(&t->base, name), NULL);
}
static void sleep_ms(long ms)
{
    struct timespec t = { 0, 0 };
    t.tv_nsec = ms * 1000000;
    nanosleep(&t, NULL);
}
int main(int argc, char **argv)
{
    static const int counts[2][2] = { { 100, 0 }, { 20, 50 } };
    struct node fetch = { DIAG_FUTURE_INIT(node_poll), 0, 3, NULL }, server = { DIAG_FUTURE_INIT(node_poll), 0, 2, &fetch };
    struct node parse = { DIAG_FUTURE_INIT(node_poll), 0, 1, NULL }, worker = { DIAG_FUTURE_INIT(node_poll), 0, 4, &parse };
    struct node a = { DIAG_FUTURE_INIT(node_poll), 0, 1, NULL }, b = { DIAG_FUTURE_INIT(node_poll), 0, 1, NULL };
    uint64_t seen = 0;
    int phase, waited;
    DIAGNOSE_AS(&fetch.base, "fetch");
    DIAGNOSE_AS(&parse.base, "parse");
    if (argc > 1 && strcmp(argv[1], "dump") == 0) {
        run(&server, "server", 6);
        run(&worker, "worker", 9); /* one run of worker left open */
        return diag_dump("prof") != 0;
    }
    for (phase = 0; phase < 2; phase++) {
        for (waited = 0; diag__rt->server && waited < 60000 &&
                         __atomic_load_n(&diag__rt->server->windows, __ATOMIC_ACQUIRE) == seen; waited++)
            sleep_ms(1);
        seen++;
        run(&a, "window.a", counts[phase][0]);
        run(&b, "window.b", counts[phase][1]);
    }
    for (waited = 0; access("stop", F_OK) != 0 && waited < 6000; waited++) {
        run(&server, "loop", 10);
        sleep_ms(5);
    }
    return 0;
}
EOF
if ! "$CC" -std=c99 $CFLAGS -I. "$tmp/prog.c" -o "$tmp/prog" -pthread 2>"$tmp/cc.log"; then
    cat "$tmp/cc.log"
    fail "pprof: the test program did not build"
    exit 1
fi

# -traces as folded lines: each sample's frames (leaf first) reversed
# and joined, then its value (-unit=ns: nanoseconds with their unit; a
# value as wide as its column has no blank before it).
traces_folded() { # FILE SAMPLE_INDEX
    go tool pprof -traces -unit=ns -sample_index="$2" "$1" 2>/dev/null | awk '
        function flush() { if (n) { s = f[n]; for (i = n - 1; i >= 1; i--) s = s ";" f[i]; print s, v } n = 0 }
        /^-+\+-+$/ { flush(); next }
        /^ +[^ ]+: / { next }                     # a label line, "runs:  5"
        /^ *[0-9.]+(ns)? +[^ ]+$/ { v = $1; sub(/ns$/, "", v); n = 1; f[1] = $2; next }
        /^ +[^ ]+$/ && n { f[++n] = $1 }
        END { flush() }' | LC_ALL=C sort
}

(cd "$tmp" && DIAGNOSE_PPROF=1 DIAGNOSE_QUIET=1 ./prog dump)
all=1
for m in polls busy wall; do
    traces_folded "$tmp/prof.pb.gz" "$m" >"$tmp/$m.traces"
    if ! LC_ALL=C sort "$tmp/prof.$m.folded" | cmp -s - "$tmp/$m.traces"; then
        all=0
        echo "  $m: go tool pprof -traces says"; cat "$tmp/$m.traces"; echo "  the folded file says"; cat "$tmp/prof.$m.folded"
    fi
done
[ "$(wc -l <"$tmp/polls.traces")" -eq 4 ] || all=0
[ $all -eq 1 ] && ok "go tool pprof -traces of PREFIX.pb.gz: the dump's folded files, exactly" ||
    fail "go tool pprof -traces of PREFIX.pb.gz: the dump's folded files, exactly"

# -top: flat is each frame's own busy time, the frames of the folded file
go tool pprof -top -unit=ns "$tmp/prof.pb.gz" >"$tmp/top" 2>"$tmp/top.err"
top_ok=1
grep -q '^Type: busy$' "$tmp/top" || top_ok=0
while read -r stack value; do
    frame=${stack##*;}
    grep -Eq "^ *${value}ns +[0-9.]+% +[0-9.]+% +[0-9]+ns +[0-9.]+% +${frame}\$" "$tmp/top" || { top_ok=0; echo "  no line: $frame ${value}ns"; }
done <"$tmp/prof.busy.folded"
[ $top_ok -eq 1 ] && ok "go tool pprof -top: each frame's busy time as the folded file has it" ||
    { cat "$tmp/top" "$tmp/top.err"; fail "go tool pprof -top: each frame's busy time as the folded file has it"; }

# The endpoint: two windows fetched with curl while the program polls
# their counts, then one fetched by go tool pprof itself.
(cd "$tmp" && DIAGNOSE_HTTP=127.0.0.1:0 DIAGNOSE_QUIET=0 ./prog 2>stderr.txt) &
pid=$!
for _ in $(seq 100); do grep -q 'serving the profile at' "$tmp/stderr.txt" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/' "$tmp/stderr.txt" | head -n 1)
if [ -z "$url" ]; then
    cat "$tmp/stderr.txt"
    fail "pprof: the program serves no HTTP"
    exit 1
fi
curl -s -o "$tmp/w1.pb.gz" "${url}debug/pprof/profile?seconds=1"
curl -s -o "$tmp/w2.pb.gz" "${url}debug/pprof/profile?seconds=1"
go tool pprof -top -sample_index=polls -diff_base "$tmp/w1.pb.gz" "$tmp/w2.pb.gz" >"$tmp/diff" 2>&1
if grep -Eq '^ +-80 .* window\.a$' "$tmp/diff" && grep -Eq '^ +50 .* window\.b$' "$tmp/diff" &&
    [ "$(grep -c 'window\.' "$tmp/diff")" -eq 2 ]; then
    ok "go tool pprof -diff_base between two windows: window.a -80, window.b +50"
else
    cat "$tmp/diff"
    fail "go tool pprof -diff_base between two windows: window.a -80, window.b +50"
fi
go tool pprof -top -sample_index=polls "${url}debug/pprof/profile?seconds=1" >"$tmp/fetched" 2>&1
if grep -q '^Type: polls$' "$tmp/fetched" && grep -Eq ' loop$' "$tmp/fetched" && grep -Eq ' fetch$' "$tmp/fetched"; then
    ok "go tool pprof fetches /debug/pprof/profile?seconds=1 itself"
else
    cat "$tmp/fetched"
    fail "go tool pprof fetches /debug/pprof/profile?seconds=1 itself"
fi
touch "$tmp/stop"
wait "$pid"
pid=
exit $status
