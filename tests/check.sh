#!/usr/bin/env bash
# make check: the reliability matrix. Each step prints one [ OK ] / [ FAIL ]
# line (a failing step also prints what failed); the last line is the total
# "N passed, N failed" of the steps, and the exit status is non-zero if any
# step failed.
#   1. the whole test suite (tests/run.sh) under ASan+UBSan, under TSan and
#      under valgrind memcheck, each in a build directory of its own, and
#      tests/test_copies.sh under ASan+UBSan and TSan;
#   2. every test and example built with gcc and clang as C99, C11, C17,
#      C++11 and C++17 with -Wall -Wextra -Wpedantic -Werror, and the
#      implementation with -Wconversion -Wshadow on top;
#   3. cppcheck and clang-tidy on the header (implementation included);
#   4. the fuzz loops (tests/fuzz_*.c) under ASan+UBSan, a fixed number of
#      seeded inputs each;
#   5. the C tests on other targets: aarch64 under qemu-user, musl, 32-bit
#      x86 (docs/platforms.md).
# Usage: tests/check.sh [STEP-PATTERN]   e.g. tests/check.sh 'matrix*'
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${BUILD:-build}/check
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ONLY=${1:-*}
WARN="-Wall -Wextra -Wpedantic -Werror"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
FUZZ_INPUTS=${FUZZ_INPUTS:-20000}
passed=0 failed=0 failures=()

# step NAME COMMAND...: runs COMMAND with its output in $OUT/NAME.log.
step() {
    local name=$1 log="$OUT/$1.log" start rc
    shift
    # shellcheck disable=SC2053 # ONLY is a glob on purpose
    [[ $name == $ONLY ]] || return 0
    start=$(date +%s)
    "$@" >"$log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        echo "[   OK ] $name ($(($(date +%s) - start))s)"
        passed=$((passed + 1))
    else
        echo "[ FAIL ] $name (exit $rc, log $log)"
        grep -E '^\[ FAIL \]|ERROR|WARNING: ThreadSanitizer|runtime error|Invalid|definitely lost|warning:|error:|style:|portability:|performance:' "$log" | head -n 30
        tail -n 5 "$log"
        failed=$((failed + 1))
        failures+=("$name")
    fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---- 1. the suite under sanitizers and valgrind ----------------------------
# Sanitizer reports end the program (halt_on_error, -fno-sanitize-recover),
# so a report is a failing test program.
# The C test programs only: the tests/test_*.sh scripts drive other tools
# (browsers, viewers) and run in `make test`.
programs() {
    local f b
    for f in tests/test_*.c; do
        b=$(basename "$f" .c)
        case "$b" in *.*) continue ;; esac
        echo "$b"
    done
}
suite() { # suite BUILD-SUBDIR then VAR=value... for tests/run.sh
    local dir=$1
    shift
    # shellcheck disable=SC2046 # one name per word
    env BUILD="$OUT/$dir" "$@" tests/run.sh $(programs)
}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

step suite-asan-ubsan suite asan CC=gcc CXX=g++ CFLAGS="-O1 -g $SAN"
step suite-tsan suite tsan CC=clang CXX=clang++ CFLAGS="-O1 -g -fsanitize=thread"
# Several copies of the header in one process: tests/test_copies.sh builds
# its shared objects with these flags (the sanitizer runtime is linked into
# the program, as it must be for shared objects).
step copies-asan-ubsan env CC=gcc CFLAGS="-O1 -g $SAN" bash tests/test_copies.sh
step copies-tsan env CC=clang CFLAGS="-O1 -g -fsanitize=thread" bash tests/test_copies.sh
# valgrind: every test program, C build only (the C++ build runs the same
# code); --error-exitcode turns any memcheck report into a failing program.
# valgrind runs one thread at a time; --fair-sched=yes hands the turns round
# in order (by default one thread can keep them: threads that should
# interleave do not, and a thread can wait minutes for its turn).
valgrind_suite() {
    env BUILD="$OUT/valgrind" CC=gcc CXX=g++ CFLAGS="-O1 -g" VARIANTS=c \
        RUNNER="valgrind -q --fair-sched=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite" \
        tests/run.sh $(programs)
}
if have valgrind; then step suite-valgrind valgrind_suite; fi

