/* Threads: a run keeps the path it started with when another thread
   continues it, every poll on every thread is counted, and the per-thread
   tables are merged into one line per path, also after threads exit.

   Each test starts with diag_reset(), so a dump holds only its own paths.
   Time bounds are as in test_core.c: what the test knows happened inside
   the measured interval (lower) and its own clock around it (upper), both
   widened by 2% + 50 us for the counter's calibration. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"
#include "task.h"

#include <pthread.h>

static char dir[256];

static void check_value(const char *metric, const char *stack, long long want)
{
    char *text = tt_dumped_ok(metric);
    CHECK_EQ(tt_value(text, stack), want);
    free(text);
}

/* ---- a run that moves to another thread ----------------------------------- */

struct mover {
    diag_future *x;       /* the future to go on with */
    struct task worker;   /* polls x from the thread, when marked */
    int marked_worker;
    uint64_t first_poll_ns, last_end_ns; /* test clock: start of the thread's first poll, end of its last */
};

static void *continue_run(void *arg)
{
    struct mover *m = (struct mover *)arg;
    diag_future *f = m->x;
    if (m->marked_worker) {
        m->worker.child = m->x;
        f = DIAGNOSE_AS(&m->worker.base, "worker");
    }
    m->first_poll_ns = tt_now_ns();
    while (diag_poll(f, NULL) == DIAG_PENDING) tt_sleep_ns(2 * MS);
    m->last_end_ns = tt_now_ns();
    return NULL;
}

/* x's run starts under main;x on this thread and goes on on a bare thread
   (or under another marked future there): its lines stay main;x. */
