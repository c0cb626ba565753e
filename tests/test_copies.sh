#!/usr/bin/env bash
# Several copies of diagnose.h in one process: a program and shared
# libraries, each with its own DIAGNOSE_IMPLEMENTATION, built with
# -fvisibility=hidden or loaded with dlopen(RTLD_LOCAL). Copies of one
# version must share one profile: one set of files, one summary table, paths
# across copies; a copy of another version writes its own, tagged files.
# Uses CC and CFLAGS as tests/run.sh passes them (tests/check.sh runs it
# again with sanitizer flags).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-Wall -Wextra -Wpedantic -Werror"
tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT; [ -n "${KEEP:-}" ] && echo "kept $tmp"
bin=$tmp/bin
mkdir -p "$bin"
passed=0 failed=0
ok() { echo "[   OK ] $1"; passed=$((passed + 1)); }
bad() { echo "[ FAIL ] $1"; failed=$((failed + 1)); }

# check NAME EXPECTED ACTUAL: exact text
check() {
    if [ "$2" = "$3" ]; then ok "$1"; else
        bad "$1"
        printf '  expected:\n%s\n  got:\n%s\n' "$2" "$3" | sed 's/^/    /'
    fi
}

# ---- builds ----
# shellcheck disable=SC2086 # CFLAGS and WARN are lists of flags
lib() { # lib NAME FLAGS...: $bin/libNAME.so with its own copy
    local name=$1
    shift
    $CC -std=c99 $CFLAGS $WARN -fPIC -shared -fvisibility=hidden -I"$ROOT" "$@" \
        "$ROOT/tests/copies_lib.c" -o "$bin/lib$name.so" -pthread
}
# shellcheck disable=SC2086
prog() { # prog NAME FLAGS...: $bin/NAME
    local name=$1
    shift
    $CC -std=c99 $CFLAGS $WARN -I"$ROOT" "$ROOT/tests/copies_prog.c" -o "$bin/$name" \
        -L"$bin" -Wl,-rpath,"$bin" "$@" -pthread -ldl
}
built=1
{
    lib a -DLIB_NAME='"liba"' &&
        lib b -DLIB_NAME='"libb"' &&
        lib lone -DLIB_NAME='"lib"' &&
        lib v2 -DLIB_NAME='"libv2"' -DDIAG__ABI=999 &&
        lib lonev2 -DLIB_NAME='"lib"' -DDIAG__ABI=999 &&
        prog linked -DLINKED -la &&
        prog plain &&
        prog nocopy -DDIAGNOSE_DISABLE &&
        prog refused -DREFUSE_MEMFD -rdynamic
} >"$tmp/build.log" 2>&1 || built=0
if [ $built = 0 ]; then
    cat "$tmp/build.log"
    bad "build the test libraries and programs"
    echo "$passed passed, $failed failed"
    exit 1
fi

# run NAME ARGS...: in a fresh directory $tmp/NAME (kept for a second run),
# stdout in $tmp/NAME/out, stderr in $tmp/NAME/err, exit status in $rc
run() {
    local dir=$tmp/$1
    shift
    mkdir -p "$dir"
    (cd "$dir" && "$@" >out 2>err)
    rc=$?
}
tables() { grep -cE '^diagnose\.h: [0-9]+ paths?, ' "$1"; }
files() { (cd "$1" && ls | grep -v '^out$\|^err$' | tr '\n' ' '); }

# 1. A library linked at start-up, hidden visibility, its own copy.
run linked "$bin/linked" linked
check "linked library: exit 0" 0 $rc
check "linked library: library's future nested in the program's" "prog 1
prog;liba 3" "$(cat "$tmp/linked/diagnose.polls.folded")"
check "linked library: one summary table" 1 "$(tables "$tmp/linked/err")"
check "linked library: one set of files" "diagnose.busy.folded diagnose.polls.folded diagnose.wall.folded " \
    "$(files "$tmp/linked")"
check "linked library: the same paths in every file" "prog
prog;liba" "$(cut -d' ' -f1 "$tmp/linked/diagnose.wall.folded")"

# 2. A rerun over the files of the first run replaces them.
run linked "$bin/linked" linked
check "rerun: old files are replaced, not added to" "prog 1
prog;liba 3" "$(cat "$tmp/linked/diagnose.polls.folded")"

