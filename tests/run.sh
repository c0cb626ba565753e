#!/usr/bin/env bash
# Builds and runs every test: tests/test_NAME.c (with any tests/test_NAME.*.c
# as further translation units) as C99 and as C++11, and compiles it with
# DIAGNOSE_DISABLE; runs tests/test_NAME.sh scripts. Prints each program's
# [ OK ] / [ FAIL ] lines and ends with the total "N passed, N failed".
# Usage: tests/run.sh [NAME ...]   (default: all)
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
CXX=${CXX:-c++}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-Wall -Wextra -Wpedantic -Werror"
OUT=${BUILD:-build}/tests
mkdir -p "$OUT"
passed=0 failed=0 log=$(mktemp)
trap 'rm -f "$log"' EXIT

count() { # adds up the [ OK ] / [ FAIL ] lines of a program's output
    local ok bad
    ok=$(grep -c '^\[   OK \]' "$log")
    bad=$(grep -c '^\[ FAIL \]' "$log")
    passed=$((passed + ok)) failed=$((failed + bad))
}
fail() { echo "[ FAIL ] $1"; failed=$((failed + 1)); }
pass() { echo "[   OK ] $1"; passed=$((passed + 1)); }

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/test_*.c tests/test_*.sh; do
        [ -e "$f" ] || continue
        b=$(basename "$f"); b=${b%.c}; b=${b%.sh}
        case "$b" in *.*) continue ;; esac
        names+=("$b")
    done
fi

for name in "${names[@]}"; do
    if [ -f "tests/$name.sh" ]; then
        echo "== $name"
        bash "tests/$name.sh" >"$log" 2>&1
        rc=$?
        cat "$log"; count
        [ $rc -eq 0 ] || grep -q '^\[ FAIL \]' "$log" || fail "$name exited $rc"
        continue
    fi
    srcs=("tests/$name.c")
    for extra in tests/"$name".*.c; do [ -e "$extra" ] && srcs+=("$extra"); done
    variants=${VARIANTS:-c c++} # VARIANTS=c: the C build only
    grep -q 'test: c-only' "tests/$name.c" && variants="c"
    for v in $variants; do
        bin="$OUT/$name.$v"
        if [ "$v" = c ]; then cmd=("$CC" -std=c99)
        else cmd=("$CXX" -x c++ -std=c++11); fi
        echo "== $name ($v)"
        if ! "${cmd[@]}" $CFLAGS $WARN -I. "${srcs[@]}" -o "$bin" -pthread -lm 2>"$log"; then
            cat "$log"; fail "build $name ($v)"; continue
        fi
        # RUNNER: a command prefix for the test program (valgrind, say).
        (cd "$OUT" && ${RUNNER:-} "./$(basename "$bin")") >"$log" 2>&1
        rc=$?
        cat "$log"; count
        [ $rc -eq 0 ] || grep -q '^\[ FAIL \]' "$log" || fail "$name ($v) exited $rc"
    done
    if "$CC" -std=c11 $CFLAGS $WARN -DDIAGNOSE_DISABLE -I. -c "tests/$name.c" -o "$OUT/$name.disabled.o" 2>"$log"; then
        pass "build $name with DIAGNOSE_DISABLE"
    else
        cat "$log"; fail "build $name with DIAGNOSE_DISABLE"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
