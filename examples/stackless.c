/* stackless.c - diagnosing stackless async functions written in the
   Duff's-device style (the style of protothreads and async.h).

   An async function keeps its resume point in a small struct and is called
   again and again; each call runs to the next wait and says "pending" or
   "done". Here the struct belongs to the async macros, as it would to a
   third-party header, so it has no room for a diag_span. diagnose.h keeps
   one for it, keyed by the task's address: wrap each call in
   DIAG_CALL_AT(&task, "name", call, ASYNC_DONE). A call is a poll; the
   run ends when the call says done and the span is released; a task that
   is abandoned is dropped with diag_drop_at(&task).

   The program: four fetches run at once, one function, four tasks. A
   fetch waits for its reply, then awaits a parse of it (3 chunks of 50 us,
   one per call), which nests under it: fetch;parse. Replies arrive at
   ticks 2, 4 and 6; the fourth never comes and the fetch is abandoned at
   tick 10. One call of each live fetch per tick of 500 us, so the counts
   are exact:
     fetch         ticks 0..r+2 for replies r = 2, 4, 6: 5 + 7 + 9 polls,
                   and ticks 0..9 for the abandoned one: 10; 31 polls,
                   3 runs done, 1 dropped
     fetch;parse   3 polls for each of the 3 replies: 9

   Run: make build/examples/stackless && build/examples/stackless */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdio.h>
#include <time.h>

/* ---- the async macros: a resume point, kept as a line number ---- */

typedef enum { ASYNC_PENDING, ASYNC_DONE } async;

struct async_state {
    int resume; /* 0: start; otherwise the line to go on from */
};

#define ASYNC_BEGIN(st) switch ((st)->resume) { case 0:
/* Returns pending until cond holds; the next call resumes at the test. The
   case label is inside if (0) so that no statement falls through into it. */
#define ASYNC_WAIT_UNTIL(st, cond)      \
    do {                                \
        (st)->resume = __LINE__;        \
        if (0) {                        \
        case __LINE__:;                 \
        }                               \
        if (!(cond)) return ASYNC_PENDING; \
    } while (0)
#define ASYNC_YIELD(st)                 \
    do {                                \
        (st)->resume = __LINE__;        \
        return ASYNC_PENDING;           \
    case __LINE__:;                     \
    } while (0)
/* Calls another async function once per call of this one until it is done. */
#define ASYNC_AWAIT(st, call) ASYNC_WAIT_UNTIL(st, (call) == ASYNC_DONE)
#define ASYNC_END(st) } (st)->resume = 0; return ASYNC_DONE

/* ---- the program: four fetches and their parses ---- */

#define TICK_NS 500000L
#define CHUNKS 3
#define GIVE_UP_TICK 10

static int tick;

static void spin_ns(long ns) /* stands for the CPU work of parsing a chunk */
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < ns);
}

struct parse {
    struct async_state st;
    int chunks;
};

static async parse(struct parse *p)
{
    ASYNC_BEGIN(&p->st);
    for (p->chunks = 0;;) {
        spin_ns(50000);
        if (++p->chunks == CHUNKS) break;
        ASYNC_YIELD(&p->st);
    }
    ASYNC_END(&p->st);
}

struct fetch {
    struct async_state st;
    int id, reply_tick;
    struct parse parse;
};

static async fetch(struct fetch *f)
{
    ASYNC_BEGIN(&f->st);
    ASYNC_WAIT_UNTIL(&f->st, tick >= f->reply_tick);
    f->parse.st.resume = 0;
    ASYNC_AWAIT(&f->st, DIAG_CALL_AT(&f->parse, "parse", parse(&f->parse), ASYNC_DONE));
    printf("tick %2d: fetch %d parsed %d chunks\n", tick, f->id, f->parse.chunks);
    ASYNC_END(&f->st);
}

int main(void)
{
    static struct fetch fetches[4] = { { { 0 }, 0, 2, { { 0 }, 0 } }, { { 0 }, 1, 4, { { 0 }, 0 } },
                                       { { 0 }, 2, 6, { { 0 }, 0 } }, { { 0 }, 3, 1000, { { 0 }, 0 } } };
    struct timespec pause = { 0, TICK_NS };
    int live = 4, done[4] = { 0, 0, 0, 0 }, i;
    for (tick = 0; live > 0; tick++) {
        for (i = 0; i < 4; i++) {
            struct fetch *f = &fetches[i];
            if (done[i]) continue;
            if (tick == GIVE_UP_TICK) { /* no reply by now: abandon it */
                diag_drop_at(f);
                printf("tick %2d: fetch %d abandoned\n", tick, f->id);
                done[i] = 1;
                live--;
            } else if (DIAG_CALL_AT(f, "fetch", fetch(f), ASYNC_DONE) == ASYNC_DONE) {
                done[i] = 1;
                live--;
            }
        }
        nanosleep(&pause, NULL);
    }
    printf("done after %d ticks\n", tick);
    return 0;
}