# 3. Two plugins with dlopen(RTLD_LOCAL), each with its own copy.
run two "$bin/plain" two "$bin/liba.so" "$bin/libb.so"
check "two plugins: exit 0" 0 $rc
check "two plugins: one profile, paths across copies" "libb 4
prog 1
prog;liba 2" "$(cat "$tmp/two/diagnose.polls.folded")"
check "two plugins: one summary table" 1 "$(tables "$tmp/two/err")"

# 4. dlclose while a thread that polled in the library lives on, in a
# program without a copy of its own: no crash when the thread ends; the
# library's data is written at the unload.
run unload "$bin/nocopy" unload "$bin/liblone.so"
check "dlclose, live thread, no copy in the program: exit 0" 0 $rc
check "dlclose, no copy in the program: files written at the unload" "at unload: lib 3" \
    "$(cat "$tmp/unload/out")"
check "dlclose, no copy in the program: one summary table" 1 "$(tables "$tmp/unload/err")"

# 5. The same with a copy in the program: the library's data is on disk at
# the unload and in the files at exit, with the program's own.
run unload2 "$bin/plain" unload "$bin/liblone.so"
check "dlclose, live thread: exit 0" 0 $rc
check "dlclose, live thread: files written at the unload" "at unload: lib 3" "$(cat "$tmp/unload2/out")"
check "dlclose, live thread: the library's data in the files at exit" "lib 3
prog 1" "$(cat "$tmp/unload2/diagnose.polls.folded")"
check "dlclose, live thread: one summary table" 1 "$(tables "$tmp/unload2/err")"

# 6. A library loaded, used and unloaded twice: its frames keep their names
# after the unload, and the second load adds to the same path.
run reload "$bin/plain" reload "$bin/liblone.so"
check "reload: exit 0" 0 $rc
check "reload: one path for both loads" "prog 2
prog;lib 6" "$(cat "$tmp/reload/diagnose.polls.folded")"
check "reload: one summary table" 1 "$(tables "$tmp/reload/err")"

# 7. Two plugins and no copy in the program: the one that made the runtime
# (and runs the snapshot thread, the signal handler and the threads' exit
# destructor) is unloaded while its thread lives; the other takes them over.
run handover env DIAGNOSE_SIGNAL=USR2 "$bin/nocopy" handover "$bin/liba.so" "$bin/libb.so"
check "dlclose of the first plugin: exit 0" 0 $rc
check "dlclose of the first plugin: the signal is handled by the other" "snapshot written" "$(cat "$tmp/handover/out")"
check "dlclose of the first plugin: the snapshot holds its data" "liba 3" \
    "$(cat "$tmp/handover/diagnose.1.polls.folded" 2>&1)"
check "dlclose of the first plugin: both in the files at exit" "liba 3
libb 4" "$(cat "$tmp/handover/diagnose.polls.folded")"
check "dlclose of the first plugin: one summary table" 1 "$(tables "$tmp/handover/err")"

# 8. A plugin built with another version of the header (DIAG__ABI differs):
# the two runtimes share no structure, so each writes its own files, the
# plugin's under the prefix tagged with its key, named in one line on
# stderr; each prints its own table.
warned() { grep -c 'was built with other settings or another version' "$1"; }
tag() { sed -n 's/.*its profile goes to diagnose\(\.abi-[0-9a-f]\{8\}\)\.\*$/\1/p' "$1"; }
run versions "$bin/plain" two "$bin/liba.so" "$bin/libv2.so"
t=$(tag "$tmp/versions/err")
check "two versions: exit 0" 0 $rc
check "two versions: one warning line, naming the library and the tagged prefix" "1 1" \
    "$(warned "$tmp/versions/err") $(grep -c "^diagnose\.h: this copy (in libv2\.so) .* diagnose$t\.\*\$" "$tmp/versions/err")"
check "two versions: the first runtime's files and the tagged ones" "diagnose$t.busy.folded diagnose$t.polls.folded \
diagnose$t.wall.folded diagnose.busy.folded diagnose.polls.folded diagnose.wall.folded " "$(files "$tmp/versions")"
check "two versions: the first runtime's files hold its paths only" "prog 1
prog;liba 2" "$(cat "$tmp/versions/diagnose.polls.folded")"
check "two versions: the other version's files hold its paths only" "libv2 4" \
    "$(cat "$tmp/versions/diagnose$t.polls.folded" 2>&1)"
