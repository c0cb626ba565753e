#!/bin/sh
# diff_folded.sh - compares two folded files of the same metric, before and
# after a change, for a differential flame graph.
#
#   examples/diff_folded.sh [-n] before.folded after.folded > diff.folded
#   flamegraph.pl diff.folded > diff.svg      # widths: after; red grew, blue shrank
#
# Writes one line per stack found in either file, "stack A B": A its value
# before, B after, 0 where a file lacks the stack; values of a stack that
# appears twice in one file are summed. This is the two-column input that
# flamegraph.pl draws as a differential, the format difffolded.pl writes;
# lines here are sorted bytewise so the output is reproducible.
# -n scales A so both columns have the same total (A * totalB / totalA,
# rounded down), to compare runs of different lengths.
#
#   examples/diff_folded.sh -w earlier.folded later.folded > window.folded
#   flamegraph.pl window.folded > window.svg  # only what happened in between
#
# -w subtracts: for two cumulative snapshots of one running program (two
# numbered snapshots, or two diag_dump calls without a diag_reset between),
# writes "stack B-A", the ordinary one-column folded profile of the window
# between them; stacks that did not grow are left out. A stack smaller in
# the later file (a reset between the two, or a self wall that shrank as its
# children grew) is left out too, and counted on stderr.
# Lines that are not "stack integer" are skipped and counted on stderr.
set -eu
normalize=0 window=0
case "${1:-}" in
-n) normalize=1; shift ;;
-w) window=1; shift ;;
esac
if [ $# -ne 2 ] || [ ! -r "$1" ] || [ ! -r "$2" ]; then
    echo "usage: $0 [-n | -w] before.folded after.folded > diff.folded" >&2
    exit 2
fi
# Each line is tagged with its column first, so an empty file or the same
# file twice still lands in the right column.
{ sed 's/^/1 /' "$1"; sed 's/^/2 /' "$2"; } | LC_ALL=C awk -v normalize="$normalize" -v window="$window" \
    -v name1="$1" -v name2="$2" '
    # After the tag, the value is the last field and the stack is what comes
    # before the blanks in front of it.
    {
        column = substr($0, 1, 1)
        line = substr($0, 3)
        if (!match(line, /[ \t]+[0-9]+$/) || RSTART == 1) { bad[column]++; next }
        stack = substr(line, 1, RSTART - 1)
        value = substr(line, RSTART) + 0
        if (!(stack in seen)) { seen[stack] = 1; a[stack] = 0; b[stack] = 0 }
        if (column == 1) { a[stack] += value; total_a += value }
        else { b[stack] += value; total_b += value }
    }
    END {
        if (bad[1]) printf "%s: ignored %d line(s) that are not \"stack integer\"\n", name1, bad[1] > "/dev/stderr"
        if (bad[2]) printf "%s: ignored %d line(s) that are not \"stack integer\"\n", name2, bad[2] > "/dev/stderr"
        for (stack in seen) {
            if (window) {
                if (b[stack] > a[stack]) printf "%s %.0f\n", stack, b[stack] - a[stack]
                else if (b[stack] < a[stack]) shrank++
                continue
            }
            before = a[stack]
            if (normalize && total_a > 0 && total_a != total_b) before = int(before * total_b / total_a)
            printf "%s %.0f %.0f\n", stack, before, b[stack]
        }
        if (shrank) printf "%s: left out %d stack(s) smaller than in %s\n", name2, shrank, name1 > "/dev/stderr"
    }' | LC_ALL=C sort
