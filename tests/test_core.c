/* The accounting of issue 3: exact poll counts, paths, busy, wall, self
   wall, transparency of unmarked futures, drops, and diag_dump itself.

   Every test starts with diag_reset(), so a dump holds only what that test
   did (paths of earlier tests are left with zero counts and are not
   written), which is what makes byte-exact file checks possible.

   Time tolerances. The library reads the timestamp counter and converts it
   to ns with a rate calibrated against CLOCK_MONOTONIC, the clock the test
   reads too. So a time the library reports lies between what the test
   knows happened inside the measured interval (a spin or a sleep: lower
   bound) and the test's own clock reads taken around it (upper bound),
   both widened by the calibration error. That error comes from two clock
   reads bracketing one counter read; LO and HI below allow 2% plus 50 us,
   which is far above what it is on an idle machine (well under 0.1%) and
   still far below any accounting mistake the checks look for (a double
   count, a missing subtraction, a child's time in its parent). Upper
   bounds from the test's own clock never depend on how loaded the machine
   is, so these tests do not get flaky on a busy CI box. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"
#include "task.h"

#include <dirent.h>

static char dir[256];

/* Polls f until READY; returns how many polls answered PENDING. */
static int drive(diag_future *f)
{
    int pending = 0;
    while (diag_poll(f, NULL) == DIAG_PENDING) pending++;
    return pending;
}

/* ---- reading results ----------------------------------------------------- */

/* One path's numbers as the snapshot has them (wall inclusive of children,
   self_wall as written in the wall file). */
struct row {
    int found;
    uint64_t polls, done, drops, busy, wall, self_wall, max;
};

/* The rows of n stacks from one snapshot, so they share one calibration. */
static void rows_of(int n, const char *const *stacks, struct row *out)
{
    int k;
    memset(out, 0, (size_t)n * sizeof *out);
#ifndef DIAGNOSE_DISABLE
    {
        diag__snapshot snap;
        size_t i;
        if (diag__snapshot_take(&snap) != 0) return;
        for (i = 0; i < snap.count; i++) {
            const diag__row *s = &snap.rows[i];
            for (k = 0; k < n; k++) {
                if (strcmp(s->stack, stacks[k]) != 0) continue;
                out[k].found = 1;
                out[k].polls = s->polls;
                out[k].done = s->done;
                out[k].drops = s->drops;
                out[k].busy = s->busy;
                out[k].wall = s->wall;
                out[k].self_wall = s->self_wall;
                out[k].max = s->max;
            }
        }
        diag__snapshot_free(&snap);
    }
#else
    (void)k;
    (void)stacks;
#endif
}

static struct row row_of(const char *stack)
{
    struct row r;
    rows_of(1, &stack, &r);
    return r;
}

/* Dumps to dir/out and returns the text of out.<metric>.folded (static
   buffer per metric, replaced by the next call). */
static const char *dumped(const char *metric)
{
    static char *text[3];
    int i = metric[0] == 'p' ? 0 : metric[0] == 'b' ? 1 : 2;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    free(text[i]);
    text[i] = tt_readf("%s.%s.folded", prefix, metric);
    CHECK(text[i] != NULL);
    CHECK(tt_folded_ok(text[i]));
    return text[i] ? text[i] : "";
}

/* The stacks of a folded text, values removed, one per line. */
static char *stacks_of(const char *folded)
{
    char *out = (char *)malloc(strlen(folded) + 1), *o = out;
    while (*folded) {
        const char *sp = strchr(folded, ' '), *nl = strchr(folded, '\n');
        memcpy(o, folded, (size_t)(sp - folded));
        o += sp - folded;
        *o++ = '\n';
        folded = nl + 1;
    }
    *o = '\0';
    return out;
}

/* How many entries of directory d have names starting with `start`. */
static int files_named(const char *d, const char *start)
{
    DIR *dp = opendir(d);
    struct dirent *e;
    int n = 0;
    if (dp == NULL) return -1;
    while ((e = readdir(dp)) != NULL) n += strncmp(e->d_name, start, strlen(start)) == 0;
    closedir(dp);
    return n;
}

/* ---- tests ---------------------------------------------------------------- */

/* Three futures interleaved round-robin, needing 3, 5 and 0 PENDING answers:
   4, 6 and 1 polls. Polling after READY starts a second run. */
