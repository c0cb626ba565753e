/* Polls left without returning: by longjmp (C and C++), by a C++ exception
   (the C++ build only). After either, the thread's stack of polls is back
   where it was, later polls are counted under their own path, and the
   polls that were left are counted once with their busy time up to the
   unwinding.

   Each test starts with diag_reset() and uses its own names; runs a test
   leaves open are dropped at its end, so dumps of later tests hold only
   their own paths. Time bounds: as in test_core (tests/task.h). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <setjmp.h>
#include <signal.h>
#ifdef __cplusplus
#include <stdexcept>
#endif

#define MS 1000000ull
#define LO(ns) ((double)(ns) * 0.98 - 50000.0) /* as tests/task.h */
#define HI(ns) ((double)(ns) * 1.02 + 50000.0)

/* What a node's poll does after polling its child (if any). */
enum { RETURN_PENDING, RETURN_READY, JUMP, THROW, CATCH_CHILD };

struct node {
    diag_future base;
    struct node *child;
    int action;
    uint64_t spin_ns; /* spun before polling the child */
    int polls;
};

static jmp_buf landing;

#ifdef __cplusplus
struct boom : std::runtime_error {
    int code;
    explicit boom(int c) : std::runtime_error("boom"), code(c) {}
};
#endif

static diag_status node_poll(diag_future *self, void *cx)
{
    struct node *n = (struct node *)self;
    n->polls++;
    if (n->spin_ns) tt_spin_ns(n->spin_ns);
#ifdef __cplusplus
    if (n->action == CATCH_CHILD) {
        try {
            diag_poll(&n->child->base, cx);
        } catch (const boom &) {
        }
        return DIAG_PENDING;
    }
#endif
    if (n->child) diag_poll(&n->child->base, cx);
    switch (n->action) {
    case JUMP: longjmp(landing, 1);
#ifdef __cplusplus
    case THROW: throw boom(42);
#endif
    case RETURN_READY: return DIAG_READY;
    default: return DIAG_PENDING;
    }
}

/* A marked node; node_init(&n, "name", action, child). */
static void node_init(struct node *n, const char *name, int action, struct node *child)
{
    diag_future init = DIAG_FUTURE_INIT(node_poll);
    memset(n, 0, sizeof *n);
    n->base = init;
    n->action = action;
    n->child = child;
    DIAGNOSE_AS(&n->base, name);
}

/* Polls a fresh future named `name` `count` times (PENDING each time), then
   drops it: polls that come after the unwinding. */
static void poll_after(const char *name, int count)
{
    struct node after;
    node_init(&after, name, RETURN_PENDING, NULL);
    while (count-- > 0) diag_poll(&after.base, NULL);
    diag_drop(&after.base);
}

#ifdef __cplusplus
/* Polls n and catches the boom that comes out: its code, or 0 if none. */
static int poll_catching(struct node *n)
{
    try {
        diag_poll(&n->base, NULL);
    } catch (const boom &e) {
        return e.code;
    }
    return 0;
}
#endif

static unsigned depth_now(void)
{
#ifndef DIAGNOSE_DISABLE
    return diag__tls ? diag__tls->depth : 0;
#else
    return 0;
#endif
}

/* ---- reading results ------------------------------------------------------ */

static char prefix[300];

/* The polls file of a dump now is `want`. */
static void check_polls(const char *want)
{
    char *text;
    CHECK_EQ(diag_dump(prefix), 0);
    text = tt_readf("%s.polls.folded", prefix);
    CHECK(tt_folded_ok(text));
    CHECK_STR(text, want);
    free(text);
}

/* ---- longjmp ----------------------------------------------------------------- */

/* One level: the landing site drops the future whose poll the jump left. */
static void test_longjmp_one_level_then_drop(void)
{
    static struct node jumper;
    tt_row r;
    node_init(&jumper, "lj1_jumper", JUMP, NULL);
    jumper.spin_ns = 2 * MS;
    diag_reset();
    if (setjmp(landing) == 0) diag_poll(&jumper.base, NULL);
    CHECK_EQ(depth_now(), 1); /* the frame the jump left */
    diag_drop(&jumper.base);
    CHECK_EQ(depth_now(), 0);
    poll_after("lj1_after", 12);
    check_polls("lj1_after 12\nlj1_jumper 1\n");
    r = tt_row_of("lj1_jumper");
    CHECK_EQ(r.polls, 1);
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(r.done, 0);
    CHECK_EQ(r.pending, 0);
    CHECK_RANGE(r.busy, LO(2 * MS), HI(2 * MS) + 50 * MS); /* its spin, up to the drop */
}

/* Three levels, the innermost jumps out of all of them; the landing site
   drops the outermost. The middle and inner runs stay open (their futures
   could have lived on the stack the jump discarded) until dropped too. */
static void test_longjmp_three_levels_then_drop(void)
{
    static struct node outer, mid, inner;
    uint64_t t0, t1;
    tt_row r;
    node_init(&inner, "lj3_inner", JUMP, NULL);
    node_init(&mid, "lj3_mid", RETURN_PENDING, &inner);
    node_init(&outer, "lj3_outer", RETURN_PENDING, &mid);
    inner.spin_ns = 3 * MS;
    diag_reset();
    t0 = tt_now_ns();
    if (setjmp(landing) == 0) diag_poll(&outer.base, NULL);
    CHECK_EQ(depth_now(), 3);
    diag_drop(&outer.base);
    t1 = tt_now_ns();
    CHECK_EQ(depth_now(), 0);
    poll_after("lj3_after", 12);
    check_polls("lj3_after 12\nlj3_outer 1\nlj3_outer;lj3_mid 1\nlj3_outer;lj3_mid;lj3_inner 1\n");
    r = tt_row_of("lj3_outer");
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(r.pending, 0);
    r = tt_row_of("lj3_outer;lj3_mid;lj3_inner");
    CHECK_EQ(r.pending, 1);
    CHECK_EQ(r.drops, 0);
    CHECK_RANGE(r.busy, LO(3 * MS), HI(t1 - t0)); /* self busy: its spin up to the drop */
    r = tt_row_of("lj3_outer;lj3_mid");
    CHECK_RANGE(r.busy, 0, HI(t1 - t0) - LO(3 * MS)); /* the inner's time is not its own */
    diag_drop(&mid.base); /* no longer on the stack: an ordinary drop */
    diag_drop(&inner.base);
    CHECK_EQ(depth_now(), 0);
    r = tt_row_of("lj3_outer;lj3_mid;lj3_inner");
    CHECK_EQ(r.polls, 1);
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(r.pending, 0);
}

/* The jump lands inside the outer poll (setjmp there, as libpng-style
   error handling does); the outer poll then returns normally. Its end
   finds the frame the jump left above it, ends that one, and warns once
   on stderr (checked in a child: test_longjmp_warnings). */
static struct node lands_inner;

static diag_status lands_poll(diag_future *self, void *cx)
{
    struct node *n = (struct node *)self;
    n->polls++;
    if (setjmp(landing) == 0) diag_poll(&lands_inner.base, cx);
    return DIAG_PENDING;
}

static void poll_landing_inside(const char *outer_name, const char *inner_name)
{
    static struct node outer;
    diag_future init = DIAG_FUTURE_INIT(lands_poll);
    memset(&outer, 0, sizeof outer);
    outer.base = init;
    DIAGNOSE_AS(&outer.base, outer_name);
    node_init(&lands_inner, inner_name, JUMP, NULL);
    diag_poll(&outer.base, NULL);
    diag_poll(&outer.base, NULL);
    diag_drop(&outer.base);
    diag_drop(&lands_inner.base);
}

static void test_longjmp_landing_inside_a_poll(void)
{
    diag_reset();
    poll_landing_inside("lji_outer", "lji_inner");
    CHECK_EQ(depth_now(), 0);
    poll_after("lji_after", 12);
    check_polls("lji_after 12\nlji_outer 2\nlji_outer;lji_inner 2\n");
}

/* Neither drop nor a later end: the frames stay, later polls are counted
   under them, and exit says so in one line (in a child). */
static int child_longjmp_without_drop(void)
{
    static struct node outer, inner;
    node_init(&inner, "inner", JUMP, NULL);
    node_init(&outer, "outer", RETURN_PENDING, &inner);
    if (setjmp(landing) == 0) diag_poll(&outer.base, NULL);
    poll_after("after", 12);
    return 7;
}

static int child_longjmp_landing_inside(void)
{
    poll_landing_inside("outer", "inner");
    poll_landing_inside("outer", "inner"); /* the second time is not reported */
    return 0;
}

static const char *const child_env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", NULL };

static void test_longjmp_warnings(void)
{
    const char *dir = tt_tempdir();
    char *text;
    CHECK_EQ(tt_spawn(dir, "longjmp_without_drop", child_env), 7);
    text = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(text, "diagnose.h: 2 polls had not returned at exit on the exiting thread (exit inside a poll, "
                    "or a longjmp out of it without diag_drop)\n");
    free(text);
    text = tt_readf("%s/out.polls.folded", dir);
    /* what a missing drop costs: the open polls are never counted, and
       later polls on the thread are counted under them */
    CHECK_STR(text, "outer 0\nouter;inner 0\nouter;inner;after 12\n");
    free(text);

    dir = tt_tempdir();
    CHECK_EQ(tt_spawn(dir, "longjmp_landing_inside", child_env), 0);
    text = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(text, "diagnose.h: diag_span_end of outer found 1 poll above it never ended (left by a longjmp, or a coroutine switch without diag_fiber_switch?); "
                    "ended it now\n");
    free(text);
    text = tt_readf("%s/out.polls.folded", dir);
    CHECK_STR(text, "outer 4\nouter;inner 4\n");
    free(text);
}

/* ---- C++ exceptions ------------------------------------------------------- */
#ifdef __cplusplus

/* Thrown in one poll, caught by the caller of diag_poll: the poll is
   counted with its busy time, its run stays open and ends normally later. */
static void test_exception_one_level(void)
{
    static struct node thrower;
    tt_row r;
    node_init(&thrower, "ex1_thrower", THROW, NULL);
    thrower.spin_ns = 2 * MS;
    diag_reset();
    CHECK_EQ(poll_catching(&thrower), 42); /* the exception arrives unchanged */
    CHECK_EQ(depth_now(), 0);
    poll_after("ex1_after", 12);
    r = tt_row_of("ex1_thrower");
    CHECK_EQ(r.polls, 1);
    CHECK_EQ(r.pending, 1);
    CHECK_RANGE(r.busy, LO(2 * MS), HI(2 * MS) + 50 * MS);
    thrower.action = RETURN_READY;
    thrower.spin_ns = 0;
    CHECK_EQ(diag_poll(&thrower.base, NULL), DIAG_READY);
    check_polls("ex1_after 12\nex1_thrower 2\n");
    r = tt_row_of("ex1_thrower");
    CHECK_EQ(r.done, 1);
    CHECK_EQ(r.pending, 0);
    CHECK_EQ(r.drops, 0);
}

/* Through three levels, caught outside all of them: each level's poll
   ends as it unwinds, innermost first, and busy nests as for returns. */
