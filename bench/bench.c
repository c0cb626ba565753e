/* bench.c - what a diagnosed poll costs, next to references measured in the
   same process, the same way: the same loop, the same flags, many millions
   of polls.

   How a figure is measured. The cases a figure compares run in rounds:
   each round runs every case once, about a millisecond each, in forward
   order in even rounds and backward in odd ones, after some rounds that
   only warm up; so every case is sampled all through the same stretch of
   time, a few milliseconds from the others. A case's ns per poll is the
   10th percentile of its rounds, and a figure (extra over bare,
   extra/floor, 2 threads against 1, ring on against off) is computed from
   those of its cases; the same computed from the medians is shown next
   to it. Why not the median: on a shared or virtual machine, work on the
   other CPU (or on the host) puts this core into slower states for tens
   of milliseconds to seconds at a time, in which the bookkeeping that
   hides behind the timestamp reads on a quiet core no longer hides (the
   diagnosed poll's extra/floor goes from 1.00 to 1.3), and a 1-level loop
   drops into a mode 3 cycles a poll slower for stretches of rounds. Both
   only ever slow a case down, and in many rounds, so a median lands
   wherever the share of slow rounds puts it, run after run, while the
   10th percentile of each case reads the quiet core as long as a tenth of
   its rounds found it. A regression moves the quiet rounds too.

   A mode measures a block of rounds, and while one of its figures misses
   its target, up to MAX_BLOCKS - 1 more, the figure taken over all rounds
   so far: a busy stretch of the machine can outlast a block, a regression
   misses in every one. Under a figure that missed, or took more than one
   block, a line per case gives the quantiles of its rounds and a strip
   gives the figure round by round in time order (# where a group of
   rounds missed), so a reader sees whether a case moved in every round
   (the code) or in stretches (the machine).

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
       bench fiber      diag_fiber_switch, with a span of the coroutine's
                        moved at each switch, and with none

   Each mode prints rows of the table bench/run.sh shows: case, ns per
   operation, the figure compared, its target and PASS or MISS. Built twice
   by run.sh: as is, and with DIAGNOSE_DISABLE (then only "overhead").
   BENCH_ROUNDS=n sets the rounds of a block (for a quick look, or a
   longer one); BENCH_VERBOSE=1 prints the rounds under every figure with
   a target, not only under those that missed; BENCH_ROUNDS_FILE=path
   appends every round of every such figure to path. */
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

/* Short rounds: the slow states of a shared machine come and go within
   tens of milliseconds, so rounds of a few milliseconds find the quiet
   moments between them. */
#define POLLS 50000L        /* polls of a case per round: about 1 ms at 20 ns */
#define MAX_BLOCKS 4        /* blocks of rounds: the first, and more while a figure misses */
#define MAX_ROUNDS 24000    /* per-round values kept per case */
#define DEPTH 8             /* nesting of the deep case */
#define QUIET_QUANTILE 0.10 /* a case's ns per poll: this quantile of its rounds */

/* ---- the table ----------------------------------------------------------- */

static int misses;
static int verbose;               /* BENCH_VERBOSE */
static const char *rounds_file; /* BENCH_ROUNDS_FILE */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (0 to 1) of n values, interpolated between neighbours;
   v is left as it was. */
static double quantile(const double *v, int n, double q)
{
    double *s = (double *)malloc((size_t)n * sizeof *s), at, r;
    int lo;
    if (s == NULL || n < 1) {
        free(s);
        return 0;
    }
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, compare_doubles);
    at = q * (n - 1);
    lo = (int)at;
    r = lo + 1 < n ? s[lo] + (at - lo) * (s[lo + 1] - s[lo]) : s[lo];
    free(s);
    return r;
}

static double median(const double *v, int n) { return quantile(v, n, 0.5); }

/* One row: case, ns per op, the compared figure, its target, PASS/MISS.
   ok < 0: a reference or a figure without a target. */
