/* The poll-time histogram, whose buckets a slot holds a byte each until the
   31st moves them to the path's shared row: every poll is in the histogram
   exactly once, across moves, threads that exit, and resets; the buckets
   are 1/8 of a power of two wide, and p50 and p99 within 1/17 of the
   nearest-rank quantiles of the polls as the program timed them itself;
   the per-thread name cache (path ids only) resolves every context again,
   the folded and the overflowed ones included. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <math.h>
#include <pthread.h>

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */

/* Polls of `name` in the window, and the sum of its histogram's buckets. */
static void row_counts(const char *name, uint64_t *polls, uint64_t *in_hist)
{
    diag__snapshot snap;
    size_t i;
    *polls = *in_hist = 0;
    if (diag__snapshot_take(&snap) != 0) return;
    for (i = 0; i < snap.count; i++)
        if (strcmp(snap.rows[i].stack, name) == 0) {
            int h;
            *polls = snap.rows[i].polls;
            for (h = 0; h < DIAG__HIST; h++) *in_hist += snap.rows[i].hist[h];
        }
    diag__snapshot_free(&snap);
}

static void poll_span(diag_span *s, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        diag_span_begin(s);
        diag_span_end(s, i + 1 == n ? DIAG_READY : DIAG_PENDING);
    }
}

/* Fast polls land in one or two buckets, so their byte counters wrap: the
   counts at and around each wrap are exact. */
static void test_wraps_are_exact(void)
{
    static const int at[] = { 1, 255, 256, 257, 511, 512, 513, 5000 };
    diag_span s = DIAG_SPAN_INIT("hist.wraps");
    uint64_t polls, in_hist;
    int i, done = 0;
    for (i = 0; i < (int)(sizeof at / sizeof at[0]); i++) {
        poll_span(&s, at[i] - done);
        done = at[i];
        row_counts("hist.wraps", &polls, &in_hist);
        CHECK_EQ(polls, at[i]);
        CHECK_EQ(in_hist, at[i]);
    }
}

#define THREADS 4
#define THREAD_POLLS 700 /* many moves each, and some held */

typedef struct worker {
    pthread_t id;
    pthread_barrier_t *polled, *read;
    int stay; /* wait until the main thread has read the tables */
} worker;

static void *work(void *arg)
{
    worker *w = (worker *)arg;
    diag_span mine = DIAG_SPAN_INIT("hist.threads");
    poll_span(&mine, THREAD_POLLS);
    pthread_barrier_wait(w->polled);
    if (w->stay) pthread_barrier_wait(w->read);
    return NULL;
}

/* Four threads poll one path; two exit before the read (their held buckets
   go to the shared rows), two are still there. */
static void test_threads_and_exits_are_exact(void)
{
    pthread_barrier_t polled, read;
    worker w[THREADS];
    uint64_t polls, in_hist;
    int i;
    pthread_barrier_init(&polled, NULL, THREADS + 1);
    pthread_barrier_init(&read, NULL, THREADS / 2 + 1);
    for (i = 0; i < THREADS; i++) {
        w[i].polled = &polled;
        w[i].read = &read;
        w[i].stay = i % 2;
        pthread_create(&w[i].id, NULL, work, &w[i]);
    }
    pthread_barrier_wait(&polled);
    for (i = 0; i < THREADS; i++)
        if (!w[i].stay) pthread_join(w[i].id, NULL);
    row_counts("hist.threads", &polls, &in_hist);
    CHECK_EQ(polls, THREADS * THREAD_POLLS);
    CHECK_EQ(in_hist, THREADS * THREAD_POLLS);
    pthread_barrier_wait(&read);
    for (i = 0; i < THREADS; i++)
        if (w[i].stay) pthread_join(w[i].id, NULL);
    row_counts("hist.threads", &polls, &in_hist);
    CHECK_EQ(polls, THREADS * THREAD_POLLS);
    CHECK_EQ(in_hist, THREADS * THREAD_POLLS);
    pthread_barrier_destroy(&polled);
    pthread_barrier_destroy(&read);
}

