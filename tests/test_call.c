/* Call-style async: DIAG_CALL (one call is one poll of a span, the run ends
   when the call says done), diag_span_at / DIAG_CALL_AT (a span kept by the
   task's address, released when its run ends) and diag_drop_at. Compiled
   out (DIAGNOSE_DISABLE) the same code builds, and calls run as before. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>

/* A task in the call style: each call does one step; the third says done. */
enum { STEP_WAIT, STEP_DONE };
struct stepper { int calls, steps; };

static int step(struct stepper *t)
{
    t->calls++;
    return ++t->steps % 3 == 0 ? STEP_DONE : STEP_WAIT;
}

static char step_char(struct stepper *t) { return (char)('a' + step(t)); }

static int span_evaluations;
static diag_span counted_span = DIAG_SPAN_INIT("counted");
static diag_span *next_span(void)
{
    span_evaluations++;
    return &counted_span;
}

static int task_evaluations;
static struct stepper tasks[4];
static struct stepper *next_task(int i)
{
    task_evaluations++;
    return &tasks[i];
}

/* ---- reading the profile ---------------------------------------------------- */

/* Spans held by the diag_span_at table now. */
static unsigned table_count(void)
{
#ifndef DIAGNOSE_DISABLE
    return diag__rt->at->count;
#else
    return 0;
#endif
}

#ifndef DIAGNOSE_DISABLE
#define MEASURED 1
#else
#define MEASURED 0
#endif

/* ---- tests -------------------------------------------------------------------- */

/* Six calls, two runs of three: each call a poll, the third ends the run;
   the value is the call's; the span and the call are evaluated once each. */
static void test_call_is_one_poll(void)
{
    struct stepper t = { 0, 0 };
    tt_row r;
    int k, results[6];
    diag_reset();
    span_evaluations = 0;
    for (k = 0; k < 6; k++) results[k] = DIAG_CALL(next_span(), step(&t), STEP_DONE);
    CHECK_EQ(t.calls, 6);
    CHECK_EQ(span_evaluations, 6);
    CHECK(results[0] == STEP_WAIT && results[1] == STEP_WAIT && results[2] == STEP_DONE);
    CHECK(results[3] == STEP_WAIT && results[4] == STEP_WAIT && results[5] == STEP_DONE);
    r = tt_row_of("counted");
    CHECK_EQ(r.polls, MEASURED * 6);
    CHECK_EQ(r.done, MEASURED * 2);
    CHECK_EQ(r.pending, 0);
    /* one more call: a run open, still pending */
    CHECK_EQ(DIAG_CALL(&counted_span, step(&t), STEP_DONE), STEP_WAIT);
    CHECK_EQ(tt_row_of("counted").pending, MEASURED * 1);
    diag_span_cancel(&counted_span);
}

/* The expression keeps the call's type, and works in a condition. */
static void test_call_keeps_type_and_is_an_expression(void)
{
    diag_span s = DIAG_SPAN_INIT("typed");
    struct stepper t = { 0, 0 };
    char c = DIAG_CALL(&s, step_char(&t), 'a' + STEP_DONE);
    int loops = 0;
    CHECK_EQ(sizeof(DIAG_CALL(&s, step_char(&t), 'b')), sizeof(char));
    CHECK_EQ(c, 'a');
    while (DIAG_CALL(&s, step(&t), STEP_DONE) != STEP_DONE) loops++;
    CHECK_EQ(loops, 1); /* steps 2 and 3 */
    CHECK_EQ(t.calls, 3);
}

/* A DIAG_CALL inside the call of another: the inner path nests. */
static int outer_step(struct stepper *t)
{
    static diag_span inner = DIAG_SPAN_INIT("inner");
    struct stepper *child = &tasks[3];
    DIAG_CALL(&inner, step(child), STEP_DONE);
    return step(t);
}

static void test_nested_calls(void)
{
    diag_span outer = DIAG_SPAN_INIT("outer");
    struct stepper t = { 0, 0 };
    int k;
    diag_reset();
    memset(&tasks[3], 0, sizeof tasks[3]);
    for (k = 0; k < 3; k++) DIAG_CALL(&outer, DIAG_CALL(&outer, outer_step(&t), 99) + 0, STEP_DONE);
    /* the outer span polls itself: every nested poll counts in its path */
    CHECK_EQ(tt_row_of("outer").polls, MEASURED * 6);
    CHECK_EQ(tt_row_of("outer;inner").polls, MEASURED * 3);
    CHECK_EQ(tt_row_of("outer;inner").done, MEASURED * 1);
    CHECK_EQ(tasks[3].calls, 3);
}

/* DIAG_CALL_AT: four tasks of one name, live at once, each its own run;
   arguments evaluated once; every span released when its run ends. */
