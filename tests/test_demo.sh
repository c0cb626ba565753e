#!/usr/bin/env bash
# Runs `make demo` into a temporary build directory and checks what it left:
# the three folded files, their grammar, the exact poll counts that follow
# from the demo's constants, the timings that follow from its schedule, and
# the summary table on stderr (not stdout).
set -u
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
ok() { echo "[   OK ] $1"; }
bad() { echo "[ FAIL ] $1"; shift; for line in "$@"; do echo "  $line"; done; failed=1; }
check() { # check NAME CONDITION-COMMAND... : runs the condition, reports
    local name=$1; shift
    echo "[ RUN  ] $name"
    if "$@"; then ok "$name"; else bad "$name" "failed: $*"; fi
}

# The constants of examples/demo.c.
CHUNK=256 CHUNKS=2048 TICKS=250 TICK_US=2000

unset DIAGNOSE DIAGNOSE_OUT DIAGNOSE_QUIET DIAGNOSE_MAX_PATHS
echo "[ RUN  ] make demo"
if make --no-print-directory demo BUILD="$tmp" CC="${CC:-cc}" >"$tmp/stdout" 2>"$tmp/stderr"; then
    ok "make demo"
else
    bad "make demo" "exit status $?" "$(cat "$tmp/stderr")"
    exit 1
fi
out=$tmp/demo/diagnose

# value FILE STACK: the number on STACK's line in FILE (empty if absent).
value() { awk -v s="$2" '{ v = $NF; $NF = ""; sub(/ $/, ""); if ($0 == s) print v }' "$1"; }

files_exist() {
    [ -s "$out.polls.folded" ] && [ -s "$out.busy.folded" ] && [ -s "$out.wall.folded" ] &&
        [ "$(ls "$tmp/demo" | grep -c '\.folded$')" -eq 3 ]
}
check "three folded files, and only three" files_exist

grammar() {
    local f
    for f in "$out".polls.folded "$out".busy.folded "$out".wall.folded; do
        [ -f "$f" ] || return 1
        if LC_ALL=C grep -qvE '^[^ ;]+(;[^ ;]+)* [0-9]+$' "$f"; then
            LC_ALL=C grep -nvE '^[^ ;]+(;[^ ;]+)* [0-9]+$' "$f" | head -3
            return 1
        fi
    done
}
check "every line matches the folded grammar" grammar

# extend and concat are polled once per chunk; main polls extend until it
# is ready and, in that same poll, concat for the first time; the ticker is
# polled once per tick.
exact_polls() {
    local want got
    want=$(printf 'main %d\nmain;concat %d\nmain;extend %d\nticker %d\n' \
        $((2 * CHUNKS - 1)) "$CHUNKS" "$CHUNKS" "$TICKS")
    got=$(cat "$out.polls.folded" 2>/dev/null)
    [ "$got" = "$want" ] || { printf 'got:\n%s\nwant:\n%s\n' "$got" "$want"; return 1; }
}
check "exact poll counts" exact_polls

same_paths() {
    local p b w
    p=$(cut -d' ' -f1 "$out.polls.folded") b=$(cut -d' ' -f1 "$out.busy.folded")
    w=$(cut -d' ' -f1 "$out.wall.folded")
    [ "$p" = "$b" ] && [ "$p" = "$w" ]
}
check "the same paths in every file" same_paths

# Copying the string again at every chunk costs far more than amortised
# growth: concat copies CHUNKS/2 times more bytes than extend on average.
busy_split() {
    local e c
    e=$(value "$out.busy.folded" "main;extend") c=$(value "$out.busy.folded" "main;concat")
    echo "  busy ns: extend $e, concat $c"
    [ -n "$e" ] && [ -n "$c" ] && [ "$e" -gt 0 ] && [ "$c" -gt $((10 * e)) ]
}
check "busy of extend > 0, concat > 10x extend" busy_split

# Inclusive values of main: its self value plus its children's. The
# children's runs lie inside main's run, one after the other, so main's
# self wall was not clamped and the sum is main's wall.
main_wall_covers_busy() {
    local busy=0 wall=0 s v
    for s in main "main;extend" "main;concat"; do
        v=$(value "$out.busy.folded" "$s"); busy=$((busy + ${v:-0}))
        v=$(value "$out.wall.folded" "$s"); wall=$((wall + ${v:-0}))
    done
    echo "  main inclusive: busy $busy ns, wall $wall ns"
    [ "$busy" -gt 0 ] && [ "$wall" -ge "$busy" ]
}
check "wall of main >= busy of main" main_wall_covers_busy

# The ticker's deadlines are absolute, TICK_US apart from its first poll,
# so its run lasts at least TICKS-1 periods; it sleeps most of that time.
ticker_wall() {
    local w b
    w=$(value "$out.wall.folded" ticker) b=$(value "$out.busy.folded" ticker)
    echo "  ticker: busy $b ns, wall $w ns"
    [ -n "$w" ] && [ "$w" -ge $(((TICKS - 1) * TICK_US * 1000)) ] && [ "$w" -le 60000000000 ] &&
        [ "$b" -gt 0 ] && [ "$b" -lt "$w" ]
}
check "ticker wall >= (TICKS-1) periods, busy below wall" ticker_wall

result_line() {
    grep -qx "demo: built $((CHUNK * CHUNKS)) bytes twice ($CHUNKS chunks of $CHUNK): extend and concat agree; ticker ticked $TICKS times" "$tmp/stdout"
}
check "the demo's result line on stdout" result_line

# The table is the library's, at exit, on stderr: one row per path.
table_on_stderr() {
    local s
    for s in main "main;extend" "main;concat" ticker; do
        grep -qE "^ *[0-9]+ .* $s\$" "$tmp/stderr" || { echo "  no row for $s"; return 1; }
        grep -qE " $s\$" "$tmp/stdout" && { echo "  row for $s on stdout"; return 1; }
    done
    grep -q '^diagnose.h: 4 paths' "$tmp/stderr"
}
check "the summary table went to stderr" table_on_stderr

# A cap of 4 paths: the root and [overflow] take two, so main and extend
# (first polled, in that order) get lines; concat and the ticker are
# counted in [overflow]; no table.
max_paths_two() {
    local want got
    mkdir -p "$tmp/cap" &&
        (cd "$tmp/cap" && DIAGNOSE_MAX_PATHS=2 DIAGNOSE_QUIET=1 "$tmp/examples/demo" >/dev/null 2>"$tmp/cap/stderr") ||
        return 1
    want=$(printf '[overflow] %d\nmain %d\nmain;extend %d\n' $((CHUNKS + TICKS)) $((2 * CHUNKS - 1)) "$CHUNKS")
    got=$(cat "$tmp/cap/diagnose.polls.folded" 2>/dev/null)
    [ "$got" = "$want" ] || { printf 'got:\n%s\nwant:\n%s\n' "$got" "$want"; return 1; }
    [ ! -s "$tmp/cap/stderr" ]
}
check "DIAGNOSE_MAX_PATHS=2: two named paths, the rest in [overflow]" max_paths_two

exit $failed
