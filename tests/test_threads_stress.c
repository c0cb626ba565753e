/* Reliability under threads: futures that move between threads mid-run are
   counted exactly, a thread that exits keeps its counts, and a dump taken
   while other threads poll is a consistent snapshot. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>

#define WORKERS 8
#define FUTURES 4000
#define NAMES 4

static const char *const names[NAMES] = { "mig_a", "mig_b", "mig_c", "mig_d" };

struct job {
    diag_future base;
    int need, done;       /* polls to READY, polls so far */
    pthread_t last;       /* thread of the last poll */
    int moved;            /* polls on another thread than the one before */
    struct job *next;
};

static diag_status job_poll(diag_future *self, void *cx)
{
    struct job *j = (struct job *)self;
    pthread_t me = pthread_self();
    (void)cx;
    if (j->done > 0 && !pthread_equal(me, j->last)) j->moved++;
    j->last = me;
    tt_spin_ns(2000); /* work outside the queue's lock, so other threads get it */
    return ++j->done == j->need ? DIAG_READY : DIAG_PENDING;
}

/* ---- a run queue shared by the workers: a pending job goes to the back, so
   its next poll is usually on another thread ---- */
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job *q_head, *q_tail;
static int q_left;

static void q_push(struct job *j)
{
    j->next = NULL;
    if (q_tail) q_tail->next = j;
    else q_head = j;
    q_tail = j;
}

static struct job *q_pop(void)
{
    struct job *j = q_head;
    if (j) {
        q_head = j->next;
        if (q_head == NULL) q_tail = NULL;
    }
    return j;
}

static pthread_barrier_t start_line;

static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start_line); /* all start together, so work spreads */
    for (;;) {
        struct job *j;
        diag_status st;
        pthread_mutex_lock(&q_lock);
        if (q_left == 0) {
            pthread_mutex_unlock(&q_lock);
            return NULL;
        }
        j = q_pop();
        if (j && j->done > 0 && pthread_equal(j->last, pthread_self()) && q_head) {
            q_push(j); /* polled here last time: let another thread have it */
            j = q_pop();
        }
        pthread_mutex_unlock(&q_lock);
        if (j == NULL) {
            sched_yield();
            continue;
        }
        st = diag_poll(&j->base, NULL);
        pthread_mutex_lock(&q_lock);
        if (st == DIAG_READY) q_left--;
        else q_push(j);
        pthread_mutex_unlock(&q_lock);
    }
}

static char *dump_metric(const char *dir, const char *tag, const char *metric)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s/%s", dir, tag);
    if (diag_dump(prefix) != 0) return NULL;
    return tt_readf("%s.%s.folded", prefix, metric);
}

/* The sum of the values of all lines of folded text. */
static long long sum_values(const char *folded)
{
    long long sum = 0;
    const char *line = folded, *end;
    while (line && *line && (end = strchr(line, '\n')) != NULL) {
        const char *sp = end;
        while (sp > line && sp[-1] != ' ') sp--;
        sum += strtoll(sp, NULL, 10);
        line = end + 1;
    }
    return sum;
}

/* 8 threads, 4000 futures of 1 to 7 polls each, every pending future back
   in one queue: the dumped poll count of each name is exactly the number
   of polls made, and the runs all ended (wall does not grow later). */
static void test_migrating_futures_counted_exactly(void)
{
    static struct job jobs[FUTURES];
    const char *dir = tt_tempdir();
    pthread_t th[WORKERS];
    long long want[NAMES] = { 0 };
    long long moved = 0, wall1, wall2;
    char *polls, *wall;
    int i;
    for (i = 0; i < FUTURES; i++) {
        struct job *j = &jobs[i];
        memset(j, 0, sizeof *j);
        j->base.poll = job_poll;
        j->need = 1 + (i * 7919) % 7;
        want[i % NAMES] += j->need;
        DIAGNOSE_AS(&j->base, names[i % NAMES]);
        q_push(j);
    }
    q_left = FUTURES;
    pthread_barrier_init(&start_line, NULL, WORKERS);
    for (i = 0; i < WORKERS; i++) pthread_create(&th[i], NULL, worker, NULL);
    for (i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start_line);
    for (i = 0; i < FUTURES; i++) moved += jobs[i].moved;
    printf("  %lld of %lld polls ran on another thread than the poll before\n", moved,
           want[0] + want[1] + want[2] + want[3]);
    CHECK(moved > 0); /* the test means nothing if nothing migrated */
    polls = dump_metric(dir, "a", "polls");
    CHECK(tt_folded_ok(polls));
    for (i = 0; i < NAMES; i++) CHECK_EQ(tt_value(polls, names[i]), want[i]);
    wall = dump_metric(dir, "b", "wall");
    wall1 = sum_values(wall);
    free(wall);
    tt_sleep_ns(50000000);
    wall = dump_metric(dir, "c", "wall");
    wall2 = sum_values(wall);
    /* No run is left open: a leaked run would add the 50 ms slept. The
       bound allows for the clock calibration changing between dumps. */
    CHECK(wall1 > 0);
    CHECK_RANGE(wall2, wall1 - wall1 / 1000 - 10000, wall1 + wall1 / 1000 + 10000);
    free(polls);
    free(wall);
}

