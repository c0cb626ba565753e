/* Memory pressure: with an allocator that fails, new paths go to the one
   "[overflow]" path and every poll is still counted; a thread that cannot
   get a table has its polls counted as unmeasured; DIAGNOSE_MAX_PATHS caps
   paths the same way. */
#include <stddef.h>
#ifndef DIAGNOSE_DISABLE
static void *failing_malloc(size_t n);
static void *failing_realloc(void *p, size_t n);
static void failing_free(void *p);
#endif
#define DIAG_MALLOC(n) failing_malloc(n)
#define DIAG_REALLOC(p, n) failing_realloc(p, n)
#define DIAG_FREE(p) failing_free(p)
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#ifdef DIAGNOSE_DISABLE
/* These tests read the implementation's internals: nothing to build. */
TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(void) { return 0; }
#else
#include <pthread.h>

/* Allocation fails while failing is set (every call, or every other call
   when alternate is set). */
static int failing, alternate, calls;
static void *failing_malloc(size_t n)
{
    if (__atomic_load_n(&failing, __ATOMIC_RELAXED) && (!alternate || calls++ % 2 == 0)) return NULL;
    return malloc(n);
}
static void *failing_realloc(void *p, size_t n)
{
    if (__atomic_load_n(&failing, __ATOMIC_RELAXED) && (!alternate || calls++ % 2 == 0)) return NULL;
    return realloc(p, n);
}
static void failing_free(void *p) { free(p); }

struct counter { diag_future base; int n, ready_at; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    (void)cx;
    return ++c->n == c->ready_at ? DIAG_READY : DIAG_PENDING;
}

static void poll_named(const char *name, int n)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0, n };
    DIAGNOSE_AS(&c.base, name);
    while (n-- > 0) diag_poll(&c.base, NULL);
}


/* Sum of values and number of lines other than [overflow] whose name
   starts with `start`. */
static long long sum_named(const char *folded, const char *start, int *lines)
{
    unsigned long long sum = 0; /* unsigned: a wrong wall may be huge */
    const char *line = folded, *end;
    *lines = 0;
    while (line && *line && (end = strchr(line, '\n')) != NULL) {
        if (strncmp(line, start, strlen(start)) == 0) {
            const char *sp = end;
            while (sp > line && sp[-1] != ' ') sp--;
            sum += strtoull(sp, NULL, 10);
            (*lines)++;
        }
        line = end + 1;
    }
    return (long long)sum;
}

#define NEW_NAMES 1000
static char fnames[NEW_NAMES][16], gnames[NEW_NAMES][16];

/* Names live as long as the program: paths keep the pointer. */
static void make_names(char (*names)[16], const char *stem)
{
    int i;
    for (i = 0; i < NEW_NAMES; i++) snprintf(names[i], sizeof names[i], "%s%04d", stem, i);
}

/* Every allocation fails from now on: paths that need no memory are still
   made, the rest go to [overflow]; all 2000 polls are in the files. */
static void test_failing_allocator_overflows(void)
{
    char *polls;
    long long named, before;
    int lines, i;
    poll_named("warm_up", 1); /* this thread has its table */
    polls = tt_dumped("polls");
    before = tt_value(polls, "[overflow]");
    free(polls);
    make_names(fnames, "f");
    __atomic_store_n(&failing, 1, __ATOMIC_RELAXED);
    for (i = 0; i < NEW_NAMES; i++) poll_named(fnames[i], 2);
    errno = 0;
    CHECK_EQ(diag_dump(NULL), -1); /* a dump needs memory too: it says so */
    CHECK_EQ(errno, ENOMEM);
    __atomic_store_n(&failing, 0, __ATOMIC_RELAXED);
    polls = tt_dumped("polls");
    CHECK(tt_folded_ok(polls));
    named = sum_named(polls, "f", &lines);
    printf("  %d paths made without memory, %lld polls in [overflow]\n", lines, tt_value(polls, "[overflow]"));
    CHECK(tt_value(polls, "[overflow]") > 0);
    CHECK_EQ(named, 2 * lines);
    CHECK_EQ(named + tt_value(polls, "[overflow]") - (before > 0 ? before : 0), 2 * NEW_NAMES);
    free(polls);
}

