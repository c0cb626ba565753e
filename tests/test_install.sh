#!/usr/bin/env bash
# make install / make uninstall into a temporary prefix, and the demo built
# from a copy elsewhere with nothing but `pkg-config --cflags --libs diagnose`.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "[   OK ] $1"; passed=$((passed + 1)); }
bad() { echo "[ FAIL ] $1"; failed=$((failed + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

if ! command -v pkg-config >/dev/null 2>&1; then # CI installs it; try here too
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pkgconf >/dev/null 2>&1
fi
command -v pkg-config >/dev/null 2>&1 || { bad "pkg-config is installed (Debian: pkgconf)"; echo "$passed passed, $failed failed"; exit 1; }

version=$(awk '/^#define DIAGNOSE_VERSION_(MAJOR|MINOR|PATCH) /{v = v s $3; s = "."} END {print v}' diagnose.h)
prefix=$tmp/prefix
make -s --no-print-directory install PREFIX="$prefix" >"$tmp/log" 2>&1
check "make install exits 0" test $? -eq 0
check "the header is installed unchanged" cmp -s diagnose.h "$prefix/include/diagnose.h"
check "the header is mode 644" test "$(stat -c %a "$prefix/include/diagnose.h")" = 644
export PKG_CONFIG_PATH=$prefix/share/pkgconfig
check "pkg-config finds diagnose $version" test "$(pkg-config --modversion diagnose 2>&1)" = "$version"
check "cflags are -I<prefix>/include" test "$(pkg-config --cflags diagnose 2>&1 | xargs)" = "-I$prefix/include"
check "libs are -pthread" test "$(pkg-config --libs diagnose 2>&1 | xargs)" = "-pthread"

# The demo, copied where no diagnose.h lies next to it: only pkg-config's
# flags can find the header.
mkdir -p "$tmp/src" "$tmp/run"
cp examples/demo.c "$tmp/src/"
# shellcheck disable=SC2046
if $CC -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror "$tmp/src/demo.c" -o "$tmp/src/demo" \
    $(pkg-config --cflags --libs diagnose) 2>"$tmp/log"; then
    ok "the demo builds with pkg-config --cflags --libs diagnose"
    (cd "$tmp/run" && DIAGNOSE_QUIET=1 "$tmp/src/demo" >/dev/null 2>&1)
    check "the installed demo writes its profile" \
        grep -qx 'main;concat 2048' "$tmp/run/diagnose.polls.folded"
else
    cat "$tmp/log"
    bad "the demo builds with pkg-config --cflags --libs diagnose"
fi

# A staged install (packagers): files under DESTDIR, paths inside say PREFIX.
make -s --no-print-directory install DESTDIR="$tmp/stage" PREFIX=/opt/diag >"$tmp/log" 2>&1
check "DESTDIR install puts the header under DESTDIR/PREFIX" test -f "$tmp/stage/opt/diag/include/diagnose.h"
check "DESTDIR install writes prefix=PREFIX into diagnose.pc" \
    grep -qx 'prefix=/opt/diag' "$tmp/stage/opt/diag/share/pkgconfig/diagnose.pc"

make -s --no-print-directory uninstall PREFIX="$prefix" >"$tmp/log" 2>&1
check "make uninstall removes the header" test ! -e "$prefix/include/diagnose.h"
check "make uninstall removes diagnose.pc" test ! -e "$prefix/share/pkgconfig/diagnose.pc"
check "pkg-config no longer finds diagnose" test "$(pkg-config --exists diagnose && echo yes)" != yes

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