static void row(const char *name, double ns, const char *figure, const char *target, int ok)
{
    printf("%-46s %9.2f  %-32s %-18s %s\n", name, ns, figure, target, ok < 0 ? "" : ok ? "PASS" : "MISS");
    if (ok == 0) misses++;
    fflush(stdout);
}

/* Rounds in a block: the mode's own number, or BENCH_ROUNDS. */
static int rounds_or(int fallback)
{
    const char *env = getenv("BENCH_ROUNDS");
    int n = env ? atoi(env) : fallback;
    return n < 1 ? 1 : n > MAX_ROUNDS / MAX_BLOCKS ? MAX_ROUNDS / MAX_BLOCKS : n;
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

/* The timed loops and the polls they call start on a cache line of their
   own: where a loop falls relative to the 64-byte lines and fetch blocks
   moves a 1-ns poll by as much as the figures measure, and it would move
   with every edit of diagnose.h that shifts the code before it. */
#define TIMED __attribute__((noinline, aligned(64)))

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

TIMED static diag_status bare_poll(diag_future *f, void *cx)
{
    diag_future *c = ((node *)f)->child;
    return c->poll(c, cx);
}

TIMED static diag_status tsc_poll(diag_future *f, void *cx)
{
    diag_future *c = ((node *)f)->child;
    uint64_t t0 = ticks();
    diag_status s = c->poll(c, cx);
    bench_tls_ticks += ticks() - t0;
    return s;
}

TIMED static diag_status gettime_poll(diag_future *f, void *cx)
{
    diag_future *c = ((node *)f)->child;
    uint64_t t0 = mono_ns();
    diag_status s = c->poll(c, cx);
    bench_tls_ticks += mono_ns() - t0;
    return s;
}

TIMED static diag_status diag_node_poll(diag_future *f, void *cx)
{
    return diag_poll(((node *)f)->child, cx);
}

/* The poll functions reach the loops through a volatile, so the compiler
   cannot see through the pointer and inline the poll. */
static diag_poll_fn volatile leaf_fn = leaf_poll;

/* The loops: one per way of polling the top future. */
TIMED static void loop_bare(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) f->poll(f, NULL);
}

TIMED static void loop_tsc(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) {
        uint64_t t0 = ticks();
        f->poll(f, NULL);
        bench_tls_ticks += ticks() - t0;
    }
}

TIMED static void loop_gettime(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) {
        uint64_t t0 = mono_ns();
        f->poll(f, NULL);
        bench_tls_ticks += mono_ns() - t0;
    }
}

TIMED static void loop_diag(diag_future *f, long n)
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

/* ---- rounds -------------------------------------------------------------- */

typedef struct bench_case {
    loop_fn loop;
    diag_future *top;
    long ops;              /* loop iterations per round */
    long polls;            /* polls per round: ops x the chain's depth */
    double ns[MAX_ROUNDS]; /* ns per poll in each round */
} bench_case;

/* A case that polls `top`, a chain `depth` deep, `polls` times a round. */
static void case_set(bench_case *c, loop_fn loop, diag_future *top, int depth, long polls)
{
    c->loop = loop;
    c->top = top;
    c->ops = polls / depth;
    c->polls = c->ops * depth;
}

/* Warm-up rounds before a mode's first block: the paths, the caches, the
   branch history and the CPU's clock speed settle in them. */
static int warm_up(int block) { return block / 20 < 5 ? 5 : block / 20; }

/* Rounds `from` to from + count - 1 of the n cases (negative rounds warm
   up and are not kept), each case once per round, in forward order in
   even rounds and backward in odd ones. */
static void measure(bench_case *const *cases, int n, int from, int count)
{
    int round, i;
    for (round = from; round < from + count; round++)
        for (i = 0; i < n; i++) {
            bench_case *c = cases[(round & 1) ? n - 1 - i : i];
            double t = now_s();
            c->loop(c->top, c->ops);
            t = now_s() - t;
            if (round >= 0) c->ns[round] = t * 1e9 / (double)c->polls;
        }
}

