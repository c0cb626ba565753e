/* What the runtime hides: scheduled time (diag_wake to the next poll), the
   poll-time distribution (p50/p99/max) and the lints under the table. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>

#ifndef DIAGNOSE_DISABLE /* the tests read the implementation's internals */

#define MS 1000000ull
#define US 1000ull

/* A future that spins for the time it is told and is READY when told. */
struct task {
    diag_future base;
    uint64_t spin_ns;
    int ready, wake_self;
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    (void)cx;
    if (t->spin_ns) tt_spin_ns(t->spin_ns);
    if (t->wake_self) diag_wake(self); /* lands inside the poll */
    return t->ready ? DIAG_READY : DIAG_PENDING;
}

static diag_future *task_init(struct task *t, const char *name)
{
    struct task zero = { DIAG_FUTURE_INIT(task_poll), 0, 0, 0 };
    *t = zero;
    return DIAGNOSE_AS(&t->base, name);
}

static char dir[256];

/* The ticks-to-ns conversion is calibrated over the whole run (>= 1 ms) from
   clock pairs a few tens of ns wide: relative error well under 1e-3. */
#define CAL_LO(ns) ((double)(ns) * 0.999)
#define CAL_HI(ns) ((double)(ns) * 1.001 + 1000.0)

static void test_sched_is_wake_to_next_poll(void)
{
    struct task t;
    diag_future *f = task_init(&t, "sched.one");
    uint64_t before_wake, after_poll;
    char prefix[300], *sched;
    diag_poll(f, NULL);
    before_wake = tt_now_ns();
    diag_wake(f);
    tt_sleep_ns(20 * MS);
    t.ready = 1;
    diag_poll(f, NULL);
    after_poll = tt_now_ns();
    snprintf(prefix, sizeof prefix, "%s/one", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    sched = tt_readf("%s.sched.folded", prefix);
    CHECK(tt_folded_ok(sched));
    /* at least the sleep; at most what the test saw from before the wake to
       after the poll, which encloses the measured interval */
    CHECK_RANGE(tt_value(sched, "sched.one"), CAL_LO(20 * MS), CAL_HI(after_poll - before_wake));
    CHECK_EQ(tt_row_of("sched.one").wakes, 1);
    free(sched);
}

static void test_only_the_first_wake_counts(void)
{
    struct task t;
    diag_future *f = task_init(&t, "sched.twice");
    uint64_t before_wake, after_poll;
    diag__row r;
    diag_poll(f, NULL);
    before_wake = tt_now_ns();
    diag_wake(f);
    tt_sleep_ns(5 * MS);
    diag_wake(f); /* already runnable: the delay still starts at the first */
    tt_sleep_ns(5 * MS);
    t.ready = 1;
    diag_poll(f, NULL);
    after_poll = tt_now_ns();
    r = tt_row_of("sched.twice");
    CHECK_EQ(r.wakes, 1);
    CHECK_EQ(r.polls, 2);
    CHECK_RANGE(r.sched, CAL_LO(10 * MS), CAL_HI(after_poll - before_wake));
}

static void test_wake_during_a_poll_is_for_the_next(void)
{
    struct task t;
    diag_future *f = task_init(&t, "sched.self");
    uint64_t before_poll, after_poll;
    diag__row r;
    t.wake_self = 1;
    before_poll = tt_now_ns();
    diag_poll(f, NULL); /* wakes itself before returning PENDING */
    tt_sleep_ns(10 * MS);
    t.wake_self = 0;
    t.ready = 1;
    diag_poll(f, NULL);
    after_poll = tt_now_ns();
    r = tt_row_of("sched.self");
    CHECK_EQ(r.wakes, 1);
    CHECK_RANGE(r.sched, CAL_LO(10 * MS), CAL_HI(after_poll - before_poll));
}

struct waker { diag_future *f; uint64_t at; int rounds; };

static void *wake_later(void *arg)
{
    struct waker *w = (struct waker *)arg;
    w->at = tt_now_ns();
    diag_wake(w->f);
    return NULL;
}

static void test_wake_from_another_thread(void)
{
    struct task t;
    diag_future *f = task_init(&t, "sched.remote");
    struct waker w;
    pthread_t th;
    uint64_t after_poll;
    diag__row r;
    diag_poll(f, NULL);
    w.f = f;
    CHECK_EQ(pthread_create(&th, NULL, wake_later, &w), 0);
    pthread_join(th, NULL);
    tt_sleep_ns(10 * MS);
    t.ready = 1;
    diag_poll(f, NULL);
    after_poll = tt_now_ns();
    r = tt_row_of("sched.remote");
    CHECK_EQ(r.wakes, 1);
    CHECK_RANGE(r.sched, CAL_LO(10 * MS), CAL_HI(after_poll - w.at));
}

/* A waker thread and the polling thread race on woke_at; every poll takes
   at most one wake and no wake is counted twice (run under TSan by check). */
static void *wake_often(void *arg)
{
    struct waker *w = (struct waker *)arg;
    int i;
    for (i = 0; i < w->rounds; i++) {
        diag_wake(w->f);
        tt_spin_ns(2 * US);
    }
    return NULL;
}

static void test_concurrent_wakes(void)
{
    struct task t;
    diag_future *f = task_init(&t, "sched.race");
    struct waker w;
    pthread_t th;
    diag__row r;
    int i;
    w.f = f;
    w.rounds = 2000;
    CHECK_EQ(pthread_create(&th, NULL, wake_often, &w), 0);
    for (i = 0; i < 1000; i++) diag_poll(f, NULL);
    pthread_join(th, NULL);
    t.ready = 1;
    diag_poll(f, NULL);
    r = tt_row_of("sched.race");
    CHECK_EQ(r.polls, 1001);
    CHECK(r.wakes >= 1 && r.wakes <= 1001);
}

static void test_drop_forgets_the_wake(void)
{
    struct task t;
    diag_future *f = task_init(&t, "sched.dropped");
    diag__row r;
    diag_poll(f, NULL);
    diag_wake(f);
    diag_drop(f);
    tt_sleep_ns(2 * MS);
    t.ready = 1;
    diag_poll(f, NULL); /* a new run, never woken */
    r = tt_row_of("sched.dropped");
    CHECK_EQ(r.wakes, 0);
    CHECK_EQ(r.sched, 0);
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(r.done, 1);
}

/* The sched file has the same paths as the others (0 where never woken),
   and exists only when some wake was recorded in the window. */
static void test_sched_file_only_with_wakes(void)
{
    struct task a, b;
    diag_future *fa = task_init(&a, "file.plain"), *fb;
    char prefix[300], *polls, *sched;
    CHECK_EQ(diag_reset(), 0);
    a.ready = 1;
    diag_poll(fa, NULL);
    snprintf(prefix, sizeof prefix, "%s/nowake", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK_STR(polls, "file.plain 1\n");
    CHECK(tt_readf("%s.sched.folded", prefix) == NULL);
    free(polls);

    fb = task_init(&b, "file.woken");
    diag_poll(fb, NULL);
    diag_wake(fb);
    tt_sleep_ns(1 * MS);
    b.ready = 1;
    diag_poll(fb, NULL);
    snprintf(prefix, sizeof prefix, "%s/wake", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    sched = tt_readf("%s.sched.folded", prefix);
    CHECK(tt_folded_ok(sched) && tt_lines(sched) == 2);
    CHECK_EQ(tt_value(sched, "file.plain"), 0);
    CHECK_RANGE(tt_value(sched, "file.woken"), CAL_LO(1 * MS), 1e9);
    free(sched);
}

/* ---- the table: a sched column and lints --------------------------------- */

/* The line of text that starts with `start`, copied, or NULL. */
static char *line_starting(const char *text, const char *start)
{
    const char *p = text;
    while (p && *p) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, start, strlen(start)) == 0) {
            char *copy = (char *)calloc(len + 1, 1);
            memcpy(copy, p, len);
            return copy;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* A duration cell as printed (999ns, 12.3us, 450ms, 1.20s) in ns. */
static double cell_ns(const char *cell)
{
    char *unit;
    double v = strtod(cell, &unit);
    if (strncmp(unit, "ns", 2) == 0) return v;
    if (strncmp(unit, "us", 2) == 0) return v * 1e3;
    if (strncmp(unit, "ms", 2) == 0) return v * 1e6;
    if (*unit == 's') return v * 1e9;
    return -1;
}

static void test_table_has_a_sched_column(void)
{
    struct task t;
    diag_future *f = task_init(&t, "table.woken");
    uint64_t before_wake, after_poll;
    char *text, *head, *row, cells[12][32];
    CHECK_EQ(diag_reset(), 0);
    diag_poll(f, NULL);
    before_wake = tt_now_ns();
    diag_wake(f);
    tt_sleep_ns(5 * MS);
    t.ready = 1;
    diag_poll(f, NULL);
    after_poll = tt_now_ns();
    text = tt_table_text();
    CHECK(text && strstr(text, "files P.{polls,busy,wall,sched}.folded\n"));
    head = line_starting(text, "   polls");
    CHECK_STR(head, "   polls   busy   wall   mean    p50    p99    max  runs drops   b/w  sched  path");
    row = line_starting(text, "       2 ");
    /* the columns before the path fit in 78 of 80 columns */
    CHECK(row != NULL && strstr(row, "  table.woken") != NULL && strstr(row, "  table.woken") - row <= 77);
    CHECK(row && sscanf(row, "%31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s", cells[0], cells[1], cells[2],
                        cells[3], cells[4], cells[5], cells[6], cells[7], cells[8], cells[9], cells[10], cells[11]) == 12);
    if (row) {
        CHECK_STR(cells[11], "table.woken");
        CHECK_STR(cells[7], "1"); /* one run */
        /* the cell has 3 significant digits: 0.5% of rounding either way */
        CHECK_RANGE(cell_ns(cells[10]), CAL_LO(5 * MS) * 0.995, CAL_HI(after_poll - before_wake) * 1.005);
    }
    CHECK(strstr(text, "sched: mean time from diag_wake to the next poll\n") != NULL);
    CHECK(text && strstr(text, "lint:") == NULL);
    free(text);
    free(head);
    free(row);
}

static void test_table_without_wakes_has_no_sched(void)
{
    struct task t;
    diag_future *f = task_init(&t, "table.plain");
    char *text, *head;
    CHECK_EQ(diag_reset(), 0);
    t.ready = 1;
    diag_poll(f, NULL);
    text = tt_table_text();
    CHECK(text && strstr(text, "files P.{polls,busy,wall}.folded\n"));
    head = line_starting(text, "   polls");
    CHECK_STR(head, "   polls   busy   wall   mean    p50    p99    max  runs drops   b/w  path");
    CHECK(text && strstr(text, "sched:") == NULL);
    free(text);
    free(head);
}

/* Counts too long for their columns (a 9-digit poll count, runs and drops
   past 5 digits) are written in 3 digits and k, M, G...: every row keeps a
   token per column, each column where the header has it. */
static void test_table_columns_stay_aligned(void)
{
    diag__snapshot snap;
    diag__row rows[2];
    FILE *f = tmpfile();
    char text[4096], *head, *wide, *narrow, cells[11][32];
    size_t len;
    memset(&snap, 0, sizeof snap);
    memset(rows, 0, sizeof rows);
    rows[0].stack = "wide.counts";
    rows[0].polls = 123456789;
    rows[0].started = 100000;
    rows[0].done = 100000;
    rows[0].drops = 99999;
    rows[0].busy = rows[0].wall = rows[0].poll_time = 2000000000;
    rows[1].stack = "narrow";
    rows[1].polls = rows[1].started = rows[1].done = 7;
    snap.rows = rows;
    snap.count = 2;
    snap.ns_per_tick = 1.0;
    snap.threads = 1;
    diag__print_table(f, &snap, "P");
    len = f ? (size_t)ftell(f) : 0;
    if (f) rewind(f);
    memset(text, 0, sizeof text);
    CHECK(f != NULL && len < sizeof text && fread(text, 1, len, f) == len);
    if (f) fclose(f);
    head = line_starting(text, "   polls");
    wide = line_starting(text, "    123M");
    narrow = line_starting(text, "       7 ");
    CHECK(head && wide && narrow);
    if (head && wide && narrow) {
        CHECK_EQ(strstr(wide, "wide.counts") - wide, strstr(head, "path") - head);
        CHECK_EQ(strstr(narrow, "narrow") - narrow, strstr(head, "path") - head);
        CHECK(sscanf(wide, "%31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s", cells[0], cells[1], cells[2],
                     cells[3], cells[4], cells[5], cells[6], cells[7], cells[8], cells[9], cells[10]) == 11);
        CHECK_STR(cells[0], "123M");
        CHECK_STR(cells[7], "100k");
        CHECK_STR(cells[8], "99999");
        CHECK_STR(cells[10], "wide.counts");
    }
    free(head);
    free(wide);
    free(narrow);
}

/* ---- poll-time distribution ---------------------------------------------- */

static void test_mostly_fast_sometimes_slow(void)
{
    struct task t;
    diag_future *f = task_init(&t, "dist.mixed");
    diag__snapshot snap;
    uint64_t slow_outer, start, p50 = 0, p99 = 0, max = 0, sum = 0;
    size_t i;
    int k;
    t.spin_ns = 10 * US;
    slow_outer = 0; /* the longest poll as the test timed it: a preempted fast one may be it */
    for (k = 0; k < 100; k++) {
        if (k == 99) {
            t.spin_ns = 5 * MS;
            t.ready = 1;
        }
        start = tt_now_ns();
        diag_poll(f, NULL);
        start = tt_now_ns() - start;
        if (start > slow_outer) slow_outer = start;
    }
    CHECK_EQ(diag__snapshot_take(&snap), 0);
    for (i = 0; i < snap.count; i++)
        if (strcmp(snap.rows[i].stack, "dist.mixed") == 0) {
            const diag__row *r = &snap.rows[i];
            p50 = diag__quantile(&snap, r, 50);
            p99 = diag__quantile(&snap, r, 99);
            max = r->max;
            for (k = 0; k < DIAG__HIST; k++) sum += r->hist[k];
        }
    diag__snapshot_free(&snap);
    CHECK_EQ(sum, 100);
    /* within 1/17 of the true median (10 to 12 us, see diag__quantile); a
       preempted fast poll cannot move the median */
    CHECK_RANGE(p50, CAL_LO(10 * US) * 16 / 17, CAL_HI(12 * US) * 18 / 17);
    CHECK_RANGE(max, CAL_LO(5 * MS), CAL_HI(slow_outer));
    CHECK(p99 >= p50 && p99 <= max);
}

/* ---- lints ---------------------------------------------------------------- */

/* Polls f n times, each spinning spin_ns; returns how many of them took
   threshold_ns or more as seen from outside (a preempted fast poll can). */
static int polls_at_least(diag_future *f, struct task *t, uint64_t spin_ns, int n, uint64_t threshold_ns)
{
    int k, over = 0;
    t->spin_ns = spin_ns;
    for (k = 0; k < n; k++) {
        uint64_t start = tt_now_ns();
        diag_poll(f, NULL);
        over += (double)(tt_now_ns() - start) >= CAL_LO(threshold_ns);
    }
    return over;
}

static void test_slow_polls_are_counted_exactly(void)
{
    struct task t;
    diag_future *f = task_init(&t, "lint.slow");
    diag__row r;
    int preempted;
    /* 1.3 ms shares a log2 bucket with 1 ms at many clock rates (at 3 GHz
       the bucket is 0.70-1.40 ms), so counting whole buckets above the
       threshold would miss these polls: the counter is exact. A fast poll
       counts only if the test saw it last 1 ms (preempted on a busy box). */
    preempted = polls_at_least(f, &t, 300 * US, 4, 1 * MS);
    polls_at_least(f, &t, 1300 * US, 3, 1 * MS);
    t.ready = 1;
    preempted += polls_at_least(f, &t, 0, 1, 1 * MS);
    r = tt_row_of("lint.slow");
    CHECK_EQ(r.polls, 8);
    CHECK_RANGE(r.slow, 3, 3 + preempted);
}

static void test_lint_lines(void)
{
    struct task slow, stuck, busy, losers[3], winner, fair[2];
    diag_future *f;
    char *text, *line, want[200], max[16];
    int k;
    CHECK_EQ(diag_reset(), 0);
    f = task_init(&slow, "lint.slow");
    slow.spin_ns = 1500 * US;
    diag_poll(f, NULL);
    slow.spin_ns = 0;
    slow.ready = 1;
    diag_poll(f, NULL);
    f = task_init(&stuck, "lint.stuck"); /* 150 polls, never READY */
    for (k = 0; k < 150; k++) diag_poll(f, NULL);
    f = task_init(&busy, "lint.busy"); /* 99 polls: not "many" */
    for (k = 0; k < 99; k++) diag_poll(f, NULL);
    for (k = 0; k < 3; k++) { /* a race that loses 3 times, wins once */
        f = task_init(&losers[k], "lint.loser");
        diag_poll(f, NULL);
        diag_drop(f);
    }
    f = task_init(&winner, "lint.loser");
    winner.ready = 1;
    diag_poll(f, NULL);
    f = task_init(&fair[0], "lint.even"); /* one drop, one finish: fine */
    diag_poll(f, NULL);
    diag_drop(f);
    f = task_init(&fair[1], "lint.even");
    fair[1].ready = 1;
    diag_poll(f, NULL);

    text = tt_table_text();
    line = line_starting(text, "lint: lint.slow: ");
    diag__format_ns(max, sizeof max, tt_row_of("lint.slow").max);
    snprintf(want, sizeof want, "lint: lint.slow: 1 of 2 polls took 1.00ms or more (max %s)", max);
    CHECK_STR(line, want);
    free(line);
    line = line_starting(text, "lint: lint.stuck: ");
    CHECK_STR(line, "lint: lint.stuck: 150 polls, never finished (1 run pending)");
    free(line);
    line = line_starting(text, "lint: lint.loser: ");
    CHECK_STR(line, "lint: lint.loser: dropped 3 times, finished 1");
    free(line);
    CHECK(text && strstr(text, "lint: lint.busy") == NULL);
    CHECK(text && strstr(text, "lint: lint.even") == NULL);
    free(text);
    diag_drop(&stuck.base);
    diag_drop(&busy.base);
}

/* A threshold from the environment, judged before the clock is calibrated
   (the first 10 ms) and after. */
static int child_slow_threshold(void)
{
    struct task t;
    diag_future *f = task_init(&t, "child.slow");
    diag__row r;
    int round, preempted = 0;
    for (round = 0; round < 2; round++) {
        preempted += polls_at_least(f, &t, 100 * US, 5, 800 * US);
        polls_at_least(f, &t, 2 * MS, 3, 800 * US);
        /* round 0 normally ends before the 10 ms of calibration (unless
           the machine is loaded): its polls were judged uncalibrated */
        if (round == 0 && tt_now_ns() - diag__rt->mono0 < DIAG__CALIBRATE_NS && diag__use_tsc &&
            __atomic_load_n(&diag__rt->slow_exact, __ATOMIC_RELAXED))
            return 3;
        if (round == 0) tt_sleep_ns(15 * MS);
    }
    r = tt_row_of("child.slow");
    if (!__atomic_load_n(&diag__rt->slow_exact, __ATOMIC_RELAXED)) return 4;
    if (diag__rt->slow_ns != 800000) return 5;
    return r.polls == 16 && r.slow >= 6 && r.slow <= 6 + (uint64_t)preempted ? 0 : 6;
}

static int child_slow_off(void)
{
    struct task t;
    diag_future *f = task_init(&t, "child.off");
    t.spin_ns = 2 * MS;
    t.ready = 1;
    diag_poll(f, NULL);
    return tt_row_of("child.off").slow == 0 && tt_row_of("child.off").polls == 1 ? 0 : 1;
}

static void test_slow_threshold_from_environment(void)
{
    static const char *const env[] = { "DIAGNOSE_SLOW_NS=800000", "DIAGNOSE_QUIET=1", NULL };
    static const char *const off[] = { "DIAGNOSE_SLOW_NS=0", "DIAGNOSE_QUIET=", NULL };
    char *err;
    CHECK_EQ(tt_spawn(dir, "slow-threshold", env), 0);
    CHECK_EQ(tt_spawn(dir, "slow-off", off), 0);
    err = tt_readf("%s/stderr.txt", dir);
    CHECK(err && strstr(err, "lint: child.off") == NULL && strstr(err, "child.off") != NULL);
    free(err);
}

static const tt_child children[] = {
    { "slow-threshold", child_slow_threshold },
    { "slow-off", child_slow_off },
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_slow_polls_are_counted_exactly);
    RUN(test_sched_is_wake_to_next_poll);
    RUN(test_only_the_first_wake_counts);
    RUN(test_wake_during_a_poll_is_for_the_next);
    RUN(test_wake_from_another_thread);
    RUN(test_concurrent_wakes);
    RUN(test_drop_forgets_the_wake);
    RUN(test_sched_file_only_with_wakes);
    RUN(test_table_has_a_sched_column);
    RUN(test_table_without_wakes_has_no_sched);
    RUN(test_table_columns_stay_aligned);
    RUN(test_mostly_fast_sometimes_slow);
    RUN(test_lint_lines);
    RUN(test_slow_threshold_from_environment);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif
