/* Dumps at the same time: several threads dumping to one prefix (folded
   files and SVGs) while a reader reads the files, and the exit dump
   meeting a dump in progress or a thread stuck inside one. Every call
   succeeds, every file read is whole, no temporary file stays behind, and
   exit waits at most about a second. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the allocator below needs stdlib.h before diagnose.h */
#endif
#include <stdlib.h>
#include <unistd.h>
static void *test_malloc(size_t size);
#define DIAG_MALLOC(size) test_malloc(size)
#define DIAG_REALLOC(p, size) realloc(p, size)
#define DIAG_FREE(p) free(p)
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>

/* The allocator blocks for good on the thread named here: a thread stuck
   inside a dump, holding its locks (a stopped or deadlocked thread). */
static pthread_t stuck_thread;
static int stuck_armed, stuck_now;

__attribute__((unused)) static void *test_malloc(size_t size)
{
    if (__atomic_load_n(&stuck_armed, __ATOMIC_ACQUIRE) && pthread_equal(pthread_self(), stuck_thread)) {
        __atomic_store_n(&stuck_now, 1, __ATOMIC_RELEASE);
        for (;;) pause();
    }
    return malloc(size);
}

struct counter { diag_future base; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    (void)self, (void)cx;
    return DIAG_PENDING;
}

#define PATHS 60
static char names[PATHS][24];

/* PATHS paths, each polled `polls` times: the files have PATHS lines. */
static void make_paths(int polls)
{
    int i, k;
    for (i = 0; i < PATHS && names[PATHS - 1][0] == '\0'; i++) snprintf(names[i], sizeof names[i], "path_%02d", i);
    for (i = 0; i < PATHS; i++) {
        struct counter c = { DIAG_FUTURE_INIT(counter_poll) };
        DIAGNOSE_AS(&c.base, names[i]);
        for (k = 0; k < polls; k++) diag_poll(&c.base, NULL);
        diag_drop(&c.base);
    }
}

/* Temporary files left in dir (names with ".tmp."). */
static int leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* ---- several threads, one prefix ---- */

static char prefix[300];
static int stop_reading;
static int dump_failures, dumps_done, reads_whole, reads_partial;

#define DUMPS_PER_THREAD 40

