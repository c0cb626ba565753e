#!/usr/bin/env bash
# Runs each adapter example (join_select, protothreads, stackless, spans,
# libuv_echo, fibers) in a temporary directory with DIAGNOSE_OUT and checks its
# dump: the exact polls file and drops that follow from the example's fixed
# schedule, busy and wall against the sleeps and spins the example does, its
# stdout, and that it also builds and runs with DIAGNOSE_DISABLE (then
# writing nothing).
# Installs libuv1-dev when it is missing (as root, with apt-get).
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-Wall -Wextra -Wpedantic -Werror"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/diagnose-examples-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failures=0

ok() { echo "[   OK ] $1"; }
bad() { echo "  $2"; echo "[ FAIL ] $1"; failures=$((failures + 1)); }
# check NAME CONDITION: evaluates CONDITION (the inside of a [[ ]]) now.
check() {
    local name=$1 cond=$2
    if eval "[[ $cond ]]"; then ok "$name"; else bad "$name" "not true: $cond"; return 1; fi
}

value() { # value FILE STACK: the number on the line whose stack is STACK, or -1
    awk -v s="$2" '{ v = $NF; $NF = ""; sub(/ $/, ""); if ($0 == s) { print v; f = 1 } } END { if (!f) print -1 }' "$1"
}
subtree() { # subtree FILE STACK: sum over STACK and the stacks below it (inclusive value)
    awk -v s="$2" '{ v = $NF; $NF = ""; sub(/ $/, ""); if ($0 == s || index($0, s ";") == 1) t += v } END { print t + 0 }' "$1"
}
drops() { # drops STDERR STACK: the drops column of the summary table for STACK, or -1
    awk -v s="$2" '
        $NF == "path" { for (i = 1; i <= NF; i++) if ($i == "drops") col = i; next }
        col && $NF == s { print $col; f = 1 }
        END { if (!f) print -1 }' "$1"
}