# ---- 2. compiler matrix ----------------------------------------------------
# Every test and example as one object per source, at -O2 (some warnings
# only appear with optimisation), JOBS compiles at a time. Built, not run:
# running them is the suites' work, and make test's.
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
matrix() { # matrix COMPILER LANG STD
    local cc=$1 lang=$2 std=$3 src rc=0 n=0 running=0 i
    for src in tests/test_*.c tests/fuzz_*.c examples/*.c; do
        [ -e "$src" ] || continue
        if [ $running -ge "$JOBS" ]; then wait -n || rc=1; running=$((running - 1)); fi
        n=$((n + 1))
        "$cc" -x "$lang" -std="$std" -O2 $WARN -I. -Itests -c "$src" -o "$OUT/matrix.$n.o" \
            >"$OUT/matrix.$n.log" 2>&1 || { echo "in $src" >>"$OUT/matrix.$n.log"; exit 1; } &
        running=$((running + 1))
    done
    while [ $running -gt 0 ]; do wait -n || rc=1; running=$((running - 1)); done
    for ((i = 1; i <= n; i++)); do cat "$OUT/matrix.$i.log"; done
    return $rc
}
for cc in gcc clang; do
    cxx=g++
    [ $cc = clang ] && cxx=clang++
    for std in c99 c11 c17; do step "matrix-$cc-$std" matrix $cc c $std; done
    for std in c++11 c++17; do step "matrix-$cc-$std" matrix $cxx c++ $std; done
done

# The implementation alone, with the stricter warnings it promises.
strict() { # strict COMPILER LANG STD [FLAG...]
    local cc=$1 lang=$2 std=$3
    shift 3
    printf '#define DIAGNOSE_IMPLEMENTATION\n#include "diagnose.h"\nint main(void) { return 0; }\n' >"$OUT/strict.c"
    "$cc" -x "$lang" -std="$std" -O2 $WARN -Wconversion -Wsign-conversion -Wshadow "$@" -I"$ROOT" -c "$OUT/strict.c" \
        -o "$OUT/strict.o"
}
step strict-gcc-c99 strict gcc c c99
step strict-clang-c11 strict clang c c11
step strict-g++-c++17 strict g++ c++ c++17
step strict-clang++-c++11 strict clang++ c++ c++11
# DIAG_DEBUG trades warnings for aborts: the code it leaves out must build too.
step strict-gcc-c99-debug strict gcc c c99 -DDIAG_DEBUG
step strict-g++-c++11-debug strict g++ c++ c++11 -DDIAG_DEBUG
# aarch64 has a clock code of its own (the virtual counter): the same, cross.
if have aarch64-linux-gnu-gcc; then
    step strict-aarch64-gcc-c99 strict aarch64-linux-gnu-gcc c c99
    step strict-aarch64-clang-c11 strict clang c c11 --target=aarch64-linux-gnu
fi
if have aarch64-linux-gnu-g++; then
    step strict-aarch64-g++-c++17 strict aarch64-linux-gnu-g++ c++ c++17
    step strict-aarch64-clang++-c++11 strict clang++ c++ c++11 --target=aarch64-linux-gnu
fi

# ---- 3. static analysis ----------------------------------------------------
# One translation unit with the implementation; findings in the header fail
# the step unless suppressed inline with a reason.
analysis_tu() {
    printf '#define DIAGNOSE_IMPLEMENTATION\n#include "diagnose.h"\n' >"$OUT/analysis.c"
}
cppcheck_step() {
    analysis_tu
    # The system headers are not given to cppcheck (it does not need them
    # and is slow with them); the two POSIX macros the header checks for are,
    # and Linux with memfd, so that the code of the copies section that runs
    # here is the code analysed.
    cppcheck --quiet --error-exitcode=1 --inline-suppr --std=c11 \
        --enable=warning,style,performance,portability --library=posix \
        -D_GNU_SOURCE -DCLOCK_MONOTONIC=1 -DO_NOFOLLOW=0400000 -D__GNUC__=12 -D__x86_64__ -D__linux__ -DMFD_CLOEXEC=1 \
        -I"$ROOT" "$OUT/analysis.c"
}
# Checks: the static analyser, bug-prone patterns, performance, portability.
# Left out, with the reason:
#   bugprone-reserved-identifier: the internal prefix diag__ is the
#     project's naming convention (a C++ rule about double underscores);
#   bugprone-easily-swappable-parameters: a style opinion;
#   clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling:
#     asks for Annex K (memcpy_s...), which glibc does not have.
TIDY_CHECKS='-*,clang-analyzer-*,-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling,bugprone-*,-bugprone-easily-swappable-parameters,-bugprone-reserved-identifier,performance-*,portability-*'
tidy_step() {
    local out rc=0
    analysis_tu
    for std in "-std=c11" "-x c++ -std=c++17"; do
        # shellcheck disable=SC2086 # std is two words on purpose
        out=$(clang-tidy "$OUT/analysis.c" -header-filter='.*diagnose\.h' -checks="$TIDY_CHECKS" \
            -- $std -I"$ROOT" 2>&1)
        echo "$out"
        if echo "$out" | grep -qE '(warning|error):'; then rc=1; fi
    done
    return $rc
}
if have cppcheck; then step cppcheck cppcheck_step; fi
if have clang-tidy; then step clang-tidy tidy_step; fi

# ---- 4. fuzz loops ---------------------------------------------------------
fuzz() { # fuzz NAME: builds tests/NAME.c with ASan+UBSan and runs it
    gcc -std=c99 -O1 -g $SAN $WARN -I. -Itests "tests/$1.c" -o "$OUT/$1" -pthread -lm &&
        (cd "$OUT" && "./$1" "$FUZZ_INPUTS" 1)
}
for f in tests/fuzz_*.c; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .c)
    step "$name" fuzz "$name"
done

# ---- 5. other targets ------------------------------------------------------
# The C build of every test program, as in the suites: for aarch64, linked
# -static and run under qemu-aarch64 (the children tt_spawn starts too:
# TT_EXEC); against musl, -static, run here; 32-bit x86 with gcc -m32.
if have aarch64-linux-gnu-gcc && have qemu-aarch64; then
    step target-aarch64-qemu suite aarch64 CC=aarch64-linux-gnu-gcc CFLAGS="-O2 -static" VARIANTS=c \
        RUNNER=qemu-aarch64 TT_EXEC=qemu-aarch64
fi
if have musl-gcc; then step target-musl suite musl CC=musl-gcc CFLAGS="-O2 -static" VARIANTS=c; fi
# gcc -m32 finds <asm/...> through /usr/include/asm, a link that Debian's
# gcc-multilib makes. That package conflicts with the aarch64 cross
# compiler, so .ci/run installs gcc-12-multilib and the link is made here.
m32_suite() {
    local inc="$OUT/m32/include" asm
    mkdir -p "$inc"
    asm=$(echo '#include <asm/errno.h>' | gcc -E -M -x c - 2>/dev/null | grep -o '[^ ]*/asm/errno\.h')
    [ -n "$asm" ] && ln -sfn "$(dirname "$asm")" "$inc/asm"
    suite m32 CC=gcc CFLAGS="-O2 -m32 -isystem $inc" VARIANTS=c
}
have_m32() { # a 32-bit libc and libgcc (gcc prints the bare name of a file it lacks)
    [ -e "$(gcc -m32 -print-file-name=libc.so 2>/dev/null)" ] && [ -e "$(gcc -m32 -print-file-name=libgcc.a 2>/dev/null)" ]
}
if have_m32; then step target-i386 m32_suite; fi

# A failing step's lines scroll away above the matrix: name them again, and
# what failed in them, next to the total.
for name in "${failures[@]}"; do
    echo "failed: $name"
    grep -E '^\[ FAIL \]|runtime error|WARNING: ThreadSanitizer|ERROR: AddressSanitizer' "$OUT/$name.log" | head -n 10
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
