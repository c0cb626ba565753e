/* bench.c - what a diagnosed poll costs, next to references measured in the
   same process, the same way: the same loop, the same flags, many millions
   of polls. Cases are measured in rounds, each round every case once, in
   alternating order; a figure that compares two cases is computed within
   each round and the median over rounds is reported, so that a disturbed
   moment of the machine cannot pass or fail a case by itself.

       bench overhead   poll cost, 1 level and 8 levels deep, with references
       bench threads    the same poll on 1 thread and on 2 threads at once
       bench memory     peak RSS growth over 10 million polls (10 sites)
       bench paths      first poll of a new path, dump of 100,000 paths
       bench scale T P  peak RSS with T threads that each poll the same P paths
       bench cpu CMD..  runs CMD, prints the CPU seconds it used (user + system)
       bench clock      timestamp-counter calibration error over 1 s
       bench trace      poll cost with the flight recorder on and off
                        (run with DIAGNOSE_TRACE set)
       bench runs       a run of one poll (READY at once: the record of an
                        open run taken and freed every poll) against a poll
                        of a run that stays open; also with 10,000 runs open
       bench call       call-style async: DIAG_CALL, and DIAG_CALL_AT's
                        look-up of a span by the task's address

   Each mode prints rows of the table bench/run.sh shows: case, ns per
   operation, the figure compared, its target and PASS or MISS. Built twice
   by run.sh: as is, and with DIAGNOSE_DISABLE (then only "overhead"). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* Many short rounds rather than a few long ones: a disturbance spoils few
   of them, and the median ignores those. */
#define POLLS 400000L /* polls per case per round */
#define ROUNDS 31     /* rounds: 12.4 million polls per case */
#define REPS 25       /* repetitions of a thread's loop (bench threads) */
#define DEPTH 8       /* nesting of the deep case */

/* ---- the table ----------------------------------------------------------- */

static int misses;

/* One row: case, ns per op, the compared figure, its target, PASS/MISS.
   ok < 0: a reference or a figure without a target. */
static void row(const char *name, double ns, const char *figure, const char *target, int ok)
{
    printf("%-46s %9.2f  %-22s %-18s %s\n", name, ns, figure, target, ok < 0 ? "" : ok ? "PASS" : "MISS");
    if (ok == 0) misses++;
    fflush(stdout);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (sorts them). */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The CPU's vendor and the target of extra/floor there: a timestamp read
   is microcoded on Intel and stalls instruction delivery, so the
   bookkeeping around it shows more there than on AMD. */
static const char *cpu_vendor(double *target)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    char id[13];
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        memcpy(id, &b, 4);
        memcpy(id + 4, &d, 4);
        memcpy(id + 8, &c, 4);
        id[12] = '\0';
        if (strcmp(id, "AuthenticAMD") == 0 || strcmp(id, "HygonGenuine") == 0) {
            *target = 1.25;
            return "AMD";
        }
        if (strcmp(id, "GenuineIntel") == 0) {
            *target = 1.30;
            return "Intel";
        }
    }
#endif
    *target = 1.30;
    return "other";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the futures --------------------------------------------------------- */

static inline uint64_t ticks(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#else
    return diag__clock_ns();
#endif
}

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The clock floors add to this: extern, so the compiler cannot keep it in
   a register across the poll call, as a tracer's table cannot be either. */
__thread uint64_t bench_tls_ticks;

#include "node.h"

__attribute__((noinline)) static diag_status bare_poll(diag_future *f, void *cx)
{
    diag_future *c = ((node *)f)->child;
    return c->poll(c, cx);
}

__attribute__((noinline)) static diag_status tsc_poll(diag_future *f, void *cx)
{
    diag_future *c = ((node *)f)->child;
    uint64_t t0 = ticks();
    diag_status s = c->poll(c, cx);
    bench_tls_ticks += ticks() - t0;
    return s;
}

