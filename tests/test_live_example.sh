#!/usr/bin/env bash
# The worked example of docs/live.md, "What is stuck right now": libuv_echo with
# --silent-client, a client that connects and never sends. The loop is
# stopped after 1.5 s with the silent connection still open; the pending
# files and the end of the summary must say exactly which runs are open.
# Skipped (one OK line saying so) where libuv is not installed.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/diagnose-live-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failures=0

ok() { echo "[   OK ] $1"; }
bad() { echo "  $2"; echo "[ FAIL ] $1"; failures=$((failures + 1)); }
check() { # check NAME CONDITION (the inside of a [[ ]])
    if eval "[[ $2 ]]"; then ok "$1"; else bad "$1" "not true: $2"; fi
}

if ! pkg-config --exists libuv 2>/dev/null; then
    ok "libuv_echo --silent-client: skipped, libuv is not installed"
    exit 0
fi
target="$BUILD/examples/libuv_echo"
if ! make --no-print-directory -s BUILD="$BUILD" CC="$CC" CFLAGS="$CFLAGS" "$target" >"$TMP/build.txt" 2>&1; then
    cat "$TMP/build.txt"
    bad "libuv_echo builds" "make $target failed"
    exit 1
fi
bin=$target
[[ $bin == /* ]] || bin="$PWD/$bin"
(cd "$TMP" && env -u DIAGNOSE -u DIAGNOSE_QUIET DIAGNOSE_OUT="$TMP/out" DIAGNOSE_STUCK_S=1 \
    "$bin" --silent-client >stdout.txt 2>stderr.txt)
rc=$?
check "silent client: exits 0, the 4 other clients echoed" \
    '$rc == 0 && "$(cut -d" " -f1-7 "$TMP/stdout.txt")" == "4 clients x 5 messages: 20 echoed"'
check "silent client: pending.folded has its client, its connection and the read stage, one run each" \
    '"$(cat "$TMP/out.pending.folded")" == "client 1
server;conn 1
server;conn;read 1"'
# each line: the path, 1 open, an age of 1.40 s to 9.99 s (the loop waits 1.5 s), stuck
line_re='^(client|server;conn|server;conn;read): 1 open, oldest (1\.[4-9][0-9]|[2-9]\.[0-9][0-9])s, stuck$'
check "silent client: pending.txt, three stuck lines of the 1.5 s wait" \
    '$(grep -cE "$line_re" "$TMP/out.pending.txt") == 3 && $(wc -l <"$TMP/out.pending.txt") == 3'
check "silent client: the summary ends with the same three lines after pending:" \
    '"$(tail -n 3 "$TMP/stderr.txt" | sed "s/^pending: //" | sort)" == "$(sort "$TMP/out.pending.txt")" &&
     $(tail -n 3 "$TMP/stderr.txt" | grep -c "^pending: ") == 3'
check "silent client: the connection outlived the listener's run (orphan lint)" \
    '$(grep -c "^lint: server;conn: 1 open run outlived the run it began in" "$TMP/stderr.txt") == 1'
exit $((failures > 0))
