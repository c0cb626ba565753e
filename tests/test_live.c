/* What is pending, running and stuck right now: PREFIX.pending.folded and
   PREFIX.pending.txt at every dump, the pending lines that end the exit
   summary, and the lints of open runs (orphans, lost wakes, self-wakes,
   polls still running).

   Ages are checked against the test's own clock: an age lies between what
   the test slept or waited inside the interval (lower bound) and its clock
   reads around it (upper bound). The written ages have three significant
   digits, so 0.5% of rounding either way; LO and HI add the
   counter's calibration error. Every test ends its runs, so the next one
   starts with nothing open. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>

#ifndef DIAGNOSE_DISABLE /* the tests read the implementation's internals */

#define MS 1000000ull
/* a measured time: lower bound from what happened inside, upper from the
   test's clock around it, both widened by 2% + 50 us of calibration */
#define LO(ns) ((double)(ns) * 0.98 - 50000.0)
#define HI(ns) ((double)(ns) * 1.02 + 50000.0)

/* A future that answers what it is told, and can wake itself or wait. */
struct live {
    diag_future base;
    int ready, wake_self, pipe_fd; /* pipe_fd >= 0: the poll blocks reading a byte from it */
    uint64_t work_ns;    /* spun first in each poll */
    diag_future *child;
    uint64_t entered_ns; /* test clock when the poll began */
    int returned;        /* atomic: the blocking poll came back */
};

static diag_status live_poll(diag_future *self, void *cx)
{
    struct live *l = (struct live *)self;
    __atomic_store_n(&l->entered_ns, tt_now_ns(), __ATOMIC_RELEASE);
    if (l->work_ns) tt_spin_ns(l->work_ns);
    if (l->child) diag_poll(l->child, cx);
    if (l->wake_self) diag_wake(self);
    if (l->pipe_fd >= 0) {
        char byte;
        while (read(l->pipe_fd, &byte, 1) < 0 && errno == EINTR) {
        }
        __atomic_store_n(&l->returned, 1, __ATOMIC_RELEASE);
    }
    return l->ready ? DIAG_READY : DIAG_PENDING;
}

static diag_future *live_init(struct live *l, const char *name)
{
    memset(l, 0, sizeof *l);
    l->base.poll = live_poll;
    l->pipe_fd = -1;
    return DIAGNOSE_AS(&l->base, name);
}

static char dir[256];

/* A duration as the table writes it ("152ms", "3.20s") in ns, or -1. */
static double age_ns(const char *text)
{
    char *end;
    double v = strtod(text, &end);
    if (end == text) return -1;
    if (strncmp(end, "ns", 2) == 0) return v;
    if (strncmp(end, "us", 2) == 0) return v * 1e3;
    if (strncmp(end, "ms", 2) == 0) return v * 1e6;
    if (*end == 's') return v * 1e9;
    return -1;
}

/* The age after `word` ("oldest ", "running ") on the line of pending.txt
   for `stack`, in ns; -1 when there is none. */