__attribute__((noinline)) static diag_status gettime_poll(diag_future *f, void *cx)
{
    diag_future *c = ((node *)f)->child;
    uint64_t t0 = mono_ns();
    diag_status s = c->poll(c, cx);
    bench_tls_ticks += mono_ns() - t0;
    return s;
}

__attribute__((noinline)) static diag_status diag_node_poll(diag_future *f, void *cx)
{
    return diag_poll(((node *)f)->child, cx);
}

/* The poll functions reach the loops through a volatile, so the compiler
   cannot see through the pointer and inline the poll. */
static diag_poll_fn volatile leaf_fn = leaf_poll;

/* The loops: one per way of polling the top future. */
__attribute__((noinline)) static void loop_bare(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) f->poll(f, NULL);
}

__attribute__((noinline)) static void loop_tsc(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) {
        uint64_t t0 = ticks();
        f->poll(f, NULL);
        bench_tls_ticks += ticks() - t0;
    }
}

__attribute__((noinline)) static void loop_gettime(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) {
        uint64_t t0 = mono_ns();
        f->poll(f, NULL);
        bench_tls_ticks += mono_ns() - t0;
    }
}

__attribute__((noinline)) static void loop_diag(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) diag_poll(f, NULL);
}

typedef void (*loop_fn)(diag_future *f, long n);

/* A chain of `depth` futures; every one above the leaf polls the next with
   `inner`. Names are static literals, as DIAGNOSE_AS requires. */
static diag_future *chain(node *nodes, int depth, diag_poll_fn inner, int mark)
{
    static const char *const names[DEPTH] = { "level1", "level2", "level3", "level4",
                                              "level5", "level6", "level7", "level8" };
    int i;
    memset(nodes, 0, (size_t)depth * sizeof *nodes);
    for (i = 0; i < depth; i++) {
        nodes[i].base.poll = i + 1 < depth ? inner : leaf_fn;
        nodes[i].child = i + 1 < depth ? &nodes[i + 1].base : NULL;
        if (mark) DIAGNOSE_AS(&nodes[i].base, names[i]);
    }
    return &nodes[0].base;
}

/* ---- overhead ------------------------------------------------------------ */

enum { BARE, TSC, GETTIME, DIAG, NCASES };

typedef struct bench_case {
    loop_fn loop;
    diag_future *top;
    long ops;             /* loop iterations per round */
    double ns[ROUNDS];    /* ns per poll in each round */
} bench_case;

/* ROUNDS rounds, each case once per round, in forward order in even rounds
   and backward in odd ones, so that a slow moment or a drift of the
   machine hits the cases of a round alike. */
static void measure(bench_case *cases, int n)
{
    int round, i;
    for (i = 0; i < n; i++) cases[i].loop(cases[i].top, cases[i].ops / 16); /* warm up: paths, caches */
    for (round = 0; round < ROUNDS; round++)
        for (i = 0; i < n; i++) {
            bench_case *c = &cases[round % 2 ? n - 1 - i : i];
            double t = now_s();
            c->loop(c->top, c->ops);
            c->ns[round] = (now_s() - t) * 1e9 / (double)POLLS;
        }
}

/* The median over rounds of a case's ns per poll. */
static double per_poll(const bench_case *c)
{
    double v[ROUNDS];
    memcpy(v, c->ns, sizeof v);
    return median(v, ROUNDS);
}

/* The median over rounds of (subject - bare) / (floor - bare), each round's
   three figures measured back to back. */
static double ratio_median(const bench_case *subject, const bench_case *bare, const bench_case *floor_case)
{
    double v[ROUNDS];
    int r;
    for (r = 0; r < ROUNDS; r++) v[r] = (subject->ns[r] - bare->ns[r]) / (floor_case->ns[r] - bare->ns[r]);
    return median(v, ROUNDS);
}

/* The median over rounds of subject - bare. */
static double extra_median(const bench_case *subject, const bench_case *bare)
{
    double v[ROUNDS];
    int r;
    for (r = 0; r < ROUNDS; r++) v[r] = subject->ns[r] - bare->ns[r];
    return median(v, ROUNDS);
}

