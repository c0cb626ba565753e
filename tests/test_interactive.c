/* Interactive profiling: diag_reset windows, numbered snapshots every
   DIAGNOSE_INTERVAL seconds, and on the signal named by DIAGNOSE_SIGNAL. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <dirent.h>
#include <pthread.h>
#include <signal.h>

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */

#define MS 1000000ull
#define US 1000ull

struct task { diag_future base; uint64_t spin_ns; int ready; };

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    (void)cx;
    if (t->spin_ns) tt_spin_ns(t->spin_ns);
    return t->ready ? DIAG_READY : DIAG_PENDING;
}

static diag_future *task_init(struct task *t, const char *name)
{
    struct task zero = { DIAG_FUTURE_INIT(task_poll), 0, 0 };
    *t = zero;
    return DIAGNOSE_AS(&t->base, name);
}

static char dir[256];

/* The snapshot thread of this process exists (internal state: counting
   threads in /proc would also count a sanitizer's own). */
static int snapshot_thread_running(void) { return diag__rt->snapshot_thread->running; }

/* The clock is calibrated over the whole run: well under 1e-3 off. */
#define CAL_LO(ns) ((double)(ns) * 0.999)
#define CAL_HI(ns) ((double)(ns) * 1.001 + 1000.0)

/* ---- diag_reset ----------------------------------------------------------- */