static void test_exact_poll_counts(void)
{
    struct task a = task_make(3, 0), b = task_make(5, 0), c = task_make(0, 0);
    diag_future *fs[3];
    int ready[3] = { 0, 0, 0 }, pendings = 0, rounds = 0, i;
    struct row r;
    diag_reset();
    fs[0] = DIAGNOSE_AS(&a.base, "sched_a");
    fs[1] = DIAGNOSE_AS(&b.base, "sched_b");
    fs[2] = DIAGNOSE_AS(&c.base, "sched_c");
    CHECK(fs[0] == &a.base && fs[1] == &b.base && fs[2] == &c.base);
    while (!(ready[0] && ready[1] && ready[2])) {
        rounds++;
        for (i = 0; i < 3; i++) {
            if (ready[i]) continue;
            if (diag_poll(fs[i], NULL) == DIAG_READY) ready[i] = 1;
            else pendings++;
        }
    }
    CHECK_EQ(rounds, 6);
    CHECK_EQ(pendings, 3 + 5);
    CHECK_EQ(a.polls, 4);
    CHECK_STR(dumped("polls"), "sched_a 4\nsched_b 6\nsched_c 1\n");
    r = row_of("sched_b");
    CHECK_EQ(r.done, 1);
    CHECK_EQ(r.drops, 0);

    /* a second run of sched_a, then a third left open and dropped */
    CHECK_EQ(drive(fs[0]), 3);
    CHECK_EQ(diag_poll(fs[0], NULL), DIAG_PENDING);
    CHECK_STR(dumped("polls"), "sched_a 9\nsched_b 6\nsched_c 1\n");
    r = row_of("sched_a");
    CHECK_EQ(r.polls, 9);
    CHECK_EQ(r.done, 2);
    diag_drop(fs[0]);
    r = row_of("sched_a");
    CHECK_EQ(r.done, 2);
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(a.polls, 9);
}

/* a polls b polls c: three levels, byte-exact files. */
static void test_nested_paths(void)
{
    struct task a = task_make(7, MS), b = task_make(5, MS / 2), c = task_make(2, 2 * MS);
    const char *const stacks[3] = { "a", "a;b", "a;b;c" };
    struct row r[3];
    char *polls, *busy, *wall;
    uint64_t outer;
    diag_reset();
    a.child = DIAGNOSE_AS(&b.base, "b");
    b.child = DIAGNOSE_AS(&c.base, "c");
    outer = tt_now_ns();
    CHECK_EQ(drive(DIAGNOSE_AS(&a.base, "a")), 7);
    outer = tt_now_ns() - outer;
    CHECK_EQ(c.polls, 3);
    CHECK_EQ(b.polls, 6);
    CHECK_EQ(a.polls, 8);
    CHECK_STR(dumped("polls"), "a 8\na;b 6\na;b;c 3\n");
    /* the same paths, in the same order, in every file */
    polls = stacks_of(dumped("polls"));
    busy = stacks_of(dumped("busy"));
    wall = stacks_of(dumped("wall"));
    CHECK_STR(polls, "a\na;b\na;b;c\n");
    CHECK_STR(busy, polls);
    CHECK_STR(wall, polls);
    free(polls);
    free(busy);
    free(wall);
    /* spins: a 8 x 1 ms, b 6 x 0.5 ms, c 3 x 2 ms; each level's busy holds
       its own spins and none of its descendants' */
    rows_of(3, stacks, r);
    CHECK_RANGE(r[2].busy, LO(6 * MS), HI(outer));
    CHECK_RANGE(r[1].busy, LO(3 * MS), HI(outer - 6 * MS));
    CHECK_RANGE(r[0].busy, LO(8 * MS), HI(outer - 9 * MS));
    CHECK_RANGE(r[0].busy + r[1].busy + r[2].busy, LO(17 * MS), HI(outer));
    /* inclusive walls nest; c's run spans its three 2 ms polls */
    CHECK_RANGE(r[2].wall, LO(6 * MS), HI(r[1].wall));
    CHECK_RANGE(r[1].wall, LO(9 * MS), HI(r[0].wall));
    CHECK_RANGE(r[0].wall, LO(17 * MS), HI(outer));
    CHECK_EQ(r[0].done + r[1].done + r[2].done, 3);
}

/* Three polls spinning 10 ms each: busy is between the 30 ms spun and the
   test's own clock around the polls. */
static void test_busy_of_spinning_polls(void)
{
    struct task t = task_make(2, 10 * MS);
    diag_future *f = DIAGNOSE_AS(&t.base, "spin");
    uint64_t outer = 0;
    struct row r;
    diag_reset();
    do {
        uint64_t t0 = tt_now_ns();
        diag_status s = diag_poll(f, NULL);
        outer += tt_now_ns() - t0;
        if (s == DIAG_READY) break;
    } while (1);
    r = row_of("spin");
    CHECK_EQ(r.polls, 3);
    CHECK_RANGE(r.busy, LO(30 * MS), HI(outer));
    CHECK_RANGE(tt_value(dumped("busy"), "spin"), LO(30 * MS), HI(outer));
    /* the longest poll spun 10 ms and took no longer than all three */
    CHECK_RANGE(r.max, LO(10 * MS), HI(outer));
}

/* Three quick polls with 10 ms sleeps between them: wall covers the two
   sleeps (lower bound) and is inside the test's clock from before the
   first poll to after the last; busy is a tiny part of it. */
static void test_wall_of_sleeping_run(void)
{
    struct task t = task_make(2, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "sleepy");
    uint64_t start, first_end = 0, last_start = 0, end;
    struct row r;
    int i;
    diag_reset();
    start = tt_now_ns();
    for (i = 0; i < 3; i++) {
        if (i) tt_sleep_ns(10 * MS);
        last_start = tt_now_ns();
        CHECK_EQ(diag_poll(f, NULL), i == 2 ? DIAG_READY : DIAG_PENDING);
        if (i == 0) first_end = tt_now_ns();
    }
    end = tt_now_ns();
    r = row_of("sleepy");
    CHECK_EQ(r.done, 1);
    CHECK_RANGE(r.wall, LO(last_start - first_end), HI(end - start));
    CHECK(last_start - first_end >= 20 * MS);
    CHECK_RANGE(tt_value(dumped("wall"), "sleepy"), LO(20 * MS), HI(end - start));
    /* three empty polls: microseconds at most, against 20 ms of wall */
    CHECK(r.busy * 100 < r.wall);
}

/* The parent spins 10 ms itself, its child 30 ms: the parent's busy is its
   own 10 ms, not 40. */
static void test_self_busy_excludes_children(void)
{
    struct task parent = task_make(0, 10 * MS), child = task_make(0, 30 * MS);
    uint64_t t0, outer;
    struct row p, c;
    diag_reset();
    parent.child = DIAGNOSE_AS(&child.base, "sb_child");
    t0 = tt_now_ns();
    CHECK_EQ(diag_poll(DIAGNOSE_AS(&parent.base, "sb_parent"), NULL), DIAG_READY);
    outer = tt_now_ns() - t0;
    {
        const char *const stacks[2] = { "sb_parent", "sb_parent;sb_child" };
        struct row both[2];
        rows_of(2, stacks, both);
        p = both[0];
        c = both[1];
    }
    CHECK_EQ(p.polls, 1);
    CHECK_EQ(c.polls, 1);
    CHECK_RANGE(c.busy, LO(30 * MS), HI(parent.child_outer_ns));
    /* parent poll <= outer and child poll >= 30 ms, so self <= outer - 30 ms */
    CHECK_RANGE(p.busy, LO(10 * MS), HI(outer - 30 * MS));
    CHECK_RANGE(p.busy + c.busy, LO(40 * MS), HI(outer));
    /* the next dump recalibrates, so its ns may differ by the error above */
    CHECK_RANGE(tt_value(dumped("busy"), "sb_parent"), LO(p.busy), HI(p.busy));
}

/* Self wall is the path's wall minus its children's walls, and 0 when
   children outlive their parent. */
