/* Stackful coroutines (diag_fiber_switch): a span begun in a coroutine
   stays open across its yields, nests under the coroutine's innermost open
   span (or the thread's span at the switch in), counts busy only while its
   coroutine runs, is one poll however many yields it spans, and may end on
   another thread.

   Most cases drive the library as a coroutine scheduler would, without
   switching stacks: the library never sees a stack, only the calls, and
   these run as they are under every sanitizer. Two cases switch real
   stacks with ucontext, one of them across threads (where a compiler that
   kept a thread-local's address across the switch would count a span's
   end in the first thread's table).

   Time bounds as in test_core.c: LO of what the test spun inside the
   interval, HI of its own clock around it. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"
#include "task.h"

#include <pthread.h>

#ifndef DIAGNOSE_DISABLE

#if defined(__SANITIZE_THREAD__)
#define FIBERS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FIBERS_TSAN 1
#endif
#endif
/* Real stacks: ucontext, which musl does not have, and ThreadSanitizer
   follows no stack switch it is not told of. */
#if defined(__GLIBC__) && !defined(FIBERS_TSAN)
#define FIBERS_REAL_STACKS 1
#include <ucontext.h>
#endif

static char dir[256];

static void check_polls(const char *want)
{
    char *text = tt_dumped_ok("polls");
    CHECK_STR(text, want);
    free(text);
}

/* One resume by a scheduler: its task span around the switch in and out. */
struct resume {
    diag_span *task;
    diag_fiber *fiber;
    uint64_t start; /* test clock at the task's begin */
};

static void resume_in(struct resume *r, diag_span *task, diag_fiber *fiber)
{
    r->task = task;
    r->fiber = fiber;
    r->start = tt_now_ns();
    diag_span_begin(task);
    diag_fiber_switch(fiber);
}

/* Back on the scheduler: returns the resume's length by the test clock. */
static uint64_t resume_out(struct resume *r, diag_status status)
{
    diag_fiber_switch(NULL);
    diag_span_end(r->task, status);
    return tt_now_ns() - r->start;
}

/* ---- busy goes with the coroutine ------------------------------------------ */

/* The case without stacks: query spins 2 ms, the coroutine yields,
   the thread spins 5 ms in nothing of the coroutine's, then the coroutine
   spins 2 ms more and ends query. query: one poll, busy the 4 ms spun in
   it (not the 5 ms away), wall all of it; the task keeps only its own. */
static void test_busy_only_while_running(void)
{
    diag_fiber f;
    diag_span task = DIAG_SPAN_INIT("task"), query = DIAG_SPAN_INIT("query");
    struct resume r;
    uint64_t in_task = 0, spun = 0, start, t0;
    tt_row row;
    memset(&f, 0, sizeof f);
    diag_reset();
    start = tt_now_ns();
    resume_in(&r, &task, &f);
    diag_span_begin(&query);
    t0 = tt_now_ns();
    tt_spin_ns(2 * MS);
    spun += tt_now_ns() - t0;
    in_task += resume_out(&r, DIAG_PENDING);
    tt_spin_ns(5 * MS);
    resume_in(&r, &task, &f);
    t0 = tt_now_ns();
    tt_spin_ns(2 * MS);
    spun += tt_now_ns() - t0;
    diag_span_end(&query, DIAG_READY);
    in_task += resume_out(&r, DIAG_READY);
    check_polls("task 2\ntask;query 1\n");
    row = tt_row_of("task;query");
    CHECK_RANGE((double)row.busy, LO(spun), HI(in_task));
    CHECK_RANGE((double)row.wall, LO(spun + 5 * MS), HI(tt_now_ns() - start));
    row = tt_row_of("task");
    CHECK_RANGE((double)row.busy, 0, HI(in_task - spun));
}

/* ---- where a span nests ---------------------------------------------------- */

/* With nothing open in the coroutine, its span nests under the thread's
   span at the switch in; with one open, under that one, even when the
   coroutine is resumed under another scheduler span. */