static void *dumper(void *arg)
{
    int i, svg = arg != NULL;
    for (i = 0; i < DUMPS_PER_THREAD; i++) {
        int rc = svg ? diag_write_svg(prefix) : diag_dump(prefix);
        if (rc != 0) {
            printf("  dump failed: %s\n", strerror(errno));
            __atomic_fetch_add(&dump_failures, 1, __ATOMIC_RELAXED);
        }
        __atomic_fetch_add(&dumps_done, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Reads the three folded files over and over: each must be whole. */
static void *reader(void *arg)
{
    static const char *const metrics[] = { "polls", "busy", "wall" };
    int m = 0;
    (void)arg;
    while (!__atomic_load_n(&stop_reading, __ATOMIC_ACQUIRE)) {
        char *text = tt_readf("%s.%s.folded", prefix, metrics[m++ % 3]);
        if (text == NULL) continue; /* not written yet */
        if (tt_folded_ok(text) && tt_lines(text) == PATHS) __atomic_fetch_add(&reads_whole, 1, __ATOMIC_RELAXED);
        else __atomic_fetch_add(&reads_partial, 1, __ATOMIC_RELAXED);
        free(text);
    }
    return NULL;
}

static void run_dumpers(int folded_threads, int svg_threads)
{
    pthread_t threads[8], read_thread;
    int i, n = folded_threads + svg_threads;
    const char *dir = tt_tempdir();
    char *polls, *svg;
    snprintf(prefix, sizeof prefix, "%s/same", dir);
    dump_failures = dumps_done = reads_whole = reads_partial = stop_reading = 0;
    pthread_create(&read_thread, NULL, reader, NULL);
    for (i = 0; i < n; i++) pthread_create(&threads[i], NULL, dumper, i < folded_threads ? NULL : (void *)1);
    for (i = 0; i < n; i++) pthread_join(threads[i], NULL);
    __atomic_store_n(&stop_reading, 1, __ATOMIC_RELEASE);
    pthread_join(read_thread, NULL);
    CHECK_EQ(dumps_done, n * DUMPS_PER_THREAD);
    CHECK_EQ(dump_failures, 0);
    CHECK_EQ(reads_partial, 0);
    CHECK(reads_whole > 0);
    CHECK_EQ(leftovers(dir), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(tt_value(polls, "path_07"), 3);
    free(polls);
    if (svg_threads) {
        svg = tt_readf("%s.busy.svg", prefix);
        CHECK(svg && strstr(svg, "</svg>\n") != NULL);
        free(svg);
    }
}

static void test_two_threads_dump_one_prefix(void) { run_dumpers(2, 0); }

static void test_four_threads_dump_one_prefix_with_svgs(void) { run_dumpers(3, 1); }

/* ---- the exit dump meets another dump ---- */

static void *dump_forever(void *arg)
{
    (void)arg;
    for (;;) diag_dump(NULL);
    return NULL;
}

/* exit() while another thread dumps to the same prefix: the exit dump
   waits for it, and the files are the exit's (all polls counted). */
static int child_exit_while_dumping(void)
{
    pthread_t t;
    make_paths(3);
    pthread_create(&t, NULL, dump_forever, NULL);
    tt_sleep_ns(20000000);
    make_paths(1);
    exit(0);
}

static void test_exit_while_another_thread_dumps(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", NULL };
    int round;
    for (round = 0; round < 5; round++) {
        const char *dir = tt_tempdir();
        char *polls, *err;
        CHECK_EQ(tt_spawn(dir, "exit_while_dumping", env), 0);
        polls = tt_readf("%s/out.polls.folded", dir);
        CHECK(tt_folded_ok(polls));
        CHECK_EQ(tt_lines(polls), PATHS);
        CHECK_EQ(tt_value(polls, "path_59"), 4); /* the exit's snapshot is the last one written */
        free(polls);
        err = tt_readf("%s/stderr.txt", dir);
        CHECK_STR(err, "");
        free(err);
    }
}

/* In that child, after diagnose.h's exit handler (registered before it, so
   run after it): whether the exit told the other dumps to wait for it.
   Here a waiting exit often wins the lock even without (the scheduler runs
   a woken thread first), so the test reads the flag itself. */
static int report_exit_waiting;

static void exit_waiting_report(void)
{
#ifndef DIAGNOSE_DISABLE
    FILE *f = report_exit_waiting ? fopen("exit_waiting.txt", "w") : NULL;
    if (f == NULL) return;
    fprintf(f, "%d\n", __atomic_load_n(&diag__rt->exit_waiting, __ATOMIC_ACQUIRE));
    fclose(f);
#endif
}

__attribute__((constructor(101))) static void exit_waiting_report_at_exit(void) { atexit(exit_waiting_report); }

/* exit() while three threads dump in a loop: a mutex is not fair, and a
   thread that unlocks and locks again at once nearly always wins it over
   one that waits, so without letting the exit go first (the others wait
   while it waits) the exit dump would give up after its second. */
static int child_exit_while_three_threads_dump(void)
{
    pthread_t t[3];
    int i;
    make_paths(3);
    for (i = 0; i < 3; i++) pthread_create(&t[i], NULL, dump_forever, NULL);
    tt_sleep_ns(20000000);
    make_paths(1);
    report_exit_waiting = 1;
    exit(0);
}

static void test_exit_goes_ahead_of_threads_dumping_in_a_loop(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=", "DIAGNOSE=", NULL };
    int round;
    for (round = 0; round < 3; round++) {
        const char *dir = tt_tempdir();
        char *polls, *err;
        CHECK_EQ(tt_spawn(dir, "exit_while_three_dump", env), 0);
        polls = tt_readf("%s/out.polls.folded", dir);
        CHECK_EQ(tt_value(polls, "path_59"), 4); /* the exit's snapshot is the last one written */
        free(polls);
        err = tt_readf("%s/stderr.txt", dir);
        CHECK(err && strstr(err, "no profile written") == NULL);
        free(err);
#ifndef DIAGNOSE_DISABLE
        err = tt_readf("%s/exit_waiting.txt", dir);
        CHECK_STR(err, "1\n");
        free(err);
#endif
    }
}

/* How the exit goes first, whatever the scheduler does: while it waits for
   the dump lock (exit_waiting), another thread's dump does not take it. */
__attribute__((unused)) static void *one_dump(void *arg)
{
    diag_dump(prefix);
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void test_dumps_wait_while_the_exit_waits(void)
{
#ifndef DIAGNOSE_DISABLE /* the runtime's flag */
    pthread_t t;
    int done = 0;
    char path[400];
    snprintf(prefix, sizeof prefix, "%s/held", tt_tempdir());
    snprintf(path, sizeof path, "%s.polls.folded", prefix);
    __atomic_store_n(&diag__rt->exit_waiting, 1, __ATOMIC_RELEASE);
    pthread_create(&t, NULL, one_dump, &done);
    tt_sleep_ns(200000000);
    CHECK_EQ(__atomic_load_n(&done, __ATOMIC_ACQUIRE), 0);
    CHECK(!tt_exists(path));
    __atomic_store_n(&diag__rt->exit_waiting, 0, __ATOMIC_RELEASE); /* as if the exit were done */
    pthread_join(t, NULL);
    CHECK_EQ(done, 1);
    CHECK(tt_exists(path));
#endif
}

/* A thread stuck inside diag_dump holds its locks for good: exit gives up
   after about a second, says so, and keeps its exit code. */
static void *dump_and_get_stuck(void *arg)
{
    (void)arg;
    stuck_thread = pthread_self();
    __atomic_store_n(&stuck_armed, 1, __ATOMIC_RELEASE);
    diag_dump(NULL);
    return NULL;
}

static int child_exit_while_a_dump_is_stuck(void)
{
    pthread_t t;
    make_paths(1);
    pthread_create(&t, NULL, dump_and_get_stuck, NULL);
    while (!__atomic_load_n(&stuck_now, __ATOMIC_ACQUIRE)) sched_yield();
    exit(9);
}

static void test_exit_gives_up_on_a_stuck_dump(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=", "DIAGNOSE=", NULL };
    const char *dir = tt_tempdir();
    uint64_t t0 = tt_now_ns(), took;
    char *err;
    CHECK_EQ(tt_spawn(dir, "exit_while_a_dump_is_stuck", env), 9);
    took = tt_now_ns() - t0;
    CHECK_RANGE(took / 1000000, 1000, 10000); /* ms: the one second, and the child's start and end */
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, "diagnose.h: another thread held diagnose.h's lock for 1 s at exit; no profile written\n");
    free(err);
    CHECK_EQ(leftovers(dir), 0);
}

static const tt_child children[] = {
    { "exit_while_dumping", child_exit_while_dumping },
    { "exit_while_a_dump_is_stuck", child_exit_while_a_dump_is_stuck },
    { "exit_while_three_dump", child_exit_while_three_threads_dump },
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    tt_quiet_exit_dump();
    make_paths(3);
    RUN(test_two_threads_dump_one_prefix);
    RUN(test_four_threads_dump_one_prefix_with_svgs);
    RUN(test_exit_while_another_thread_dumps);
    RUN(test_exit_goes_ahead_of_threads_dumping_in_a_loop);
    RUN(test_dumps_wait_while_the_exit_waits);
    RUN(test_exit_gives_up_on_a_stuck_dump);
    return test_summary();
}