static const char reset_name[] = "hist.reset";
static pthread_barrier_t reset_done;

/* 300 polls before the reset and 300 after it, then exits: a thread with
   a baseline. */
static void *poll_around_reset(void *arg)
{
    diag_span s = DIAG_SPAN_INIT(reset_name);
    poll_span(&s, 300);
    pthread_barrier_wait((pthread_barrier_t *)arg);
    pthread_barrier_wait(&reset_done);
    poll_span(&s, 300);
    return NULL;
}

static void *poll_before_reset(void *arg)
{
    diag_span s = DIAG_SPAN_INIT(reset_name);
    (void)arg;
    poll_span(&s, 300);
    return NULL;
}

/* A reset's baseline holds bytes and shared rows alike: the window counts
   only its own polls, when the bytes move after the reset, and when a
   thread with a baseline exits. */
static void test_reset_across_wraps(void)
{
    diag_span s = DIAG_SPAN_INIT(reset_name);
    pthread_barrier_t polled;
    pthread_t around, before;
    uint64_t polls, in_hist;
    pthread_barrier_init(&polled, NULL, 2);
    pthread_barrier_init(&reset_done, NULL, 2);
    pthread_create(&around, NULL, poll_around_reset, &polled);
    pthread_create(&before, NULL, poll_before_reset, NULL);
    pthread_join(before, NULL); /* its 300 retired before the reset */
    poll_span(&s, 300);         /* nine moves before the reset, 21 held */
    pthread_barrier_wait(&polled);
    CHECK_EQ(diag_reset(), 0);
    poll_span(&s, 600); /* moves after it */
    row_counts(reset_name, &polls, &in_hist);
    CHECK_EQ(polls, 600);
    CHECK_EQ(in_hist, 600);
    pthread_barrier_wait(&reset_done);
    pthread_join(around, NULL);
    row_counts(reset_name, &polls, &in_hist);
    CHECK_EQ(polls, 900);
    CHECK_EQ(in_hist, 900);
    pthread_barrier_destroy(&polled);
    pthread_barrier_destroy(&reset_done);
}

/* Below 16 ticks a bucket per tick; above, 8 per power of two, each 1/8 of
   it wide, contiguous; the last from 2^34 - 2^30 on. Every value is inside
   its bucket's bounds, and the point a quantile reports for a bucket is
   within 1/17 of every value in it. */
static void test_bucket_bounds(void)
{
    uint64_t v, lo, hi, prev_hi = 0;
    unsigned b;
    CHECK_EQ(diag__bucket(0), 0);
    CHECK_EQ(diag__bucket(15), 15);
    CHECK_EQ(diag__bucket(16), 16);
    CHECK_EQ(diag__bucket(17), 16);
    CHECK_EQ(diag__bucket(18), 17);
    CHECK_EQ(diag__bucket(32), 24);
    CHECK_EQ(diag__bucket(((uint64_t)1 << 34) - 1), 255);
    CHECK_EQ(diag__bucket(UINT64_MAX), 255);
    for (b = 0; b < DIAG__HIST; b++) {
        diag__bucket_bounds(b, &lo, &hi);
        CHECK_EQ(lo, prev_hi); /* contiguous from 0 */
        CHECK(hi > lo && (hi - lo == 1 || (hi - lo) * 8 <= lo));
        CHECK_EQ(diag__bucket(lo), b);
        CHECK_EQ(diag__bucket(hi - 1), b);
        prev_hi = hi;
        if (tt_failed_now) return;
    }
    CHECK_EQ(prev_hi, (uint64_t)1 << 34);
    for (v = 16; v < ((uint64_t)1 << 34); v += v / 7 + 1) {
        double point, err;
        diag__bucket_bounds(diag__bucket(v), &lo, &hi);
        point = 2.0 * (double)lo * (double)hi / (double)(lo + hi);
        err = point > (double)v ? point / (double)v - 1 : 1 - point / (double)v;
        if (err > 1.0 / 17 + 1e-12) {
            CHECK(err <= 1.0 / 17);
            return;
        }
    }
}