static void test_call_at_keys_by_address(void)
{
    int k, i, done = 0;
    diag_reset();
    memset(tasks, 0, sizeof tasks);
    task_evaluations = 0;
    for (k = 0; k < 3; k++)
        for (i = 0; i < 4; i++) done += DIAG_CALL_AT(next_task(i), "task", step(&tasks[i]), STEP_DONE) == STEP_DONE;
    CHECK_EQ(done, 4);
    CHECK_EQ(task_evaluations, 12);
    CHECK_EQ(tt_row_of("task").polls, MEASURED * 12);
    CHECK_EQ(tt_row_of("task").done, MEASURED * 4); /* a shared span would have ended one run, 3 times */
    CHECK_EQ(table_count(), 0);
    /* the same address again: a new run with a fresh span */
    for (k = 0; k < 2; k++) DIAG_CALL_AT(&tasks[0], "task", step(&tasks[0]), STEP_DONE);
    CHECK_EQ(table_count(), MEASURED * 1);
    CHECK(diag_span_at(&tasks[0], "task") == diag_span_at(&tasks[0], "other name"));
    CHECK_EQ(tt_row_of("task").pending, MEASURED * 1);
    DIAG_CALL_AT(&tasks[0], "task", step(&tasks[0]), STEP_DONE);
    CHECK_EQ(tt_row_of("task").done, MEASURED * 5);
    CHECK_EQ(table_count(), 0);
}

/* diag_drop_at: an abandoned task is a drop, and its span leaves the
   table; a task never seen is ignored; a NULL task is not measured. */
static void test_drop_at(void)
{
    struct stepper t = { 0, 0 };
    diag_reset();
    DIAG_CALL_AT(&t, "abandoned", step(&t), STEP_DONE);
    CHECK_EQ(table_count(), MEASURED * 1);
    diag_drop_at(&t);
    diag_drop_at(&t);
    diag_drop_at(&span_evaluations);
    CHECK_EQ(table_count(), 0);
    CHECK_EQ(tt_row_of("abandoned").drops, MEASURED * 1);
    CHECK_EQ(tt_row_of("abandoned").pending, 0);
    CHECK_EQ(DIAG_CALL_AT(NULL, "nothing", step(&t), STEP_DONE), STEP_WAIT);
    CHECK_EQ(t.calls, 2);
    CHECK(tt_row_of("nothing").stack == NULL);
}

/* 20,000 tasks live at once (the table grows), finished in a scrambled
   order (entries move back on deletion): each keeps its own span while it
   lives, all are counted, and the table ends empty. */
static void test_many_tasks(void)
{
    enum { N = 20000 };
    static struct stepper many[N];
    static diag_span *seen[N];
    unsigned i, distinct = 1, same = 0;
    int k;
    diag_reset();
    memset(many, 0, sizeof many);
    for (k = 0; k < 2; k++)
        for (i = 0; i < N; i++) DIAG_CALL_AT(&many[i], "many", step(&many[i]), STEP_DONE);
    CHECK_EQ(table_count(), MEASURED * N);
    for (i = 0; i < N; i++) seen[i] = diag_span_at(&many[i], "many");
    for (i = 1; i < N; i++) distinct += seen[i] != seen[i - 1];
    CHECK_EQ(distinct, MEASURED ? N : 1);
    for (i = 0; i < N; i++) { /* 7919 is prime to N: every task once */
        unsigned j = (i * 7919u) % N;
        same += diag_span_at(&many[j], "many") == seen[j];
        DIAG_CALL_AT(&many[j], "many", step(&many[j]), STEP_DONE);
    }
    CHECK_EQ(same, N);
    CHECK_EQ(table_count(), 0);
    CHECK_EQ(tt_row_of("many").polls, MEASURED * 3 * N);
    CHECK_EQ(tt_row_of("many").done, MEASURED * N);
}

/* Two threads, each with its own 500 tasks, at the same time: exact. */
static void *call_many(void *arg)
{
    static struct stepper per_thread[2][500];
    struct stepper *mine = per_thread[(intptr_t)arg];
    int k, i;
    for (k = 0; k < 3 * 20; k++) /* 20 runs of each task */
        for (i = 0; i < 500; i++) DIAG_CALL_AT(&mine[i], "threaded", step(&mine[i]), STEP_DONE);
    return NULL;
}

static void test_threads(void)
{
    pthread_t a, b;
    diag_reset();
    pthread_create(&a, NULL, call_many, (void *)(intptr_t)0);
    pthread_create(&b, NULL, call_many, (void *)(intptr_t)1);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK_EQ(tt_row_of("threaded").polls, MEASURED * 2 * 500 * 60);
    CHECK_EQ(tt_row_of("threaded").done, MEASURED * 2 * 500 * 20);
    CHECK_EQ(table_count(), 0);
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(void)
{
    RUN(test_call_is_one_poll);
    RUN(test_call_keeps_type_and_is_an_expression);
    RUN(test_nested_calls);
    RUN(test_call_at_keys_by_address);
    RUN(test_drop_at);
    RUN(test_many_tasks);
    RUN(test_threads);
    return test_summary();
}
