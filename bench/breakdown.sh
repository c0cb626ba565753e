#!/usr/bin/env bash
# bench/breakdown.sh: what each feature of the poll path costs. Builds
# bench/bench.c against copies of diagnose.h with features taken off the
# inline end of a poll one after the other, and runs `bench overhead` on
# each, ROUNDS times (default 3): the median extra/floor at 1 and 8 levels.
# With gdb and llvm-mca at hand (or MCA=0 to skip), also bench/mca.sh's
# per-model bookkeeping cycles for each, for the CPUs not at hand.
#   as is            everything
#   no histogram     the one-poll-late byte update off
#   no max, no slow  and the max and slow-poll compares off
#   no sum           and the poll-time sum off
# Each step must find its lines in diagnose.h (else it stops): the copies
# are only for measuring; they record less than the library does.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
ROUNDS=${ROUNDS:-3}
OUT=${BUILD:-build}/bench/breakdown
mkdir -p "$OUT"
rt=()
if [ "${BENCH_NO_RT:-0}" != 1 ] && chrt -f 1 true 2>/dev/null; then rt=(chrt -f 1); fi
export DIAGNOSE_OUT="$OUT/out" DIAGNOSE_QUIET=1

# drop_lines FILE LINE...: deletes each line (whole-line match) from FILE, or stops.
drop_lines() {
    local file=$1 line
    shift
    for line in "$@"; do
        grep -qxF -- "$line" "$file" || { echo "bench/breakdown.sh: not found in diagnose.h: $line" >&2; exit 1; }
        grep -vxF -- "$line" "$file" >"$file.tmp" && mv "$file.tmp" "$file"
    done
}
# edit FILE FROM TO: replaces the text FROM by TO (fixed strings), or stops.
edit() {
    grep -qF -- "$2" "$1" || { echo "bench/breakdown.sh: not found in diagnose.h: $2" >&2; exit 1; }
    FROM=$2 TO=$3 perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$1"
}

variants=(as-is no-histogram no-max-slow no-sum)
for v in "${variants[@]}"; do mkdir -p "$OUT/$v"; done
cp diagnose.h "$OUT/as-is/diagnose.h"
cp diagnose.h "$OUT/no-histogram/diagnose.h"
h="$OUT/no-histogram/diagnose.h"
drop_lines "$h" '    DIAG__STORE(slot->hist[last], n); /* see diag__hist_add */' \
    '    DIAG__STORE(slot->hist[0], (uint8_t)diag__bucket1(dt));' \
    '    last = DIAG__LOAD(slot->hist[0]);' \
    '    n = (uint8_t)(DIAG__LOAD(slot->hist[last]) + 1u);'
edit "$h" 'if (DIAG__UNLIKELY(n == 0 || t->ring' 'if (DIAG__UNLIKELY(t->ring'
edit "$h" '    unsigned last;
    uint8_t n;
    if (DIAG__UNLIKELY(t == NULL || t->depth == 0' '    if (DIAG__UNLIKELY(t == NULL || t->depth == 0'
cp "$h" "$OUT/no-max-slow/diagnose.h"
h="$OUT/no-max-slow/diagnose.h"
drop_lines "$h" '    if (DIAG__UNLIKELY(dt > DIAG__LOAD(slot->max))) DIAG__STORE(slot->max, dt);'
edit "$h" 't->ring != NULL || dt >= DIAG__LOAD(diag__slow_ticks) || status' 't->ring != NULL || status'
cp "$h" "$OUT/no-sum/diagnose.h"
h="$OUT/no-sum/diagnose.h"
edit "$h" '    DIAG__ADD(slot->busy, self);
    DIAG__ADD(slot->poll_ticks, dt);' '    DIAG__ADD(slot->busy, self);'

cp bench/bench.c bench/mca_loops.c bench/node.h "$OUT/"
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $("$CC" --version | head -n 1); -O2"
printf '%-16s %14s %14s\n' "poll path" "1 level" "8 levels"
for v in "${variants[@]}"; do
    "$CC" -std=c99 -O2 -I"$OUT/$v" "$OUT/bench.c" -o "$OUT/$v/bench" -pthread -lm || exit 1
    one=() eight=()
    for _ in $(seq "$ROUNDS"); do
        out=$("${rt[@]}" "$OUT/$v/bench" overhead 2>/dev/null)
        one+=("$(echo "$out" | awk '/steady state, 1 level/ { print $(NF - 3) }')")
        eight+=("$(echo "$out" | awk '/steady state, 8 levels/ { print $(NF - 3) }')")
    done
    printf '%-16s %14s %14s\n' "$v" "$(printf '%s\n' "${one[@]}" | median)" "$(printf '%s\n' "${eight[@]}" | median)"
done
echo "(extra/floor, median of $ROUNDS runs of bench overhead)"
if [ "${MCA:-1}" != 0 ] && command -v gdb >/dev/null && command -v "${MCA_TOOL:-llvm-mca}" >/dev/null; then
    echo
    for v in "${variants[@]}"; do
        echo "== $v"
        mkdir -p "$OUT/$v/src/bench"
        cp "$OUT/$v/diagnose.h" "$OUT/$v/src/"
        cp bench/mca.sh bench/mca_loops.c bench/node.h "$OUT/$v/src/bench/"
        (cd "$OUT/$v/src" && BUILD="$PWD/build" CC="$CC" bench/mca.sh | grep -E 'bookkeeping|diag ')
    done
fi