/* ---- a thread that exits before the dump ---- */
struct counter { diag_future base; int n, ready_at; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    (void)cx;
    return ++c->n == c->ready_at ? DIAG_READY : DIAG_PENDING;
}

static struct counter exiting = { DIAG_FUTURE_INIT(counter_poll), 0, 7 };
static struct counter handed = { DIAG_FUTURE_INIT(counter_poll), 0, 5 };

static void *exiting_thread(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < 7; i++) diag_poll(&exiting.base, NULL);
    /* handed over unfinished: its run started on this thread */
    for (i = 0; i < 2; i++) diag_poll(&handed.base, NULL);
    return NULL;
}

static void test_exited_thread_keeps_counts(void)
{
    const char *dir = tt_tempdir();
    pthread_t th;
    char *polls, *wall1, *wall2;
    int i;
    DIAGNOSE_AS(&exiting.base, "exited_thread");
    DIAGNOSE_AS(&handed.base, "handed_over");
    pthread_create(&th, NULL, exiting_thread, NULL);
    pthread_join(th, NULL);
    for (i = 0; i < 3; i++) diag_poll(&handed.base, NULL); /* READY on the 5th */
    CHECK_EQ(handed.n, 5);
    polls = dump_metric(dir, "a", "polls");
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(tt_value(polls, "exited_thread"), 7);
    CHECK_EQ(tt_value(polls, "handed_over"), 5);
    /* the run that began on the exited thread ended on this one */
    wall1 = dump_metric(dir, "b", "wall");
    tt_sleep_ns(30000000);
    wall2 = dump_metric(dir, "c", "wall");
    CHECK(tt_value(wall1, "handed_over") > 0);
    CHECK_RANGE(tt_value(wall2, "handed_over"), tt_value(wall1, "handed_over") * 0.999 - 1000,
                tt_value(wall1, "handed_over") * 1.001 + 1000);
    free(polls);
    free(wall1);
    free(wall2);
}

/* ---- dumps while other threads poll ---- */
#define POLLERS 8
static volatile int stop_polling;
static uint64_t completed; /* polls that returned, all pollers, atomic */

static void *poller(void *arg)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0, 3 };
    (void)arg;
    DIAGNOSE_AS(&c.base, "concurrent");
    while (!__atomic_load_n(&stop_polling, __ATOMIC_RELAXED)) {
        if (diag_poll(&c.base, NULL) == DIAG_READY) c.n = 0;
        __atomic_fetch_add(&completed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

/* Each dump sees at least the polls that had returned when it started and
   at most those that had returned when it ended; every file is well formed. */
static void test_dump_while_polling(void)
{
    const char *dir = tt_tempdir();
    pthread_t th[POLLERS];
    long long last = 0;
    int i, bad = 0;
    for (i = 0; i < POLLERS; i++) pthread_create(&th[i], NULL, poller, NULL);
    tt_sleep_ns(5000000);
    for (i = 0; i < 20; i++) {
        char tag[16];
        uint64_t before = __atomic_load_n(&completed, __ATOMIC_RELAXED), after;
        char *polls, *busy;
        long long got;
        snprintf(tag, sizeof tag, "d%d", i);
        polls = dump_metric(dir, tag, "polls");
        after = __atomic_load_n(&completed, __ATOMIC_RELAXED);
        busy = tt_readf("%s/%s.busy.folded", dir, tag);
        got = tt_value(polls, "concurrent");
        if (!tt_folded_ok(polls) || !tt_folded_ok(busy) || got < (long long)before ||
            got > (long long)after + POLLERS || got < last) {
            printf("  dump %d: %lld polls, %llu before, %llu after, %lld last\n", i, got,
                   (unsigned long long)before, (unsigned long long)after, last);
            bad++;
        }
        last = got;
        free(polls);
        free(busy);
    }
    __atomic_store_n(&stop_polling, 1, __ATOMIC_RELAXED);
    for (i = 0; i < POLLERS; i++) pthread_join(th[i], NULL);
    CHECK_EQ(bad, 0);
    CHECK(last > 0);
    {
        char *polls = dump_metric(dir, "final", "polls");
        CHECK_EQ(tt_value(polls, "concurrent"), completed);
        free(polls);
    }
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(void)
{
    RUN(test_migrating_futures_counted_exactly);
    RUN(test_exited_thread_keeps_counts);
    RUN(test_dump_while_polling);
    return test_summary();
}