/* A case's ns per poll at quantile q of its rounds. */
static double at(const bench_case *c, int rounds, double q) { return quantile(c->ns, rounds, q); }

/* A case's ns per poll, as the table shows it. */
static double per_poll(const bench_case *c, int rounds) { return at(c, rounds, QUIET_QUANTILE); }

/* ---- figures ------------------------------------------------------------- */

/* What a figure computes from its cases' ns per poll:
   EXTRA   subject - reference
   RATIO   (subject - reference) / (floor - reference), the reference bare
   SLOWER  subject / reference, the subject the slower of two when there
           is a second (two threads polling at once) */
enum figure_kind { EXTRA, RATIO, SLOWER };

typedef struct bench_figure {
    enum figure_kind kind;
    const bench_case *subject, *reference;
    const bench_case *other; /* RATIO: the floor; SLOWER: a second subject, or NULL */
    const char *names[3];    /* subject, reference, other: for the rounds lines */
} bench_figure;

/* The subject's ns per poll from ns per poll of subject and other: for
   SLOWER with a second subject, the slower of the two. */
static double subject_of(const bench_figure *f, double subject, double other)
{
    return f->kind == SLOWER && f->other && other > subject ? other : subject;
}

static double figure_of(const bench_figure *f, double subject, double reference, double other)
{
    if (f->kind == EXTRA) return subject - reference;
    if (f->kind == RATIO) return (subject - reference) / (other - reference);
    return subject_of(f, subject, other) / reference;
}

/* The figure from its cases' quantile q. */
static double figure_at(const bench_figure *f, int rounds, double q)
{
    return figure_of(f, at(f->subject, rounds, q), at(f->reference, rounds, q), f->other ? at(f->other, rounds, q) : 0);
}

/* The figure from one round's cases alone. */
static double figure_in(const bench_figure *f, int round)
{
    return figure_of(f, f->subject->ns[round], f->reference->ns[round], f->other ? f->other->ns[round] : 0);
}

static int figure_passes(const bench_figure *f, int rounds, double limit)
{
    return figure_at(f, rounds, QUIET_QUANTILE) <= limit;
}

/* The rounds under a figure: each case's quantiles, the figure round by
   round, and those in time order, one mark per group of rounds (# where
   the group's median missed the target). All rounds also go to
   BENCH_ROUNDS_FILE, one line per figure. */
static void figure_rounds(const char *name, const bench_figure *f, int rounds, int blocks, double limit, int show)
{
    enum { MARKS = 60 };
    static double v[MAX_ROUNDS];
    const bench_case *cases[3];
    char strip[MARKS + 1];
    int i, within = 0, groups = rounds < MARKS ? rounds : MARKS;
    cases[0] = f->subject;
    cases[1] = f->reference;
    cases[2] = f->other;
    for (i = 0; i < rounds; i++) {
        v[i] = figure_in(f, i);
        within += v[i] <= limit;
    }
    if (rounds_file != NULL) {
        FILE *out = fopen(rounds_file, "a");
        if (out != NULL) {
            fprintf(out, "%s:", name);
            for (i = 0; i < rounds; i++) fprintf(out, " %.4g", v[i]);
            fputc('\n', out);
            fclose(out);
        }
    }
    if (!show) return;
    printf("    %d rounds in %d block%s; ns per poll at 10%%, 25%%, median, 75%%, 90%% of the rounds:\n", rounds,
           blocks, blocks > 1 ? "s" : "");
    for (i = 0; i < 3 && cases[i] != NULL; i++)
        printf("      %-14s %8.2f %8.2f %8.2f %8.2f %8.2f\n", f->names[i], at(cases[i], rounds, 0.10),
               at(cases[i], rounds, 0.25), at(cases[i], rounds, 0.5), at(cases[i], rounds, 0.75),
               at(cases[i], rounds, 0.90));
    for (i = 0; i < groups; i++) {
        int from = (int)((long)i * rounds / groups), to = (int)((long)(i + 1) * rounds / groups);
        strip[i] = median(v + from, to - from) <= limit ? '.' : '#';
    }
    strip[groups] = '\0';
    printf("      %-14s %8.2f %8.2f %8.2f %8.2f %8.2f   (within target in %d%% of the rounds)\n", "round by round",
           quantile(v, rounds, 0.10), quantile(v, rounds, 0.25), quantile(v, rounds, 0.5), quantile(v, rounds, 0.75),
           quantile(v, rounds, 0.90), (int)(100.0 * within / rounds + 0.5));
    printf("      in time order  %s\n", strip);
    fflush(stdout);
}