static double pending_age(const char *text, const char *stack, const char *word)
{
    size_t n = strlen(stack);
    const char *line = text;
    while (line && *line) {
        if (strncmp(line, stack, n) == 0 && line[n] == ':') {
            const char *end = strchr(line, '\n'), *w = strstr(line, word);
            if (w == NULL || (end && w > end)) return -1;
            return age_ns(w + strlen(word));
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    return -1;
}

/* Whether text has a line "lint: <path>: ..." that contains word (other
   lints of the path, such as slow polls under valgrind, do not count). */
static int has_lint(const char *text, const char *path, const char *word)
{
    char head[200];
    const char *line = text;
    snprintf(head, sizeof head, "lint: %s: ", path);
    while (line && (line = strstr(line, head)) != NULL) {
        const char *end = strchr(line, '\n'), *w = strstr(line, word);
        if (w && (end == NULL || w < end)) return 1;
        line = end;
    }
    return 0;
}

/* Bounds of a written age: rounding to 3 digits, then calibration. */
#define AGE_LO(ns) (LO(ns) * 0.995)
#define AGE_HI(ns) (HI(ns) * 1.005)

static char *pending_file(const char *prefix, const char *ext) { return tt_readf("%s.pending.%s", prefix, ext); }

/* ---- at a dump ------------------------------------------------------------ */

static const char name_a[] = "live.a", name_b[] = "live.b";

static void test_open_runs_at_a_dump(void)
{
    struct live a1, a2, b;
    diag_future *fa1 = live_init(&a1, name_a), *fa2 = live_init(&a2, name_a), *fb = live_init(&b, name_b);
    char prefix[300], *folded, *text;
    uint64_t t0, t1, t2;
    diag__row r;
    snprintf(prefix, sizeof prefix, "%s/dump", dir);
    CHECK_EQ(diag_reset(), 0);
    t0 = tt_now_ns();
    diag_poll(fa1, NULL);
    diag_poll(fa2, NULL);
    tt_sleep_ns(100 * MS);
    t1 = tt_now_ns();
    diag_poll(fb, NULL);
    CHECK_EQ(diag_dump(prefix), 0);
    t2 = tt_now_ns();
    folded = pending_file(prefix, "folded");
    text = pending_file(prefix, "txt");
    CHECK_STR(folded, "live.a 2\nlive.b 1\n");
    CHECK(tt_folded_ok(folded));
    /* oldest first; nothing running, nothing stuck (DIAGNOSE_STUCK_S 10) */
    CHECK(text && strncmp(text, "live.a: 2 open, oldest ", 23) == 0);
    CHECK(text && strstr(text, "\nlive.b: 1 open, oldest ") != NULL);
    CHECK(text && strstr(text, "running") == NULL && strstr(text, "stuck") == NULL);
    CHECK_EQ(tt_lines(text), 2);
    CHECK_RANGE(pending_age(text, "live.a", "oldest "), AGE_LO(100 * MS), AGE_HI(t2 - t0));
    CHECK_RANGE(pending_age(text, "live.b", "oldest "), 0, AGE_HI(t2 - t1));
    free(folded);
    free(text);
    r = tt_row_of("live.a");
    CHECK_EQ(r.open, 2);
    CHECK_EQ(r.started, 2);
    CHECK_EQ(r.orphans, 0);

    /* one finishes, one is dropped, one is polled again: still open */
    a1.ready = 1;
    diag_poll(fa1, NULL);
    diag_drop(fa2);
    diag_poll(fb, NULL);
    CHECK_EQ(diag_dump(prefix), 0);
    folded = pending_file(prefix, "folded");
    CHECK_STR(folded, "live.b 1\n");
    free(folded);
    r = tt_row_of("live.a");
    CHECK_EQ(r.open, 0);
    CHECK_EQ(r.started, 2);
    CHECK_EQ(r.done, 1);
    CHECK_EQ(r.drops, 1);

    /* a future polled again after READY starts a run of its own */
    a1.ready = 0;
    diag_poll(fa1, NULL);
    CHECK_EQ(tt_row_of("live.a").started, 3);
    CHECK_EQ(tt_row_of("live.a").open, 1);
    diag_drop(fa1);

    /* nothing open: the dump removes what the earlier dumps left */
    diag_drop(fb);
    CHECK_EQ(diag_dump(prefix), 0);
    {
        char path[400];
        snprintf(path, sizeof path, "%s.pending.folded", prefix);
        CHECK(!tt_exists(path));
        snprintf(path, sizeof path, "%s.pending.txt", prefix);
        CHECK(!tt_exists(path));
        snprintf(path, sizeof path, "%s.polls.folded", prefix);
        CHECK(tt_exists(path));
    }
}

/* Many runs open and closed on one thread: records are reused, and the
   count stays exact whatever order runs end in. */
static void test_records_are_reused(void)
{
    enum { N = 300 };
    static struct live l[N];
    static const char name[] = "live.many";
    int round, i;
    CHECK_EQ(diag_reset(), 0);
    for (round = 0; round < 3; round++) {
        for (i = 0; i < N; i++) diag_poll(live_init(&l[i], name), NULL);
        CHECK_EQ(tt_row_of("live.many").open, N);
        for (i = 0; i < N; i += 2) diag_drop(&l[i].base); /* every other one ends */
        CHECK_EQ(tt_row_of("live.many").open, N / 2);
        for (i = 1; i < N; i += 2) {
            l[i].ready = 1;
            diag_poll(&l[i].base, NULL);
        }
        CHECK_EQ(tt_row_of("live.many").open, 0);
    }
    CHECK_EQ(tt_row_of("live.many").started, 3 * N);
}

/* ---- a poll running on another thread ------------------------------------- */

struct blocked {
    struct live l;
    diag_future *f;
    uint64_t called_ns; /* test clock just before diag_poll */
};

static void *poll_blocked(void *arg)
{
    struct blocked *b = (struct blocked *)arg;
    __atomic_store_n(&b->called_ns, tt_now_ns(), __ATOMIC_RELEASE);
    diag_poll(b->f, NULL);
    return NULL;
}

/* The poll blocks until the test writes to the pipe, which it does only
   after the dump: a dump that waited for running polls would hang here. */
static void test_running_poll_on_another_thread(void)
{
    static const char name[] = "live.blocked";
    struct blocked b;
    pthread_t thread;
    int fds[2];
    char prefix[300], *text, *lint;
    uint64_t entered, before, dumped, after;
    diag__row r;
    snprintf(prefix, sizeof prefix, "%s/running", dir);
    CHECK_EQ(diag_reset(), 0);
    CHECK_EQ(pipe(fds), 0);
    b.f = live_init(&b.l, name);
    b.l.pipe_fd = fds[0];
    b.l.ready = 1;
    b.called_ns = 0;
    CHECK_EQ(pthread_create(&thread, NULL, poll_blocked, &b), 0);
    while (__atomic_load_n(&b.l.entered_ns, __ATOMIC_ACQUIRE) == 0) tt_sleep_ns(MS / 10);
    entered = __atomic_load_n(&b.l.entered_ns, __ATOMIC_ACQUIRE);
    tt_sleep_ns(150 * MS);
    before = tt_now_ns();
    CHECK_EQ(diag_dump(prefix), 0);
    dumped = tt_now_ns(); /* the dump read its clock before this: the ages' upper bound */
    text = pending_file(prefix, "txt");
    r = tt_row_of("live.blocked");
    lint = tt_table_text();
    after = tt_now_ns();
    CHECK_EQ(__atomic_load_n(&b.l.returned, __ATOMIC_ACQUIRE), 0); /* the dump did not wait */
    CHECK(text && strncmp(text, "live.blocked: 1 open, oldest ", 29) == 0);
    CHECK_RANGE(pending_age(text, "live.blocked", "running "), AGE_LO(before - entered),
                AGE_HI(dumped - __atomic_load_n(&b.called_ns, __ATOMIC_ACQUIRE)));
    CHECK_RANGE(pending_age(text, "live.blocked", "oldest "), AGE_LO(before - entered),
                AGE_HI(dumped - __atomic_load_n(&b.called_ns, __ATOMIC_ACQUIRE)));
    CHECK_EQ(r.open, 1);
    CHECK_RANGE(r.running - 1, LO(before - entered), HI(after - b.called_ns));
    /* longer than DIAGNOSE_SLOW_NS (1 ms): a lint, though the poll has not ended */
    CHECK(lint && strstr(lint, "lint: live.blocked: a poll still running at the dump had run for ") != NULL);
    CHECK(lint && strstr(lint, "\npending: live.blocked: 1 open, oldest ") != NULL);
    free(text);
    free(lint);
    CHECK_EQ(write(fds[1], "x", 1), 1);
    pthread_join(thread, NULL);
    close(fds[0]);
    close(fds[1]);
    r = tt_row_of("live.blocked");
    CHECK_EQ(r.open, 0);
    CHECK_EQ(r.running, 0);
    CHECK_EQ(r.done, 1);
}

/* ---- diag_reset ------------------------------------------------------------ */

/* Open runs are a gauge: a reset does not close them, and their age is
   from their first poll, not from the reset. */
static void test_open_runs_after_reset(void)
{
    static const char name[] = "live.reset";
    struct live l, m;
    diag_future *f = live_init(&l, name), *g = live_init(&m, name);
    char prefix[300], *text;
    uint64_t t0, t1;
    diag__row r;
    snprintf(prefix, sizeof prefix, "%s/reset", dir);
    t0 = tt_now_ns();
    diag_poll(f, NULL);
    tt_sleep_ns(80 * MS);
    CHECK_EQ(diag_reset(), 0);
    diag_poll(g, NULL);
    CHECK_EQ(diag_dump(prefix), 0);
    t1 = tt_now_ns();
    text = pending_file(prefix, "txt");
    CHECK(text && strncmp(text, "live.reset: 2 open, oldest ", 27) == 0);
    CHECK_RANGE(pending_age(text, "live.reset", "oldest "), AGE_LO(80 * MS), AGE_HI(t1 - t0));
    free(text);
    r = tt_row_of("live.reset");
    CHECK_EQ(r.open, 2);
    CHECK_EQ(r.started, 1); /* in this window: only g's run began */
    diag_drop(f);
    r = tt_row_of("live.reset");
    CHECK_EQ(r.open, 1);
    CHECK_EQ(r.started, 1);
    CHECK_EQ(r.drops, 1);
    diag_drop(g);
}

/* ---- fork ----------------------------------------------------------------- */

/* The child has the parent's open runs (its copies of the spans): they
   stay open there and can end there. The poll another thread was running
   at the fork is not running in the child, where that thread is gone. */
static void test_open_runs_in_a_forked_child(void)
{
    static const char forked[] = "live.forked", blocked[] = "live.in_fork";
    struct live l;
    struct blocked b;
    diag_future *f = live_init(&l, forked);
    pthread_t thread;
    int fds[2], status;
    char prefix[300], *text, *folded;
    pid_t pid;
    snprintf(prefix, sizeof prefix, "%s/forked", dir);
    CHECK_EQ(diag_reset(), 0);
    CHECK_EQ(pipe(fds), 0);
    b.f = live_init(&b.l, blocked);
    b.l.pipe_fd = fds[0];
    b.l.ready = 1;
    CHECK_EQ(pthread_create(&thread, NULL, poll_blocked, &b), 0);
    while (__atomic_load_n(&b.l.entered_ns, __ATOMIC_ACQUIRE) == 0) tt_sleep_ns(MS / 10);
    diag_poll(f, NULL);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int rc = diag_dump(prefix) != 0;
        l.ready = 1;
        diag_poll(f, NULL);
        snprintf(prefix + strlen(prefix), sizeof prefix - strlen(prefix), ".second");
        rc |= diag_dump(prefix) != 0;
        _exit(rc);
    }
    CHECK(pid > 0);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the child's files carry its pid */
    folded = tt_readf("%s.%ld.pending.folded", prefix, (long)pid);
    text = tt_readf("%s.%ld.pending.txt", prefix, (long)pid);
    CHECK_STR(folded, "live.forked 1\nlive.in_fork 1\n");
    CHECK(text && strstr(text, "live.in_fork: 1 open, oldest ") != NULL);
    CHECK(text && strstr(text, "running") == NULL);
    free(folded);
    free(text);
    folded = tt_readf("%s.second.%ld.pending.folded", prefix, (long)pid);
    CHECK_STR(folded, "live.in_fork 1\n");
    free(folded);
    /* the parent's own view is unchanged by the child */
    CHECK_EQ(tt_row_of("live.forked").open, 1);
    CHECK(tt_row_of("live.in_fork").running > 0);
    CHECK_EQ(write(fds[1], "x", 1), 1);
    pthread_join(thread, NULL);
    close(fds[0]);
    close(fds[1]);
    diag_drop(f);
    CHECK_EQ(tt_row_of("live.forked").open, 0);
    CHECK_EQ(tt_row_of("live.in_fork").open, 0);
}

/* ---- orphans -------------------------------------------------------------- */

static void test_orphans(void)
{
    static const char parent[] = "live.parent", kid[] = "kid";
    struct live p1, k1, p2, k2;
    diag_future *fp1 = live_init(&p1, parent), *fp2 = live_init(&p2, parent);
    char *text;
    int i;
    CHECK_EQ(diag_reset(), 0);
    p1.child = live_init(&k1, kid);
    p2.child = live_init(&k2, kid);
    diag_poll(fp1, NULL); /* both kids begin inside their parents' runs */
    diag_poll(fp2, NULL);
    CHECK_EQ(tt_row_of("live.parent;kid").open, 2);
    CHECK_EQ(tt_row_of("live.parent;kid").orphans, 0);
    /* p1 finishes without its kid: the kid's run is forgotten */
    p1.child = NULL;
    p1.ready = 1;
    diag_poll(fp1, NULL);
    CHECK_EQ(tt_row_of("live.parent;kid").open, 2);
    CHECK_EQ(tt_row_of("live.parent;kid").orphans, 1);
    /* p1 polled again: a new run in the same record or another, still not
       the run the kid began in */
    p1.ready = 0;
    diag_poll(fp1, NULL);
    CHECK_EQ(tt_row_of("live.parent;kid").orphans, 1);
    /* runs of p1 until one has the very record the kid's parent run had
       (records are reused): the record's start still tells them apart */
    for (i = 0; i < 1000 && p1.base.span.run != k1.base.span.run->parent; i++) {
        p1.ready = 1;
        diag_poll(fp1, NULL);
        p1.ready = 0;
        diag_poll(fp1, NULL);
    }
    CHECK(p1.base.span.run == k1.base.span.run->parent);
    CHECK_EQ(tt_row_of("live.parent;kid").orphans, 1);
    text = tt_table_text();
    CHECK(text && strstr(text, "lint: live.parent;kid: 1 open run outlived the run it began in") != NULL);
    free(text);
    /* p2 dropped without its kid: now both are orphans */
    diag_drop(fp2);
    CHECK_EQ(tt_row_of("live.parent;kid").orphans, 2);
    diag_drop(&k1.base);
    diag_drop(&k2.base);
    diag_drop(fp1);
    CHECK_EQ(tt_row_of("live.parent;kid").orphans, 0);
    CHECK_EQ(tt_row_of("live.parent;kid").open, 0);
}

/* A run exactly DIAGNOSE_STUCK_S old is stuck; 1 ns younger, not yet. */
static void test_stuck_from_exactly_its_age(void)
{
    diag__row r;
    diag__buf b = { NULL, 0, 0, 0 };
    memset(&r, 0, sizeof r);
    r.stack = "live.edge";
    r.open = 1;
    r.oldest = diag__rt->stuck_ns;
    diag__pending_line(&b, &r);
    CHECK(b.data && strstr(b.data, "live.edge: 1 open, oldest ") == b.data && strstr(b.data, ", stuck\n"));
    free(b.data);
    memset(&b, 0, sizeof b);
    r.oldest = diag__rt->stuck_ns - 1;
    diag__pending_line(&b, &r);
    CHECK(b.data && strstr(b.data, "stuck") == NULL);
    free(b.data);
}

/* ---- self-wakes ----------------------------------------------------------- */

/* Wakes the future it is given as cx, and is done. */
static diag_status wake_cx_poll(diag_future *self, void *cx)
{
    (void)self;
    diag_wake((diag_future *)cx);
    return DIAG_READY;
}

/* Polls f once; 1 if that took under 9 us by the test's clock, so that a
   self-wake in it was quick (under 10 us into the poll) for the library
   too. Not so under valgrind, where a poll that does nothing takes longer. */
static int poll_quick(diag_future *f)
{
    uint64_t start = tt_now_ns();
    diag_poll(f, NULL);
    return tt_now_ns() - start < 9000;
}

static void test_self_wakes(void)
{
    static const char self[] = "live.selfwake", other[] = "live.outside", few[] = "live.fewself";
    struct live s, o, f;
    diag_future *fs = live_init(&s, self), *fo = live_init(&o, other), *ff = live_init(&f, few);
    diag_future w = DIAG_FUTURE_INIT(wake_cx_poll);
    char *text;
    int i, quick = 0;
    CHECK_EQ(diag_reset(), 0);
    s.wake_self = 1;
    f.wake_self = 1;
    for (i = 0; i < 30; i++) {
        quick += poll_quick(fs);
        diag_wake(fo); /* from outside any poll of o */
        diag_poll(fo, NULL);
    }
    for (i = 0; i < 5; i++) diag_poll(ff, NULL);
    /* a wake of o from inside another future's poll is not o's self-wake */
    diag_poll(DIAGNOSE_AS(&w, "live.waker"), fo);
    CHECK_EQ(tt_row_of("live.selfwake").self_wakes, 30);
    CHECK_EQ(tt_row_of("live.selfwake").wakes, 29); /* the 30th is still waiting for a poll */
    CHECK_EQ(tt_row_of("live.outside").self_wakes, 0);
    CHECK_EQ(tt_row_of("live.outside").wakes, 30);
    CHECK_EQ(tt_row_of("live.fewself").self_wakes, 5);
    CHECK_RANGE(tt_row_of("live.selfwake").quick_self_wakes, quick, 30);
    text = tt_table_text();
    if (quick > 20) CHECK(text && has_lint(text, "live.selfwake", "self-wake")); /* most quick by the test's clock */
    if (quick == 30) CHECK(text && strstr(text, "lint: live.selfwake: 30 of 30 wakes were self-wakes") != NULL);
    CHECK(text && !has_lint(text, "live.outside", "self-wake"));
    CHECK(text && !has_lint(text, "live.fewself", "self-wake")); /* under the minimum of 20 */
    free(text);
    diag_drop(fs);
    diag_drop(fo);
    diag_drop(ff);
}

/* A future that works (50 us) and then wakes itself to let others run, a
   yield as tokio's yield_now, is no busy loop; one whose polls do nothing
   but wake itself is, however its polls alternate with the other's. */
static void test_self_wake_after_work_is_a_yield(void)
{
    static const char yield[] = "live.yield", spin[] = "live.spin";
    struct live y, s;
    diag_future *fy = live_init(&y, yield), *fs = live_init(&s, spin);
    char *text;
    int i, quick = 0;
    CHECK_EQ(diag_reset(), 0);
    y.wake_self = s.wake_self = 1;
    y.work_ns = 50 * 1000;
    for (i = 0; i < 40; i++) {
        diag_poll(fy, NULL);
        quick += poll_quick(fs);
    }
    CHECK_EQ(tt_row_of(yield).self_wakes, 40);
    CHECK_EQ(tt_row_of(yield).quick_self_wakes, 0); /* each 50 us or more into its poll */
    CHECK_EQ(tt_row_of(spin).self_wakes, 40);
    CHECK_RANGE(tt_row_of(spin).quick_self_wakes, quick, 40);
    text = tt_table_text();
    CHECK(text && !has_lint(text, yield, "self-wake"));
    if (quick > 20) { /* most of them quick by the test's own clock */
        CHECK(text && has_lint(text, spin, "self-wake"));
        CHECK(text && strstr(text, "were self-wakes (diag_wake inside its own poll) less than 10.0us into it") != NULL);
    }
    free(text);
    diag_drop(fy);
    diag_drop(fs);
}

/* A wake from a nested future's poll, of the future polling it, is that
   future's self-wake too: it is running on this thread. */
static void test_self_wake_from_a_nested_poll(void)
{
    static const char outer[] = "live.outer";
    struct live o;
    diag_future inner = DIAG_FUTURE_INIT(wake_cx_poll);
    diag_future *fo = live_init(&o, outer);
    CHECK_EQ(diag_reset(), 0);
    o.child = DIAGNOSE_AS(&inner, "inner");
    /* live_poll passes its cx on: here the outer future itself */
    diag_poll(fo, fo);
    CHECK_EQ(tt_row_of("live.outer").self_wakes, 1);
    CHECK_EQ(tt_row_of("live.outer;inner").self_wakes, 0);
    diag_drop(fo);
}

/* ---- children: settings read at start-up, and the exit summary ----------- */

/* DIAGNOSE_STUCK_S=0.2: which runs lost their wake. */
static int child_lost_wakes(void)
{
    static const char lost[] = "live.lost", waiting[] = "live.waiting", unpolled[] = "live.unpolled";
    static const char spurious[] = "live.spurious", parent[] = "live.holder", kid[] = "kid", fresh[] = "live.fresh";
    static const char revived[] = "live.revived", blocked[] = "live.blocked";
    static struct live l, w, u, s, p, k, fr, rv, bl;
    static struct blocked b;
    static pthread_t thread;
    int i, fds[2];
    /* woken before each of its polls, but not since the last one began:
       the old wakes do not count */
    live_init(&l, lost);
    for (i = 0; i < 3; i++) {
        diag_wake(&l.base);
        diag_poll(&l.base, NULL);
    }
    /* woken after its last poll: it waits for the executor, not for a wake */
    diag_poll(live_init(&w, waiting), NULL);
    diag_wake(&w.base);
    /* woken, never polled: no run yet */
    diag_wake(live_init(&u, unpolled));
    /* polled without wakes: a path not driven by wakes is not judged */
    live_init(&s, spurious);
    for (i = 0; i < 3; i++) diag_poll(&s.base, NULL);
    /* a child whose parent's run is open waits on its parent */
    p.child = NULL;
    live_init(&p, parent);
    p.child = live_init(&k, kid);
    diag_poll(&p.base, NULL);
    /* a run older than DIAGNOSE_STUCK_S, but woken and polled just now: the
       age that counts is that of its last woken poll, not the run's */
    diag_wake(live_init(&rv, revived));
    diag_poll(&rv.base, NULL);
    /* woken, then polled on a thread where the poll blocks for good: it
       runs, so nothing is lost */
    if (pipe(fds) != 0) return 1;
    b.f = live_init(&bl, blocked);
    bl.pipe_fd = fds[0];
    diag_wake(b.f);
    if (pthread_create(&thread, NULL, poll_blocked, &b) != 0) return 1;
    while (!__atomic_load_n(&bl.entered_ns, __ATOMIC_ACQUIRE)) tt_sleep_ns(MS);
    tt_sleep_ns(300 * MS);
    diag_wake(&rv.base);
    diag_poll(&rv.base, NULL);
    /* younger than DIAGNOSE_STUCK_S */
    diag_wake(live_init(&fr, fresh));
    diag_poll(&fr.base, NULL);
    return 0;
}

/* 30 open paths at exit: 25 pending lines, then the count of the rest. */
static int child_many_open(void)
{
    static char names[30][16];
    static struct live l[30];
    int i;
    for (i = 0; i < 30; i++) {
        snprintf(names[i], sizeof names[i], "open%02d", i);
        diag_poll(live_init(&l[i], names[i]), NULL);
        tt_sleep_ns(MS); /* distinct ages: open00 is the oldest */
    }
    /* DIAGNOSE_SIGNAL=USR2: snapshot 1, written by the background thread
       (kill, as from a shell: raise aims at this thread, which blocks it) */
    kill(getpid(), SIGUSR2);
    for (i = 0; i < 10000 && !tt_exists("out.1.pending.folded"); i++) tt_sleep_ns(MS);
    return 3;
}

/* Nothing open at exit: no pending files, no pending lines. */
static int child_nothing_open(void)
{
    static const char name[] = "live.done";
    static struct live l;
    live_init(&l, name);
    l.ready = 1;
    diag_poll(&l.base, NULL);
    return 0;
}

static const tt_child children[] = {
    { "lost", child_lost_wakes },
    { "many", child_many_open },
    { "nothing", child_nothing_open },
};

static char *stderr_of(const char *d)
{
    return tt_readf("%s/stderr.txt", d);
}

static void test_lost_wakes(void)
{
    const char *d = tt_tempdir();
    const char *env[] = { "DIAGNOSE_STUCK_S=0.2", "DIAGNOSE_QUIET=", "DIAGNOSE_OUT=out", NULL };
    char *err, *text, *folded;
    CHECK_EQ(tt_spawn(d, "lost", env), 0);
    err = stderr_of(d);
    text = tt_readf("%s/out.pending.txt", d);
    folded = tt_readf("%s/out.pending.folded", d);
    CHECK_STR(folded, "live.blocked 1\nlive.fresh 1\nlive.holder 1\nlive.holder;kid 1\nlive.lost 1\nlive.revived 1\n"
                      "live.spurious 1\nlive.waiting 1\n");
    CHECK(err && strstr(err, "lint: live.lost: 1 open run not woken, polled or running for 200ms or more (lost wake?)\n"));
    CHECK(err && !has_lint(err, "live.waiting", "lost wake"));
    CHECK(err && !has_lint(err, "live.spurious", "lost wake"));
    /* polled once and never woken: nothing will poll it again */
    CHECK(err && strstr(err, "lint: live.holder: 1 open run not woken, polled or running for 200ms") != NULL);
    /* its kid waits on it, not on a wake */
    CHECK(err && !has_lint(err, "live.holder;kid", "lost wake"));
    CHECK(err && !has_lint(err, "live.fresh", "lost wake"));
    CHECK(err && !has_lint(err, "live.revived", "lost wake"));
    CHECK(err && !has_lint(err, "live.blocked", "lost wake"));
    CHECK(err && has_lint(err, "live.blocked", "still running")); /* it is said to be running instead */
    CHECK(text && strstr(text, "live.revived: 1 open, oldest ") && strstr(strstr(text, "live.revived:"), ", stuck\n"));
    CHECK(err && strstr(err, "live.unpolled") == NULL);
    /* older than DIAGNOSE_STUCK_S: stuck; the fresh one is not */
    CHECK(text && strstr(text, "live.lost: 1 open, oldest ") && strstr(strstr(text, "live.lost:"), ", stuck\n"));
    CHECK(text && strstr(text, "live.fresh: 1 open, oldest ") && !strstr(strstr(text, "live.fresh:"), "stuck"));
    CHECK_RANGE(pending_age(text, "live.lost", "oldest "), AGE_LO(300 * MS), 60e9);
    CHECK_RANGE(pending_age(text, "live.fresh", "oldest "), 0, AGE_LO(300 * MS));
    /* the last line of the summary is the youngest pending path */
    CHECK(err && strstr(err, "\npending: live.fresh: 1 open, oldest ") != NULL);
    CHECK(err && *err && err[strlen(err) - 1] == '\n' && strstr(err, "\npending: live.fresh:") &&
          strstr(strstr(err, "\npending: live.fresh:") + 1, "\n") == err + strlen(err) - 1);
    free(err);
    free(text);
    free(folded);
}

static void test_exit_summary_ends_with_pending_lines(void)
{
    const char *d = tt_tempdir();
    const char *env[] = { "DIAGNOSE_QUIET=", "DIAGNOSE_OUT=out", "DIAGNOSE_SIGNAL=USR2", "DIAGNOSE_SVG=1", NULL };
    char *err, *folded, *text, *snap1, *last;
    char want[64];
    int i, lines = 0;
    CHECK_EQ(tt_spawn(d, "many", env), 3); /* the exit code is the program's */
    err = stderr_of(d);
    folded = tt_readf("%s/out.pending.folded", d);
    text = tt_readf("%s/out.pending.txt", d);
    snap1 = tt_readf("%s/out.1.pending.folded", d);
    CHECK(tt_folded_ok(folded));
    CHECK_EQ(tt_lines(folded), 30);
    CHECK_EQ(tt_lines(text), 30);
    CHECK_EQ(tt_lines(snap1), 30); /* the numbered snapshots have them too */
    CHECK_EQ(tt_value(folded, "open07"), 1);
    CHECK(text && strncmp(text, "open00: 1 open, oldest ", 23) == 0); /* oldest first */
    {
        char path[400];
        snprintf(path, sizeof path, "%s/out.pending.svg", d);
        CHECK(tt_exists(path));
        snprintf(path, sizeof path, "%s/out.1.pending.svg", d);
        CHECK(tt_exists(path));
    }
    /* 25 lines, oldest first, then the count of the rest, and nothing after */
    for (i = 0; err && i < 25; i++) {
        snprintf(want, sizeof want, "\npending: open%02d: 1 open, oldest ", i);
        lines += strstr(err, want) != NULL;
    }
    CHECK_EQ(lines, 25);
    CHECK(err && strstr(err, "pending: open25") == NULL);
    last = err ? strstr(err, "\npending: (5 more paths in out.pending.txt)\n") : NULL;
    CHECK(last != NULL && last[strlen("\npending: (5 more paths in out.pending.txt)\n")] == '\0');
    free(err);
    free(folded);
    free(text);
    free(snap1);
}

static void test_nothing_open_at_exit(void)
{
    const char *d = tt_tempdir();
    const char *env[] = { "DIAGNOSE_QUIET=", "DIAGNOSE_OUT=out", NULL };
    char *err, path[400];
    CHECK_EQ(tt_spawn(d, "nothing", env), 0);
    err = stderr_of(d);
    CHECK(err && strstr(err, "pending") == NULL);
    CHECK(err && strstr(err, "live.done") != NULL);
    snprintf(path, sizeof path, "%s/out.pending.folded", d);
    CHECK(!tt_exists(path));
    snprintf(path, sizeof path, "%s/out.polls.folded", d);
    CHECK(tt_exists(path));
    free(err);
}

/* A value not understood: one line on stderr, and the default (10 s). */
static void test_bad_stuck_setting(void)
{
    const char *d = tt_tempdir();
    const char *env[] = { "DIAGNOSE_QUIET=", "DIAGNOSE_OUT=out", "DIAGNOSE_STUCK_S=soon", NULL };
    char *err;
    CHECK_EQ(tt_spawn(d, "nothing", env), 0);
    err = stderr_of(d);
    CHECK(err && strncmp(err, "diagnose.h: DIAGNOSE_STUCK_S='soon' is not a number of seconds; ", 64) == 0);
    CHECK(err && strstr(err, "; using 10\n") != NULL);
    CHECK(err && strstr(err, "STUCK") && strstr(strstr(err, "STUCK") + 1, "STUCK") == NULL); /* said once */
    free(err);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    tt_quiet_exit_dump();
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    RUN(test_open_runs_at_a_dump);
    RUN(test_records_are_reused);
    RUN(test_running_poll_on_another_thread);
    RUN(test_open_runs_after_reset);
    RUN(test_open_runs_in_a_forked_child);
    RUN(test_orphans);
    RUN(test_stuck_from_exactly_its_age);
    RUN(test_self_wakes);
    RUN(test_self_wake_from_a_nested_poll);
    RUN(test_self_wake_after_work_is_a_yield);
    RUN(test_lost_wakes);
    RUN(test_exit_summary_ends_with_pending_lines);
    RUN(test_nothing_open_at_exit);
    RUN(test_bad_stuck_setting);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif
