#!/usr/bin/env bash
# examples/diff_folded.sh -w: the folded profile of the window between two
# cumulative snapshots. Byte-exact on made-up files, then on two real dumps
# of one program: the window holds exactly the polls made between them.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
ok() { echo "[   OK ] $1"; }
fail() { echo "[ FAIL ] $1"; failures=$((failures + 1)); }

# ---- made-up snapshots ----
printf 'main 5\nmain;a 3\nmain;b 10\ngone 4\n' >"$tmp/early.folded"
printf 'main 9\nmain;a 3\nmain;b 7\nmain;c 2\nmain;c 1\nnot a line\n' >"$tmp/late.folded"
examples/diff_folded.sh -w "$tmp/early.folded" "$tmp/late.folded" >"$tmp/window" 2>"$tmp/window.err"
rc=$?
if [ $rc -eq 0 ] && printf 'main 4\nmain;c 3\n' | cmp -s - "$tmp/window"; then
    ok "diff_folded.sh -w: later minus earlier, unchanged stacks left out, duplicates summed"
else
    cat "$tmp/window"
    fail "diff_folded.sh -w: later minus earlier, unchanged stacks left out, duplicates summed"
fi
want_err="$tmp/late.folded: ignored 1 line(s) that are not \"stack integer\"
$tmp/late.folded: left out 2 stack(s) smaller than in $tmp/early.folded"
if [ "$(cat "$tmp/window.err")" == "$want_err" ]; then
    ok "diff_folded.sh -w: shrunk stacks and bad lines counted on stderr"
else
    cat "$tmp/window.err"
    fail "diff_folded.sh -w: shrunk stacks and bad lines counted on stderr"
fi
examples/diff_folded.sh -w "$tmp/early.folded" "$tmp/early.folded" >"$tmp/same" 2>&1
if [ $? -eq 0 ] && [ ! -s "$tmp/same" ]; then
    ok "diff_folded.sh -w: the same snapshot twice is an empty window"
else
    fail "diff_folded.sh -w: the same snapshot twice is an empty window"
fi

# ---- two dumps of a running program ----
cat >"$tmp/window.c" <<'EOF'
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include <stdio.h>
struct counter { diag_future base; int n; };
static diag_status count_poll(diag_future *self, void *cx)
{
    (void)cx;
    return ++((struct counter *)self)->n % 4 == 0 ? DIAG_READY : DIAG_PENDING;
}
static void poll_n(diag_future *f, int n) { while (n-- > 0) diag_poll(f, NULL); }
int main(int argc, char **argv)
{
    struct counter a = { DIAG_FUTURE_INIT(count_poll), 0 }, b = { DIAG_FUTURE_INIT(count_poll), 0 };
    diag_future *fa = DIAGNOSE_AS(&a.base, "a"), *fb = DIAGNOSE_AS(&b.base, "b");
    (void)argc;
    poll_n(fa, 5);
    if (diag_dump(argv[1]) != 0) return 1;
    poll_n(fa, 3); /* between the two dumps: a 3, b 2 */
    poll_n(fb, 2);
    if (diag_dump(argv[2]) != 0) return 1;
    poll_n(fa, 7);
    return 0;
}
EOF
if $CC -std=c99 -O2 -Wall -Wextra -Werror -I. "$tmp/window.c" -o "$tmp/window" -pthread 2>"$tmp/cc.log"; then
    (cd "$tmp" && DIAGNOSE_QUIET=1 DIAGNOSE_OUT="$tmp/exit" ./window "$tmp/s1" "$tmp/s2")
    examples/diff_folded.sh -w "$tmp/s1.polls.folded" "$tmp/s2.polls.folded" >"$tmp/polls.window"
    if printf 'a 3\nb 2\n' | cmp -s - "$tmp/polls.window"; then
        ok "diff_folded.sh -w on two dumps of one program: exactly the polls between them"
    else
        cat "$tmp/polls.window"
        fail "diff_folded.sh -w on two dumps of one program: exactly the polls between them"
    fi
    # busy between the dumps: the later busy minus the earlier, for both paths
    examples/diff_folded.sh -w "$tmp/s1.busy.folded" "$tmp/s2.busy.folded" >"$tmp/busy.window"
    want=$(awk 'NR == FNR { a[$1] = $2; next } { if ($2 - a[$1] > 0) print $1, $2 - a[$1] }' \
        "$tmp/s1.busy.folded" "$tmp/s2.busy.folded")
    if [ "$(cat "$tmp/busy.window")" == "$want" ] && [ "$(cut -d' ' -f1 "$tmp/busy.window" | tr '\n' ' ')" == "a b " ]; then
        ok "diff_folded.sh -w on busy: each path's growth"
    else
        cat "$tmp/busy.window"
        fail "diff_folded.sh -w on busy: each path's growth"
    fi
else
    cat "$tmp/cc.log"
    fail "diff_folded.sh -w: the two-dump program builds"
fi
[ $failures -eq 0 ]
