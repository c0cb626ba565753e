#!/usr/bin/env bash
# bench/mca.sh: an llvm-mca estimate of the poll path, for the kinds of CPU
# not at hand. Builds bench/mca_loops.c like bench.c (-O2), records one
# iteration of each loop instruction by instruction under gdb (the path a
# steady-state poll really takes), and has llvm-mca simulate each recorded
# block on each CPU model: cycles, micro-ops and instructions per poll, and
# the model's extra/floor = (diag - bare) / (floor - bare).
# Needs gdb and llvm-mca. MCA_CPUS="znver3 skylake-avx512 icelake-server"
# by default; MCA=llvm-mca-15 etc. picks the tool; CPPFLAGS are added to
# the build.
# A model is not the CPU: llvm-mca knows no microcode, so rdtsc's cost
# there is the model's guess (printed first); compare the blocks with
# each other, and measure with `make bench` where the CPU is at hand.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
MCA=${MCA:-llvm-mca}
CPUS=${MCA_CPUS:-znver3 skylake-avx512 icelake-server}
OUT=${BUILD:-build}/bench/mca
for tool in gdb "$MCA"; do
    command -v "$tool" >/dev/null || { echo "bench/mca.sh: needs $tool" >&2; exit 2; }
done
mkdir -p "$OUT"
# shellcheck disable=SC2086 # CPPFLAGS: words, e.g. bench/breakdown.sh's -D flags
"$CC" -std=c99 -O2 -g ${CPPFLAGS:-} -I. bench/mca_loops.c -o "$OUT/loops" -pthread -lm || exit 1

# record LOOP STEPS: "location<TAB>instruction" lines of the first STEPS
# instructions executed from LOOP's entry, after the warm-up. Each rdtsc
# (0f 31) stepped over reads 40 ticks after the one before: a poll stepped
# an instruction at a time lasts milliseconds, which would send every poll
# down the path of a poll outside its histogram's window.
record() {
    cat >"$OUT/$1.gdb" <<G
set pagination off
set disassembly-flavor att
break traced
run 50 >/dev/null
break $1
continue
set \$n = 0
set \$fake = 0
while \$n < $2
  if *(unsigned short *)\$pc == 0x310f
    stepi
    if \$fake == 0
      set \$fake = (\$rdx << 32) | (\$rax & 0xffffffff)
    end
    set \$fake = \$fake + 40
    set \$rax = \$fake & 0xffffffff
    set \$rdx = \$fake >> 32
  else
    stepi
  end
  x/i \$pc
  set \$n = \$n + 1
end
G
    DIAGNOSE_SLOW_NS=0 DIAGNOSE_QUIET=1 DIAGNOSE_OUT="$OUT/out" gdb -q -batch -x "$OUT/$1.gdb" "$OUT/loops" 2>/dev/null |
        sed -n 's/^=> 0x[0-9a-f]* <\([^>]*\)>:[[:space:]]*/\1\t/p'
}
# iteration LOOP: one iteration (from the second pass of the first of the
# loop's instructions that runs three times or more, to the third), as
# llvm-mca input: branch and call targets become one label, comments go.
iteration() {
    awk -F'\t' -v loop="$1" '
        { at[NR] = $1; ins[NR] = $2; count[$1]++ }
        END {
            for (i = 1; i <= NR && head == ""; i++) if (index(at[i], loop "+") == 1 && count[at[i]] >= 3) head = at[i]
            for (i = 1; i <= NR && seen < 3; i++) {
                if (at[i] == head) seen++
                if (seen == 2) print ins[i]
            }
        }' |
        sed -E 's/[[:space:]]+0x[0-9a-f]+ <[^>]*>/ L0/; s/[[:space:]]+#.*//' | { echo "L0:"; cat; }
}
for loop in loop_bare:200 loop_floor:200 loop_diag:800 loop_diag8:5000; do
    name=${loop%%:*}
    record "$name" "${loop#*:}" | iteration "$name" >"$OUT/$name.s"
done
# The same blocks without their rdtsc: what the bookkeeping costs when
# nothing hides it behind a timestamp read (Intel, where rdtsc is
# microcoded and stalls instruction delivery).
for b in bare floor diag diag8; do grep -v '^rdtsc$' "$OUT/loop_$b.s" >"$OUT/loop_$b.nortdsc.s"; done
# per CPU model: cycles, uops and instructions per iteration of each block
stats() { "$MCA" -mcpu="$1" -iterations=1000 "$2" 2>/dev/null |
    awk '/^Total Cycles:/ { c = $3 } /^Total uOps:/ { u = $3 } /^Instructions:/ { i = $2 }
         END { printf "%.1f %.1f %.0f", c / 1000, u / 1000, i / 1000 }'; }
printf '%-16s %-26s %s\n' "llvm-mca model" "rdtsc: uops latency rthru" "$("$MCA" --version | grep -m1 -o 'LLVM version [0-9.]*')"
for cpu in $CPUS; do
    printf 'rdtsc\n' | "$MCA" -mcpu="$cpu" -iterations=1 -instruction-info 2>/dev/null |
        awk -v cpu="$cpu" '/rdtsc/ && $1 ~ /^[0-9]+$/ { printf "%-16s %-26s\n", cpu, $1 " " $2 " " $3; exit }'
done
echo
printf '%-16s %-7s %8s %8s %6s %18s\n' model block cycles uops instr "cycles w/o rdtsc"
for cpu in $CPUS; do
    for b in bare floor diag diag8; do
        read -r c u i < <(stats "$cpu" "$OUT/loop_$b.s")
        read -r n _ _ < <(stats "$cpu" "$OUT/loop_$b.nortdsc.s")
        if [ "$b" = diag8 ]; then # per poll
            read -r c u n < <(awk -v c="$c" -v u="$u" -v n="$n" 'BEGIN { print c / 8, u / 8, n / 8 }')
            i=$((i / 8))
        fi
        eval "c_$b=$c n_$b=$n"
        printf '%-16s %-7s %8.1f %8.1f %6s %18.1f\n' "$cpu" "$b" "$c" "$u" "$i" "$n"
    done
    awk -v cpu="$cpu" -v b="$c_bare" -v f="$c_floor" -v d="$c_diag" -v d8="$c_diag8" \
        -v nf="$n_floor" -v nd="$n_diag" -v nd8="$n_diag8" 'BEGIN {
        printf "%-16s model extra/floor: %.2f at 1 level, %.2f at 8 levels\n", cpu, (d - b) / (f - b), (d8 - b) / (f - b)
        printf "%-16s bookkeeping over the floor, rdtsc left out: %.1f cycles at 1 level, %.1f at 8 levels\n", cpu, nd - nf, nd8 - nf }'
done