static void test_nesting(void)
{
    diag_fiber f;
    diag_span sched = DIAG_SPAN_INIT("sched"), other = DIAG_SPAN_INIT("other");
    diag_span a = DIAG_SPAN_INIT("a"), b = DIAG_SPAN_INIT("b"), c = DIAG_SPAN_INIT("c");
    struct resume r;
    memset(&f, 0, sizeof f);
    diag_reset();
    resume_in(&r, &sched, &f);
    diag_span_begin(&a); /* sched;a, open across the yield */
    resume_out(&r, DIAG_PENDING);
    resume_in(&r, &other, &f);
    diag_span_begin(&b); /* under a: sched;a;b */
    diag_span_end(&b, DIAG_READY);
    diag_span_end(&a, DIAG_READY);
    diag_span_begin(&c); /* nothing open in the coroutine: under other */
    diag_span_end(&c, DIAG_READY);
    resume_out(&r, DIAG_READY);
    diag_span_end(&sched, DIAG_READY); /* its run ends; its one poll ended above */
    check_polls("other 1\nother;c 1\nsched 1\nsched;a 1\nsched;a;b 1\n");
}

/* A thread's first call is a switch, with no span open on the thread: the
   coroutine's span is at the root, one poll across the yield, and goes
   with the coroutine (a span the thread then begins is not under it). */
static void *first_call_a_switch(void *arg)
{
    diag_fiber *f = (diag_fiber *)arg;
    diag_span q = DIAG_SPAN_INIT("rootq"), other = DIAG_SPAN_INIT("other");
    diag_fiber_switch(f);
    diag_span_begin(&q);
    diag_fiber_switch(NULL);
    diag_span_begin(&other); /* the thread's: q went with the coroutine */
    diag_fiber_switch(f);
    diag_span_end(&q, DIAG_READY);
    diag_fiber_switch(NULL);
    diag_span_end(&other, DIAG_READY);
    return NULL;
}

static void test_switch_before_any_span(void)
{
    diag_fiber f;
    pthread_t th;
    memset(&f, 0, sizeof f);
    diag_reset();
    CHECK_EQ(pthread_create(&th, NULL, first_call_a_switch, &f), 0);
    pthread_join(th, NULL);
    check_polls("other 1\nrootq 1\n");
    CHECK_EQ(tt_row_of("rootq").done, 1);
}

/* A direct switch from one coroutine into another: the second's span
   nests under the thread's span, not under the first coroutine's. */
static void test_direct_switch(void)
{
    diag_fiber one, two;
    diag_span sched = DIAG_SPAN_INIT("sched"), a = DIAG_SPAN_INIT("a"), b = DIAG_SPAN_INIT("b");
    memset(&one, 0, sizeof one);
    memset(&two, 0, sizeof two);
    diag_reset();
    diag_span_begin(&sched);
    diag_fiber_switch(&one);
    diag_span_begin(&a);
    diag_fiber_switch(&two); /* one yields straight into two */
    diag_span_begin(&b);
    diag_span_end(&b, DIAG_READY);
    diag_fiber_switch(&one);
    diag_span_end(&a, DIAG_READY);
    diag_fiber_switch(NULL);
    diag_span_end(&sched, DIAG_READY);
    check_polls("sched 1\nsched;a 1\nsched;b 1\n");
}

/* ---- suspended, dropped ---------------------------------------------------- */

/* A fresh window; a new coroutine opens q and inner in it and yields; the
   scheduler ends its task's poll with `status`. */
static void two_open_then_yield(diag_fiber *f, struct resume *r, diag_span *task, diag_span *q, diag_span *inner,
                                diag_status status)
{
    memset(f, 0, sizeof *f);
    diag_reset();
    resume_in(r, task, f);
    diag_span_begin(q);
    diag_span_begin(inner);
    resume_out(r, status);
}

/* A dump while the coroutine is switched out lists its open spans at their
   paths, and how long it has been away. */
