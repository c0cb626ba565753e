#!/usr/bin/env bash
# Builds and runs every complete program shown in README.md and docs/*.md.
# The rule, per markdown file, top to bottom:
# - A fenced block opened with ```c that contains `int main` is a program.
# - A block opened with ```c NAME.c (a file name after the language) and no
#   `int main` is another file of the next program in the same markdown file
#   (the quick start's diagnose.c); it must be followed by a program.
# - Every other ```c block is a snippet and is skipped.
# A program is built from its files with -std=c99 -Wall -Wextra -Wpedantic
# -Werror, run in a temporary directory with DIAGNOSE_OUT set, and must exit
# 0 and write DIAGNOSE_OUT.polls.folded.
set -u
cd "$(dirname "$0")/.."
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2 -g}
WARN="-Wall -Wextra -Wpedantic -Werror"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/diagnose-docs-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
failures=0 programs=0

ok() { echo "[   OK ] $1"; }
bad() { echo "[ FAIL ] $1"; shift; for line in "$@"; do echo "  $line"; done; failures=$((failures + 1)); }

# extract MD TAG: writes each program of MD into $TMP/TAG.N/ (its files) and
# prints one line per program, "DIR MD:LINE"; a named file left without a
# program prints "orphan MD:LINE".
extract() {
    awk -v out="$TMP/$2" -v md="$1" '
        !inblock && /^```c( |$)/ { inblock = 1; name = $2; text = ""; start = NR; next }
        inblock && /^```[ \t]*$/ {
            inblock = 0
            if (text ~ /int main/) {
                n++; dir = out "." n
                system("mkdir -p \"" dir "\"")
                f = dir "/" (name != "" ? name : "program.c"); printf "%s", text > f; close(f)
                for (i = 1; i <= files; i++) { f = dir "/" fname[i]; printf "%s", ftext[i] > f; close(f) }
                files = 0
                print dir " " md ":" start
            } else if (name != "") {
                files++; fname[files] = name; ftext[files] = text; fline[files] = start
            }
            next
        }
        inblock { text = text $0 "\n" }
        END { for (i = 1; i <= files; i++) print "orphan " md ":" fline[i] }
    ' "$1"
}

for md in README.md docs/*.md; do
    [ -f "$md" ] || continue
    tag=$(echo "$md" | tr '/.' '__')
    while read -r dir where; do
        if [ "$dir" = orphan ]; then
            bad "$where: a named file block is followed by a program" \
                "a \`\`\`c NAME.c block belongs to the next block with int main"
            continue
        fi
        programs=$((programs + 1))
        srcs=$(cd "$dir" && echo *.c)
        if ! (cd "$dir" && $CC -std=c99 $CFLAGS $WARN -I"$OLDPWD" $srcs -o program -pthread -lm) \
            >"$dir/build.txt" 2>&1; then
            bad "$where builds ($srcs)" "$(cat "$dir/build.txt")"
            continue
        fi
        ok "$where builds ($srcs)"
        (cd "$dir" && env -u DIAGNOSE -u DIAGNOSE_QUIET -u DIAGNOSE_INTERVAL -u DIAGNOSE_SIGNAL \
            -u DIAGNOSE_TRACE DIAGNOSE_OUT="$dir/out" timeout 60 ./program >stdout.txt 2>stderr.txt)
        rc=$?
        if [ $rc -eq 0 ] && [ -s "$dir/out.polls.folded" ]; then
            ok "$where runs: exit 0, $(wc -l <"$dir/out.polls.folded") paths in polls.folded"
        else
            bad "$where runs: exit 0 and writes DIAGNOSE_OUT.polls.folded" "exit $rc" "$(tail -n 5 "$dir/stderr.txt")"
        fi
    done < <(extract "$md" "$tag")
done
if [ $programs -gt 0 ]; then
    ok "$programs programs found in README.md and docs/*.md"
else
    bad "programs found in README.md and docs/*.md" "none: has the rule in this script's header changed?"
fi
[ $failures -eq 0 ]
