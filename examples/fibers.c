/* fibers.c - stackful coroutines: spans that stay open across a yield.

   A small server on ucontext coroutines. Each connection is a coroutine
   with a stack of its own. For each request it parses (CPU), sends a query
   to a backend and yields until the reply comes, reads the reply (CPU) and
   answers. The scheduler resumes a coroutine once its reply is there, each
   time inside the connection's task span, and calls diag_fiber_switch
   around the resume: that one call per switch is all a coroutine library
   needs. The spans inside the coroutine (request, query) stay open across
   its yields and count busy only while it runs; the scheduler's span keeps
   only its own time.

   Counts are exact: 3 connections of 2 requests, one resume to start and
   one per reply: conn 3 x 3 polls. A fourth connection's client goes away
   while its first query waits: the scheduler drops the coroutine
   (diag_fiber_drop ends its open spans as drops) and cancels its task.
   conn: 9 + 1 = 10 polls; conn;request and conn;request;query: 6 + 1.
   Each query waits REPLY_TICKS ticks; its busy is only the reading.

   Run: make build/examples/fibers && build/examples/fibers */
#define _XOPEN_SOURCE 700 /* ucontext */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#define CONNS 4
#define REQUESTS 2
#define GONE_CONN 3 /* its client goes away while its first query waits */
#define REPLY_TICKS 2
#define TICK_NS 1000000L
#define PARSE_NS 100000L
#define READ_NS 200000L
#define STACK_SIZE (64 * 1024)

struct conn {
    int id, done, reply_at, answered;
    ucontext_t context;
    diag_fiber fiber; /* the coroutine's open spans while it is switched out */
    diag_span task;   /* the scheduler's span around each resume */
    char *stack;
};

static ucontext_t scheduler;
static struct conn *running;
static int tick;

static void spin_ns(long ns) /* stands for CPU work */
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < ns);
}

/* Sends a query and yields until its reply is there. */
static void await_reply(struct conn *c)
{
    c->reply_at = tick + REPLY_TICKS;
    swapcontext(&c->context, &scheduler);
}

static void serve(void)
{
    struct conn *c = running;
    int r;
    for (r = 0; r < REQUESTS; r++) {
        diag_span request = DIAG_SPAN_INIT("request"), query = DIAG_SPAN_INIT("query");
        diag_span_begin(&request);
        spin_ns(PARSE_NS);
        diag_span_begin(&query);
        await_reply(c); /* query stays open while the coroutine waits */
        spin_ns(READ_NS);
        diag_span_end(&query, DIAG_READY);
        diag_span_end(&request, DIAG_READY);
        c->answered++;
    }
    c->done = 1;
}

/* One resume of c, inside its task span: the one place that switches. */
static void resume(struct conn *c)
{
    running = c;
    diag_span_begin(&c->task);
    diag_fiber_switch(&c->fiber);
    swapcontext(&scheduler, &c->context);
    diag_fiber_switch(NULL);
    diag_span_end(&c->task, c->done ? DIAG_READY : DIAG_PENDING);
}

static void start(struct conn *c, int id)
{
    c->id = id;
    c->stack = (char *)malloc(STACK_SIZE);
    getcontext(&c->context);
    c->context.uc_stack.ss_sp = c->stack;
    c->context.uc_stack.ss_size = STACK_SIZE;
    c->context.uc_link = &scheduler;
    makecontext(&c->context, serve, 0);
    diag_span_init(&c->task, "conn");
}

/* The client went away: the coroutine is destroyed while it waits. */
static void close_conn(struct conn *c)
{
    diag_fiber_drop(&c->fiber);
    diag_span_cancel(&c->task);
    c->done = 1;
    printf("tick %d: conn %d closed by its client\n", tick, c->id);
}

int main(void)
{
    static struct conn conns[CONNS];
    struct timespec pause = { 0, TICK_NS };
    int i, live = CONNS;
    for (i = 0; i < CONNS; i++) start(&conns[i], i);
    for (tick = 0; live > 0; tick++) {
        for (i = 0; i < CONNS; i++) {
            struct conn *c = &conns[i];
            if (c->done || (tick > 0 && tick < c->reply_at)) continue;
            if (i == GONE_CONN && tick > 0) close_conn(c);
            else resume(c);
            if (c->done) {
                live--;
                if (c->answered) printf("tick %d: conn %d answered %d requests\n", tick, c->id, c->answered);
            }
        }
        nanosleep(&pause, NULL); /* waiting for the backend */
    }
    for (i = 0; i < CONNS; i++) free(conns[i].stack);
    return 0;
}