static void test_reset_counts_only_what_follows(void)
{
    struct task t;
    diag_future *f = task_init(&t, "reset.count");
    char prefix[300], *polls, *wall;
    int k;
    t.ready = 1;
    for (k = 0; k < 5; k++) diag_poll(f, NULL);
    CHECK_EQ(diag_reset(), 0);
    snprintf(prefix, sizeof prefix, "%s/empty", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK_STR(polls, ""); /* nothing happened in the window yet */
    free(polls);
    for (k = 0; k < 3; k++) diag_poll(f, NULL);
    snprintf(prefix, sizeof prefix, "%s/after", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    wall = tt_readf("%s.wall.folded", prefix);
    CHECK_STR(polls, "reset.count 3\n");
    CHECK(tt_folded_ok(wall) && tt_lines(wall) == 1);
    free(polls);
    free(wall);
}

/* A run pending across the reset counts its wall time from the reset. */
static void test_open_run_counts_from_the_reset(void)
{
    struct task t;
    diag_future *f = task_init(&t, "reset.open");
    uint64_t before_reset, after_poll;
    char prefix[300], *polls, *wall, *busy;
    diag_poll(f, NULL);
    tt_sleep_ns(30 * MS); /* before the window: must not count */
    before_reset = tt_now_ns();
    CHECK_EQ(diag_reset(), 0);
    tt_sleep_ns(10 * MS);
    t.ready = 1;
    t.spin_ns = 1 * MS;
    diag_poll(f, NULL);
    after_poll = tt_now_ns();
    snprintf(prefix, sizeof prefix, "%s/open", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    wall = tt_readf("%s.wall.folded", prefix);
    busy = tt_readf("%s.busy.folded", prefix);
    CHECK_STR(polls, "reset.open 1\n");
    /* at least the sleep and the spin after the reset; at most what the
       test saw from before the reset to after the poll: far below 40 ms */
    CHECK_RANGE(tt_value(wall, "reset.open"), CAL_LO(11 * MS), CAL_HI(after_poll - before_reset));
    CHECK_RANGE(tt_value(busy, "reset.open"), CAL_LO(1 * MS), CAL_HI(after_poll - before_reset - 10 * MS));
    free(polls);
    free(wall);
    free(busy);
}

/* max, the histogram, drops and slow polls start again too. */
static void test_reset_clears_max_and_lints(void)
{
    struct task t, d;
    diag_future *f = task_init(&t, "reset.max"), *g;
    diag__snapshot snap;
    size_t i;
    int found = 0;
    t.spin_ns = 3 * MS;
    diag_poll(f, NULL); /* slow, before the window */
    g = task_init(&d, "reset.drop");
    diag_poll(g, NULL);
    diag_drop(g);
    CHECK_EQ(diag_reset(), 0);
    t.spin_ns = 0;
    t.ready = 1;
    diag_poll(f, NULL);
    CHECK_EQ(diag__snapshot_take(&snap), 0);
    for (i = 0; i < snap.count; i++) {
        const diag__row *r = &snap.rows[i];
        int h;
        uint64_t in_hist = 0;
        CHECK(strcmp(r->stack, "reset.drop") != 0); /* nothing in the window */
        if (strcmp(r->stack, "reset.max") != 0) continue;
        found = 1;
        for (h = 0; h < DIAG__HIST; h++) in_hist += r->hist[h];
        CHECK_EQ(r->polls, 1);
        CHECK_EQ(in_hist, 1);
        CHECK_EQ(r->slow, 0);
        CHECK_EQ(r->done, 1);
        CHECK(r->max < 1 * MS); /* the 3 ms poll was before the reset */
    }
    CHECK(found);
    diag__snapshot_free(&snap);
}

/* ---- numbered snapshots: children with the variables set ----------------- */

/* The highest N with every file of snapshot N written (wall is the last of
   the files when there are no wakes), counting from 1. */
static int last_snapshot(const char *prefix)
{
    char path[400];
    int n = 0;
    for (;;) {
        snprintf(path, sizeof path, "%s.%d.wall.folded", prefix, n + 1);
        if (!tt_exists(path)) return n;
        n++;
    }
}

/* Waits until snapshot `want` exists; 0, or -1 after 5 s. */
static int wait_snapshot(const char *prefix, int want)
{
    uint64_t give_up = tt_now_ns() + 5000 * MS;
    while (last_snapshot(prefix) < want)
        if (tt_now_ns() > give_up) return -1;
        else tt_sleep_ns(1 * MS);
    return 0;
}

/* Every snapshot that starts after now sees what was polled before now:
   the one being written may have started earlier, the one after cannot. */
static int settle(const char *prefix)
{
    return wait_snapshot(prefix, last_snapshot(prefix) + 2);
}

static int child_interval(void)
{
    struct task t;
    diag_future *f = task_init(&t, "tick");
    int k;
    if (!snapshot_thread_running()) return 2;
    for (k = 0; k < 10; k++) diag_poll(f, NULL);
    if (settle("snap") != 0) return 3;
    t.ready = 1;
    for (k = 0; k < 5; k++) diag_poll(f, NULL); /* READY: 5 runs of one poll */
    if (settle("snap") != 0) return 4;
    return 0;
}

static int child_no_variables(void)
{
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    if (sa.sa_handler != SIG_DFL) return 2;
    return snapshot_thread_running() ? 1 : 0;
}

/* Number n of the series as text, NULL when the file is missing. */
static char *snapshot(const char *prefix, int n, const char *metric)
{
    return tt_readf("%s/%s.%d.%s.folded", dir, prefix, n, metric);
}

static void test_interval_writes_numbered_snapshots(void)
{
    static const char *const env[] = { "DIAGNOSE_INTERVAL=0.02", "DIAGNOSE_OUT=snap", "DIAGNOSE_SVG=1", NULL };
    char *text;
    int n, last = 0, saw_ten = 0, count = 0;
    DIR *d;
    struct dirent *e;
    CHECK_EQ(tt_spawn(dir, "interval", env), 0);
    /* consecutive numbers; each holds everything up to its moment: 0 or 10
       polls, or all 15 once the second batch ran */
    for (n = 1; (text = snapshot("snap", n, "polls")) != NULL; n++) {
        long long v = tt_value(text, "tick");
        CHECK(tt_folded_ok(text));
        CHECK(v == -1 || v == 10 || v == 15);
        if (strcmp(text, "") != 0 && strcmp(text, "tick 10\n") != 0) CHECK_STR(text, "tick 15\n");
        CHECK(v >= last);
        if (v > last) last = (int)v;
        saw_ten |= v == 10;
        free(text);
        text = snapshot("snap", n, "busy");
        CHECK(tt_folded_ok(text) && tt_lines(text) == (v > 0));
        free(text);
        text = snapshot("snap", n, "wall");
        CHECK(tt_folded_ok(text) && tt_lines(text) == (v > 0));
        free(text);
        CHECK(snapshot("snap", n, "sched") == NULL); /* no wakes */
        text = tt_readf("%s/snap.%d.busy.svg", dir, n); /* DIAGNOSE_SVG=1: a picture each */
        CHECK(text && strncmp(text, "<?xml", 5) == 0 && strstr(text, "</svg>\n") != NULL);
        CHECK(text && (v > 0) == (strstr(text, "tick") != NULL));
        free(text);
    }
    CHECK(n - 1 >= 4); /* two settles wait for two snapshots each */
    CHECK(saw_ten);
    CHECK_EQ(last, 15);
    text = tt_readf("%s/snap.polls.folded", dir); /* the final files, at exit */
    CHECK_STR(text, "tick 15\n");
    free(text);
    d = opendir(dir); /* every snapshot went through its temporary name */
    while (d && (e = readdir(d)) != NULL) count += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    CHECK_EQ(count, 0);
}

static void test_no_thread_without_the_variables(void)
{
    static const char *const env[] = { "DIAGNOSE_INTERVAL=", "DIAGNOSE_SIGNAL=", "DIAGNOSE_OUT=none", NULL };
    CHECK_EQ(tt_spawn(dir, "plain", env), 0);
}

/* Sends the signal with kill(), as a user would from a shell. */
static int child_signal(void)
{
    struct task t;
    diag_future *f = task_init(&t, "tick");
    struct sigaction sa;
    int k;
    if (!snapshot_thread_running()) return 2;
    sigaction(SIGUSR2, NULL, &sa);
    if (sa.sa_handler == SIG_DFL) return 3;
    for (k = 0; k < 7; k++) diag_poll(f, NULL);
    if (kill(getpid(), SIGUSR2) != 0 || wait_snapshot("sig", 1) != 0) return 4;
    t.ready = 1;
    for (k = 0; k < 3; k++) diag_poll(f, NULL);
    if (kill(getpid(), SIGUSR2) != 0 || wait_snapshot("sig", 2) != 0) return 5;
    tt_sleep_ns(50 * MS); /* time for a wrong third one to show */
    return 0;
}

static void test_signal_requests_a_snapshot(void)
{
    static const char *const env[] = { "DIAGNOSE_SIGNAL=USR2", "DIAGNOSE_OUT=sig", "DIAGNOSE_QUIET=", NULL };
    char *text;
    CHECK_EQ(tt_spawn(dir, "signal", env), 0);
    text = snapshot("sig", 1, "polls");
    CHECK_STR(text, "tick 7\n");
    free(text);
    text = snapshot("sig", 2, "polls");
    CHECK_STR(text, "tick 10\n");
    free(text);
    CHECK(snapshot("sig", 3, "polls") == NULL); /* one snapshot per signal */
    text = tt_readf("%s/sig.polls.folded", dir);
    CHECK_STR(text, "tick 10\n");
    free(text);
    text = tt_readf("%s/stderr.txt", dir);
    CHECK(text && strstr(text, "diagnose.h: wrote snapshot sig.1.*.folded\n"));
    CHECK(text && strstr(text, "diagnose.h: wrote snapshot sig.2.*.folded\n"));
    free(text);
}

/* The sleeper's poll: 300 ms in nanosleep, on the main thread, which the
   kernel picks first for a process's signal when it does not block it. */
struct sleeper { diag_future base; int rc; uint64_t slept; };
static int sleeping; /* atomic: the sleeper is in (or about to enter) nanosleep */

static diag_status sleeper_poll(diag_future *self, void *cx)
{
    struct sleeper *s = (struct sleeper *)self;
    struct timespec t = { 0, 300 * MS };
    uint64_t start = tt_now_ns();
    (void)cx;
    __atomic_store_n(&sleeping, 1, __ATOMIC_RELEASE);
    s->rc = nanosleep(&t, NULL) == 0 ? 0 : errno;
    s->slept = tt_now_ns() - start;
    __atomic_store_n(&sleeping, 0, __ATOMIC_RELEASE);
    return DIAG_READY;
}

/* Sends the signal 50 ms into the sleep; *arg: it still slept after. */
static void *send_while_sleeping(void *arg)
{
    while (!__atomic_load_n(&sleeping, __ATOMIC_ACQUIRE)) tt_sleep_ns(1 * MS);
    tt_sleep_ns(50 * MS);
    kill(getpid(), SIGUSR2);
    *(int *)arg = __atomic_load_n(&sleeping, __ATOMIC_ACQUIRE);
    return NULL;
}

/* Up to 5 sleeps, each with a signal sent during it (a busy machine may
   send one late: tried again). Prints what went wrong. */
static int child_sleep(void)
{
    struct sleeper s;
    int k, sent = 0, during = 0;
    for (k = 0; k < 5 && during == 0; k++) {
        struct sleeper zero = { DIAG_FUTURE_INIT(sleeper_poll), 0, 0 };
        pthread_t sender;
        int in_sleep = 0;
        s = zero;
        if (pthread_create(&sender, NULL, send_while_sleeping, &in_sleep) != 0) return 2;
        diag_poll(DIAGNOSE_AS(&s.base, "sleep"), NULL);
        pthread_join(sender, NULL);
        sent++;
        during += in_sleep;
        if (wait_snapshot("sleep", sent) != 0) return 3; /* one snapshot per signal */
    }
    printf("  signals %d (%d during the sleep); last sleep: %s after %.1f ms\n", sent, during,
           s.rc ? strerror(s.rc) : "ended", (double)s.slept / 1e6);
    if (during == 0) return 4;
    return s.rc == 0 && s.slept >= 300 * MS ? 0 : 5;
}

static void test_signal_interrupts_no_sleep(void)
{
    static const char *const env[] = { "DIAGNOSE_SIGNAL=USR2", "DIAGNOSE_OUT=sleep", NULL };
    char *text;
    CHECK_EQ(tt_spawn(dir, "sleep", env), 0);
    text = snapshot("sleep", 1, "pending");
    CHECK_STR(text, "sleep 1\n"); /* written while the poll slept */
    free(text);
    text = tt_readf("%s/sleep.1.pending.txt", dir);
    CHECK(text && strncmp(text, "sleep: 1 open, oldest ", 22) == 0 && strstr(text, ", running "));
    free(text);
}

/* fork(): the child has no snapshot thread, and its signal must neither
   kill it nor reach the parent's thread through the inherited pipe. */
static int child_fork(void)
{
    struct task t;
    diag_future *f = task_init(&t, "tick");
    char path[64];
    pid_t pid;
    int status;
    diag_poll(f, NULL);
    /* Lets the snapshot thread, just started, reach its poll(): forked while
       it is inside ASan's allocator (thread start-up), the child inherits
       the allocator's lock and its leak check at exit waits forever (the
       sanitizer runtime of gcc 12 takes no locks around fork). */
    tt_sleep_ns(50 * MS);
    pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        diag_poll(f, NULL);
        if (snapshot_thread_running()) _exit(3);
        kill(getpid(), SIGUSR2); /* handled: a no-op here */
        tt_sleep_ns(30 * MS);
        exit(0); /* writes sigf.<pid>.*.folded */
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 4;
    tt_sleep_ns(30 * MS);
    if (last_snapshot("sigf") != 0) return 5; /* the child's signal woke nobody */
    snprintf(path, sizeof path, "sigf.%ld.1.wall.folded", (long)pid);
    if (tt_exists(path)) return 6;
    snprintf(path, sizeof path, "sigf.%ld.polls.folded", (long)pid);
    if (!tt_exists(path)) return 7;
    if (kill(getpid(), SIGUSR2) != 0 || wait_snapshot("sigf", 1) != 0) return 8; /* ours still works */
    return 0;
}

static void test_fork_child_takes_no_snapshots(void)
{
    static const char *const env[] = { "DIAGNOSE_SIGNAL=USR2", "DIAGNOSE_OUT=sigf", NULL };
    char *text;
    CHECK_EQ(tt_spawn(dir, "fork", env), 0);
    text = snapshot("sigf", 1, "polls");
    CHECK_STR(text, "tick 1\n"); /* the parent's own poll; the child's are its own */
    free(text);
}

static int child_bad_values(void)
{
    return snapshot_thread_running() ? 1 : 0;
}

static void test_bad_values_are_named_and_ignored(void)
{
    static const char *const env[] = { "DIAGNOSE_INTERVAL=soon", "DIAGNOSE_SIGNAL=KILL", "DIAGNOSE_OUT=bad", NULL };
    char *text;
    CHECK_EQ(tt_spawn(dir, "bad", env), 0);
    text = tt_readf("%s/stderr.txt", dir);
    CHECK(text && strstr(text, "diagnose.h: DIAGNOSE_INTERVAL='soon' is not a number of seconds; accepted: seconds "
                               "from 0.001 to 86400, decimals allowed; ignored\n"));
    CHECK(text && strstr(text, "diagnose.h: DIAGNOSE_SIGNAL='KILL' cannot be caught; accepted: "));
    free(text);
}

static const tt_child children[] = {
    { "interval", child_interval },
    { "plain", child_no_variables },
    { "signal", child_signal },
    { "bad", child_bad_values },
    { "fork", child_fork },
    { "sleep", child_sleep },
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_reset_counts_only_what_follows);
    RUN(test_open_run_counts_from_the_reset);
    RUN(test_reset_clears_max_and_lints);
    RUN(test_interval_writes_numbered_snapshots);
    RUN(test_no_thread_without_the_variables);
    RUN(test_signal_requests_a_snapshot);
    RUN(test_signal_interrupts_no_sleep);
    RUN(test_bad_values_are_named_and_ignored);
    RUN(test_fork_child_takes_no_snapshots);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif
