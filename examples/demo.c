/* demo.c - two ways to build the same bytes, profiled with diagnose.h.

   A small single-threaded executor runs two tasks:

     main     builds the same output twice, one child after the other
              (like `extend().await; concat().await;`):
       extend   appends CHUNKS chunks to a byte buffer that doubles its
                capacity when full (amortised growth: each byte is copied
                about twice in total);
       concat   appends the same chunks by string concatenation: a new
                string of old + chunk is allocated, both are copied in, the
                old one is freed (every byte is copied again at every step:
                quadratic);
              each child yields (returns DIAG_PENDING) after every chunk,
              as a well-behaved task does, so other tasks get to run;
     ticker   wakes every TICK_US microseconds on a timer and does a little
              bookkeeping, TICKS times. It runs between main's polls, so
              main's wall time is longer than its busy time.

   Run it with `make demo`: the result line goes to stdout, the library's
   summary table to stderr at exit, and diagnose.{polls,busy,wall}.folded
   to the working directory. Poll counts are exact and follow from the
   constants below: extend CHUNKS, concat CHUNKS, main 2*CHUNKS-1 (the poll
   in which extend finishes goes straight on to concat's first poll),
   ticker TICKS. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep under -std=c99 */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    CHUNK = 256,       /* bytes appended per poll */
    CHUNKS = 2048,     /* polls of each child: 512 KiB built each way */
    TICKS = 250,       /* polls of the ticker: it lives 0.5 s */
    TICK_US = 2000,    /* its period */
    TICK_WORK = 96 * 1024, /* bytes it checksums per tick */
    MAX_TASKS = 4
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        fputs("demo: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the executor: a run queue of tasks and one timer per task ---------- */

struct task {
    diag_future *future;
    uint64_t wake_at; /* ns; 0: no timer set */
    int queued, done;
};

struct executor {
    struct task tasks[MAX_TASKS];
    size_t ntasks, live;
    struct task *queue[MAX_TASKS]; /* ring; a task is in it at most once */
    size_t head, len;
};

/* What a poll function receives as cx: how to ask to be polled again. */
struct context {
    struct executor *ex;
    struct task *task;
};

static void push(struct executor *ex, struct task *t)
{
    if (t->queued) return;
    t->queued = 1;
    ex->queue[(ex->head + ex->len++) % MAX_TASKS] = t;
}

static struct task *pop(struct executor *ex)
{
    struct task *t = ex->queue[ex->head];
    ex->head = (ex->head + 1) % MAX_TASKS;
    ex->len--;
    t->queued = 0;
    return t;
}

/* The future is ready to make progress: poll it again soon. */
static void wake(void *cx)
{
    struct context *c = (struct context *)cx;
    push(c->ex, c->task);
}

/* Poll the future again once the clock reaches deadline (ns). */
static void wake_at(void *cx, uint64_t deadline)
{
    ((struct context *)cx)->task->wake_at = deadline;
}

static void spawn(struct executor *ex, diag_future *f)
{
    struct task *t = &ex->tasks[ex->ntasks++];
    t->future = f;
    ex->live++;
    push(ex, t);
}

/* Queues the tasks whose timer has expired; returns the earliest pending
   deadline, or 0 when no timer is set. */
static uint64_t fire_timers(struct executor *ex, uint64_t now)
{
    uint64_t next = 0;
    size_t i;
    for (i = 0; i < ex->ntasks; i++) {
        struct task *t = &ex->tasks[i];
        if (t->wake_at == 0) continue;
        if (t->wake_at <= now) {
            t->wake_at = 0;
            push(ex, t);
        } else if (next == 0 || t->wake_at < next) {
            next = t->wake_at;
        }
    }
    return next;
}

static void run(struct executor *ex)
{
    while (ex->live > 0) {
        uint64_t next = fire_timers(ex, now_ns());
        struct context cx;
        if (ex->len == 0) { /* nothing runnable: sleep until the next timer */
            uint64_t wait = next - now_ns();
            struct timespec ts;
            if (next == 0) break; /* a task waits for nothing: would hang */
            if (next > now_ns()) {
                ts.tv_sec = (time_t)(wait / 1000000000u);
                ts.tv_nsec = (long)(wait % 1000000000u);
                nanosleep(&ts, NULL);
            }
            continue;
        }
        cx.ex = ex;
        cx.task = pop(ex);
        if (diag_poll(cx.task->future, &cx) == DIAG_READY) {
            cx.task->done = 1;
            ex->live--;
        }
    }
}

/* ---- the work: the same chunks, appended two ways ---------------------- */

/* Chunk i: printable bytes that differ from chunk to chunk. */
static void make_chunk(char *out, int i)
{
    int k;
    for (k = 0; k < CHUNK - 1; k++) out[k] = (char)('a' + (i + k) % 26);
    out[CHUNK - 1] = '\n';
}

/* extend: a byte buffer with amortised (doubling) growth. */
struct extend {
    diag_future base;
    char *data;
    size_t len, cap;
    int chunks;
};

static diag_status extend_poll(diag_future *self, void *cx)
{
    struct extend *e = (struct extend *)self;
    char chunk[CHUNK];
    make_chunk(chunk, e->chunks);
    if (e->len + CHUNK > e->cap) {
        char *grown;
        e->cap = e->cap ? 2 * e->cap : (size_t)CHUNK;
        grown = (char *)realloc(e->data, e->cap);
        if (grown == NULL) {
            fputs("demo: out of memory\n", stderr);
            exit(1);
        }
        e->data = grown;
    }
    memcpy(e->data + e->len, chunk, CHUNK);
    e->len += CHUNK;
    if (++e->chunks == CHUNKS) return DIAG_READY;
    wake(cx); /* yield: let the other tasks run before the next chunk */
    return DIAG_PENDING;
}

/* concat: s = s + chunk, as a fresh allocation every time. */
struct concat {
    diag_future base;
    char *s;
    size_t len;
    int chunks;
};

static diag_status concat_poll(diag_future *self, void *cx)
{
    struct concat *c = (struct concat *)self;
    char chunk[CHUNK];
    char *joined = (char *)xmalloc(c->len + CHUNK + 1);
    make_chunk(chunk, c->chunks);
    if (c->len) memcpy(joined, c->s, c->len);
    memcpy(joined + c->len, chunk, CHUNK);
    joined[c->len + CHUNK] = '\0';
    free(c->s);
    c->s = joined;
    c->len += CHUNK;
    if (++c->chunks == CHUNKS) return DIAG_READY;
    wake(cx);
    return DIAG_PENDING;
}

/* main: extend to the end, then concat to the end. */
struct main_task {
    diag_future base;
    struct extend extend;
    struct concat concat;
    diag_future *children[2];
    int step;
};

static diag_status main_poll(diag_future *self, void *cx)
{
    struct main_task *m = (struct main_task *)self;
    while (m->step < 2) {
        if (diag_poll(m->children[m->step], cx) == DIAG_PENDING) return DIAG_PENDING;
        m->step++; /* that child is done: go straight on to the next one */
    }
    return DIAG_READY;
}

/* ticker: periodic bookkeeping, here a checksum over a table. */
struct ticker {
    diag_future base;
    unsigned char table[TICK_WORK];
    uint64_t next, sum;
    int ticks;
};

static diag_status ticker_poll(diag_future *self, void *cx)
{
    struct ticker *t = (struct ticker *)self;
    size_t i;
    for (i = 0; i < sizeof t->table; i++) t->sum = (t->sum ^ t->table[i]) * 1099511628211u;
    t->table[t->ticks % TICK_WORK] = (unsigned char)t->sum;
    if (++t->ticks == TICKS) return DIAG_READY;
    t->next = (t->next ? t->next : now_ns()) + TICK_US * 1000u;
    wake_at(cx, t->next);
    return DIAG_PENDING;
}

int main(void)
{
    static struct main_task m;
    static struct ticker tick;
    static struct executor ex;
    diag_future init_main = DIAG_FUTURE_INIT(main_poll);
    diag_future init_extend = DIAG_FUTURE_INIT(extend_poll);
    diag_future init_concat = DIAG_FUTURE_INIT(concat_poll);
    diag_future init_ticker = DIAG_FUTURE_INIT(ticker_poll);
    m.base = init_main;
    m.extend.base = init_extend;
    m.concat.base = init_concat;
    tick.base = init_ticker;
    m.children[0] = DIAGNOSE_AS(&m.extend.base, "extend");
    m.children[1] = DIAGNOSE_AS(&m.concat.base, "concat");

    spawn(&ex, DIAGNOSE_AS(&m.base, "main"));
    spawn(&ex, DIAGNOSE_AS(&tick.base, "ticker"));
    run(&ex);

    if (m.extend.len != m.concat.len || memcmp(m.extend.data, m.concat.s, m.concat.len) != 0) {
        fputs("demo: extend and concat built different bytes\n", stderr);
        return 1;
    }
    printf("demo: built %lu bytes twice (%d chunks of %d): extend and concat agree; ticker ticked %d times\n",
           (unsigned long)m.extend.len, CHUNKS, CHUNK, tick.ticks);
    fflush(stdout); /* before the table, which goes to stderr at exit */
    free(m.extend.data);
    free(m.concat.s);
    return 0;
}