/* Allocations that fail now and then (every other call) while runs span two
   polls: counts stay exact, and no run is left open or closed twice (wall
   does not move between two later dumps). */
static void test_intermittent_failures_keep_runs_balanced(void)
{
    char *polls, *w1, *w2;
    long long named, over0, over1, wall1, wall2;
    int lines, i;
    polls = tt_dumped("polls");
    over0 = tt_value(polls, "[overflow]");
    free(polls);
    make_names(gnames, "g");
    alternate = 1;
    __atomic_store_n(&failing, 1, __ATOMIC_RELAXED);
    for (i = 0; i < NEW_NAMES; i++) poll_named(gnames[i], 2);
    __atomic_store_n(&failing, 0, __ATOMIC_RELAXED);
    alternate = 0;
    polls = tt_dumped("polls");
    named = sum_named(polls, "g", &lines);
    over1 = tt_value(polls, "[overflow]");
    CHECK_EQ(named + over1 - over0, 2 * NEW_NAMES);
    free(polls);
    w1 = tt_dumped("wall");
    tt_sleep_ns(30000000);
    w2 = tt_dumped("wall");
    wall1 = sum_named(w1, "", &lines);
    wall2 = sum_named(w2, "", &lines);
    CHECK(tt_folded_ok(w2));
    CHECK_RANGE(wall2, wall1 - wall1 / 1000 - 10000, wall1 + wall1 / 1000 + 10000);
    free(w1);
    free(w2);
}

/* A thread that cannot allocate its table: its polls are counted as
   unmeasured, exactly, and nothing crashes. */
static void *tableless(void *arg)
{
    (void)arg;
    poll_named("no_table", 5);
    return NULL;
}

static void test_thread_without_table(void)
{
    pthread_t th;
    diag__snapshot snap;
    char *polls;
    __atomic_store_n(&failing, 1, __ATOMIC_RELAXED);
    pthread_create(&th, NULL, tableless, NULL);
    pthread_join(th, NULL);
    __atomic_store_n(&failing, 0, __ATOMIC_RELAXED);
    CHECK(diag__snapshot_take(&snap) == 0);
    CHECK_EQ(snap.unmeasured, 5);
    diag__snapshot_free(&snap);
    polls = tt_dumped("polls");
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(tt_value(polls, "no_table"), -1);
    free(polls);
}

/* ---- DIAGNOSE_MAX_PATHS, read at start-up: a child ---- */
static int child_capped(void)
{
    static char n[20][24];
    int i;
    for (i = 0; i < 20; i++) {
        snprintf(n[i], sizeof n[i], "cap%02d", i);
        poll_named(n[i], 1);
    }
    return 0;
}

static const tt_child children[] = { { "capped", child_capped } };

/* A cap of 10 paths: 10 names get lines and the other 10 polls are in
   [overflow]. */
static void test_max_paths_cap(void)
{
    const char *dir = tt_tempdir();
    const char *env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", "DIAGNOSE_MAX_PATHS=10", NULL };
    char *polls;
    int lines;
    CHECK_EQ(tt_spawn(dir, "capped", env), 0);
    polls = tt_readf("%s/out.polls.folded", dir);
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(sum_named(polls, "cap", &lines), 10);
    CHECK_EQ(lines, 10);
    CHECK_EQ(tt_value(polls, "cap09"), 1);
    CHECK_EQ(tt_value(polls, "cap10"), -1);
    CHECK_EQ(tt_value(polls, "[overflow]"), 10);
    free(polls);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    RUN(test_failing_allocator_overflows);
    RUN(test_intermittent_failures_keep_runs_balanced);
    RUN(test_thread_without_table);
    RUN(test_max_paths_cap);
    return test_summary();
}
#endif