/* A histogram made by hand, one tick = one nanosecond: the nearest rank
   picks the bucket, the point in it is 2 lo hi / (lo + hi), never above
   max; the last bucket's is max. */
static void test_quantiles_of_a_histogram(void)
{
    diag__snapshot snap;
    diag__row r;
    uint64_t hist[DIAG__HIST] = { 0 };
    memset(&snap, 0, sizeof snap);
    memset(&r, 0, sizeof r);
    snap.ns_per_tick = 1.0;
    r.polls = 100;
    r.max = 4700;
    r.hist = hist;
    hist[diag__bucket(100)] = 50;  /* 50 polls of 100 ticks: bucket [96, 104) */
    hist[diag__bucket(1000)] = 49; /* [960, 1024) */
    hist[diag__bucket(4700)] = 1;  /* [4608, 5120) */
    CHECK_EQ(diag__quantile(&snap, &r, 50), 100); /* the 50th: 2 * 96 * 104 / 200 = 99.84 */
    CHECK_EQ(diag__quantile(&snap, &r, 51), 991); /* 2 * 960 * 1024 / 1984 = 990.97 */
    CHECK_EQ(diag__quantile(&snap, &r, 99), 991);
    CHECK_EQ(diag__quantile(&snap, &r, 100), 4700); /* 4851, but never above max */
    hist[diag__bucket(4700)] = 0;
    hist[DIAG__HIST - 1] = 1; /* a poll of seconds or more: the maximum */
    r.max = (uint64_t)1 << 40;
    CHECK_EQ(diag__quantile(&snap, &r, 100), (uint64_t)1 << 40);
}

/* ---- p50 and p99 against the program's own clock ------------------------- */

#define MAX_POLLS 400
#define US 1000ull

/* A future that spins a given time in each poll and times itself: inner,
   its own clock inside the poll; the caller's clock around diag_poll gives
   outer. The library's time of a poll lies between the two. */
struct timed {
    diag_future base;
    const uint64_t *spin;
    uint64_t *inner;
    int i;
};

