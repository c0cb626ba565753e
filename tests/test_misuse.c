/* Misuse has a defined result, as the header's doc block says: NULL futures
   and NULL poll functions, dropping a future that is not in a run, marking
   twice, a future that polls itself, span_end without its begin. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#ifdef DIAGNOSE_DISABLE
/* These tests read the implementation's internals: nothing to build. */
TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(void) { return 0; }
#else
struct counter { diag_future base; int n, ready_at, self_depth; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    (void)cx;
    return ++c->n == c->ready_at ? DIAG_READY : DIAG_PENDING;
}


static const diag__row *row_of(const diag__snapshot *snap, const char *stack)
{
    size_t i;
    for (i = 0; i < snap->count; i++)
        if (strcmp(snap->rows[i].stack, stack) == 0) return &snap->rows[i];
    return NULL;
}

static int child_null_polls(void)
{
    diag_future nofn = DIAG_FUTURE_INIT(NULL);
    int ready = 0, i;
    DIAGNOSE_AS(&nofn, "no_poll_fn");
    for (i = 0; i < 3; i++) ready += diag_poll(NULL, NULL) == DIAG_READY;
    for (i = 0; i < 2; i++) ready += diag_poll(&nofn, NULL) == DIAG_READY;
    diag_drop(NULL);
    diag_wake(NULL);
    return ready; /* 5: every call said READY */
}

static const tt_child children[] = { { "null_polls", child_null_polls } };

/* diag_poll(NULL) and a NULL poll function return DIAG_READY without a
   call; one line on stderr, once; nothing counted. */
static void test_null_future_and_null_poll_fn(void)
{
    const char *dir = tt_tempdir();
    const char *env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", NULL };
    char *err, *polls;
    CHECK_EQ(tt_spawn(dir, "null_polls", env), 5);
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, "diagnose.h: diag_poll of a NULL future or NULL poll function; returned DIAG_READY\n");
    polls = tt_readf("%s/out.polls.folded", dir);
    CHECK_STR(polls, "");
    free(err);
    free(polls);
}

/* diag_drop of a future never polled, or already READY: no effect. */
static void test_drop_outside_a_run(void)
{
    struct counter never = { DIAG_FUTURE_INIT(counter_poll), 0, 1, 0 };
    struct counter done = { DIAG_FUTURE_INIT(counter_poll), 0, 2, 0 };
    struct counter live = { DIAG_FUTURE_INIT(counter_poll), 0, 5, 0 };
    diag__snapshot snap;
    const diag__row *r;
    DIAGNOSE_AS(&never.base, "never_polled");
    DIAGNOSE_AS(&done.base, "finished");
    DIAGNOSE_AS(&live.base, "dropped_live");
    diag_drop(&never.base);
    while (diag_poll(&done.base, NULL) == DIAG_PENDING) {
    }
    diag_drop(&done.base);
    diag_drop(&done.base);
    diag_poll(&live.base, NULL);
    diag_drop(&live.base);
    diag_drop(&live.base); /* the second drop: no longer in a run */
    CHECK(diag__snapshot_take(&snap) == 0);
    CHECK(row_of(&snap, "never_polled") == NULL);
    r = row_of(&snap, "finished");
    CHECK(r != NULL && r->polls == 2 && r->drops == 0 && r->done == 1);
    r = row_of(&snap, "dropped_live");
    CHECK(r != NULL && r->polls == 1 && r->drops == 1 && r->done == 0);
    diag__snapshot_free(&snap);
}

/* Marking twice: a run keeps the name it started with; the next run takes
   the new one. Marking again with the same name changes nothing. */
static void test_mark_twice(void)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0, 2, 0 };
    char *polls;
    DIAGNOSE_AS(&c.base, "mark_a");
    DIAGNOSE_AS(&c.base, "mark_a");
    diag_poll(&c.base, NULL);
    DIAGNOSE_AS(&c.base, "mark_b"); /* during the run */
    diag_poll(&c.base, NULL);       /* READY */
    c.n = 0;
    diag_poll(&c.base, NULL);
    polls = tt_dumped("polls");
    CHECK_EQ(tt_value(polls, "mark_a"), 2);
    CHECK_EQ(tt_value(polls, "mark_b"), 1);
    free(polls);
}

/* A future whose poll polls itself (3 levels): each poll counts once in the
   run's own path; the run ends at the first READY. */
static diag_status self_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    if (c->self_depth++ < 3) diag_poll(self, cx);
    return DIAG_READY;
}

static void test_future_polls_itself(void)
{
    struct counter c = { DIAG_FUTURE_INIT(self_poll), 0, 0, 0 };
    diag__snapshot snap;
    const diag__row *r;
    DIAGNOSE_AS(&c.base, "self_recursive");
    CHECK_EQ(diag_poll(&c.base, NULL), DIAG_READY);
    CHECK_EQ(c.base.span.path, 0); /* not in a run any more */
    CHECK(diag__snapshot_take(&snap) == 0);
    r = row_of(&snap, "self_recursive");
    CHECK(r != NULL && r->polls == 4 && r->done == 1);
    CHECK(r != NULL && r->busy <= r->poll_time);
    diag__snapshot_free(&snap);
}

/* span_end without its begin counts nothing and leaves the thread's stack
   as it was; the next begin/end pair is measured normally. */
static void test_span_end_without_begin(void)
{
    diag_span s = DIAG_SPAN_INIT("unbegun");
    diag_span t = DIAG_SPAN_INIT("after");
    uint32_t depth;
    char *polls;
    diag_span_begin(&t);
    diag_span_end(&t, DIAG_READY);
    depth = diag__tls->depth;
    diag_span_end(&s, DIAG_READY);
    diag_span_end(&s, DIAG_PENDING);
    CHECK_EQ(diag__tls->depth, depth);
    diag_span_begin(&t);
    diag_span_end(&t, DIAG_READY);
    diag_span_cancel(&s);
    polls = tt_dumped("polls");
    CHECK_EQ(tt_value(polls, "unbegun"), -1);
    CHECK_EQ(tt_value(polls, "after"), 2);
    free(polls);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    RUN(test_null_future_and_null_poll_fn);
    RUN(test_drop_outside_a_run);
    RUN(test_mark_twice);
    RUN(test_future_polls_itself);
    RUN(test_span_end_without_begin);
    return test_summary();
}
#endif
