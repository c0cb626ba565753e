/* join_select.c - hand-written state-machine futures with a join and a select.

   The shape of most async C code: each operation is a struct with a state
   and a poll function, and combinators poll their children.
     join(a, b)    polls both until both are ready;
     select(a, b)  polls both until one is ready, then drops the other
                   (diag_drop): the loser's run ends there and counts as a
                   drop in the table.
   Every request joins a user fetch with an orders fetch, then races a cache
   against the database. Even requests hit the cache (it wins, the database
   is dropped); odd requests miss it (the database wins, the cache is
   dropped). A small executor polls every unfinished request once per tick
   and then sleeps, as if waiting for I/O. Leaves become ready after a fixed
   number of polls, so the poll counts are exact:

       request;join;user      3 polls a request     request         6 or 7
       request;join;orders    5                     request;join    5
       request;select;cache   2 (hit) or 3 (miss)   request;select  2 or 3
       request;select;db      1 (dropped) or 3

   Run: make build/examples/join_select && build/examples/join_select
   The table on stderr shows the drops; the folded files are written to
   DIAGNOSE_OUT (default ./diagnose.*.folded). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdio.h>
#include <time.h>

#define REQUESTS 8
#define TICK_NS 200000L /* the executor's sleep between ticks */

static void spin_ns(long ns) /* stands for the CPU work of a poll */
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < ns);
}

/* ---- a leaf: an I/O operation that answers on its latency-th poll ---- */

struct io {
    diag_future base;
    int polls, latency;
    long cost_ns; /* CPU per poll: building the query, parsing the answer */
};

static diag_status io_poll(diag_future *self, void *cx)
{
    struct io *io = (struct io *)self;
    (void)cx;
    spin_ns(io->cost_ns);
    return ++io->polls == io->latency ? DIAG_READY : DIAG_PENDING;
}

static diag_future *io_init(struct io *io, const char *name, int latency, long cost_ns)
{
    static const diag_future blank = DIAG_FUTURE_INIT(io_poll);
    io->base = blank;
    io->polls = 0;
    io->latency = latency;
    io->cost_ns = cost_ns;
    return DIAGNOSE_AS(&io->base, name);
}

/* ---- join: ready when both children are; a ready child is not polled again ---- */

struct join {
    diag_future base;
    diag_future *a, *b;
    int a_done, b_done;
};

static diag_status join_poll(diag_future *self, void *cx)
{
    struct join *j = (struct join *)self;
    if (!j->a_done) j->a_done = diag_poll(j->a, cx) == DIAG_READY;
    if (!j->b_done) j->b_done = diag_poll(j->b, cx) == DIAG_READY;
    return j->a_done && j->b_done ? DIAG_READY : DIAG_PENDING;
}

static diag_future *join_init(struct join *j, diag_future *a, diag_future *b)
{
    static const diag_future blank = DIAG_FUTURE_INIT(join_poll);
    j->base = blank;
    j->a = a;
    j->b = b;
    j->a_done = j->b_done = 0;
    return DIAGNOSE_AS(&j->base, "join");
}

/* ---- select: the first child ready wins; the other is dropped ---- */

struct select {
    diag_future base;
    diag_future *a, *b;
    int winner; /* 0: a, 1: b */
};

static diag_status select_poll(diag_future *self, void *cx)
{
    struct select *s = (struct select *)self;
    if (diag_poll(s->a, cx) == DIAG_READY) {
        s->winner = 0;
        diag_drop(s->b); /* a real select would also release b's resources here */
        return DIAG_READY;
    }
    if (diag_poll(s->b, cx) == DIAG_READY) {
        s->winner = 1;
        diag_drop(s->a);
        return DIAG_READY;
    }
    return DIAG_PENDING;
}

static diag_future *select_init(struct select *s, diag_future *a, diag_future *b)
{
    static const diag_future blank = DIAG_FUTURE_INIT(select_poll);
    s->base = blank;
    s->a = a;
    s->b = b;
    s->winner = -1;
    return DIAGNOSE_AS(&s->base, "select");
}

/* ---- a request: join(user, orders), then select(cache, db) ---- */

struct request {
    diag_future base;
    int id, state; /* 0: fetching user and orders, 1: racing cache and db */
    struct io user, orders, cache, db;
    struct join both;
    struct select race;
};

static diag_status request_poll(diag_future *self, void *cx)
{
    struct request *r = (struct request *)self;
    if (r->state == 0) {
        if (diag_poll(&r->both.base, cx) == DIAG_PENDING) return DIAG_PENDING;
        r->state = 1; /* go on in the same poll, as an async function would */
    }
    if (diag_poll(&r->race.base, cx) == DIAG_PENDING) return DIAG_PENDING;
    printf("request %d: user and orders joined, %s won the race\n", r->id, r->race.winner == 0 ? "cache" : "db");
    return DIAG_READY;
}

static diag_future *request_init(struct request *r, int id)
{
    static const diag_future blank = DIAG_FUTURE_INIT(request_poll);
    int hit = id % 2 == 0;
    r->base = blank;
    r->id = id;
    r->state = 0;
    join_init(&r->both, io_init(&r->user, "user", 3, 20000), io_init(&r->orders, "orders", 5, 20000));
    select_init(&r->race, io_init(&r->cache, "cache", hit ? 2 : 6, 5000), io_init(&r->db, "db", hit ? 4 : 3, 50000));
    return DIAGNOSE_AS(&r->base, "request");
}

int main(void)
{
    static struct request requests[REQUESTS];
    struct timespec tick = { 0, TICK_NS };
    int i, pending = REQUESTS, done[REQUESTS] = { 0 }, ticks = 0;
    for (i = 0; i < REQUESTS; i++) request_init(&requests[i], i);
    while (pending > 0) { /* the executor: one poll of every unfinished request per tick */
        for (i = 0; i < REQUESTS; i++)
            if (!done[i] && diag_poll(&requests[i].base, NULL) == DIAG_READY) done[i] = 1, pending--;
        ticks++;
        nanosleep(&tick, NULL);
    }
    printf("%d requests in %d ticks\n", REQUESTS, ticks);
    return 0;
}
