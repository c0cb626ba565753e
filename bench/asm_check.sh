#!/usr/bin/env bash
# Shows that DIAGNOSE_DISABLE leaves no code on the poll path: compiles a
# function that polls through diag_poll with the library compiled out, and
# one that calls the poll function directly, and compares their machine code.
# Prints both listings and "[   OK ] ..." or "[ FAIL ] ..."; exit 0 when equal.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
OUT=${BUILD:-build}/bench
mkdir -p "$OUT"
src="$OUT/asm_check.c"
cat >"$src" <<'C'
#define DIAGNOSE_DISABLE
#include "diagnose.h"
diag_status via_call(diag_future *f, void *cx) { return diag_poll(DIAGNOSE(f), cx); }
diag_status direct_call(diag_future *f, void *cx) { return f->poll(f, cx); }
int via_loop(diag_future *f) { int n = 0; while (diag_poll(f, &n) == DIAG_PENDING) n++; return n; }
int direct_loop(diag_future *f) { int n = 0; while (f->poll(f, &n) == DIAG_PENDING) n++; return n; }
C
"$CC" -std=c99 -O2 -I. -c "$src" -o "$OUT/asm_check.o" || exit 1
# The body of one function: instructions only (no addresses, no bytes, no
# nops: the padding after the last instruction depends on what follows; jump
# targets without the function's own name).
body() {
    objdump -d --no-show-raw-insn --no-addresses "$OUT/asm_check.o" 2>/dev/null |
        awk -v f="<$1>:" '$0 == f { on = 1; next } on && /^$/ { exit } on && !/nop|xchg +%ax,%ax/ { print }' |
        sed -E 's/<[A-Za-z_]+\+/<+/'
}
status=0
for what in call loop; do
    a=$(body "via_$what") b=$(body "direct_$what")
    echo "via_$what (diag_poll, compiled out):"; echo "$a" | sed 's/^/    /'
    echo "direct_$what (f->poll(f, cx)):"; echo "$b" | sed 's/^/    /'
    if [ -n "$a" ] && [ "$a" = "$b" ]; then
        echo "[   OK ] DIAGNOSE_DISABLE: diag_poll in a $what is the same code as a direct call"
    else
        echo "[ FAIL ] DIAGNOSE_DISABLE: diag_poll in a $what differs from a direct call"
        status=1
    fi
done
exit $status