/* The row of a figure with a target ("at most limit"): format has one
   %.Nf, for the figure; the figure from the medians follows it. */
static void figure_row(const char *name, const bench_figure *f, int rounds, int blocks, const char *format,
                       const char *target, double limit)
{
    char text[48], with_median[48];
    double value = figure_at(f, rounds, QUIET_QUANTILE);
    snprintf(with_median, sizeof with_median, "%s (median %s)", format, strchr(format, '%'));
    snprintf(text, sizeof text, with_median, value, figure_at(f, rounds, 0.5));
    row(name, subject_of(f, per_poll(f->subject, rounds), f->other ? per_poll(f->other, rounds) : 0), text, target,
        value <= limit);
    figure_rounds(name, f, rounds, blocks, limit, verbose || blocks > 1 || value > limit);
}

/* ---- overhead ------------------------------------------------------------ */

enum { BARE, TSC, GETTIME, DIAG, NCASES };

/* What the diag case is in this process (recording, DIAGNOSE=0, compiled
   out). Both depths run in the same rounds. Recording, a round also has
   both clock floors, and the figure is extra/floor; otherwise only bare
   and the diagnosed poll, and the figure their difference. */
static void overhead(void)
{
    static node nodes[2][NCASES][DEPTH];
    static bench_case cases[2][NCASES];
    static const int depths[2] = { 1, DEPTH };
    diag_poll_fn inner[NCASES] = { bare_poll, tsc_poll, gettime_poll, diag_node_poll };
    loop_fn loops[NCASES] = { loop_bare, loop_tsc, loop_gettime, loop_diag };
    bench_case *run[2 * NCASES];
    bench_figure figures[2];
    const char *label = "diagnosed poll, steady state";
    const char *env = getenv("DIAGNOSE");
    int recording = 1, block, rounds = 0, blocks = 0, d, c, n = 0;
    double limit;
    char name[80], figure_text[48], target[40];
#ifdef DIAGNOSE_DISABLE
    label = "compiled out (DIAGNOSE_DISABLE)";
    recording = 0;
#else
    if (env && strcmp(env, "0") == 0) {
        label = "DIAGNOSE=0 at run time";
        recording = 0;
    }
#endif
    (void)env;
    cpu_vendor(&limit);
    if (recording) snprintf(target, sizeof target, "<= %.2f", limit);
    else {
        limit = 1.0;
        snprintf(target, sizeof target, "<= 1 ns");
    }
    /* Without the floors a round is a tenth as long: more rounds in a block. */
    block = rounds_or(recording ? 1600 : 6000);
    for (d = 0; d < 2; d++) {
        for (c = 0; c < NCASES; c++) {
            /* clock_gettime costs 50 ns: a quarter of the polls keeps its turn as short */
            long polls = c == GETTIME ? POLLS / 4 : POLLS;
            if (!recording && (c == TSC || c == GETTIME)) continue;
            case_set(&cases[d][c], loops[c], chain(nodes[d][c], depths[d], inner[c], c == DIAG), depths[d], polls);
            run[n++] = &cases[d][c];
        }
        figures[d].kind = recording ? RATIO : EXTRA;
        figures[d].subject = &cases[d][DIAG];
        figures[d].reference = &cases[d][BARE];
        figures[d].other = recording ? &cases[d][TSC] : NULL;
        figures[d].names[0] = recording ? "diagnosed" : label[0] == 'D' ? "DIAGNOSE=0" : "compiled out";
        figures[d].names[1] = "bare";
        figures[d].names[2] = "clock floor";
    }
    measure(run, n, -warm_up(block), warm_up(block));
    while (blocks < MAX_BLOCKS) {
        measure(run, n, rounds, block);
        rounds += block;
        blocks++;
        if (figure_passes(&figures[0], rounds, limit) && figure_passes(&figures[1], rounds, limit)) break;
    }
    for (d = 0; d < 2; d++) {
        bench_case *k = cases[d];
        const char *levels = depths[d] > 1 ? "levels" : "level";
        if (recording) {
            snprintf(name, sizeof name, "bare poll, %d %s (reference)", depths[d], levels);
            row(name, per_poll(&k[BARE], rounds), "", "", -1);
            snprintf(name, sizeof name, "clock floor: +2 rdtsc, %d %s", depths[d], levels);
            snprintf(figure_text, sizeof figure_text, "extra %.2f ns", per_poll(&k[TSC], rounds) - per_poll(&k[BARE], rounds));
            row(name, per_poll(&k[TSC], rounds), figure_text, "", -1);
            snprintf(name, sizeof name, "clock_gettime floor, %d %s", depths[d], levels);
            snprintf(figure_text, sizeof figure_text, "extra %.2f ns",
                     per_poll(&k[GETTIME], rounds) - per_poll(&k[BARE], rounds));
            row(name, per_poll(&k[GETTIME], rounds), figure_text, "", -1);
        }
        snprintf(name, sizeof name, "%s, %d %s", label, depths[d], levels);
        figure_row(name, &figures[d], rounds, blocks, recording ? "extra/floor %.2f" : "extra %.2f ns", target, limit);
    }
}