static void test_self_wall(void)
{
    struct task parent = task_make(2, 0), child = task_make(0, 0);
    struct task quick = task_make(0, 0), kid1 = task_make(1, 0), kid2 = task_make(1, 0);
    diag_future *k1, *k2;
    struct row p, c, q, r1, r2;
    const char *wall;
    int i;
    diag_reset();
    /* child: READY at the parent's 2nd poll; parent: READY at its 3rd */
    child.pending = 1;
    parent.child = DIAGNOSE_AS(&child.base, "sw_child");
    for (i = 0; i < 3; i++) {
        if (i) tt_sleep_ns(5 * MS);
        CHECK_EQ(diag_poll(DIAGNOSE_AS(&parent.base, "sw_parent"), NULL), i == 2 ? DIAG_READY : DIAG_PENDING);
    }
    {
        const char *const stacks[2] = { "sw_parent", "sw_parent;sw_child" };
        struct row both[2];
        rows_of(2, stacks, both);
        p = both[0];
        c = both[1];
    }
    CHECK_EQ(p.done, 1);
    CHECK_EQ(c.done, 1);
    CHECK_EQ(c.polls, 2);
    CHECK_RANGE(c.wall, LO(5 * MS), HI(p.wall));
    CHECK_RANGE(p.wall, LO(10 * MS), 1e9);
    /* the subtraction is done in ticks, then converted: +-1 ns of rounding */
    CHECK_RANGE(p.self_wall, (double)(p.wall - c.wall) - 1, (double)(p.wall - c.wall) + 1);
    CHECK_RANGE(p.self_wall, LO(5 * MS), HI(p.wall));
    CHECK_EQ(c.self_wall, c.wall);
    wall = dumped("wall");
    CHECK_RANGE(tt_value(wall, "sw_parent"), LO(p.self_wall), HI(p.self_wall));
    CHECK_RANGE(tt_value(wall, "sw_parent;sw_child"), LO(c.wall), HI(c.wall));

    /* quick starts kid1 and kid2 and is READY at its next poll; the kids
       finish 5 ms later: their walls add up to far more than quick's. */
    k1 = DIAGNOSE_AS(&kid1.base, "kid1");
    k2 = DIAGNOSE_AS(&kid2.base, "kid2");
    quick.child = k1;
    quick.inner = k2;
    CHECK_EQ(diag_poll(DIAGNOSE_AS(&quick.base, "sw_quick"), NULL), DIAG_PENDING);
    quick.child = NULL;
    quick.inner = NULL;
    CHECK_EQ(diag_poll(&quick.base, NULL), DIAG_READY);
    tt_sleep_ns(5 * MS);
    CHECK_EQ(diag_poll(k1, NULL), DIAG_READY);
    CHECK_EQ(diag_poll(k2, NULL), DIAG_READY);
    {
        const char *const stacks[3] = { "sw_quick", "sw_quick;kid1", "sw_quick;kid2" };
        struct row three[3];
        rows_of(3, stacks, three);
        q = three[0];
        r1 = three[1];
        r2 = three[2];
    }
    CHECK_EQ(q.done, 1);
    CHECK_EQ(r1.polls, 2);
    CHECK_EQ(r2.polls, 2);
    CHECK(r1.wall + r2.wall > q.wall);
    CHECK_RANGE(r1.wall, LO(5 * MS), 1e9);
    CHECK_EQ(q.self_wall, 0);
    wall = dumped("wall");
    CHECK_EQ(tt_value(wall, "sw_quick"), 0);
    CHECK_RANGE(tt_value(wall, "sw_quick;kid1"), LO(r1.wall), HI(r1.wall));
}

/* An unmarked future is not a frame: the marked future it polls attaches
   to the nearest marked ancestor, and its time is that ancestor's. */
static void test_unmarked_is_transparent(void)
{
    struct task outer = task_make(1, 0), plain = task_make(1, 5 * MS), inner = task_make(1, 0);
    struct task top_plain = task_make(0, 0), top = task_make(0, 0);
    diag_future zero;
    struct row o;
    diag_reset();
    /* all-zero private state is a valid, unmarked future */
    memset(&zero, 0, sizeof zero);
    zero.poll = task_poll;
    CHECK(memcmp(&plain.base.span, &zero.span, sizeof zero.span) == 0);
    plain.inner = DIAGNOSE_AS(&inner.base, "tr_inner");
    outer.inner = &plain.base;
    CHECK_EQ(drive(DIAGNOSE_AS(&outer.base, "tr_outer")), 1);
    CHECK_EQ(plain.polls, 2);
    top_plain.inner = DIAGNOSE_AS(&top.base, "tr_top");
    CHECK_EQ(drive(&top_plain.base), 0);
    CHECK_STR(dumped("polls"), "tr_outer 2\ntr_outer;tr_inner 2\ntr_top 1\n");
    /* the unmarked future spun 2 x 5 ms inside tr_outer's polls */
    o = row_of("tr_outer");
    CHECK_RANGE(o.busy, LO(10 * MS), 1e9);
}

/* diag_drop ends a run's wall and counts a drop; on a future that is not
   in a run it does nothing. */
