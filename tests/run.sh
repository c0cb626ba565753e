#!/usr/bin/env bash
# Builds and runs every test: tests/test_NAME.c (with any tests/test_NAME.*.c
# as further translation units) as C99 and as C++11, and compiles it with
# DIAGNOSE_DISABLE; runs tests/test_NAME.sh scripts. Prints each program's
# [ OK ] / [ FAIL ] lines and ends with the total "N passed, N failed".
# Usage: tests/run.sh [NAME ...]   (default: all)
# The builds run JOBS at a time (default: the number of CPUs), the test
# programs one after the other.
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

variants_of() { # the builds of a C test: VARIANTS (c, c++), then disabled
    local v=${VARIANTS:-c c++} # VARIANTS=c: the C build only
    grep -q 'test: c-only' "tests/$1.c" && v="c"
    echo "$v disabled"
}
build() { # build NAME VARIANT: compiler output in $OUT/NAME.VARIANT.log, exit status in .rc
    local name=$1 v=$2 srcs=("tests/$1.c") extra cmd
    for extra in tests/"$name".*.c; do [ -e "$extra" ] && srcs+=("$extra"); done
    case $v in
    c) cmd=("$CC" -std=c99 $CFLAGS $WARN -I. "${srcs[@]}" -o "$OUT/$name.c" -pthread -lm) ;;
    c++) cmd=("$CXX" -x c++ -std=c++11 $CFLAGS $WARN -I. "${srcs[@]}" -o "$OUT/$name.c++" -pthread -lm) ;;
    *) cmd=("$CC" -std=c11 $CFLAGS $WARN -DDIAGNOSE_DISABLE -I. -c "tests/$name.c" -o "$OUT/$name.disabled.o") ;;
    esac
    "${cmd[@]}" >"$OUT/$name.$v.log" 2>&1
    echo $? >"$OUT/$name.$v.rc"
}
built() { [ "$(cat "$OUT/$1.$2.rc" 2>/dev/null)" = 0 ]; }

# Every build first, JOBS at a time; the programs then run one at a time,
# so that the timing tests have the machine to themselves.
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
running=0
for name in "${names[@]}"; do
    [ -f "tests/$name.sh" ] && continue
    for v in $(variants_of "$name"); do
        rm -f "$OUT/$name.$v.rc"
        if [ $running -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
        build "$name" "$v" &
        running=$((running + 1))
    done
done
wait

for name in "${names[@]}"; do
    if [ -f "tests/$name.sh" ]; then
        echo "== $name"
        bash "tests/$name.sh" >"$log" 2>&1
        rc=$?
        cat "$log"; count
        [ $rc -eq 0 ] || grep -q '^\[ FAIL \]' "$log" || fail "$name exited $rc"
        continue
    fi
    for v in $(variants_of "$name"); do
        [ "$v" = disabled ] && continue
        echo "== $name ($v)"
        if ! built "$name" "$v"; then
            cat "$OUT/$name.$v.log"; fail "build $name ($v)"; continue
        fi
        # RUNNER: a command prefix for the test program (valgrind, say).
        (cd "$OUT" && ${RUNNER:-} "./$name.$v") >"$log" 2>&1
        rc=$?
        cat "$log"; count
        [ $rc -eq 0 ] || grep -q '^\[ FAIL \]' "$log" || fail "$name ($v) exited $rc"
    done
    if built "$name" disabled; then
        pass "build $name with DIAGNOSE_DISABLE"
    else
        cat "$OUT/$name.disabled.log"; fail "build $name with DIAGNOSE_DISABLE"
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