#ifndef DIAGNOSE_DISABLE
/* ---- two threads --------------------------------------------------------- */

/* Two workers that stay for all rounds; in a round the main thread lets
   one of them poll alone, then both at once (or the other way round in
   the next round), each polling its own diagnosed future. */
typedef struct worker {
    pthread_t id;
    node leaf;
    int index;
    double ns;    /* ns per poll of its last turn */
    char pad[64]; /* keep two workers' hot data off one cache line */
} worker;

static pthread_barrier_t turn_start, turn_end;
static int turn_active[2]; /* which workers poll this turn; both 0: leave */

static void *work(void *arg)
{
    worker *w = (worker *)arg;
    w->leaf.base.poll = leaf_fn;
    DIAGNOSE_AS(&w->leaf.base, "worker");
    loop_diag(&w->leaf.base, POLLS);
    for (;;) {
        pthread_barrier_wait(&turn_start);
        if (!turn_active[0] && !turn_active[1]) return NULL;
        if (turn_active[w->index]) {
            double t = now_s();
            loop_diag(&w->leaf.base, POLLS);
            w->ns = (now_s() - t) * 1e9 / (double)POLLS;
        }
        pthread_barrier_wait(&turn_end);
    }
}

/* One turn: the workers marked poll at once; returns the ns per poll of
   the last one marked. */
static double turn(worker *w, int first, int second)
{
    turn_active[0] = first;
    turn_active[1] = second;
    pthread_barrier_wait(&turn_start);
    pthread_barrier_wait(&turn_end);
    return second ? w[1].ns : w[0].ns;
}

/* Rounds as measure() runs them: alone and together in alternating order;
   the thread alone is the first worker in even rounds, the second in odd
   ones. Together, each worker's time is kept apart (two[0], two[1]). */