static void test_pending_while_suspended(void)
{
    diag_fiber f;
    diag_span task = DIAG_SPAN_INIT("ptask"), q = DIAG_SPAN_INIT("pq"), inner = DIAG_SPAN_INIT("pinner");
    struct resume r;
    char prefix[300];
    char *text;
    tt_row row;
    two_open_then_yield(&f, &r, &task, &q, &inner, DIAG_PENDING);
    tt_sleep_ns(20 * MS);
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    text = tt_readf("%s.pending.folded", prefix);
    CHECK_STR(text, "ptask 1\nptask;pq 1\nptask;pq;pinner 1\n");
    free(text);
    row = tt_row_of("ptask;pq;pinner");
    CHECK_EQ(row.suspended, 1); /* the innermost: where the coroutine waits */
    CHECK_RANGE((double)row.suspended_for, LO(20 * MS), 10e9);
    CHECK_EQ(tt_row_of("ptask;pq").suspended, 0);
    text = tt_readf("%s.pending.txt", prefix);
    CHECK(text != NULL && strstr(text, "ptask;pq;pinner: 1 open, oldest ") != NULL &&
          strstr(text, ", 1 suspended, longest ") != NULL);
    free(text);
    resume_in(&r, &task, &f); /* back: no longer suspended */
    CHECK_EQ(tt_row_of("ptask;pq;pinner").suspended, 0);
    diag_span_end(&inner, DIAG_READY);
    diag_span_end(&q, DIAG_READY);
    resume_out(&r, DIAG_READY);
    CHECK_EQ(diag_dump(prefix), 0);
    snprintf(prefix, sizeof prefix, "%s/out.pending.folded", dir);
    CHECK(!tt_exists(prefix)); /* nothing open: removed */
}

/* diag_fiber_drop: a coroutine destroyed while switched out ends its open
   spans as drops (each poll ends, each run is a drop). */
static void test_fiber_drop(void)
{
    diag_fiber f;
    diag_span task = DIAG_SPAN_INIT("dtask"), q = DIAG_SPAN_INIT("dq"), inner = DIAG_SPAN_INIT("dinner");
    struct resume r;
    tt_row row;
    two_open_then_yield(&f, &r, &task, &q, &inner, DIAG_READY);
    diag_fiber_drop(&f);
    CHECK_EQ(f.depth, 0);
    row = tt_row_of("dtask;dq");
    CHECK_EQ(row.polls, 1);
    CHECK_EQ(row.drops, 1);
    CHECK_EQ(row.pending, 0);
    row = tt_row_of("dtask;dq;dinner");
    CHECK_EQ(row.polls, 1);
    CHECK_EQ(row.drops, 1);
    CHECK_EQ(row.pending, 0);
    CHECK_EQ(tt_row_of("dtask").done, 1);
    diag_fiber_drop(&f); /* nothing left: no effect */
    CHECK_EQ(tt_row_of("dtask;dq").drops, 1);
}

/* ---- across threads -------------------------------------------------------- */

/* A coroutine that two threads take turns to resume: every resume ends the
   span the last one left open (spinning 100 us first) and opens the next.
   Counts are exact, busy is what was spun, and the handing over is the
   mutex's. */
#define MIGRATIONS 200
struct migrating {
    pthread_mutex_t lock;
    pthread_cond_t turn_changed;
    int turn, resumes;
    diag_fiber fiber;
    diag_span task, q;
    uint64_t spun, first_spin, in_task;
};

static void migrating_resume(struct migrating *m)
{
    struct resume r;
    uint64_t t0;
    resume_in(&r, &m->task, &m->fiber);
    t0 = tt_now_ns();
    tt_spin_ns(100000);
    if (m->resumes == 0) m->first_spin = tt_now_ns() - t0;
    else m->spun += tt_now_ns() - t0;
    if (m->resumes > 0) diag_span_end(&m->q, DIAG_READY);
    if (m->resumes + 1 < MIGRATIONS) diag_span_begin(&m->q);
    m->in_task += resume_out(&r, m->resumes + 1 < MIGRATIONS ? DIAG_PENDING : DIAG_READY);
}