/* label: what the diag case is in this process (normal, DIAGNOSE=0, compiled out). */
static void overhead_at(int depth, const char *label, int kind)
{
    static node nodes[NCASES][DEPTH];
    diag_poll_fn inner[NCASES] = { bare_poll, tsc_poll, gettime_poll, diag_node_poll };
    loop_fn loops[NCASES] = { loop_bare, loop_tsc, loop_gettime, loop_diag };
    bench_case cases[NCASES];
    char name[80], figure[40], target_text[40];
    double bare, tsc, extra, target;
    int c;
    cpu_vendor(&target);
    for (c = 0; c < NCASES; c++) {
        cases[c].loop = loops[c];
        cases[c].top = chain(nodes[c], depth, inner[c], c == DIAG);
        cases[c].ops = POLLS / depth; /* the same number of polls in every case */
    }
    measure(cases, NCASES);
    bare = per_poll(&cases[BARE]);
    tsc = per_poll(&cases[TSC]);
    extra = extra_median(&cases[DIAG], &cases[BARE]);
    if (kind == 0) {
        snprintf(name, sizeof name, "bare poll, %d level%s (reference)", depth, depth > 1 ? "s" : "");
        row(name, bare, "", "", -1);
        snprintf(name, sizeof name, "clock floor: +2 rdtsc, %d level%s", depth, depth > 1 ? "s" : "");
        snprintf(figure, sizeof figure, "extra %.2f ns", extra_median(&cases[TSC], &cases[BARE]));
        row(name, tsc, figure, "", -1);
        snprintf(name, sizeof name, "clock_gettime floor, %d level%s", depth, depth > 1 ? "s" : "");
        snprintf(figure, sizeof figure, "extra %.2f ns", extra_median(&cases[GETTIME], &cases[BARE]));
        row(name, per_poll(&cases[GETTIME]), figure, "", -1);
    }
    snprintf(name, sizeof name, "%s, %d level%s", label, depth, depth > 1 ? "s" : "");
    if (kind == 0) { /* recording: extra over bare against the clock floor's extra */
        double ratio = ratio_median(&cases[DIAG], &cases[BARE], &cases[TSC]);
        snprintf(figure, sizeof figure, "extra/floor %.2f", ratio);
        snprintf(target_text, sizeof target_text, "<= %.2f", target);
        row(name, per_poll(&cases[DIAG]), figure, target_text, ratio <= target);
    } else {
        snprintf(figure, sizeof figure, "extra %.2f ns", extra);
        row(name, per_poll(&cases[DIAG]), figure, "<= 1 ns", extra <= 1.0);
    }
}

static void overhead(void)
{
    const char *env = getenv("DIAGNOSE");
    const char *label = "diagnosed poll, steady state";
    int kind = 0;
#ifdef DIAGNOSE_DISABLE
    label = "compiled out (DIAGNOSE_DISABLE)";
    kind = 2;
#else
    if (env && strcmp(env, "0") == 0) {
        label = "DIAGNOSE=0 at run time";
        kind = 1;
    }
#endif
    (void)env;
    overhead_at(1, label, kind);
    overhead_at(DEPTH, label, kind);
}

#ifndef DIAGNOSE_DISABLE
/* ---- two threads --------------------------------------------------------- */

typedef struct worker {
    pthread_t id;
    node leaf;
    double best;
    pthread_barrier_t *start;
    char pad[64]; /* keep two workers' hot data off one cache line */
} worker;

/* Each thread polls its own diagnosed future; they start together. */
static void *work(void *arg)
{
    worker *w = (worker *)arg;
    int rep;
    w->leaf.base.poll = leaf_fn;
    DIAGNOSE_AS(&w->leaf.base, "worker");
    loop_diag(&w->leaf.base, POLLS / 16);
    w->best = 1e30;
    for (rep = 0; rep < 5; rep++) {
        double t;
        if (w->start) pthread_barrier_wait(w->start);
        t = now_s();
        loop_diag(&w->leaf.base, POLLS);
        t = now_s() - t;
        if (t < w->best) w->best = t;
    }
    return NULL;
}

static double run_workers(int n)
{
    static worker w[2];
    pthread_barrier_t start;
    double worst = 0;
    int i;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].start = &start;
        pthread_create(&w[i].id, NULL, work, &w[i]);
    }
    for (i = 0; i < n; i++) {
        pthread_join(w[i].id, NULL);
        if (w[i].best > worst) worst = w[i].best;
    }
    pthread_barrier_destroy(&start);
    return worst * 1e9 / (double)POLLS;
}

#define THREAD_ROUNDS 9

static void threads(void)
{
    double one[THREAD_ROUNDS], two[THREAD_ROUNDS], ratios[THREAD_ROUNDS], ratio;
    char figure[40];
    int round;
    /* Rounds of both set-ups back to back (the best of 5 loops of each), in
       alternating order; the median of the rounds' ratios. */
    for (round = 0; round < THREAD_ROUNDS; round++) {
        if (round % 2) {
            two[round] = run_workers(2);
            one[round] = run_workers(1);
        } else {
            one[round] = run_workers(1);
            two[round] = run_workers(2);
        }
        ratios[round] = two[round] / one[round];
    }
    ratio = median(ratios, THREAD_ROUNDS);
    row("diagnosed poll, 1 thread", median(one, THREAD_ROUNDS), "", "", -1);
    snprintf(figure, sizeof figure, "vs 1 thread %.3f", ratio);
    row("diagnosed poll, 2 threads at once (slower)", median(two, THREAD_ROUNDS), figure, "<= 1.10", ratio <= 1.10);
}

/* ---- memory -------------------------------------------------------------- */

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Resident set now, from /proc (0 where there is none). */
static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A future that is ready every 100th poll, so there are runs as well. */
typedef struct counted {
    diag_future base;
    unsigned n;
} counted;

static diag_status counted_poll(diag_future *f, void *cx)
{
    counted *c = (counted *)f;
    (void)cx;
    return ++c->n % 100 == 0 ? DIAG_READY : DIAG_PENDING;
}

static void memory(void)
{
    static const char *const sites[10] = { "site0", "site1", "site2", "site3", "site4",
                                           "site5", "site6", "site7", "site8", "site9" };
    enum { INSTANCES = 1000 };
    static counted fut[INSTANCES];
    long before, grown, now_before, i;
    double t;
    char figure[40];
    for (i = 0; i < INSTANCES; i++) {
        fut[i].base.poll = counted_poll;
        DIAGNOSE_AS(&fut[i].base, sites[i % 10]);
    }
    before = peak_rss_kib();
    now_before = rss_kib();
    t = now_s();
    for (i = 0; i < 10000000L; i++) diag_poll(&fut[i % INSTANCES].base, NULL);
    t = now_s() - t;
    grown = peak_rss_kib() - before;
    snprintf(figure, sizeof figure, "peak +%ld, now +%ld KiB", grown, rss_kib() - now_before);
    row("10M polls, 1000 futures, 10 sites", t * 1e9 / 1e7, figure, "< 1024 KiB", grown < 1024);
}

/* ---- new paths and the dump ---------------------------------------------- */