# run NAME: builds the example with make, runs it in $TMP/NAME; sets D (the
# directory) and ELAPSED (ns the run took); the exit code is in D/rc.
run() {
    local name=$1 target="$BUILD/examples/$1" bin t0 t1
    D="$TMP/$name"
    mkdir -p "$D"
    # the target as the Makefile spells it, so its rule (and a rebuild) applies
    if ! make --no-print-directory -s BUILD="$BUILD" CC="$CC" CFLAGS="$CFLAGS" "$target" >"$D/build.txt" 2>&1; then
        cat "$D/build.txt"
        bad "$name builds" "make $target failed"
        return 1
    fi
    bin=$target
    [[ $bin == /* ]] || bin="$PWD/$bin"
    t0=$(date +%s%N)
    (cd "$D" && env -u DIAGNOSE -u DIAGNOSE_QUIET DIAGNOSE_OUT="$D/out" "$bin" >stdout.txt 2>stderr.txt)
    echo $? >"$D/rc"
    t1=$(date +%s%N)
    ELAPSED=$((t1 - t0))
    check "$name exits 0" '$(cat "$D/rc") == 0'
    local f same=1
    for f in "$D"/out.*.folded; do
        [ "$(cut -d' ' -f1 "$f")" == "$(cut -d' ' -f1 "$D/out.polls.folded")" ] || same=0
        grep -qvE '^[^ ;]+(;[^ ;]+)* [0-9]+$' "$f" && same=0
    done
    check "$name folded files: pinned line grammar, the same stacks in each" '$same == 1 && -s "$D/out.polls.folded"'
}

# disabled NAME EXTRA_LIBS: the example built with DIAGNOSE_DISABLE runs and writes no files.
disabled() {
    local name=$1 dir="$TMP/$1.disabled" bin="$TMP/$1.disabled/$1"
    mkdir -p "$dir"
    if ! $CC -std=c99 $CFLAGS $WARN -DDIAGNOSE_DISABLE -I. "examples/$name.c" -o "$bin" -pthread -lm $2 2>"$dir/build.txt"; then
        cat "$dir/build.txt"
        bad "$name builds with DIAGNOSE_DISABLE" "compile failed"
        return
    fi
    (cd "$dir" && DIAGNOSE_OUT="$dir/out" "$bin" >stdout.txt 2>stderr.txt)
    local rc=$?
    check "$name with DIAGNOSE_DISABLE runs and writes no profile" \
        '$rc == 0 && -z "$(ls "$dir" | grep folded)" && ! -s "$dir/stderr.txt"'
}

# Times are TSC ticks calibrated against the monotonic clock: a lower bound
# derived from sleeps is checked as "-ge $(slack NS)", 5% below it. Spins
# are checked 10% below (written out), since a spin ends by a clock read.
slack() { echo $(($1 * 95 / 100)); }

# ---- join_select: 8 requests, join(user, orders) then select(cache, db) ----
test_join_select() {
    local n=join_select tick=200000
    run $n || return
    check "$n polls: every poll count follows from the latencies" '"$(cat "$D/out.polls.folded")" == "request 52
request;join 40
request;join;orders 40
request;join;user 24
request;select 20
request;select;cache 20
request;select;db 16"'
    check "$n drops: db loses the 4 cache hits, cache the 4 misses" \
        '$(drops "$D/stderr.txt" "request;select;db") == 4 && $(drops "$D/stderr.txt" "request;select;cache") == 4 &&
         $(drops "$D/stderr.txt" "request;join;user") == 0 && $(drops "$D/stderr.txt" "request") == 0'
    check "$n stdout: 4 cache wins, 4 db wins, 7 ticks" \
        '$(grep -c "cache won" "$D/stdout.txt") == 4 && $(grep -c "db won" "$D/stdout.txt") == 4 &&
         "$(tail -n 1 "$D/stdout.txt")" == "8 requests in 7 ticks"'
    check "$n the table on stderr has the 7 paths" '"$(grep "^diagnose.h: " "$D/stderr.txt")" == "diagnose.h: 7 paths,"*'
    # busy of a leaf >= its polls times the spin of each poll (20, 20, 5, 50 us)
    local b="$D/out.busy.folded" w="$D/out.wall.folded"
    check "$n busy: leaves spin 24x20us, 40x20us, 20x5us, 16x50us" \
        '$(value $b request\;join\;user) -ge 432000 && $(value $b request\;join\;orders) -ge 720000 &&
         $(value $b request\;select\;cache) -ge 90000 && $(value $b request\;select\;db) -ge 720000'
    # a leaf's run spans the executor's sleeps between its first and last
    # poll: user 2 ticks, orders 4, cache and db 1 (hit) or 2 (miss) each
    check "$n wall: leaf runs span the executor's sleeps" \
        '$(value $w request\;join\;user) -ge $(slack $((8 * 2 * tick))) &&
         $(value $w request\;join\;orders) -ge $(slack $((8 * 4 * tick))) &&
         $(value $w request\;select\;cache) -ge $(slack $((12 * tick))) &&
         $(value $w request\;select\;db) -ge $(slack $((12 * tick)))'
    check "$n wall: a request spans 5 (hit) or 6 (miss) ticks" '$(subtree $w request) -ge $(slack $((44 * tick)))'
    local leaf ok=1
    for leaf in request\;join\;user request\;join\;orders request\;select\;cache request\;select\;db; do
        [ "$(value $b "$leaf")" -le "$(value $w "$leaf")" ] || ok=0
        [ "$(value $w "$leaf")" -le $((8 * ELAPSED)) ] || ok=0
    done
    check "$n busy <= wall <= 8 requests x elapsed for every leaf" '$ok == 1'
    disabled $n ""
}

# ---- protothreads: led, reader spawning read_msg, an abandoned watchdog ----
test_protothreads() {
    local n=protothreads tick=500000
    run $n || return
    check "$n polls: one per tick while alive, read_msg also on its spawn tick" '"$(cat "$D/out.polls.folded")" == "led 13
reader 12
reader;read_msg 15
watchdog 13"'
    check "$n drops: only the abandoned watchdog" \
        '$(drops "$D/stderr.txt" watchdog) == 1 && $(drops "$D/stderr.txt" led) == 0 &&
         $(drops "$D/stderr.txt" reader) == 0 && $(drops "$D/stderr.txt" "reader;read_msg") == 0'
    check "$n stdout is the fixed schedule" '"$(cat "$D/stdout.txt")" == "tick  2: message 1 read
tick  4: led on
tick  5: message 2 read
tick  8: led off
tick  8: message 3 read
tick 11: message 4 read
tick 12: led on
done after 13 ticks"'
    local b="$D/out.busy.folded" w="$D/out.wall.folded"
    check "$n busy: read_msg parses 4 messages of 100us" \
        '$(value $b reader\;read_msg) -ge 360000 && $(value $b reader\;read_msg) -le $(value $w reader\;read_msg)'
    # led runs from tick 0 to 12, the watchdog from tick 0 to its cancel after
    # tick 12's sleep, read_msg's 4 runs cover ticks 0 to 11
    check "$n wall: runs span the sleeps between their first and last tick" \
        '$(value $w led) -ge $(slack $((12 * tick))) && $(value $w watchdog) -ge $(slack $((13 * tick))) &&
         $(value $w reader\;read_msg) -ge $(slack $((11 * tick))) &&
         $(value $w led) -le $ELAPSED && $(value $w watchdog) -le $ELAPSED && $(subtree $w reader) -le $ELAPSED'
    disabled $n ""
    check "$n with DIAGNOSE_DISABLE prints the same schedule" \
        '"$(cat "$TMP/$n.disabled/stdout.txt")" == "$(cat "$D/stdout.txt")"'
}

# ---- stackless: four fetches of one async function, spans kept by address ----
test_stackless() {
    local n=stackless tick=500000
    run $n || return
    check "$n polls: one per tick while alive, parse 3 per reply" '"$(cat "$D/out.polls.folded")" == "fetch 31
fetch;parse 9"'
    check "$n drops: only the abandoned fetch" \
        '$(drops "$D/stderr.txt" fetch) == 1 && $(drops "$D/stderr.txt" "fetch;parse") == 0'
    check "$n stdout is the fixed schedule" '"$(cat "$D/stdout.txt")" == "tick  4: fetch 0 parsed 3 chunks
tick  6: fetch 1 parsed 3 chunks
tick  8: fetch 2 parsed 3 chunks
tick 10: fetch 3 abandoned
done after 11 ticks"'
    local b="$D/out.busy.folded" w="$D/out.wall.folded"
    check "$n busy: 9 parses of a 50us chunk" \
        '$(value $b fetch\;parse) -ge 405000 && $(value $b fetch\;parse) -le $(value $w fetch\;parse)'
    # each fetch's run: from tick 0 to its end (ticks 4, 6, 8) or its drop
    # (tick 10), so 4 + 6 + 8 + 10 sleeps; each parse spans 2 sleeps
    check "$n wall: four runs at once, each its own" \
        '$(subtree $w fetch) -ge $(slack $((28 * tick))) && $(subtree $w fetch) -le $((4 * ELAPSED)) &&
         $(value $w fetch\;parse) -ge $(slack $((6 * tick)))'
    disabled $n ""
    check "$n with DIAGNOSE_DISABLE prints the same schedule" \
        '"$(cat "$TMP/$n.disabled/stdout.txt")" == "$(cat "$D/stdout.txt")"'
}

# ---- spans: callback jobs, a disk thread, one job cancelled ----
test_spans() {
    local n=spans disk=300000
    run $n || return
    check "$n polls: 3 jobs x 6 calls + 3 for the cancelled one; 17 chunks compressed" \
        '"$(cat "$D/out.polls.folded")" == "copy 21
copy;compress 17"'
    check "$n drops: the cancelled job" \
        '$(drops "$D/stderr.txt" copy) == 1 && $(drops "$D/stderr.txt" "copy;compress") == 0'
    check "$n stdout: 3 jobs copied, job 2 cancelled" '"$(sort "$D/stdout.txt")" == "job 0: 5 chunks copied
job 1: 5 chunks copied
job 2: cancelled after 2 chunks
job 3: 5 chunks copied"'
    local b="$D/out.busy.folded" w="$D/out.wall.folded" s="$D/out.sched.folded"
    check "$n busy: 17 compressions of 50us" '$(value $b copy\;compress) -ge 765000'
    # a one-poll run lasts exactly its poll: the same ticks on both sides
    check "$n wall of compress equals its busy (one-poll runs)" '$(value $w copy\;compress) == $(value $b copy\;compress)'
    # the disk serves one chunk at a time: 3 x 5 + 2 chunks waited for
    check "$n wall: the jobs waited for 17 disk reads of 300us" \
        '$(subtree $w copy) -ge $(slack $((17 * disk))) && $(subtree $w copy) -le $((4 * ELAPSED))'
    # a job's waits (post to callback) never overlap, and the first (its
    # start event) comes before its run: bounded by the run of the program
    check "$n sched: posted events waited for the dispatcher" \
        '-f $s && $(value $s copy) -gt 0 && $(value $s copy) -le $((4 * ELAPSED)) && $(value $s copy\;compress) == 0'
    disabled $n ""
}

# ---- libuv_echo: 4 clients x 5 messages over loopback ----
need_libuv() {
    dpkg -s libuv1-dev >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 1
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libuv1-dev) >/dev/null 2>&1
}
test_libuv_echo() {
    local n=libuv_echo N=4 M=5 think_ms=2
    if ! need_libuv; then
        bad "$n: libuv1-dev is installed" "install it: apt-get install libuv1-dev"
        return
    fi
    run $n || return
    check "$n polls: one per callback, per connection and per stage" '"$(cat "$D/out.polls.folded")" == "client 68
client;close 8
client;connect 8
client;recv 40
client;send 40
client;think 32
server 5
server;conn 52
server;conn;accept 4
server;conn;close 8
server;conn;read 48
server;conn;write 40"'
    check "$n no drops: every connection ran to its close" \
        '$(drops "$D/stderr.txt" client) == 0 && $(drops "$D/stderr.txt" "server;conn") == 0'
    check "$n stdout: 20 echoes over loopback" \
        '"$(cat "$D/stdout.txt")" =~ ^"4 clients x 5 messages: 20 echoed over 127.0.0.1:"[0-9]+" in "[0-9.]+" ms"$'
    local b="$D/out.busy.folded" w="$D/out.wall.folded" stage ok=1
    # libuv's timers count whole milliseconds of a cached loop time, so a
    # 2 ms timer can fire after 1 ms: each of the N(M-1) thinks is >= 1 ms,
    # and the server's read stages wait through all of them
    check "$n wall: clients thought N(M-1) times, the server waited meanwhile" \
        '$(value $w client\;think) -ge $(slack $((N * (M - 1) * (think_ms - 1) * 1000000))) &&
         $(value $w server\;conn\;read) -ge $(slack $((N * (M - 1) * (think_ms - 1) * 1000000)))'
    for stage in client\;close client\;connect client\;recv client\;send client\;think server\;conn\;accept \
        server\;conn\;close server\;conn\;read server\;conn\;write; do
        [ "$(value $b "$stage")" -gt 0 ] && [ "$(value $b "$stage")" -le "$(value $w "$stage")" ] || ok=0
        [ "$(value $w "$stage")" -le $((N * ELAPSED)) ] || ok=0
    done
    check "$n every stage: 0 < busy <= wall <= N x elapsed" '$ok == 1' || paste -d" " "$b" "$w"
    disabled $n "$(pkg-config --libs libuv 2>/dev/null || echo -luv)"
}

# ---- fibers: ucontext coroutines that yield inside their spans ----
test_fibers() {
    local n=fibers tick=1000000
    run $n || return
    check "$n polls: one per resume, a span across a yield is one poll" '"$(cat "$D/out.polls.folded")" == "conn 10
conn;request 7
conn;request;query 7"'
    check "$n drops: the closed connection's task and its two open spans" \
        '$(drops "$D/stderr.txt" conn) == 1 && $(drops "$D/stderr.txt" "conn;request") == 1 &&
         $(drops "$D/stderr.txt" "conn;request;query") == 1'
    check "$n stdout is the fixed schedule" '"$(cat "$D/stdout.txt")" == "tick 2: conn 3 closed by its client
tick 4: conn 0 answered 2 requests
tick 4: conn 1 answered 2 requests
tick 4: conn 2 answered 2 requests"'
    local b="$D/out.busy.folded" w="$D/out.wall.folded"
    # busy while the coroutine runs: request parses 7 x 100us, query reads
    # 6 x 200us; each query's wall spans the 2 ticks it waited
    check "$n busy: the parsing and the reading, not the waiting" \
        '$(value $b conn\;request) -ge 630000 && $(value $b conn\;request\;query) -ge 1080000 &&
         $(value $w conn\;request\;query) -ge $(slack $((6 * 2 * tick)))'
    check "$n busy: the scheduler's span keeps only its own time" \
        '$(value $b conn) -lt $(value $b conn\;request) && $(value $b conn\;request\;query) -le $(value $w conn\;request\;query)'
    disabled $n ""
    check "$n with DIAGNOSE_DISABLE prints the same schedule" \
        '"$(cat "$TMP/$n.disabled/stdout.txt")" == "$(cat "$D/stdout.txt")"'
}

test_join_select
test_protothreads
test_stackless
test_spans
test_libuv_echo
test_fibers
[ $failures -eq 0 ]