static void thread_rounds(worker *w, int from, int count, bench_case *one, bench_case *two)
{
    int round;
    for (round = from; round < from + count; round++) {
        double alone, first, second;
        if (round & 1) {
            turn(w, 1, 1);
            first = w[0].ns;
            second = w[1].ns;
            alone = turn(w, 0, 1);
        } else {
            alone = turn(w, 1, 0);
            turn(w, 1, 1);
            first = w[0].ns;
            second = w[1].ns;
        }
        if (round < 0) continue;
        one->ns[round] = alone;
        two[0].ns[round] = first;
        two[1].ns[round] = second;
    }
}

static void threads(void)
{
    static worker w[2];
    static bench_case one, two[2];
    /* the slower of the two threads, each at its own quiet rounds */
    bench_figure slower = { SLOWER, &two[0], &one, &two[1], { "thread 1 of 2", "1 thread", "thread 2 of 2" } };
    int block = rounds_or(2400), rounds = 0, blocks = 0, i;
    pthread_barrier_init(&turn_start, NULL, 3);
    pthread_barrier_init(&turn_end, NULL, 3);
    for (i = 0; i < 2; i++) {
        w[i].index = i;
        pthread_create(&w[i].id, NULL, work, &w[i]);
    }
    thread_rounds(w, -warm_up(block), warm_up(block), &one, two);
    while (blocks < MAX_BLOCKS) {
        thread_rounds(w, rounds, block, &one, two);
        rounds += block;
        blocks++;
        if (figure_passes(&slower, rounds, 1.10)) break;
    }
    turn_active[0] = turn_active[1] = 0;
    pthread_barrier_wait(&turn_start);
    for (i = 0; i < 2; i++) pthread_join(w[i].id, NULL);
    pthread_barrier_destroy(&turn_start);
    pthread_barrier_destroy(&turn_end);
    row("diagnosed poll, 1 thread", per_poll(&one, rounds), "", "", -1);
    figure_row("diagnosed poll, 2 threads at once (slower)", &slower, rounds, blocks, "vs 1 thread %.3f", "<= 1.10",
               1.10);
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

TIMED static void loop_ring_on(diag_future *f, long n)
{
    diag__tls->ring = trace_ring;
    loop_diag(f, n);
}

TIMED static void loop_ring_off(diag_future *f, long n)
{
    diag__tls->ring = NULL;
    loop_diag(f, n);
    diag__tls->ring = trace_ring;
}

/* Ring off and on, 1 level and 8 levels, all four in the same rounds. */
static void trace(void)
{
    static node nodes[2][2][DEPTH];
    static bench_case cases[2][2];
    bench_case *const all[4] = { &cases[0][0], &cases[0][1], &cases[1][0], &cases[1][1] };
    static const int depths[2] = { 1, DEPTH };
    bench_figure extra[2] = { { EXTRA, &cases[0][1], &cases[0][0], NULL, { "ring on", "ring off", NULL } },
                        { EXTRA, &cases[1][1], &cases[1][0], NULL, { "ring on", "ring off", NULL } } };
    diag_span warm = DIAG_SPAN_INIT("warm"); /* attach this thread: its ring */
    char name[80];
    int block = rounds_or(1600), rounds = 0, blocks = 0, d, on;
    diag_span_begin(&warm);
    diag_span_end(&warm, DIAG_READY);
    trace_ring = diag__tls->ring;
    if (trace_ring == NULL) {
        fprintf(stderr, "bench trace: run with DIAGNOSE_TRACE=n\n");
        exit(2);
    }
    for (d = 0; d < 2; d++)
        for (on = 0; on < 2; on++)
            case_set(&cases[d][on], on ? loop_ring_on : loop_ring_off, chain(nodes[d][on], depths[d], diag_node_poll, 1),
                     depths[d], POLLS);
    measure(all, 4, -warm_up(block), warm_up(block));
    while (blocks < MAX_BLOCKS) {
        measure(all, 4, rounds, block);
        rounds += block;
        blocks++;
        if (figure_passes(&extra[0], rounds, 5.0) && figure_passes(&extra[1], rounds, 5.0)) break;
    }
    for (d = 0; d < 2; d++) {
        const char *levels = depths[d] > 1 ? "levels" : "level";
        snprintf(name, sizeof name, "trace ring off, %d %s (reference)", depths[d], levels);
        row(name, per_poll(&cases[d][0], rounds), "", "", -1);
        snprintf(name, sizeof name, "trace ring on (DIAGNOSE_TRACE=%u), %d %s", diag__rt->trace->n, depths[d], levels);
        figure_row(name, &extra[d], rounds, blocks, "extra %+.2f ns", "<= 5 ns", 5.0);
    }
}

/* ---- runs: the per-run cost of the open-run records ---------------------- */

TIMED static diag_status ready_poll(diag_future *f, void *cx)
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
    static bench_case cases[NRUNS];
    bench_case *const alone[2] = { &cases[PENDING_POLL], &cases[ONE_POLL_RUN] };
    bench_case *const crowded[2] = { &cases[PENDING_POLL], &cases[ONE_POLL_RUN_CROWDED] };
    char figure[48];
    /* No target, so one block, and a long one: a slow stretch of the machine
       that covers all of it, and moves these figures, is then rare. */
    int rounds = rounds_or(900), c, i;
    for (c = 0; c < NRUNS; c++) {
        memset(&nodes[c], 0, sizeof nodes[c]);
        nodes[c].base.poll = c == PENDING_POLL ? leaf_fn : ready_fn;
        case_set(&cases[c], loop_diag, DIAGNOSE_AS(&nodes[c].base, c == PENDING_POLL ? "open_run" : "one_poll_run"), 1,
                 POLLS);
    }
    measure(alone, 2, -warm_up(rounds), warm_up(rounds) + rounds);
    row("poll of an open run (reference)", per_poll(&cases[PENDING_POLL], rounds), "", "", -1);
    snprintf(figure, sizeof figure, "extra %.2f ns",
             per_poll(&cases[ONE_POLL_RUN], rounds) - per_poll(&cases[PENDING_POLL], rounds));
    row("run of one poll (record taken, freed)", per_poll(&cases[ONE_POLL_RUN], rounds), figure, "", -1);
    /* 10,000 runs that stay open hold records the search steps over */
    for (i = 0; i < 10000; i++) {
        crowd[i].base.poll = leaf_fn;
        diag_poll(DIAGNOSE_AS(&crowd[i].base, "crowd"), NULL);
    }
    measure(crowded, 2, -warm_up(rounds), warm_up(rounds) + rounds);
    snprintf(figure, sizeof figure, "extra %.2f ns",
             per_poll(&cases[ONE_POLL_RUN_CROWDED], rounds) - per_poll(&cases[PENDING_POLL], rounds));
    row("run of one poll, 10,000 runs open", per_poll(&cases[ONE_POLL_RUN_CROWDED], rounds), figure, "", -1);
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

TIMED static int call_step(call_task *t)
{
    t->count++;
    return t->done_every && t->count % (uint64_t)t->done_every == 0;
}

TIMED static void loop_call_bare(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) call_step((call_task *)(void *)f);
}