static void *migrating_thread(void *arg)
{
    struct migrating *m = (struct migrating *)arg;
    int me;
    pthread_mutex_lock(&m->lock);
    me = m->turn++;
    for (;;) {
        while (m->resumes < MIGRATIONS && m->resumes % 2 != me) pthread_cond_wait(&m->turn_changed, &m->lock);
        if (m->resumes >= MIGRATIONS) break;
        migrating_resume(m); /* under the lock: the test's way of handing over */
        m->resumes++;
        pthread_cond_broadcast(&m->turn_changed);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

static void test_migration_exact(void)
{
    static struct migrating m;
    pthread_t th[2];
    tt_row row;
    memset(&m, 0, sizeof m);
    pthread_mutex_init(&m.lock, NULL);
    pthread_cond_init(&m.turn_changed, NULL);
    diag_span_init(&m.task, "mtask");
    diag_span_init(&m.q, "mq");
    diag_reset();
    CHECK_EQ(pthread_create(&th[0], NULL, migrating_thread, &m), 0);
    CHECK_EQ(pthread_create(&th[1], NULL, migrating_thread, &m), 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CHECK_EQ(m.resumes, MIGRATIONS);
    check_polls("mtask 200\nmtask;mq 199\n");
    row = tt_row_of("mtask;mq");
    CHECK_EQ(row.done, 199);
    /* each mq poll: the spin of the resume that ends it; mtask: the first
       resume's spin and its own switches */
    CHECK_RANGE((double)row.busy, LO(m.spun), HI(m.in_task - m.first_spin));
    CHECK_RANGE((double)tt_row_of("mtask").busy, LO(m.first_spin), HI(m.in_task - m.spun));
    pthread_mutex_destroy(&m.lock);
    pthread_cond_destroy(&m.turn_changed);
}

#ifdef FIBERS_REAL_STACKS
/* ---- real stacks ----------------------------------------------------------- */

/* The case from the issue: a ucontext scheduler resumes two coroutines in
   turn inside their task spans; each coroutine, three times, opens query,
   spins 1 ms, yields, spins 1 ms and ends query. Each query: 3 polls, busy
   the 6 ms spun in them; each task keeps only the scheduler's time. */
#define CO_STACK (64 * 1024)
struct co {
    ucontext_t ctx;
    diag_fiber fiber;
    diag_span task;
    int done;
    uint64_t spun;
    char *stack;
};
static ucontext_t co_scheduler;
static struct co *co_now;

static void co_yield(void) { swapcontext(&co_now->ctx, &co_scheduler); }

static void co_body(void)
{
    struct co *me = co_now;
    int round;
    for (round = 0; round < 3; round++) {
        diag_span query = DIAG_SPAN_INIT("query");
        uint64_t t0;
        diag_span_begin(&query);
        t0 = tt_now_ns();
        tt_spin_ns(1 * MS);
        me->spun += tt_now_ns() - t0;
        co_yield();
        t0 = tt_now_ns();
        tt_spin_ns(1 * MS);
        me->spun += tt_now_ns() - t0;
        diag_span_end(&query, DIAG_READY);
    }
    me->done = 1;
}

static void co_make(struct co *c, const char *name)
{
    memset(c, 0, sizeof *c);
    c->stack = (char *)malloc(CO_STACK);
    getcontext(&c->ctx);
    c->ctx.uc_stack.ss_sp = c->stack;
    c->ctx.uc_stack.ss_size = CO_STACK;
    c->ctx.uc_link = &co_scheduler;
    makecontext(&c->ctx, co_body, 0);
    diag_span_init(&c->task, name);
}

static int child_ucontext_scheduler(void)
{
    struct co cos[2];
    uint64_t in_task[2] = { 0, 0 };
    int i, live = 2;
    FILE *out;
    co_make(&cos[0], "conn0");
    co_make(&cos[1], "conn1");
    while (live > 0) {
        for (i = 0; i < 2; i++) {
            struct resume r;
            if (cos[i].done) continue;
            co_now = &cos[i];
            resume_in(&r, &cos[i].task, &cos[i].fiber);
            swapcontext(&co_scheduler, &cos[i].ctx);
            in_task[i] += resume_out(&r, cos[i].done ? DIAG_READY : DIAG_PENDING);
            live -= cos[i].done;
        }
    }
    out = fopen("measured.txt", "w");
    if (out == NULL) return 1;
    for (i = 0; i < 2; i++) fprintf(out, "%llu %llu\n", (unsigned long long)cos[i].spun, (unsigned long long)in_task[i]);
    fclose(out);
    free(cos[0].stack);
    free(cos[1].stack);
    return 0;
}

/* Nothing but a sanitizer's own lines ("==pid==...": ASan says once that
   it does not follow swapcontext fully). */
static int says_nothing(const char *text)
{
    const char *line;
    if (text == NULL) return 0;
    for (line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, "==", 2) != 0 && *line != '\n') {
            fprintf(stderr, "  unexpected on stderr: %s", line);
            return 0;
        }
        if (strchr(line, '\n') == NULL) break;
    }
    return 1;
}

static void test_ucontext_scheduler(void)
{
    const char *d = tt_tempdir();
    const char *const quiet[] = { "DIAGNOSE_QUIET=1", "DIAGNOSE_OUT=out", NULL };
    const char *const loud[] = { "DIAGNOSE_QUIET=0", "DIAGNOSE_OUT=out", NULL };
    unsigned long long spun[2], in_task[2];
    char *text, *busy;
    FILE *in;
    int i;
    CHECK_EQ(tt_spawn(d, "ucontext_scheduler", quiet), 0);
    text = tt_readf("%s/stderr.txt", d);
    CHECK(says_nothing(text)); /* no warning for spans open across switches */
    free(text);
    text = tt_readf("%s/out.polls.folded", d);
    CHECK_STR(text, "conn0 4\nconn0;query 3\nconn1 4\nconn1;query 3\n");
    free(text);
    text = tt_readf("%s/measured.txt", d);
    in = text ? fmemopen(text, strlen(text), "r") : NULL;
    CHECK(in != NULL && fscanf(in, "%llu %llu %llu %llu", &spun[0], &in_task[0], &spun[1], &in_task[1]) == 4);
    if (in) fclose(in);
    free(text);
    busy = tt_readf("%s/out.busy.folded", d);
    for (i = 0; i < 2; i++) {
        char stack[32];
        snprintf(stack, sizeof stack, "conn%d;query", i);
        CHECK_RANGE((double)tt_value(busy, stack), LO(spun[i]), HI(in_task[i]));
        snprintf(stack, sizeof stack, "conn%d", i);
        CHECK_RANGE((double)tt_value(busy, stack), 0, HI(in_task[i] - spun[i]));
    }
    free(busy);
    CHECK_EQ(tt_spawn(d, "ucontext_scheduler", loud), 0);
    text = tt_readf("%s/stderr.txt", d);
    CHECK(text != NULL && strstr(text, "never ended") == NULL && strstr(text, "conn0;query") != NULL);
    free(text);
}

/* A ucontext coroutine that two threads take turns to resume: each span
   begins on one thread and ends on the other after a yield. Built at -O2
   like the rest, this is where a compiler that kept the thread pointer in
   a register across the yield would end the span in the wrong table. */
#define HOPS 100
static struct co hopper;
static pthread_mutex_t hop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hop_turn = PTHREAD_COND_INITIALIZER;
static int hop_count;
/* The resuming thread's context. Not a thread-local: a compiler may keep a
   thread-local's address across the yield, as the header's own DIAG__TLS
   explains, and the coroutine would go back to the wrong thread. */
static ucontext_t *hop_scheduler;

static void hop_yield(void) { swapcontext(&hopper.ctx, hop_scheduler); }

static void hop_body(void)
{
    int i;
    for (i = 0; i < HOPS; i++) {
        diag_span hop = DIAG_SPAN_INIT("hop");
        diag_span_begin(&hop);
        hop_yield();
        diag_span_end(&hop, DIAG_READY);
    }
    hopper.done = 1;
    hop_yield();
}

static void *hop_thread(void *arg)
{
    int me = (int)(intptr_t)arg;
    ucontext_t scheduler;
    pthread_mutex_lock(&hop_lock);
    for (;;) {
        struct resume r;
        while (!hopper.done && hop_count % 2 != me) pthread_cond_wait(&hop_turn, &hop_lock);
        if (hopper.done) break;
        resume_in(&r, &hopper.task, &hopper.fiber);
        hop_scheduler = &scheduler;
        swapcontext(&scheduler, &hopper.ctx);
        resume_out(&r, hopper.done ? DIAG_READY : DIAG_PENDING);
        hop_count++;
        pthread_cond_broadcast(&hop_turn);
    }
    pthread_mutex_unlock(&hop_lock);
    return NULL;
}

static void test_ucontext_migration(void)
{
    pthread_t th[2];
    diag_reset();
    co_make(&hopper, "hopper");
    makecontext(&hopper.ctx, hop_body, 0);
    CHECK_EQ(pthread_create(&th[0], NULL, hop_thread, (void *)(intptr_t)0), 0);
    CHECK_EQ(pthread_create(&th[1], NULL, hop_thread, (void *)(intptr_t)1), 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CHECK_EQ(hop_count, HOPS + 1);
    check_polls("hopper 101\nhopper;hop 100\n");
    CHECK_EQ(tt_row_of("hopper;hop").done, HOPS);
    free(hopper.stack);
}

/* A coroutine left switched out inside its spans at exit: with
   DIAGNOSE_QUIET=1 nothing at all is printed; its runs are open. */
static int child_suspended_at_exit(void)
{
    static struct co c;
    co_make(&c, "conn");
    co_now = &c;
    diag_span_begin(&c.task);
    diag_fiber_switch(&c.fiber);
    swapcontext(&co_scheduler, &c.ctx);
    diag_fiber_switch(NULL);
    diag_span_end(&c.task, DIAG_PENDING);
    return 0;
}

static void test_suspended_at_exit_quiet(void)
{
    const char *d = tt_tempdir();
    const char *const env[] = { "DIAGNOSE_QUIET=1", "DIAGNOSE_OUT=out", NULL };
    char *text;
    CHECK_EQ(tt_spawn(d, "suspended_at_exit", env), 0);
    text = tt_readf("%s/stderr.txt", d);
    CHECK(says_nothing(text));
    free(text);
    text = tt_readf("%s/out.pending.folded", d);
    CHECK_STR(text, "conn 1\nconn;query 1\n");
    free(text);
}

#endif /* FIBERS_REAL_STACKS */

/* ---- the trace ------------------------------------------------------------- */

/* With DIAGNOSE_TRACE, a span that spans a yield is drawn as the parts that
   ran, each inside its resume's task event, with the gap between. */
static int child_trace_cut(void)
{
    diag_fiber f;
    diag_span task = DIAG_SPAN_INIT("ttask"), q = DIAG_SPAN_INIT("tq");
    struct resume r;
    memset(&f, 0, sizeof f);
    resume_in(&r, &task, &f);
    diag_span_begin(&q);
    tt_spin_ns(1 * MS);
    resume_out(&r, DIAG_PENDING);
    tt_spin_ns(3 * MS);
    resume_in(&r, &task, &f);
    tt_spin_ns(1 * MS);
    diag_span_end(&q, DIAG_READY);
    resume_out(&r, DIAG_READY);
    return 0;
}

static void test_trace_cut_at_switches(void)
{
    const char *d = tt_tempdir();
    const char *const env[] = { "DIAGNOSE_TRACE=64", "DIAGNOSE_OUT=out", NULL };
    double ts[2], dur[2];
    const char *at;
    char *text;
    int n = 0;
    CHECK_EQ(tt_spawn(d, "trace_cut", env), 0);
    text = tt_readf("%s/out.trace.json", d);
    CHECK(text != NULL);
    for (at = text; at && (at = strstr(at, "\"name\": \"tq\"")) != NULL; at++) {
        const char *t = strstr(at, "\"ts\": "), *u = strstr(at, "\"dur\": ");
        if (n < 2 && t && u) {
            ts[n] = strtod(t + 6, NULL);
            dur[n] = strtod(u + 7, NULL);
        }
        n++;
    }
    CHECK_EQ(n, 2);
    if (n == 2) {
        int first = ts[0] < ts[1] ? 0 : 1;
        CHECK_RANGE(dur[0], LO(1 * MS) / 1e3, 2e6);
        CHECK_RANGE(dur[1], LO(1 * MS) / 1e3, 2e6);
        /* the second part starts after the 3 ms away */
        CHECK_RANGE(ts[!first] - (ts[first] + dur[first]), LO(3 * MS) / 1e3, 1e7);
    }
    free(text);
}

static const tt_child children[] = {
#ifdef FIBERS_REAL_STACKS
    { "ucontext_scheduler", child_ucontext_scheduler },
    { "suspended_at_exit", child_suspended_at_exit },
#endif
    { "trace_cut", child_trace_cut },
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    RUN(test_busy_only_while_running);
    RUN(test_nesting);
    RUN(test_switch_before_any_span);
    RUN(test_direct_switch);
    RUN(test_pending_while_suspended);
    RUN(test_fiber_drop);
    RUN(test_migration_exact);
    RUN(test_trace_cut_at_switches);
#ifdef FIBERS_REAL_STACKS
    RUN(test_ucontext_scheduler);
    RUN(test_suspended_at_exit_quiet);
    RUN(test_ucontext_migration);
#else
    printf("  skipped: the ucontext cases (no ucontext, or ThreadSanitizer)\n");
#endif
    return test_summary();
}

#else /* DIAGNOSE_DISABLE: the names stay */
int main(void)
{
    diag_fiber f;
    memset(&f, 0, sizeof f);
    diag_fiber_switch(&f);
    diag_fiber_switch(NULL);
    diag_fiber_drop(&f);
    return 0;
}
#endif
