/* stable_load.c - a deterministic load to profile a change with.

   A small executor runs one `main` future that polls 48 child tasks until
   all are done. The tasks are of four kinds, in equal numbers:
     checksum    FNV-1a over 4 KiB per poll (CPU work)
     version_a   sorts 256 ints per poll by insertion sort
     version_b   sorts the same 256 ints per poll with qsort
     io_wait     waits 100-400 us between polls (a timer, no CPU work)
   Everything comes from one seeded generator: how many polls each task
   makes, the numbers sorted, the waits. Every run does the same work.

   The program runs the load once to warm up, then RUNS times (default 5, or
   argv[1]); after each
   run it prints each child's share of main's busy time (main's busy counted
   inclusively: its self time plus all its children's), and at the end the
   spread of each share over the runs (largest minus smallest, in
   percentage points), against a goal of at most 2 points. Profiles of the
   last run are in the folded files at exit (DIAGNOSE_OUT, as usual).

   To compare two versions of a function, put one in version_a() and the
   other in version_b(): both get the same inputs in the same run, so their
   shares compare directly; a difference larger than the spread is real. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEED 0x5EEDu
#define TASKS 48
#define SORT_N 256
#define GOAL_PP 2.0 /* spread goal, in percentage points */

enum { CHECKSUM, VERSION_A, VERSION_B, IO_WAIT, KINDS };
static const char *const kind_names[KINDS] = { "checksum", "version_a", "version_b", "io_wait" };

/* xorshift64*: small, fast, the same sequence everywhere for one seed. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the work ------------------------------------------------------------ */

static volatile uint64_t sink; /* keeps the results alive */

static void checksum(uint64_t *random)
{
    static unsigned char block[4096];
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i;
    memset(block, (int)(next_random(random) & 0xff), sizeof block);
    for (i = 0; i < sizeof block; i++) h = (h ^ block[i]) * 0x100000001b3ull;
    sink = h;
}

static void fill(int *v, uint64_t *random)
{
    int i;
    for (i = 0; i < SORT_N; i++) v[i] = (int)(next_random(random) >> 40);
}