#define PARENTS 100
#define CHILDREN 999 /* 100 parents + 100 x 999 children = 100,000 paths */
static char parent_names[PARENTS][8];
static char child_names[CHILDREN][8]; /* static storage: names must outlive the run */

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int c, n = 0;
    if (f == NULL) return -1;
    while ((c = getc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void paths(void)
{
    char dir[] = "/tmp/diagbenchXXXXXX", prefix[64], file[96], figure[40];
    const char *metrics[3] = { "polls", "busy", "wall" };
    long before, grown;
    double t, dump, first = 0;
    int p, c, m, ok = 1;
    for (p = 0; p < PARENTS; p++) snprintf(parent_names[p], sizeof parent_names[p], "p%d", p);
    for (c = 0; c < CHILDREN; c++) snprintf(child_names[c], sizeof child_names[c], "c%d", c);
    diag__start();
    {
        diag_span warm = DIAG_SPAN_INIT("warm"); /* attach this thread first */
        diag_span_begin(&warm);
        diag_span_end(&warm, DIAG_READY);
    }
    before = peak_rss_kib();
    t = now_s();
    for (p = 0; p < PARENTS; p++) {
        diag_span parent = DIAG_SPAN_INIT(parent_names[p]);
        diag_span_begin(&parent);
        for (c = 0; c < CHILDREN; c++) {
            diag_span child = DIAG_SPAN_INIT(child_names[c]);
            diag_span_begin(&child);
            diag_span_end(&child, DIAG_READY);
        }
        diag_span_end(&parent, DIAG_READY);
    }
    t = now_s() - t;
    grown = peak_rss_kib() - before;
    row("first poll of a new path (100,000 paths)", t * 1e9 / (PARENTS * (CHILDREN + 1.0)), "", "", -1);
    snprintf(figure, sizeof figure, "%.0f bytes/path",
             (double)grown * 1024.0 / (PARENTS * (CHILDREN + 1.0)));
    row("memory per path (RSS growth / paths)", 0, figure, "", -1);
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(prefix, sizeof prefix, "%s/bench", dir);
    dump = 1e30;
    for (m = 0; m < 3; m++) { /* best of three dumps; the first also pays for fresh pages */
        double d = now_s();
        if (diag_dump(prefix) != 0) ok = 0;
        d = now_s() - d;
        if (m == 0) first = d;
        if (d < dump) dump = d;
    }
    for (m = 0; m < 3; m++) {
        snprintf(file, sizeof file, "%s.%s.folded", prefix, metrics[m]);
        if (count_lines(file) != PARENTS * (CHILDREN + 1) + 1) ok = 0; /* every path, and "warm" */
        unlink(file);
    }
    rmdir(dir);
    snprintf(figure, sizeof figure, "%.1f ms, first %.0f", dump * 1e3, first * 1e3);
    row("dump of 100,000 paths, 3 files (ns/path)", dump * 1e9 / (PARENTS * (CHILDREN + 1.0)), figure, "< 100 ms",
        ok && dump < 0.1);
}

/* ---- memory at scale: every thread polls every path ---------------------- */

#define SCALE_MAX_PATHS 100000
static char scale_names[SCALE_MAX_PATHS][8];

typedef struct scaler {
    pthread_t id;
    int paths;
    pthread_barrier_t *polled, *measured;
} scaler;

/* Polls each path once (a run of one poll), then stays until the main
   thread has read the peak: all tables are alive at once, as on a
   work-stealing executor. */
static void *scale_work(void *arg)
{
    scaler *w = (scaler *)arg;
    int p;
    for (p = 0; p < w->paths; p++) {
        diag_span s = DIAG_SPAN_INIT(scale_names[p]);
        diag_span_begin(&s);
        diag_span_end(&s, DIAG_READY);
    }
    pthread_barrier_wait(w->polled);
    pthread_barrier_wait(w->measured);
    return NULL;
}

/* The whole process's peak RSS, and its growth per path per thread over the
   process before the first poll (thread stacks included). */
static void scale(int nthreads, int paths)
{
    pthread_barrier_t polled, measured;
    scaler *w = (scaler *)calloc((size_t)nthreads, sizeof *w);
    long before, peak;
    double t, per;
    char name[80], figure[40];
    int i;
    if (w == NULL || paths < 1 || paths > SCALE_MAX_PATHS || nthreads < 1) {
        fprintf(stderr, "bench scale: 1 to %d paths, 1 or more threads\n", SCALE_MAX_PATHS);
        exit(2);
    }
    for (i = 0; i < paths; i++) snprintf(scale_names[i], sizeof scale_names[i], "p%d", i);
    diag__start();
    before = peak_rss_kib();
    pthread_barrier_init(&polled, NULL, (unsigned)nthreads + 1);
    pthread_barrier_init(&measured, NULL, (unsigned)nthreads + 1);
    t = now_s();
    for (i = 0; i < nthreads; i++) {
        w[i].paths = paths;
        w[i].polled = &polled;
        w[i].measured = &measured;
        if (pthread_create(&w[i].id, NULL, scale_work, &w[i]) != 0) {
            perror("pthread_create");
            exit(1);
        }
    }
    pthread_barrier_wait(&polled);
    t = now_s() - t;
    peak = peak_rss_kib();
    pthread_barrier_wait(&measured);
    for (i = 0; i < nthreads; i++) pthread_join(w[i].id, NULL);
    per = (double)(peak - before) * 1024.0 / ((double)paths * nthreads);
    snprintf(name, sizeof name, "%d threads x %d paths, each polled once", nthreads, paths);
    snprintf(figure, sizeof figure, "peak %.1f MiB", (double)peak / 1024.0);
    if (nthreads == 64 && paths == 20000)
        row(name, t * 1e9 / ((double)paths * nthreads), figure, "< 200 MiB", peak < 200 * 1024);
    else
        row(name, t * 1e9 / ((double)paths * nthreads), figure, "", -1);
    snprintf(name, sizeof name, "  memory per path per thread (%d x %d)", nthreads, paths);
    snprintf(figure, sizeof figure, "%.0f bytes", per);
    row(name, 0, figure, "", -1);
    free(w);
}

/* ---- clock --------------------------------------------------------------- */

/* One poll that sleeps 1 s, timed with CLOCK_MONOTONIC around it; the
   profile's busy time for it, converted with the calibration a dump uses,
   is compared with that. */
static void clock_error(void)
{
    diag_span s = DIAG_SPAN_INIT("one_second");
    struct timespec second = { 1, 0 };
    diag__snapshot snap;
    uint64_t t0, t1;
    size_t i;
    double err = 1;
    char figure[40];
    diag__start();
    t0 = mono_ns();
    diag_span_begin(&s);
    nanosleep(&second, NULL);
    diag_span_end(&s, DIAG_READY);
    t1 = mono_ns();
    if (diag__snapshot_take(&snap) == 0) {
        for (i = 0; i < snap.count; i++)
            if (strcmp(snap.rows[i].stack, "one_second") == 0)
                err = ((double)snap.rows[i].busy - (double)(t1 - t0)) / (double)(t1 - t0);
        diag__snapshot_free(&snap);
    }
    snprintf(figure, sizeof figure, "error %+.4f%%", err * 100);
    row(diag__use_tsc ? "TSC calibration vs CLOCK_MONOTONIC, 1 s" : "clock: clock_gettime (no invariant TSC)",
        diag__ns_per_tick(), figure, "< 0.1%", err < 0.001 && err > -0.001);
}

/* ---- flight recorder ------------------------------------------------------ */

/* The same diagnosed chain polled with this thread's ring on and off
   (the ring pointer put back or taken away before each repetition), so
   both run in one process, interleaved, on the same tables. */
static diag__ring *trace_ring;

__attribute__((noinline)) static void loop_ring_on(diag_future *f, long n)
{
    diag__tls->ring = trace_ring;
    loop_diag(f, n);
}

__attribute__((noinline)) static void loop_ring_off(diag_future *f, long n)
{
    diag__tls->ring = NULL;
    loop_diag(f, n);
    diag__tls->ring = trace_ring;
}

static void trace_at(int depth)
{
    static node nodes[2][DEPTH];
    bench_case cases[2];
    char name[80], figure[40];
    double extra;
    int c;
    for (c = 0; c < 2; c++) {
        cases[c].loop = c ? loop_ring_on : loop_ring_off;
        cases[c].top = chain(nodes[c], depth, diag_node_poll, 1);
        cases[c].ops = POLLS / depth;
    }
    measure(cases, 2);
    extra = extra_median(&cases[1], &cases[0]);
    snprintf(name, sizeof name, "trace ring off, %d level%s (reference)", depth, depth > 1 ? "s" : "");
    row(name, per_poll(&cases[0]), "", "", -1);
    snprintf(name, sizeof name, "trace ring on (DIAGNOSE_TRACE=%u), %d level%s", diag__rt->trace->n, depth,
             depth > 1 ? "s" : "");
    snprintf(figure, sizeof figure, "extra %+.2f ns", extra);
    row(name, per_poll(&cases[1]), figure, "<= 5 ns", extra <= 5.0);
}

static void trace(void)
{
    diag_span warm = DIAG_SPAN_INIT("warm"); /* attach this thread: its ring */
    diag_span_begin(&warm);
    diag_span_end(&warm, DIAG_READY);
    trace_ring = diag__tls->ring;
    if (trace_ring == NULL) {
        fprintf(stderr, "bench trace: run with DIAGNOSE_TRACE=n\n");
        exit(2);
    }
    trace_at(1);
    trace_at(DEPTH);
}

/* ---- runs: the per-run cost of the open-run records ---------------------- */

__attribute__((noinline)) static diag_status ready_poll(diag_future *f, void *cx)
{
    (void)cx;
    ((node *)f)->count++;
    return DIAG_READY;
}

static diag_poll_fn volatile ready_fn = ready_poll;

/* The worst case for per-run bookkeeping is a run of a single poll: every
   poll starts and ends a run. Compared with a poll of a run that stays open
   (steady state), the difference is what a run costs beyond its poll. */
static void runs(void)
{
    enum { PENDING_POLL, ONE_POLL_RUN, ONE_POLL_RUN_CROWDED, NRUNS };
    static node nodes[NRUNS], crowd[10000];
    bench_case cases[NRUNS], pair[2];
    char figure[40];
    int c, i;
    for (c = 0; c < NRUNS; c++) {
        memset(&nodes[c], 0, sizeof nodes[c]);
        nodes[c].base.poll = c == PENDING_POLL ? leaf_fn : ready_fn;
        cases[c].loop = loop_diag;
        cases[c].top = DIAGNOSE_AS(&nodes[c].base, c == PENDING_POLL ? "open_run" : "one_poll_run");
        cases[c].ops = POLLS;
    }
    measure(cases, 2);
    row("poll of an open run (reference)", per_poll(&cases[PENDING_POLL]), "", "", -1);
    snprintf(figure, sizeof figure, "extra %.2f ns", per_poll(&cases[ONE_POLL_RUN]) - per_poll(&cases[PENDING_POLL]));
    row("run of one poll (record taken, freed)", per_poll(&cases[ONE_POLL_RUN]), figure, "", -1);
    /* 10,000 runs that stay open hold records the search steps over */
    for (i = 0; i < 10000; i++) {
        crowd[i].base.poll = leaf_fn;
        diag_poll(DIAGNOSE_AS(&crowd[i].base, "crowd"), NULL);
    }
    pair[0] = cases[PENDING_POLL];
    pair[1] = cases[ONE_POLL_RUN_CROWDED];
    measure(pair, 2);
    snprintf(figure, sizeof figure, "extra %.2f ns", per_poll(&pair[1]) - per_poll(&pair[0]));
    row("run of one poll, 10,000 runs open", per_poll(&pair[1]), figure, "", -1);
    for (i = 0; i < 10000; i++) diag_drop(&crowd[i].base);
}

/* ---- call-style async ------------------------------------------------------- */

/* One call of a stackless async function is one poll: the same trivial
   call made bare, through DIAG_CALL with the task's own span, and through
   DIAG_CALL_AT (the span looked up by the task's address, with 1000 other
   tasks in the table). The task never says done, so DIAG_CALL_AT is the
   steady-state look-up; "one call per run" adds the span's acquire and
   release each call. The task pointer travels as the case's `top`. */
typedef struct call_task {
    diag_span span;
    uint64_t count;
    int done_every; /* 0: never done */
} call_task;

__attribute__((noinline)) static int call_step(call_task *t)
{
    t->count++;
    return t->done_every && t->count % (uint64_t)t->done_every == 0;
}

__attribute__((noinline)) static void loop_call_bare(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) call_step((call_task *)(void *)f);
}

__attribute__((noinline)) static void loop_call_span(diag_future *f, long n)
{
    call_task *t = (call_task *)(void *)f;
    long i;
    for (i = 0; i < n; i++) DIAG_CALL(&t->span, call_step(t), 1);
}

__attribute__((noinline)) static void loop_call_at(diag_future *f, long n)
{
    call_task *t = (call_task *)(void *)f;
    long i;
    for (i = 0; i < n; i++) DIAG_CALL_AT(t, "call_at", call_step(t), 1);
}

static void call_style(void)
{
    static call_task tasks[4], others[1000];
    loop_fn loops[4] = { loop_call_bare, loop_call_span, loop_call_at, loop_call_at };
    bench_case cases[4];
    char figure[40];
    double bare, span;
    int c, i;
    for (i = 0; i < 1000; i++) DIAG_CALL_AT(&others[i], "other", call_step(&others[i]), 1); /* pending */
    for (c = 0; c < 4; c++) {
        diag_span_init(&tasks[c].span, "call");
        tasks[c].done_every = c == 3 ? 1 : 0;
        cases[c].loop = loops[c];
        cases[c].top = (diag_future *)(void *)&tasks[c];
        cases[c].ops = POLLS;
    }
    measure(cases, 4);
    bare = per_poll(&cases[0]);
    span = per_poll(&cases[1]);
    row("call-style: bare call (reference)", bare, "", "", -1);
    snprintf(figure, sizeof figure, "extra %.2f ns", span - bare);
    row("DIAG_CALL, the task's own span", span, figure, "", -1);
    snprintf(figure, sizeof figure, "look-up %.2f ns", per_poll(&cases[2]) - span);
    row("DIAG_CALL_AT, span by address", per_poll(&cases[2]), figure, "", -1);
    snprintf(figure, sizeof figure, "vs DIAG_CALL +%.2f ns", per_poll(&cases[3]) - span);
    row("DIAG_CALL_AT, one call per run", per_poll(&cases[3]), figure, "", -1);
}
#endif /* !DIAGNOSE_DISABLE */

/* ---- CPU time of a command ------------------------------------------------ */

/* Runs argv (output discarded) and prints the CPU seconds it used, user and
   system, as one number; exits with its status. */
static int cpu_time(char **argv)
{
    struct rusage ru;
    int status;
    pid_t pid = fork();
    if (pid == 0) {
        if (freopen("/dev/null", "w", stdout) == NULL) _exit(127);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return 1;
    printf("%.6f\n", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                        (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* Prints "VENDOR TARGET": what run.sh names, and the extra/floor target. */
static void vendor(void)
{
    double target;
    const char *v = cpu_vendor(&target);
    printf("%s %.2f\n", v, target);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "overhead";
    if (strcmp(mode, "cpu") == 0 && argc > 2) return cpu_time(argv + 2);
    if (strcmp(mode, "vendor") == 0) vendor();
    else if (strcmp(mode, "overhead") == 0) overhead();
#ifndef DIAGNOSE_DISABLE
    else if (strcmp(mode, "threads") == 0) threads();
    else if (strcmp(mode, "memory") == 0) memory();
    else if (strcmp(mode, "paths") == 0) paths();
    else if (strcmp(mode, "clock") == 0) clock_error();
    else if (strcmp(mode, "scale") == 0 && argc == 4) scale(atoi(argv[2]), atoi(argv[3]));
    else if (strcmp(mode, "trace") == 0) trace();
    else if (strcmp(mode, "call") == 0) call_style();
    else if (strcmp(mode, "runs") == 0) runs();
#endif
    else {
        fprintf(stderr, "usage: %s overhead|threads|memory|paths|clock|trace|call|scale THREADS PATHS|runs\n", argv[0]);
        return 2;
    }
    return misses ? 1 : 0;
}