TIMED static void loop_call_span(diag_future *f, long n)
{
    call_task *t = (call_task *)(void *)f;
    long i;
    for (i = 0; i < n; i++) DIAG_CALL(&t->span, call_step(t), 1);
}

TIMED static void loop_call_at(diag_future *f, long n)
{
    call_task *t = (call_task *)(void *)f;
    long i;
    for (i = 0; i < n; i++) DIAG_CALL_AT(t, "call_at", call_step(t), 1);
}

static void call_style(void)
{
    static call_task tasks[4], others[1000];
    static bench_case cases[4];
    bench_case *const all[4] = { &cases[0], &cases[1], &cases[2], &cases[3] };
    loop_fn loops[4] = { loop_call_bare, loop_call_span, loop_call_at, loop_call_at };
    char figure[48];
    double bare, span;
    /* No target, so one block, and a long one: a slow stretch of the machine
       that covers all of it, and moves these figures, is then rare. */
    int rounds = rounds_or(900), c, i;
    for (i = 0; i < 1000; i++) DIAG_CALL_AT(&others[i], "other", call_step(&others[i]), 1); /* pending */
    for (c = 0; c < 4; c++) {
        diag_span_init(&tasks[c].span, "call");
        tasks[c].done_every = c == 3 ? 1 : 0;
        case_set(&cases[c], loops[c], (diag_future *)(void *)&tasks[c], 1, POLLS);
    }
    measure(all, 4, -warm_up(rounds), warm_up(rounds) + rounds);
    bare = per_poll(&cases[0], rounds);
    span = per_poll(&cases[1], rounds);
    row("call-style: bare call (reference)", bare, "", "", -1);
    snprintf(figure, sizeof figure, "extra %.2f ns", span - bare);
    row("DIAG_CALL, the task's own span", span, figure, "", -1);
    snprintf(figure, sizeof figure, "look-up %.2f ns", per_poll(&cases[2], rounds) - span);
    row("DIAG_CALL_AT, span by address", per_poll(&cases[2], rounds), figure, "", -1);
    snprintf(figure, sizeof figure, "vs DIAG_CALL +%.2f ns", per_poll(&cases[3], rounds) - span);
    row("DIAG_CALL_AT, one call per run", per_poll(&cases[3], rounds), figure, "", -1);
}
/* ---- stackful coroutines ------------------------------------------------------ */