/* The two versions compared: the same result, two ways. */
static void version_a(int *v, int n)
{
    int i, j;
    for (i = 1; i < n; i++) {
        int x = v[i];
        for (j = i; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

static int compare_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static void version_b(int *v, int n) { qsort(v, (size_t)n, sizeof *v, compare_int); }

/* ---- the futures and the executor ----------------------------------------- */

typedef struct task {
    diag_future base;
    int kind, polls_left, done;
    uint64_t due;    /* ns: not runnable before */
    uint64_t random; /* this task's own generator state */
} task;

typedef struct main_future {
    diag_future base;
    task *tasks;
    int left;
    uint64_t next_due; /* the earliest due time of a waiting task */
} main_future;

static diag_status task_poll(diag_future *self, void *cx)
{
    task *t = (task *)self;
    int v[SORT_N];
    (void)cx;
    switch (t->kind) {
    case CHECKSUM: checksum(&t->random); break;
    case VERSION_A: fill(v, &t->random); version_a(v, SORT_N); sink = (uint64_t)v[SORT_N / 2]; break;
    case VERSION_B: fill(v, &t->random); version_b(v, SORT_N); sink = (uint64_t)v[SORT_N / 2]; break;
    default: t->due = mono_ns() + 100000u + next_random(&t->random) % 300000u; break;
    }
    return --t->polls_left == 0 ? DIAG_READY : DIAG_PENDING;
}

/* Polls every task that is due, once; READY when all are done. */
static diag_status main_poll(diag_future *self, void *cx)
{
    main_future *m = (main_future *)self;
    uint64_t now = mono_ns();
    int i;
    m->next_due = UINT64_MAX;
    for (i = 0; i < TASKS; i++) {
        task *t = &m->tasks[i];
        if (t->done) continue;
        if (t->due > now) {
            if (t->due < m->next_due) m->next_due = t->due;
            continue;
        }
        if (diag_poll(&t->base, cx) == DIAG_READY) {
            t->done = 1;
            m->left--;
        } else if (t->due > now && t->due < m->next_due) {
            m->next_due = t->due;
        }
    }
    return m->left == 0 ? DIAG_READY : DIAG_PENDING;
}

/* One run of the load, from the same seed every time. */
static void run_load(void)
{
    static task tasks[TASKS];
    main_future m;
    uint64_t random = SEED;
    int i;
    memset(tasks, 0, sizeof tasks);
    for (i = 0; i < TASKS; i++) {
        tasks[i].base.poll = task_poll;
        tasks[i].kind = i % KINDS;
        tasks[i].polls_left = tasks[i].kind == IO_WAIT ? 20 + (int)(next_random(&random) % 20)
                                                       : 150 + (int)(next_random(&random) % 100);
        tasks[i].random = next_random(&random) | 1u;
        DIAGNOSE_AS(&tasks[i].base, kind_names[tasks[i].kind]);
    }
    memset(&m, 0, sizeof m);
    m.base.poll = main_poll;
    m.tasks = tasks;
    m.left = TASKS;
    DIAGNOSE_AS(&m.base, "main");
    while (diag_poll(&m.base, NULL) == DIAG_PENDING) {
        uint64_t now = mono_ns();
        if (m.next_due != UINT64_MAX && m.next_due > now) { /* nothing runnable: wait */
            struct timespec wait;
            wait.tv_sec = (time_t)((m.next_due - now) / 1000000000u);
            wait.tv_nsec = (long)((m.next_due - now) % 1000000000u);
            nanosleep(&wait, NULL);
        }
    }
}

/* ---- the shares ---------------------------------------------------------- */

/* Each child's busy over main's inclusive busy, in percent; 0 on error. */
static int shares(double share[KINDS])
{
    diag__snapshot snap;
    double total = 0, child[KINDS] = { 0 };
    size_t i;
    int k;
    if (diag__snapshot_take(&snap) != 0) return 0;
    for (i = 0; i < snap.count; i++) {
        const char *stack = snap.rows[i].stack;
        if (strncmp(stack, "main", 4) != 0 || (stack[4] != '\0' && stack[4] != ';')) continue;
        total += (double)snap.rows[i].busy;
        for (k = 0; k < KINDS; k++)
            if (stack[4] == ';' && strcmp(stack + 5, kind_names[k]) == 0) child[k] += (double)snap.rows[i].busy;
    }
    diag__snapshot_free(&snap);
    for (k = 0; k < KINDS; k++) share[k] = total > 0 ? 100.0 * child[k] / total : 0;
    return total > 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5, run, k, ok = 1;
    double lo[KINDS], hi[KINDS], share[KINDS], worst = 0;
    if (runs < 1 || runs > 100) runs = 5;
    if (!diag__start()) {
        fputs("stable_load: profiling is off (DIAGNOSE=0?)\n", stderr);
        return 2;
    }
    run_load(); /* a first run not counted: caches, branch history, page faults */
    printf("%-8s", "run");
    for (k = 0; k < KINDS; k++) printf(" %10s", kind_names[k]);
    printf("   (share of main's busy, %%)\n");
    for (run = 0; run < runs; run++) {
        double t = (double)mono_ns();
        diag_reset();
        run_load();
        t = ((double)mono_ns() - t) / 1e6;
        if (!shares(share)) {
            fputs("stable_load: no profile\n", stderr);
            return 1;
        }
        printf("%-8d", run + 1);
        for (k = 0; k < KINDS; k++) {
            printf(" %10.2f", share[k]);
            if (run == 0 || share[k] < lo[k]) lo[k] = share[k];
            if (run == 0 || share[k] > hi[k]) hi[k] = share[k];
        }
        printf("   %.0f ms\n", t);
    }
    printf("%-8s", "spread");
    for (k = 0; k < KINDS; k++) {
        printf(" %10.2f", hi[k] - lo[k]);
        if (hi[k] - lo[k] > worst) worst = hi[k] - lo[k];
    }
    ok = worst <= GOAL_PP;
    printf("   (percentage points)\n");
    printf("%-46s %9.2f  %-22s %-18s %s\n", "stable load: largest spread of a share, pp", worst, "", "<= 2 pp",
           ok ? "PASS" : "MISS");
    return ok ? 0 : 1;
}
