/* stable_load.c - a deterministic load to profile a change with.

   A small executor runs one `main` future that polls 48 child tasks until
   all are done. The tasks are of four kinds, in equal numbers:
     checksum    FNV-1a over 4 KiB per poll (CPU work)
     version_a   sorts 256 ints per poll by insertion sort
     version_b   sorts the same 256 ints per poll with qsort
     io_wait     waits 100-400 us between polls (a timer, no CPU work)
   Everything comes from one seeded generator: how many polls each task
   makes, the numbers sorted, the waits. Every execution of the load does
   the same work.

   `stable_load RUNS ROUNDS` (default 5 runs, 30 rounds) executes the load
   once to warm up, then ROUNDS rounds in which every run executes it once
   (in forward order, then backward in the next round), with a pause after
   each execution. A run's profile is the sum of its executions: each run
   then takes its executions from the whole time the program ran, so a
   stretch in which the machine is slower (another program's work on this
   core's neighbour, for a second or so, makes insertion sort slower than
   qsort) weighs on every run alike, instead of on the one run that fell
   into it. The pause lets the kernel's real-time budget refill under
   `chrt` (running through it stops the process for 50 ms, inside some
   poll) and lets other programs run.

   It prints each run's share of main's busy time (main's busy counted
   inclusively: its self time plus all its children's) for each child,
   and the spread of each share over the runs (largest minus smallest, in
   percentage points), against a goal of at most 2 points. When the goal
   is missed it also prints, for the share that spread most, its value in
   every execution in time order, so a reader sees whether one execution
   jumped (a stall inside one poll) or the machine changed for a while.
   Profiles of the last execution are in the folded files at exit
   (DIAGNOSE_OUT, as usual).

   To compare two versions of a function, put one in version_a() and the
   other in version_b(): both get the same inputs in the same execution,
   so their shares compare directly; a difference larger than the spread
   is real. */
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

/* Adds each child's busy time under main, and main's inclusive busy time,
   from the profile since the last reset; 0 on error. */
static int add_busy(double child[KINDS], double *total)
{
    diag__snapshot snap;
    size_t i;
    int k;
    if (diag__snapshot_take(&snap) != 0) return 0;
    for (i = 0; i < snap.count; i++) {
        const char *stack = snap.rows[i].stack;
        if (strncmp(stack, "main", 4) != 0 || (stack[4] != '\0' && stack[4] != ';')) continue;
        *total += (double)snap.rows[i].busy;
        for (k = 0; k < KINDS; k++)
            if (stack[4] == ';' && strcmp(stack + 5, kind_names[k]) == 0) child[k] += (double)snap.rows[i].busy;
    }
    diag__snapshot_free(&snap);
    return 1;
}

#define MAX_RUNS 20
#define MAX_ROUNDS 100
#define PAUSE_MS 25 /* after each execution of about 70 ms: see the top of the file */

int main(int argc, char **argv)
{
    static double busy[MAX_RUNS][KINDS], total[MAX_RUNS], ms[MAX_RUNS];
    static double each[MAX_ROUNDS * MAX_RUNS][KINDS]; /* per execution, in time order */
    int runs = argc > 1 ? atoi(argv[1]) : 5, rounds = argc > 2 ? atoi(argv[2]) : 30;
    int round, step, run, k, worst_kind = 0, executions = 0, ok;
    double worst = 0;
    struct timespec pause = { 0, PAUSE_MS * 1000000L };
    if (runs < 1 || runs > MAX_RUNS) runs = 5;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 30;
    if (!diag__start()) {
        fputs("stable_load: profiling is off (DIAGNOSE=0?)\n", stderr);
        return 2;
    }
    run_load(); /* a first execution not counted: caches, branch history, page faults */
    nanosleep(&pause, NULL);
    for (round = 0; round < rounds; round++)
        for (step = 0; step < runs; step++) {
            double child[KINDS] = { 0 }, main_busy = 0, t = (double)mono_ns();
            run = round % 2 ? runs - 1 - step : step;
            diag_reset();
            run_load();
            t = ((double)mono_ns() - t) / 1e6;
            if (!add_busy(child, &main_busy) || main_busy <= 0) {
                fputs("stable_load: no profile\n", stderr);
                return 1;
            }
            for (k = 0; k < KINDS; k++) {
                busy[run][k] += child[k];
                each[executions][k] = 100.0 * child[k] / main_busy;
            }
            total[run] += main_busy;
            ms[run] += t / rounds;
            executions++;
            nanosleep(&pause, NULL);
        }
    printf("%-8s", "run");
    for (k = 0; k < KINDS; k++) printf(" %10s", kind_names[k]);
    printf("   (share of main's busy, %%; %d executions each, interleaved)\n", rounds);
    for (run = 0; run < runs; run++) {
        printf("%-8d", run + 1);
        for (k = 0; k < KINDS; k++) printf(" %10.2f", 100.0 * busy[run][k] / total[run]);
        printf("   %.0f ms an execution\n", ms[run]);
    }
    printf("%-8s", "spread");
    for (k = 0; k < KINDS; k++) {
        double lo = 100, hi = 0;
        for (run = 0; run < runs; run++) {
            double share = 100.0 * busy[run][k] / total[run];
            if (share < lo) lo = share;
            if (share > hi) hi = share;
        }
        printf(" %10.2f", hi - lo);
        if (hi - lo > worst) {
            worst = hi - lo;
            worst_kind = k;
        }
    }
    printf("   (percentage points)\n");
    ok = worst <= GOAL_PP;
    printf("%-46s %9.2f  %-32s %-18s %s\n", "stable load: largest spread of a share, pp", worst, "", "<= 2 pp",
           ok ? "PASS" : "MISS");
    if (!ok) {
        int e;
        printf("    %s, share in each execution in time order (| starts a round):", kind_names[worst_kind]);
        for (e = 0; e < executions; e++) printf("%s%.1f", e % runs ? " " : " | ", each[e][worst_kind]);
        printf("\n");
    }
    return ok ? 0 : 1;
}