check "two versions: the same paths in every file of each" "prog
prog;liba
libv2" "$(cut -d' ' -f1 "$tmp/versions/diagnose.busy.folded" "$tmp/versions/diagnose$t.wall.folded" 2>&1)"
check "two versions: two tables, one naming the tagged prefix" "2 1" \
    "$(tables "$tmp/versions/err") $(grep -cE "^diagnose\.h: [0-9]+ paths?, .* files diagnose$t\.\{" "$tmp/versions/err")"
run versions "$bin/plain" two "$bin/liba.so" "$bin/libv2.so"
check "two versions, rerun: old files are replaced, not added to" "prog 1
prog;liba 2
libv2 4" "$(cat "$tmp/versions/diagnose.polls.folded" "$tmp/versions/diagnose$t.polls.folded" 2>&1)"

# 9. The other version unloaded while its thread lives: its files are
# written at the unload, under its tagged prefix, with its table; the
# first runtime's files at exit hold the program's paths only.
run versions_unload "$bin/plain" unload "$bin/liblonev2.so" 'diagnose.abi-*.polls.folded'
t=$(tag "$tmp/versions_unload/err")
check "two versions, dlclose: exit 0" 0 $rc
check "two versions, dlclose: one warning line" 1 "$(warned "$tmp/versions_unload/err")"
check "two versions, dlclose: its files written at the unload" "at unload: lib 3" \
    "$(cat "$tmp/versions_unload/out")"
check "two versions, dlclose: each runtime's files at exit" "prog 1
lib 3" "$(cat "$tmp/versions_unload/diagnose.polls.folded" "$tmp/versions_unload/diagnose$t.polls.folded" 2>&1)"
check "two versions, dlclose: two tables" 2 "$(tables "$tmp/versions_unload/err")"

# 10. Where copies cannot meet (memfd_create refused, as some sandboxes
# do; or no /proc): each keeps a runtime of its own, and each library's
# copy says so in one line; the program's copy, most often alone, says
# nothing. The files at exit are those of the copy that wrote last.
run refused "$bin/refused" two "$bin/liba.so" "$bin/libb.so"
check "copies that cannot meet: exit 0" 0 $rc
check "copies that cannot meet: one line per library's copy, naming it" "1 1 2" \
    "$(grep -c '^diagnose\.h: this copy (in liba\.so) cannot meet the process.s other copies' "$tmp/refused/err") \
$(grep -c '^diagnose\.h: this copy (in libb\.so) cannot meet the process.s other copies' "$tmp/refused/err") \
$(grep -c 'cannot meet' "$tmp/refused/err")"
check "copies that cannot meet: a table per runtime" 3 "$(tables "$tmp/refused/err")"
check "copies that cannot meet: the files of the last to write, the program's copy" "prog 1" \
    "$(cat "$tmp/refused/diagnose.polls.folded")"
run refused_quiet env DIAGNOSE_QUIET=1 "$bin/refused" two "$bin/liba.so" "$bin/libb.so"
check "copies that cannot meet, DIAGNOSE_QUIET=1: nothing on stderr" "" "$(cat "$tmp/refused_quiet/err")"

# 11. Two copies linked statically into one executable: a link error.
# shellcheck disable=SC2086
if $CC -std=c99 $CFLAGS -I"$ROOT" -DLINKED -c "$ROOT/tests/copies_prog.c" -o "$tmp/prog.o" &&
    $CC -std=c99 $CFLAGS -I"$ROOT" -c "$ROOT/tests/copies_lib.c" -o "$tmp/lib.o"; then
    # shellcheck disable=SC2086
    if $CC $CFLAGS "$tmp/prog.o" "$tmp/lib.o" -o "$tmp/static" -pthread -ldl >"$tmp/link.log" 2>&1; then
        bad "two static copies: a link error"
    else
        check "two static copies: a link error naming a symbol defined twice" 1 \
            "$(grep -c 'multiple definition of .diag' "$tmp/link.log" | awk '{print ($1 > 0)}')"
    fi
else
    bad "two static copies: objects build"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
