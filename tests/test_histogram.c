/* The poll-time histogram kept in byte counters per thread, with the 256th
   poll of a bucket moved to the path's shared row: every poll is in the
   histogram exactly once, across wraps, threads that exit, and resets; the
   bucket bounds keep quantiles within a factor of two; the per-thread name
   cache (path ids only) resolves every context again, the folded and the
   overflowed ones included. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

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
#define THREAD_POLLS 700 /* more than two wraps of a byte each */

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

/* Four threads poll one path; two exit before the read (their tables join
   the retired one through the shared rows), two are still there. */
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
   only its own polls, when the bytes wrap after the reset, and when a
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
    poll_span(&s, 300);         /* one wrap before the reset, 44 in the byte */
    pthread_barrier_wait(&polled);
    CHECK_EQ(diag_reset(), 0);
    poll_span(&s, 600); /* wraps twice after it */
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

/* Bucket b holds [2^(b+1), 2^(b+2)) ticks (the first from 0), the last is
   open; the bound a quantile reports for a bucket is below twice any value
   of 2 ticks or more in it. */
static void test_bucket_bounds(void)
{
    uint64_t v;
    int shift;
    CHECK_EQ(diag__bucket(0), 0);
    CHECK_EQ(diag__bucket(3), 0);
    CHECK_EQ(diag__bucket(4), 1);
    CHECK_EQ(diag__bucket(7), 1);
    CHECK_EQ(diag__bucket(8), 2);
    CHECK_EQ(diag__bucket(((uint64_t)1 << 31) - 1), DIAG__HIST - 2);
    CHECK_EQ(diag__bucket((uint64_t)1 << 31), DIAG__HIST - 1);
    CHECK_EQ(diag__bucket(UINT64_MAX), DIAG__HIST - 1);
    for (shift = 1; shift < 31; shift++)
        for (v = (uint64_t)1 << shift; v < (uint64_t)2 << shift; v += ((uint64_t)1 << shift) / 8 + 1) {
            uint64_t bound = ((uint64_t)4 << diag__bucket(v)) - 1;
            if (bound < v || bound >= 2 * v) {
                CHECK(bound >= v && bound < 2 * v);
                return;
            }
        }
}

/* The quantiles of one path whose polls take known times, read with one
   tick = one nanosecond: p50 and p99 are the bounds of their buckets. */
static void test_quantiles_within_factor_two(void)
{
    diag__snapshot snap;
    diag__row r;
    uint64_t hist[DIAG__HIST] = { 0 };
    memset(&snap, 0, sizeof snap);
    memset(&r, 0, sizeof r);
    snap.ns_per_tick = 1.0;
    r.polls = 100;
    r.max = 5000;
    r.hist = hist;
    hist[diag__bucket(100)] = 60;  /* 60 polls of 100 ticks: bucket [64, 128) */
    hist[diag__bucket(1000)] = 39; /* [512, 1024) */
    hist[diag__bucket(5000)] = 1;
    CHECK_EQ(diag__quantile(&snap, &r, 0.50), 127);
    CHECK_EQ(diag__quantile(&snap, &r, 0.99), 1023);
    CHECK_EQ(diag__quantile(&snap, &r, 1.00), 5000); /* 8191, but never above max */
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
    RUN(test_quantiles_within_factor_two);
    RUN(test_cache_finds_every_context);
    RUN(test_other_clock_counts_alike);
    return test_summary();
#endif
}