static void test_exception_three_levels(void)
{
    static struct node outer, mid, inner;
    uint64_t t0, t1;
    int caught;
    tt_row r;
    node_init(&inner, "ex3_inner", THROW, NULL);
    node_init(&mid, "ex3_mid", RETURN_PENDING, &inner);
    node_init(&outer, "ex3_outer", RETURN_PENDING, &mid);
    inner.spin_ns = 3 * MS;
    diag_reset();
    t0 = tt_now_ns();
    caught = poll_catching(&outer);
    t1 = tt_now_ns();
    CHECK_EQ(caught, 42);
    CHECK_EQ(depth_now(), 0);
    poll_after("ex3_after", 12);
    check_polls("ex3_after 12\nex3_outer 1\nex3_outer;ex3_mid 1\nex3_outer;ex3_mid;ex3_inner 1\n");
    r = tt_row_of("ex3_outer;ex3_mid;ex3_inner");
    CHECK_EQ(r.pending, 1);
    CHECK_RANGE(r.busy, LO(3 * MS), HI(t1 - t0));
    r = tt_row_of("ex3_outer");
    CHECK_RANGE(r.busy, 0, HI(t1 - t0) - LO(3 * MS));
    diag_drop(&outer.base);
    diag_drop(&mid.base);
    diag_drop(&inner.base);
    r = tt_row_of("ex3_outer;ex3_mid");
    CHECK_EQ(r.drops, 1);
    CHECK_EQ(r.pending, 0);
}

/* Caught between the levels: the inner poll ends by the exception, the
   middle one catches it and returns; the outer one never sees it. */
static void test_exception_caught_inside(void)
{
    static struct node outer, mid, inner;
    node_init(&inner, "exc_inner", THROW, NULL);
    node_init(&mid, "exc_mid", CATCH_CHILD, &inner);
    node_init(&outer, "exc_outer", RETURN_READY, &mid);
    diag_reset();
    CHECK_EQ(diag_poll(&outer.base, NULL), DIAG_READY);
    CHECK_EQ(diag_poll(&outer.base, NULL), DIAG_READY);
    CHECK_EQ(depth_now(), 0);
    CHECK_EQ(mid.polls, 2);
    check_polls("exc_outer 2\nexc_outer;exc_mid 2\nexc_outer;exc_mid;exc_inner 2\n");
    CHECK_EQ(tt_row_of("exc_outer").done, 2);
    diag_drop(&mid.base);
    diag_drop(&inner.base);
}

/* Not caught: std::terminate, as without diagnose.h (abort: no files). */
static int child_uncaught(void)
{
    static struct node outer, inner;
    node_init(&inner, "inner", THROW, NULL);
    node_init(&outer, "outer", RETURN_PENDING, &inner);
    diag_poll(&outer.base, NULL);
    return 0;
}

static void test_exception_uncaught_terminates(void)
{
    const char *dir = tt_tempdir();
    char *text;
    CHECK_EQ(tt_spawn(dir, "uncaught", child_env), 128 + SIGABRT);
    text = tt_readf("%s/stderr.txt", dir);
    CHECK(text && strstr(text, "terminate") != NULL);
    CHECK(text && strstr(text, "diagnose.h") == NULL);
    free(text);
    text = tt_readf("%s/out.polls.folded", dir);
    CHECK(text == NULL);
    free(text);
}
#endif /* __cplusplus */

static const tt_child children[] = {
    { "longjmp_without_drop", child_longjmp_without_drop },
    { "longjmp_landing_inside", child_longjmp_landing_inside },
#ifdef __cplusplus
    { "uncaught", child_uncaught },
#endif
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    tt_quiet_exit_dump();
    snprintf(prefix, sizeof prefix, "%s/out", tt_tempdir());
    RUN(test_longjmp_one_level_then_drop);
    RUN(test_longjmp_three_levels_then_drop);
    RUN(test_longjmp_landing_inside_a_poll);
    RUN(test_longjmp_warnings);
#ifdef __cplusplus
    RUN(test_exception_one_level);
    RUN(test_exception_three_levels);
    RUN(test_exception_caught_inside);
    RUN(test_exception_uncaught_terminates);
#endif
    return test_summary();
}
