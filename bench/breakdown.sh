#!/usr/bin/env bash
# bench/breakdown.sh: what each feature of the poll path costs. Builds
# bench/bench.c with features taken off the inline end of a poll one after
# the other, and runs `bench overhead` on each, ROUNDS times (default 3):
# the median of the runs' extra/floor at 1 and 8 levels (each run's figure
# is the lower quartile of its rounds, as in `make bench`).
# With gdb and llvm-mca at hand (or MCA=0 to skip), also bench/mca.sh's
# per-model bookkeeping cycles for each, for the CPUs not at hand.
#   as is            everything
#   no histogram     the one-poll-late byte update off
#   no max, no slow  and the max and slow-poll compares off
#   no sum           and the poll-time sum off
# A variant is the same diagnose.h built with some of its DIAG__COST_*
# knobs 0 (-D flags; see the inline end of a poll there), so any layout of
# the header works. Those builds are only for measuring: they record less
# than the library does.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
ROUNDS=${ROUNDS:-3}
OUT=${BUILD:-build}/bench/breakdown
mkdir -p "$OUT"
rt=()
if [ "${BENCH_NO_RT:-0}" != 1 ] && chrt -f 1 true 2>/dev/null; then rt=(chrt -f 1); fi
export DIAGNOSE_OUT="$OUT/out" DIAGNOSE_QUIET=1

variants=(as-is no-histogram no-max-slow no-sum)
# flags VARIANT: its -D flags; each variant also takes off what the one before did.
flags() {
    case $1 in
    as-is) ;;
    no-histogram) echo "-DDIAG__COST_HIST=0" ;;
    no-max-slow) echo "-DDIAG__COST_HIST=0 -DDIAG__COST_MAX_SLOW=0" ;;
    no-sum) echo "-DDIAG__COST_HIST=0 -DDIAG__COST_MAX_SLOW=0 -DDIAG__COST_SUM=0" ;;
    esac
}
for v in "${variants[@]}"; do mkdir -p "$OUT/$v"; done
# floor_ratio ROW: the extra/floor figure of that row of `bench overhead`
floor_ratio() { awk -v row="$1" 'index($0, row) && match($0, /extra\/floor [0-9.]+/) { print substr($0, RSTART + 12, RLENGTH - 12) }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $("$CC" --version | head -n 1); -O2"
printf '%-16s %14s %14s\n' "poll path" "1 level" "8 levels"
for v in "${variants[@]}"; do
    # shellcheck disable=SC2046 # the flags are words
    "$CC" -std=c99 -O2 $(flags "$v") -I. bench/bench.c -o "$OUT/$v/bench" -pthread -lm || exit 1
    one=() eight=()
    for _ in $(seq "$ROUNDS"); do
        out=$("${rt[@]}" "$OUT/$v/bench" overhead 2>/dev/null)
        one+=("$(echo "$out" | floor_ratio 'steady state, 1 level')")
        eight+=("$(echo "$out" | floor_ratio 'steady state, 8 levels')")
    done
    printf '%-16s %14s %14s\n' "$v" "$(printf '%s\n' "${one[@]}" | median)" "$(printf '%s\n' "${eight[@]}" | median)"
done
echo "(extra/floor, median of $ROUNDS runs of bench overhead)"
if [ "${MCA:-1}" != 0 ] && command -v gdb >/dev/null && command -v "${MCA_TOOL:-llvm-mca}" >/dev/null; then
    echo
    for v in "${variants[@]}"; do
        echo "== $v"
        CPPFLAGS="$(flags "$v")" BUILD="$OUT/$v/mca" CC="$CC" MCA="${MCA_TOOL:-llvm-mca}" bench/mca.sh | grep -E 'bookkeeping|diag '
    done
fi
