#!/usr/bin/env bash
# `make bench`: builds the benchmarks (-O2) and prints one table: case, ns per
# operation, the figure compared with its target, PASS or MISS. Then the
# stable load. Exits 1 when a target is missed.
#
# The benchmarks run under SCHED_FIFO (chrt -f 1) when that is allowed, so
# that other processes do not preempt a timed loop; BENCH_NO_RT=1 turns it off.
# How a figure is measured (rounds, quantiles, blocks): the top of
# bench/bench.c. Every round of every figure with a target is written to
# $BUILD/bench/rounds.txt, one line per figure, for a closer look at a miss.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
OUT=${BUILD:-build}/bench
WARN="-Wall -Wextra -Wpedantic -Werror"
mkdir -p "$OUT"
"$CC" -std=c99 -O2 $WARN -I. bench/bench.c -o "$OUT/bench" -pthread -lm || exit 1
"$CC" -std=c99 -O2 $WARN -I. -DDIAGNOSE_DISABLE bench/bench.c -o "$OUT/bench.disabled" -pthread -lm || exit 1
"$CC" -std=c99 -O2 $WARN -I. bench/stable_load.c -o "$OUT/stable_load" -pthread -lm || exit 1
# The libuv echo example as a real workload: many clients, no think time.
echo_load="-DCLIENTS=50 -DMESSAGES=200 -DTHINK_MS=0"
echo_requests=$((50 * 200))
have_uv=0
if pkg-config --exists libuv 2>/dev/null; then
    uv=$(pkg-config --cflags --libs libuv)
    "$CC" -std=c99 -O2 $WARN -I. $echo_load examples/libuv_echo.c -o "$OUT/echo" $uv -pthread -lm &&
        "$CC" -std=c99 -O2 $WARN -I. $echo_load -DDIAGNOSE_DISABLE examples/libuv_echo.c -o "$OUT/echo.disabled" \
            $uv -pthread -lm && have_uv=1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export DIAGNOSE_OUT="$work/out" DIAGNOSE_QUIET=1
unset DIAGNOSE DIAGNOSE_MAX_PATHS DIAGNOSE_SVG DIAGNOSE_INTERVAL DIAGNOSE_SIGNAL DIAGNOSE_TRACE
rt=()
if [ "${BENCH_NO_RT:-0}" != 1 ] && chrt -f 1 true 2>/dev/null; then rt=(chrt -f 1); fi
bin=$(cd "$OUT" && pwd)

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
read -r vendor target < <("$bin/bench" vendor)
echo "machine: ${cpu:-unknown CPU} (vendor $vendor: extra/floor target <= $target), $(nproc) CPUs;" \
    "$("$CC" --version | head -n 1); -O2"
echo "scheduling: ${rt[*]:-normal (not real-time)}"
echo
printf '%-46s %9s  %-32s %-18s %s\n' case ns/op figure target result
printf '%s\n' "$(printf '%.0s-' {1..114})"
log="$work/table"
export BENCH_ROUNDS_FILE="$bin/rounds.txt"
: >"$BENCH_ROUNDS_FILE"

# The echo workload: CPU time (user + system) per request, with the library
# recording, with DIAGNOSE=0 and compiled out. A round runs the three back
# to back (in the opposite order in the next round); the percentages are
# medians of each round's own ratios, the CPU times medians over rounds.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo_run() { # echo_run on|off|out: CPU seconds of one run
    case $1 in
    on) "${rt[@]}" "$bin/bench" cpu "$bin/echo" ;;
    off) DIAGNOSE=0 "${rt[@]}" "$bin/bench" cpu "$bin/echo" ;;
    out) "${rt[@]}" "$bin/bench" cpu "$bin/echo.disabled" ;;
    esac
}
echo_workload() {
    local i on off out order rounds=15
    declare -A cpu
    for ((i = 0; i < rounds; i++)); do
        if ((i % 2)); then order="out off on"; else order="on off out"; fi
        for what in $order; do cpu[$what]=$(echo_run "$what"); done
        echo "${cpu[on]} ${cpu[off]} ${cpu[out]}"
    done >"$work/echo"
    on=$(awk '{ print $1 }' "$work/echo" | median)
    off=$(awk '{ print $2 }' "$work/echo" | median)
    out=$(awk '{ print $3 }' "$work/echo" | median)
    awk -v on="$on" -v off="$off" -v out="$out" -v n="$echo_requests" \
        -v r_on="$(awk '{ print $1 / $3 }' "$work/echo" | median)" \
        -v r_off="$(awk '{ print $2 / $3 }' "$work/echo" | median)" 'BEGIN {
        f = "%-46s %9.0f  %-32s %-18s %s\n"
        printf f, "libuv echo, compiled out: CPU ns per request", out * 1e9 / n, "", "", ""
        printf f, "libuv echo, DIAGNOSE=0: CPU ns per request", off * 1e9 / n,
            sprintf("%+.1f%% vs compiled out", (r_off - 1) * 100), "", ""
        printf f, "libuv echo, recording: CPU ns per request", on * 1e9 / n,
            sprintf("%+.1f%% vs compiled out", (r_on - 1) * 100), "", ""
    }'
}
{
    "${rt[@]}" "$bin/bench" overhead
    DIAGNOSE=0 "${rt[@]}" "$bin/bench" overhead
    "${rt[@]}" "$bin/bench.disabled" overhead
    if CC="$CC" BUILD="${BUILD:-build}" bench/asm_check.sh >"$work/asm" 2>&1; then r=PASS; else r=MISS; fi
    printf '%-46s %9s  %-32s %-18s %s\n' "compiled out: asm of diag_poll vs direct call" - \
        "$(grep -c '^\[   OK \]' "$work/asm") of 2 identical" "identical code" "$r"
    "${rt[@]}" "$bin/bench" threads
    "${rt[@]}" "$bin/bench" memory
    "${rt[@]}" "$bin/bench" paths
    "${rt[@]}" "$bin/bench" scale 1 20000
    "${rt[@]}" "$bin/bench" scale 64 20000
    "${rt[@]}" "$bin/bench" scale 16 100000
    "${rt[@]}" "$bin/bench" clock
    DIAGNOSE_TRACE=4096 DIAGNOSE_SLOW_NS=0 "${rt[@]}" "$bin/bench" trace
    "${rt[@]}" "$bin/bench" runs
    "${rt[@]}" "$bin/bench" call
    "${rt[@]}" "$bin/bench" fiber
    if [ "$have_uv" = 1 ]; then echo_workload; fi
} | tee "$log"
echo
echo "stable load (bench/stable_load.c: 5 runs of the same seeded load):"
"${rt[@]}" "$bin/stable_load" 5 30 | tee -a "$log"
pass=$(grep -c ' PASS$' "$log") miss=$(grep -c ' MISS$' "$log")
echo
# A figure that missed has its rounds printed under it; all rounds are here.
if [ "$miss" -gt 0 ]; then echo "every round of every figure with a target: $OUT/rounds.txt"; fi
echo "$pass PASS, $miss MISS"
[ "$miss" -eq 0 ]