static void run_moved(int marked_worker, const char *want_polls)
{
    struct task mainf = task_make(0, 0), x = task_make(5, 2 * MS);
    struct mover m;
    pthread_t th;
    uint64_t start, first_end;
    char *text;
    memset(&m, 0, sizeof m);
    diag_reset();
    mainf.child = DIAGNOSE_AS(&x.base, "x");
    start = tt_now_ns();
    /* main's one poll gives x its first poll: PENDING, so main is too */
    CHECK_EQ(diag_poll(DIAGNOSE_AS(&mainf.base, "main"), NULL), DIAG_PENDING);
    first_end = tt_now_ns();
    mainf.child = NULL;
    CHECK_EQ(diag_poll(&mainf.base, NULL), DIAG_READY);
    CHECK_EQ(x.polls, 1);
    tt_sleep_ns(5 * MS);
    /* still pending: its wall so far counts, on main;x */
    text = tt_dumped_ok("wall");
    CHECK_RANGE(tt_value(text, "main;x"), LO(5 * MS), 1e9);
    free(text);

    m.x = &x.base;
    m.worker = task_make(0, 0);
    m.marked_worker = marked_worker;
    CHECK_EQ(pthread_create(&th, NULL, continue_run, &m), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(x.polls, 6);
    text = tt_dumped_ok("polls");
    CHECK_STR(text, want_polls);
    free(text);
    text = tt_dumped_ok("wall");
    /* the run: from x's first poll (on main) to its last (on the thread) */
    CHECK_RANGE(tt_value(text, "main;x"), LO(m.first_poll_ns - first_end), HI(m.last_end_ns - start));
    free(text);
    /* six polls spinning 2 ms each, five of them on the thread */
    text = tt_dumped_ok("busy");
    CHECK_RANGE(tt_value(text, "main;x"), LO(12 * MS), HI(m.last_end_ns - start));
    free(text);
}

static void test_moved_to_bare_thread_keeps_path(void)
{
    run_moved(0, "main 2\nmain;x 6\n");
}

/* The thread polls x inside its own marked future: x's run still belongs
   to main;x, and worker's own polls are its own line. */
static void test_moved_under_other_future_keeps_path(void)
{
    run_moved(1, "main 2\nmain;x 6\nworker 5\n");
}

static void *drop_it(void *arg)
{
    diag_drop((diag_future *)arg);
    return NULL;
}

/* A thread that never polled drops a run begun here: the drop ends the
   run's wall there and then (it no longer grows), and a new run can
   start. */
static void test_drop_from_other_thread(void)
{
    struct task t = task_make(3, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "xdrop");
    pthread_t th;
    char *text;
    long long wall;
    diag_reset();
    CHECK_EQ(diag_poll(f, NULL), DIAG_PENDING);
    tt_sleep_ns(5 * MS);
    CHECK_EQ(pthread_create(&th, NULL, drop_it, f), 0);
    CHECK_EQ(pthread_join(th, NULL), 0);
    text = tt_dumped_ok("wall");
    wall = tt_value(text, "xdrop");
    free(text);
    CHECK_RANGE(wall, LO(5 * MS), 1e9);
    tt_sleep_ns(10 * MS);
    text = tt_dumped_ok("wall");
    CHECK_RANGE(tt_value(text, "xdrop"), LO(wall), HI(wall));
    free(text);
#ifndef DIAGNOSE_DISABLE
    {
        diag__snapshot snap;
        CHECK_EQ(diag__snapshot_take(&snap), 0);
        CHECK_EQ(snap.count, 1);
        if (snap.count == 1) {
            CHECK_EQ(snap.rows[0].drops, 1);
            CHECK_EQ(snap.rows[0].done, 0);
        }
        diag__snapshot_free(&snap);
    }
#endif
    t.n = 3;
    CHECK_EQ(diag_poll(f, NULL), DIAG_READY);
    check_value("polls", "xdrop", 2);
}

/* ---- many threads, one path --------------------------------------------- */

#define THREADS 4
#define RUNS 250 /* per thread, of 4 polls each, with a nested child */

static volatile int stop_dumping;

static void *poll_many(void *arg)
{
    struct task parent = task_make(3, 0), child = task_make(1, 0);
    int r;
    (void)arg;
    parent.child = DIAGNOSE_AS(&child.base, "tw_child");
    for (r = 0; r < RUNS; r++)
        while (diag_poll(DIAGNOSE_AS(&parent.base, "tw"), NULL) == DIAG_PENDING) {
        }
    return NULL;
}

/* While the threads poll, this thread dumps: every dump is well formed and
   the count never goes down. */
static void *dump_while_polling(void *arg)
{
    long long last = 0;
    int *bad = (int *)arg;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/during", dir);
    while (!__atomic_load_n(&stop_dumping, __ATOMIC_RELAXED)) {
        char *text;
        long long now;
        if (diag_dump(prefix) != 0) (*bad)++;
        text = tt_readf("%s.polls.folded", prefix);
        if (text == NULL || !tt_folded_ok(text)) (*bad)++;
        now = tt_value(text, "tw");
        if (now != -1 && now < last) (*bad)++;
        if (now > last) last = now;
        free(text);
        tt_sleep_ns(MS / 2);
    }
    return NULL;
}

static void test_threads_merge_into_one_line(void)
{
    pthread_t th[THREADS], dumper;
    int i, bad = 0;
    char *text;
    diag_reset();
    stop_dumping = 0;
    CHECK_EQ(pthread_create(&dumper, NULL, dump_while_polling, &bad), 0);
    for (i = 0; i < THREADS; i++) CHECK_EQ(pthread_create(&th[i], NULL, poll_many, NULL), 0);
    for (i = 0; i < THREADS; i++) CHECK_EQ(pthread_join(th[i], NULL), 0);
    __atomic_store_n(&stop_dumping, 1, __ATOMIC_RELAXED);
    CHECK_EQ(pthread_join(dumper, NULL), 0);
    CHECK_EQ(bad, 0);
    /* each run: parent 4 polls; child READY at its 2nd poll */
    text = tt_dumped_ok("polls");
    CHECK_STR(text, "tw 4000\ntw;tw_child 2000\n");
    free(text);
}

TT_FN void *poll_hot(void *arg) /* unused when compiled out */
{
    struct task t = task_make(0, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "hot");
    while (!__atomic_load_n((int *)arg, __ATOMIC_RELAXED)) diag_poll(f, NULL);
    return NULL;
}

/* Snapshots taken while another thread starts and ends runs as fast as it
   can: runs of "hot" never overlap, so its wall can never exceed the time
   since the thread started. A snapshot that reads a run half begun or
   half ended (two stores) once wrote walls of 10^12 to 10^18 ns. */
static void test_snapshot_during_runs_is_sane(void)
{
#ifndef DIAGNOSE_DISABLE
    pthread_t th;
    int stop = 0, i, wild = 0;
    uint64_t start;
    diag_reset();
    start = tt_now_ns();
    CHECK_EQ(pthread_create(&th, NULL, poll_hot, &stop), 0);
    for (i = 0; i < 50000; i++) {
        diag__snapshot snap;
        size_t k;
        if (diag__snapshot_take(&snap) != 0) continue;
        for (k = 0; k < snap.count; k++)
            if (strcmp(snap.rows[k].stack, "hot") == 0 && (double)snap.rows[k].wall > HI(tt_now_ns() - start)) {
                if (wild++ == 0) printf("  wall %llu ns after %llu ns\n", (unsigned long long)snap.rows[k].wall,
                                        (unsigned long long)(tt_now_ns() - start));
            }
        diag__snapshot_free(&snap);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    CHECK_EQ(pthread_join(th, NULL), 0);
    CHECK_EQ(wild, 0);
#endif
}

static void *poll_three(void *arg)
{
    struct task t = task_make(2, 0);
    (void)arg;
    while (diag_poll(DIAGNOSE_AS(&t.base, "short_lived"), NULL) == DIAG_PENDING) {
    }
    return NULL;
}

/* Threads that exit hand their counts to the process: 20 threads, 3 polls
   each, all there after they are gone. */
static void test_exited_threads_keep_counts(void)
{
    int i;
    diag_reset();
    for (i = 0; i < 20; i++) {
        pthread_t th;
        CHECK_EQ(pthread_create(&th, NULL, poll_three, NULL), 0);
        CHECK_EQ(pthread_join(th, NULL), 0);
    }
    check_value("polls", "short_lived", 60);
}

int main(void)
{
    setenv("DIAGNOSE_QUIET", "1", 1);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    RUN(test_moved_to_bare_thread_keeps_path);
    RUN(test_moved_under_other_future_keeps_path);
    RUN(test_drop_from_other_thread);
    RUN(test_threads_merge_into_one_line);
    RUN(test_exited_threads_keep_counts);
    RUN(test_snapshot_during_runs_is_sane);
    return test_summary();
}