static void test_drop(void)
{
    struct task t = task_make(5, 0), never = task_make(0, 0), done = task_make(0, 0), plain = task_make(0, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "dr");
    diag_future *n = DIAGNOSE_AS(&never.base, "dr_never");
    diag_future *d = DIAGNOSE_AS(&done.base, "dr_done");
    struct row r, r2, rd;
    diag_reset();
    CHECK_EQ(diag_poll(f, NULL), DIAG_PENDING);
    CHECK_EQ(diag_poll(f, NULL), DIAG_PENDING);
    tt_sleep_ns(5 * MS);
    diag_drop(f);
    r = row_of("dr");
    CHECK_EQ(r.polls, 2);
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(r.done, 0);
    CHECK_RANGE(r.wall, LO(5 * MS), 1e9);
    /* the wall stopped at the drop: 10 ms later it has not grown */
    tt_sleep_ns(10 * MS);
    r2 = row_of("dr");
    CHECK_RANGE(r2.wall, LO(r.wall), HI(r.wall));
    CHECK(r2.wall < r.wall + 5 * MS);
    /* dropping again, or a future never polled, changes nothing */
    diag_drop(f);
    diag_drop(n);
    diag_drop(&plain.base);
    diag_drop(NULL);
    CHECK_EQ(row_of("dr").drops, 1);
    CHECK(!row_of("dr_never").found);
    /* dropping a finished future changes nothing */
    CHECK_EQ(diag_poll(d, NULL), DIAG_READY);
    rd = row_of("dr_done");
    diag_drop(d);
    CHECK_EQ(row_of("dr_done").drops, 0);
    CHECK_EQ(row_of("dr_done").done, 1);
    CHECK_RANGE(row_of("dr_done").wall, LO(rd.wall), HI(rd.wall));
    CHECK_STR(dumped("polls"), "dr 2\ndr_done 1\n");
    /* polling after a drop starts a new run, which can finish */
    t.pending = 0;
    t.n = 0;
    CHECK_EQ(diag_poll(f, NULL), DIAG_READY);
    r = row_of("dr");
    CHECK_EQ(r.polls, 3);
    CHECK_EQ(r.done, 1);
    CHECK_EQ(r.drops, 1);
}

/* A run still pending at a dump counts up to the dump. */
static void test_pending_run_counts_to_dump(void)
{
    struct task t = task_make(1, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "pend");
    struct row r1, r2;
    diag_reset();
    CHECK_EQ(diag_poll(f, NULL), DIAG_PENDING);
    tt_sleep_ns(10 * MS);
    r1 = row_of("pend");
    tt_sleep_ns(10 * MS);
    r2 = row_of("pend");
    CHECK_EQ(r1.done, 0);
    CHECK_RANGE(r1.wall, LO(10 * MS), 1e9);
    CHECK_RANGE(r2.wall, LO(r1.wall + 10 * MS), 1e9);
    CHECK_EQ(diag_poll(f, NULL), DIAG_READY);
}

/* diag_dump: 0 and three files; -1 with errno for a path it cannot write;
   each dump is a snapshot and counting goes on. */
static void test_dump(void)
{
    struct task t = task_make(100, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "snap");
    char prefix[600], longer[5000];
    const char *polls;
    int i;
    diag_reset();
    for (i = 0; i < 2; i++) diag_poll(f, NULL);
    polls = dumped("polls");
    CHECK_STR(polls, "snap 2\n");
    for (i = 0; i < 3; i++) diag_poll(f, NULL);
    CHECK_STR(dumped("polls"), "snap 5\n");
    CHECK_EQ(t.polls, 5);
    CHECK_EQ(row_of("snap").polls, 5);

    snprintf(prefix, sizeof prefix, "%s/missing/out", dir);
    errno = 0;
    CHECK_EQ(diag_dump(prefix), -1);
    CHECK_EQ(errno, ENOENT);
    CHECK(!tt_exists(prefix));
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    errno = 0;
    CHECK_EQ(diag_dump(longer), -1);
    CHECK_EQ(errno, ENAMETOOLONG);

    /* the write leaves exactly the three files and, as f's run is open,
       the two pending files; no temporaries */
    snprintf(prefix, sizeof prefix, "%s/whole", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    CHECK_EQ(files_named(dir, "whole"), 5);
    diag_drop(f);
}

int main(void)
{
    setenv("DIAGNOSE_QUIET", "1", 1);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    RUN(test_exact_poll_counts);
    RUN(test_nested_paths);
    RUN(test_busy_of_spinning_polls);
    RUN(test_wall_of_sleeping_run);
    RUN(test_self_busy_excludes_children);
    RUN(test_self_wall);
    RUN(test_unmarked_is_transparent);
    RUN(test_drop);
    RUN(test_pending_run_counts_to_dump);
    RUN(test_dump);
    return test_summary();
}