/* A resume is two switches: into the coroutine and back. With a span open
   in the coroutine each switch moves its frame (one clock read, a copy);
   with none it only notes the fiber. The fiber travels as the case's top. */
TIMED static void loop_switch(diag_future *f, long n)
{
    diag_fiber *fiber = (diag_fiber *)(void *)f;
    long i;
    for (i = 0; i < n; i++) {
        diag_fiber_switch(fiber);
        diag_fiber_switch(NULL);
    }
}

static void fibers(void)
{
    static diag_fiber fiber[2];
    static bench_case cases[2];
    static diag_span open = DIAG_SPAN_INIT("suspended");
    bench_case *const all[2] = { &cases[0], &cases[1] };
    int rounds = rounds_or(900), ok;
    double moved;
    diag_fiber_switch(&fiber[0]);
    diag_span_begin(&open); /* stays open in fiber[0], switched out */
    diag_fiber_switch(NULL);
    case_set(&cases[0], loop_switch, (diag_future *)(void *)&fiber[0], 2, POLLS);
    case_set(&cases[1], loop_switch, (diag_future *)(void *)&fiber[1], 2, POLLS);
    measure(all, 2, -warm_up(rounds), warm_up(rounds) + rounds);
    moved = per_poll(&cases[0], rounds);
    ok = moved <= 30.0;
    misses += !ok;
    row("fiber switch, one open span moved", moved, "ns per switch", "<= 30 ns", ok);
    row("fiber switch, nothing open", per_poll(&cases[1], rounds), "ns per switch", "", -1);
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
    const char *env = getenv("BENCH_VERBOSE");
    verbose = env && *env && strcmp(env, "0") != 0;
    rounds_file = getenv("BENCH_ROUNDS_FILE");
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
    else if (strcmp(mode, "fiber") == 0) fibers();
#endif
    else {
        fprintf(stderr, "usage: %s overhead|threads|memory|paths|clock|trace|call|fiber|scale THREADS PATHS|runs\n", argv[0]);
        return 2;
    }
    return misses ? 1 : 0;
}