static diag_status timed_poll(diag_future *self, void *cx)
{
    struct timed *t = (struct timed *)self;
    uint64_t start = tt_now_ns();
    (void)cx;
    tt_spin_ns(t->spin[t->i]);
    t->inner[t->i] = tt_now_ns() - start;
    t->i++;
    return DIAG_PENDING;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile of n times: the ceil(percent/100 n)-th shortest. */
static double nearest_rank(const uint64_t *times, int n, int percent)
{
    uint64_t sorted[MAX_POLLS];
    int rank = (n * percent + 99) / 100;
    memcpy(sorted, times, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, compare_u64);
    return (double)sorted[(rank > 0 ? rank : 1) - 1];
}

/* A cell of the table ("1.95ms") in ns, or -1. */
static double cell_ns(const char *cell)
{
    char *unit;
    double v = strtod(cell, &unit);
    if (strcmp(unit, "ns") == 0) return v;
    if (strcmp(unit, "us") == 0) return v * 1e3;
    if (strcmp(unit, "ms") == 0) return v * 1e6;
    if (strcmp(unit, "s") == 0) return v * 1e9;
    return -1;
}

/* The table's cells of columns p50 and p99 of the row of stack, from the
   header line that names the columns (path last, one token per column). */
static void table_quantiles(const char *stack, double *p50, double *p99)
{
    char *text = tt_table_text(), *line, *save = NULL;
    int columns = 0, at50 = -1, at99 = -1;
    *p50 = *p99 = -1;
    for (line = text ? strtok_r(text, "\n", &save) : NULL; line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char cells[16][64], *cell, *in = NULL;
        int n = 0;
        for (cell = strtok_r(line, " ", &in); cell != NULL && n < 16; cell = strtok_r(NULL, " ", &in))
            snprintf(cells[n++], sizeof cells[0], "%s", cell);
        if (columns == 0 && n > 2 && strcmp(cells[n - 1], "path") == 0) {
            for (columns = 0; columns < n; columns++) {
                if (strcmp(cells[columns], "p50") == 0) at50 = columns;
                if (strcmp(cells[columns], "p99") == 0) at99 = columns;
            }
        } else if (columns > 0 && n == columns && strcmp(cells[n - 1], stack) == 0 && at50 >= 0 && at99 >= 0) {
            *p50 = cell_ns(cells[at50]);
            *p99 = cell_ns(cells[at99]);
        }
    }
    free(text);
}

/* Polls a timed future once per spin, in a window of its own (reset),
   then checks p50 and p99: diag__quantile within 1/17 of the library's
   times, which lie between the program's inner and outer ones (and the
   clock's calibration, 0.1%); the table's cells within 15% of the
   nearest-rank percentiles of the program's own times: of the inner ones,
   or up to the outer ones when a poll was preempted between the
   program's clock and the library's (on a loaded machine, 1 run in 100
   here: the outer clock holds what the library saw); every poll in the
   histogram. */
static void check_quantiles(const char *name, const uint64_t *spin, int n)
{
    static uint64_t inner[MAX_POLLS], outer[MAX_POLLS];
    struct timed t = { DIAG_FUTURE_INIT(timed_poll), NULL, NULL, 0 };
    diag__snapshot snap;
    double cell[2];
    int q, i, percent[2] = { 50, 99 };
    t.spin = spin;
    t.inner = inner;
    DIAGNOSE_AS(&t.base, name);
    CHECK_EQ(diag_reset(), 0);
    for (i = 0; i < n; i++) {
        uint64_t start = tt_now_ns();
        diag_poll(&t.base, NULL);
        outer[i] = tt_now_ns() - start;
    }
    CHECK_EQ(diag__snapshot_take(&snap), 0);
    for (i = 0; i < (int)snap.count; i++)
        if (strcmp(snap.rows[i].stack, name) == 0) {
            uint64_t in_hist = 0;
            int h;
            for (h = 0; h < DIAG__HIST; h++) in_hist += snap.rows[i].hist[h];
            CHECK_EQ(in_hist, n);
            for (q = 0; q < 2; q++)
                CHECK_RANGE(diag__quantile(&snap, &snap.rows[i], (unsigned)percent[q]),
                            nearest_rank(inner, n, percent[q]) * 16 / 17 * 0.999,
                            nearest_rank(outer, n, percent[q]) * 18 / 17 * 1.001);
        }
    diag__snapshot_free(&snap);
    table_quantiles(name, &cell[0], &cell[1]);
    for (q = 0; q < 2; q++)
        CHECK_RANGE(cell[q], nearest_rank(inner, n, percent[q]) * 0.85, nearest_rank(outer, n, percent[q]) * 1.15);
}

static uint64_t lcg_state = 12345;

/* A number in [0, 1), the same sequence every run. */
static double uniform01(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(lcg_state >> 11) / 9007199254740992.0;
}

/* Polls uniform in 100 to 300 us (the 1 to 3 ms, shorter): their
   median, 200 us, was reported as a power of two's bound, up to 2x. */
static void test_quantiles_of_uniform_polls(void)
{
    static uint64_t spin[200];
    int i;
    for (i = 0; i < 200; i++) spin[i] = 100 * US + (uint64_t)(uniform01() * 200 * US);
    check_quantiles("q.uniform", spin, 200);
}

/* Two times in one power of two, 110 and 170 us, 60% and 40%: p50 is the
   shorter, p99 the longer. */
static void test_quantiles_of_a_two_point_mix(void)
{
    static uint64_t spin[200];
    int i;
    for (i = 0; i < 200; i++) spin[i] = uniform01() < 0.6 ? 110 * US : 170 * US;
    check_quantiles("q.two_point", spin, 200);
}

/* Exponential, mean 80 us (at least 5 us): many short polls, a long tail. */
static void test_quantiles_of_exponential_polls(void)
{
    static uint64_t spin[300];
    int i;
    for (i = 0; i < 300; i++) spin[i] = 5 * US + (uint64_t)(-80.0 * (double)US * log(1.0 - uniform01()));
    check_quantiles("q.exponential", spin, 300);
}

/* 3 us and 400 us polls, 60% and 40%, in runs of 20: the two are 7 powers
   of two apart, more than a slot's window holds, so polls go aside and the
   window moves; every poll is counted, p50 is the short one, p99 the long. */
static void test_quantiles_across_window_moves(void)
{
    static uint64_t spin[MAX_POLLS];
    int i;
    for (i = 0; i < MAX_POLLS; i++) spin[i] = (i / 20) % 5 < 2 ? 400 * US : 3 * US;
    spin[0] = 2 * 1000 * US; /* a slow first poll, as a cold start makes */
    check_quantiles("q.moves", spin, MAX_POLLS);
}

/* The cache keeps path ids only and checks the key in the path table: a
   context counted in [overflow] is never taken for another, and the second
   round of every context finds the same path as the first. */
static void test_cache_finds_every_context(void)
{
    static const char *const names[] = { "cache.a", "cache.b", "cache.c" };
    uint64_t polls, in_hist;
    int round, i;
    for (round = 0; round < 2; round++)
        for (i = 0; i < 3; i++) {
            diag_span outer = DIAG_SPAN_INIT(names[i]), inner = DIAG_SPAN_INIT("cache.inner");
            diag_span_begin(&outer);
            poll_span(&inner, 1);
            diag_span_end(&outer, DIAG_READY);
        }
    for (i = 0; i < 3; i++) {
        char stack[32];
        row_counts(names[i], &polls, &in_hist);
        CHECK_EQ(polls, 2);
        snprintf(stack, sizeof stack, "%s;cache.inner", names[i]);
        row_counts(stack, &polls, &in_hist);
        CHECK_EQ(polls, 2);
        CHECK_EQ(in_hist, 2);
    }
}

/* Where the timestamp counter is not used, the poll path's inline part
   hands every begin and end to its out-of-line rest: the same counts. */
static void test_other_clock_counts_alike(void)
{
    diag_span outer = DIAG_SPAN_INIT("clock.outer"), inner = DIAG_SPAN_INIT("clock.inner");
    int saved = diag__use_tsc, i;
    uint64_t polls, in_hist;
    diag__use_tsc = 0; /* clock_gettime, as on a CPU without an invariant counter */
    for (i = 0; i < 300; i++) {
        diag_span_begin(&outer);
        poll_span(&inner, 2);
        diag_span_end(&outer, i % 3 == 2 ? DIAG_READY : DIAG_PENDING);
    }
    diag__use_tsc = saved;
    row_counts("clock.outer", &polls, &in_hist);
    CHECK_EQ(polls, 300);
    CHECK_EQ(in_hist, 300);
    row_counts("clock.outer;clock.inner", &polls, &in_hist);
    CHECK_EQ(polls, 600);
    CHECK_EQ(in_hist, 600);
}

#endif

int main(void)
{
#ifdef DIAGNOSE_DISABLE
    return 0;
#else
    tt_quiet_exit_dump();
    RUN(test_wraps_are_exact);
    RUN(test_threads_and_exits_are_exact);
    RUN(test_reset_across_wraps);
    RUN(test_bucket_bounds);
    RUN(test_quantiles_of_a_histogram);
    RUN(test_quantiles_of_uniform_polls);
    RUN(test_quantiles_of_a_two_point_mix);
    RUN(test_quantiles_of_exponential_polls);
    RUN(test_quantiles_across_window_moves);
    RUN(test_cache_finds_every_context);
    RUN(test_other_clock_counts_alike);
    return test_summary();
#endif
}
