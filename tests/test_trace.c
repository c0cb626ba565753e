/* The flight recorder: DIAGNOSE_TRACE=n rings of the last n polls per
   thread, written as PREFIX.trace.json by every dump and as
   PREFIX.slow.N.trace.json after a slow poll. Each case runs in a child
   with its own environment; the parent reads the files it wrote. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */

#define MS 1000000ull
#define US 1000ull

struct task { diag_future base; uint64_t spin_ns; int ready; diag_future *child; };

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    if (t->spin_ns) tt_spin_ns(t->spin_ns);
    if (t->child) diag_poll(t->child, cx);
    return t->ready ? DIAG_READY : DIAG_PENDING;
}

static diag_future *task_init(struct task *t, const char *name, uint64_t spin_ns)
{
    struct task zero = { DIAG_FUTURE_INIT(task_poll), 0, 0, NULL };
    *t = zero;
    t->spin_ns = spin_ns;
    return DIAGNOSE_AS(&t->base, name);
}

/* ---- reading a trace file: one event per line, as diagnose.h writes it ---- */

typedef struct event {
    char name[64], path[128];
    unsigned long long tid;
    uint64_t ts, dur; /* ns */
} event;

typedef struct trace {
    event ev[4096];
    int n;
    unsigned long long tids[64];
    char thread_names[64][64];
    int threads;
    int processes; /* process_name events */
    int bad;       /* lines that are no event of the format */
} trace;

/* "123.456" microseconds as ns; exactly three decimals. */
static int parse_us(const char *s, uint64_t *ns)
{
    unsigned long long whole;
    char frac[4];
    if (sscanf(s, "%llu.%3[0-9]", &whole, frac) != 2 || strlen(frac) != 3) return 0;
    *ns = whole * 1000 + (uint64_t)strtoull(frac, NULL, 10);
    return 1;
}

/* {"ph": "X", "name": N, "ts": T, "dur": D, "pid": P, "tid": I}, exactly:
   no args (speedscope would add them to the name). */
static void parse_event(trace *tr, const char *line)
{
    event *e = &tr->ev[tr->n];
    char ts[32], dur[32];
    int end = -1;
    if (tr->n >= 4096 ||
        sscanf(line, "{\"ph\": \"X\", \"name\": \"%63[^\"]\", \"ts\": %31[0-9.], \"dur\": %31[0-9.], \"pid\": %*d, "
                     "\"tid\": %llu}%n", e->name, ts, dur, &e->tid, &end) != 4 ||
        line[end] != '\0' || !parse_us(ts, &e->ts) || !parse_us(dur, &e->dur)) {
        printf("  bad event line: %s\n", line);
        tr->bad++;
        return;
    }
    e->path[0] = '\0';
    tr->n++;
}

/* The event of tr around event i on its thread, as a viewer nests it: the
   shortest that holds it (of equal ones, the next written: a parent ends
   after its children), or -1. */
static int parent_of(const trace *tr, int i)
{
    const event *c = &tr->ev[i];
    int k, best = -1;
    for (k = 0; k < tr->n; k++) {
        const event *p = &tr->ev[k];
        if (k == i || p->tid != c->tid || p->ts > c->ts || p->ts + p->dur < c->ts + c->dur ||
            (p->dur == c->dur && k < i))
            continue;
        if (best < 0 || p->dur < tr->ev[best].dur || (p->dur == tr->ev[best].dur && k < best)) best = k;
    }
    return best;
}

/* Each event's path, from the events around it: the file writes names only. */
static void derive_path(trace *tr, int i)
{
    event *e = &tr->ev[i];
    int p = parent_of(tr, i);
    size_t len = 0;
    if (e->path[0]) return;
    if (p >= 0) {
        derive_path(tr, p);
        len = strlen(tr->ev[p].path);
        if (len > 60) len = 60;
        memcpy(e->path, tr->ev[p].path, len);
        e->path[len++] = ';';
    }
    memcpy(e->path + len, e->name, strlen(e->name) + 1); /* a name is at most 63 bytes */
}

static void parse_meta(trace *tr, const char *line)
{
    unsigned long long tid;
    char name[64];
    if (sscanf(line, "{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %*d, \"tid\": 0, \"args\": {\"name\": \"%63[^\"]\"}}",
               name) == 1) {
        tr->processes++;
    } else if (sscanf(line, "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %*d, \"tid\": %llu, \"args\": {\"name\": \"%63[^\"]\"}}",
                      &tid, name) == 2 && tr->threads < 64) {
        tr->tids[tr->threads] = tid;
        snprintf(tr->thread_names[tr->threads++], 64, "%s", name);
    } else {
        printf("  bad metadata line: %s\n", line);
        tr->bad++;
    }
}

/* Reads a trace file into tr; 0 if it is missing or not of the format:
   {"traceEvents": [ first, one event per line ending in "," but the last,
   and ]} last. */
static int read_trace(trace *tr, const char *path)
{
    char *text = tt_read(path), *line, *next;
    int i;
    memset(tr, 0, sizeof *tr);
    if (text == NULL) return 0;
    if (strncmp(text, "{\"traceEvents\": [\n", 18) != 0 || strlen(text) < 23 ||
        strcmp(text + strlen(text) - 4, "\n]}\n") != 0) {
        printf("  not a trace file: %.40s\n", text);
        free(text);
        return 0;
    }
    for (line = text + 18; *line != ']'; line = next) {
        size_t len;
        next = strchr(line, '\n') + 1;
        len = (size_t)(next - line) - 1;
        line[len] = '\0';
        if (next[0] != ']') {
            if (line[len - 1] != ',') tr->bad++;
            line[len - 1] = '\0';
        }
        if (strncmp(line, "{\"ph\": \"X\"", 10) == 0) parse_event(tr, line);
        else parse_meta(tr, line);
    }
    free(text);
    for (i = 0; i < tr->n; i++) derive_path(tr, i);
    return tr->bad == 0;
}

static int count_events(const trace *tr, unsigned long long tid, const char *path)
{
    int i, n = 0;
    for (i = 0; i < tr->n; i++) n += (tid == 0 || tr->ev[i].tid == tid) && strcmp(tr->ev[i].path, path) == 0;
    return n;
}

TT_FN unsigned long long tid_named(const trace *tr, const char *prefix)
{
    int i;
    for (i = 0; i < tr->threads; i++)
        if (strncmp(tr->thread_names[i], prefix, strlen(prefix)) == 0) return tr->tids[i];
    return 0;
}

TT_FN unsigned long long tid_of(const trace *tr, const char *path)
{
    int i;
    for (i = 0; i < tr->n; i++)
        if (strcmp(tr->ev[i].path, path) == 0) return tr->ev[i].tid;
    return 0;
}

/* The frame name is the last frame of the path. */
static int names_match_paths(const trace *tr)
{
    int i;
    for (i = 0; i < tr->n; i++) {
        const char *semi = strrchr(tr->ev[i].path, ';');
        if (strcmp(tr->ev[i].name, semi ? semi + 1 : tr->ev[i].path) != 0) return 0;
    }
    return 1;
}

/* Every event with a parent path lies inside an event of that path on its
   thread; events of one path on one thread never overlap. */
static int nesting_holds(const trace *tr)
{
    int i, k;
    for (i = 0; i < tr->n; i++) {
        const event *c = &tr->ev[i];
        const char *semi = strrchr(c->path, ';');
        int inside = semi == NULL;
        for (k = 0; k < tr->n; k++) {
            const event *p = &tr->ev[k];
            if (k == i || p->tid != c->tid) continue;
            if (semi && strlen(p->path) == (size_t)(semi - c->path) && strncmp(p->path, c->path, strlen(p->path)) == 0 &&
                p->ts <= c->ts && p->ts + p->dur >= c->ts + c->dur)
                inside = 1;
            if (strcmp(p->path, c->path) == 0 && p->ts < c->ts + c->dur && c->ts < p->ts + p->dur && c->dur && p->dur) {
                printf("  overlap: %s at %llu and %llu\n", c->path, (unsigned long long)c->ts, (unsigned long long)p->ts);
                return 0;
            }
        }
        if (!inside) {
            printf("  %s at %llu (dur %llu) lies in no parent\n", c->path, (unsigned long long)c->ts,
                   (unsigned long long)c->dur);
            return 0;
        }
    }
    return 1;
}

/* Stricter: every event with a parent path lies strictly inside one (a
   later start and an earlier end), so that a reader adding ts and dur in
   doubles, or ordering equal starts by the file, nests it too. */
static int strictly_nested(const trace *tr)
{
    int i, k;
    for (i = 0; i < tr->n; i++) {
        const event *c = &tr->ev[i];
        const char *semi = strrchr(c->path, ';');
        int inside = semi == NULL;
        for (k = 0; k < tr->n && !inside; k++) {
            const event *p = &tr->ev[k];
            inside = k != i && p->tid == c->tid && strlen(p->path) == (size_t)(semi - c->path) &&
                     strncmp(p->path, c->path, strlen(p->path)) == 0 && p->ts < c->ts && c->ts + c->dur < p->ts + p->dur;
        }
        if (!inside) {
            printf("  %s at %llu (dur %llu) is not strictly inside a parent\n", c->path, (unsigned long long)c->ts,
                   (unsigned long long)c->dur);
            return 0;
        }
    }
    return 1;
}

static uint64_t sum_dur(const trace *tr, const char *path)
{
    uint64_t sum = 0;
    int i;
    for (i = 0; i < tr->n; i++)
        if (strcmp(tr->ev[i].path, path) == 0) sum += tr->ev[i].dur;
    return sum;
}

static trace tr; /* large: static */
static char dir[256];

static const char *fresh_dir(void)
{
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    return dir;
}

/* ---- children ------------------------------------------------------------- */

static void *worker_main(void *arg)
{
    struct task w;
    diag_future *f = task_init(&w, "worker", 0);
    int k;
    (void)arg;
#if defined(__GLIBC__)
    pthread_setname_np(pthread_self(), "tworker");
#endif
    for (k = 0; k < 7; k++) diag_poll(f, NULL);
    return NULL;
}

/* main polls `outer` 10 times; each poll polls `inner` once (ready every
   poll, so 10 runs); a worker thread polls 7 times and exits; then a dump. */
static int child_counts(void)
{
    struct task outer, inner;
    diag_future *o = task_init(&outer, "outer", 200 * US);
    pthread_t th;
    int k;
    uint64_t t0;
    FILE *f;
    outer.child = task_init(&inner, "inner", 300 * US);
    inner.ready = 1;
    t0 = tt_now_ns();
    for (k = 0; k < 10; k++) diag_poll(o, NULL);
    f = fopen("elapsed.txt", "w"); /* the test's clock around the polls, for the parent */
    if (f == NULL) return 1;
    fprintf(f, "%llu\n", (unsigned long long)(tt_now_ns() - t0));
    fclose(f);
    pthread_create(&th, NULL, worker_main, NULL);
    pthread_join(th, NULL);
    return diag_dump("out") == 0 ? 0 : 1;
}

static int child_wrap(void)
{
    static const char *const names[12] = { "f0", "f1", "f2", "f3", "f4", "f5",
                                           "f6", "f7", "f8", "f9", "f10", "f11" };
    struct task t[12];
    int k;
    for (k = 0; k < 12; k++) diag_poll(task_init(&t[k], names[k], 0), NULL);
    return diag_dump("out") == 0 ? 0 : 1;
}

static void *short_lived(void *arg)
{
    struct task t;
    (void)arg;
    diag_poll(task_init(&t, "short_lived", 0), NULL);
    return NULL;
}

static int child_exited(void)
{
    int k;
    for (k = 0; k < 20; k++) {
        pthread_t th;
        pthread_create(&th, NULL, short_lived, NULL);
        pthread_join(th, NULL);
    }
    return diag_dump("out") == 0 ? 0 : 1;
}

/* One fast poll, one slow poll of 5 ms (DIAGNOSE_SLOW_NS is 2 ms), then
   waits for the snapshot thread's file; a second slow poll at once writes
   nothing (once a second); slow polls from 1.1 s after file 1 was seen
   (so more than a second after it was written) write file 2. */
static int wait_for(const char *path, uint64_t ns)
{
    uint64_t end = tt_now_ns() + ns;
    while (!tt_exists(path)) {
        if (tt_now_ns() > end) return 0;
        tt_sleep_ns(1 * MS);
    }
    return 1;
}

static int child_slow(void)
{
    struct task fast, slow;
    diag_future *f = task_init(&fast, "fast", 0), *s = task_init(&slow, "slow", 5 * MS);
    uint64_t seen, end;
    diag_poll(f, NULL);
    diag_poll(s, NULL);
    if (!wait_for("out.slow.1.trace.json", 900 * MS)) return 2;
    seen = tt_now_ns();
    diag_poll(s, NULL); /* inside the second: no file */
    tt_sleep_ns(300 * MS);
    if (tt_exists("out.slow.2.trace.json")) return 3;
    while (tt_now_ns() < seen + 1100 * MS) tt_sleep_ns(10 * MS);
    for (end = tt_now_ns() + 3000 * MS; !tt_exists("out.slow.2.trace.json"); tt_sleep_ns(50 * MS)) {
        if (tt_now_ns() > end) return 4;
        diag_poll(s, NULL);
    }
    return tt_exists("out.slow.3.trace.json") ? 5 : 0;
}

/* A slow poll of `inner` (3 ms) inside `outer`: the file is written when
   outer's poll ends, and holds both, nested. */
static int child_slow_nested(void)
{
    struct task outer, inner;
    diag_future *o = task_init(&outer, "outer", 0);
    outer.child = task_init(&inner, "inner", 3 * MS);
    diag_poll(o, NULL);
    return wait_for("out.slow.1.trace.json", 900 * MS) ? 0 : 2;
}

/* A poll that does not end soon: inside it, the file still comes, about
   100 ms after its slow child, without the open outer poll. */
static diag_status never_ending_poll(diag_future *self, void *cx)
{
    struct task inner;
    uint64_t t0;
    (void)self;
    diag_poll(task_init(&inner, "inner", 3 * MS), cx);
    t0 = tt_now_ns();
    if (!wait_for("out.slow.1.trace.json", 900 * MS)) return DIAG_PENDING;
    /* the snapshot thread first waited 100 ms for this poll to end (a file
       written at once would be here within a few ms; 50: room for a
       preemption between the request and t0) */
    return tt_now_ns() - t0 >= 50 * MS ? DIAG_READY : DIAG_PENDING;
}

static int child_slow_open(void)
{
    diag_future outer = DIAG_FUTURE_INIT(never_ending_poll);
    return diag_poll(DIAGNOSE_AS(&outer, "outer"), NULL) == DIAG_READY ? 0 : 2;
}

/* No diag_dump: the numbered snapshot (DIAGNOSE_INTERVAL) and the dump
   at exit write the trace too. */
static int child_snapshots(void)
{
    struct task t;
    diag_future *f = task_init(&t, "ticked", 0);
    int k;
    for (k = 0; k < 3; k++) diag_poll(f, NULL);
    return wait_for("out.1.trace.json", 2000 * MS) ? 0 : 2;
}

static diag_status resetting_poll(diag_future *self, void *cx)
{
    (void)self, (void)cx;
    diag_reset();
    return DIAG_READY;
}

/* 3 polls, then one that calls diag_reset (it began before the reset and
   ends after it: it is in), then 4. */
static int child_reset(void)
{
    struct task a, b;
    diag_future spanning = DIAG_FUTURE_INIT(resetting_poll);
    int k;
    for (k = 0; k < 3; k++) diag_poll(task_init(&a, "before", 0), NULL);
    diag_poll(DIAGNOSE_AS(&spanning, "spanning"), NULL);
    for (k = 0; k < 4; k++) diag_poll(task_init(&b, "after", 0), NULL);
    return diag_dump("out") == 0 ? 0 : 1;
}

/* A thread of the parent, alive (and holding its ring) at the fork. */
static int other_polled, other_may_end;

static void *other_thread(void *arg)
{
    struct task t;
    (void)arg;
    diag_poll(task_init(&t, "other", 0), NULL);
    __atomic_store_n(&other_polled, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&other_may_end, __ATOMIC_ACQUIRE)) tt_sleep_ns(1 * MS);
    return NULL;
}

static int child_fork(void)
{
    struct task a, b;
    pid_t pid;
    pthread_t th;
    int status;
    char name[64];
    diag_poll(task_init(&a, "parent", 0), NULL);
    pthread_create(&th, NULL, other_thread, NULL);
    while (!__atomic_load_n(&other_polled, __ATOMIC_ACQUIRE)) tt_sleep_ns(1 * MS);
    pid = fork();
    if (pid == 0) {
        diag_poll(task_init(&b, "in_child", 0), NULL);
        _exit(diag_dump("child") == 0 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    __atomic_store_n(&other_may_end, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    snprintf(name, sizeof name, "child.%ld.trace.json", (long)pid); /* a forked child's prefix */
    if (rename(name, "child.trace.json") != 0) return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

static int child_bad(void)
{
    struct task a;
    diag_poll(task_init(&a, "x", 0), NULL);
    return diag_dump("out") == 0 ? 0 : 1;
}

/* Two threads poll while the main thread dumps 30 times: each file holds
   whole events only (checked by the parent), and TSan sees no race. */
static int stop_polling;

static void *busy_poller(void *arg)
{
    struct task t;
    diag_future *f = task_init(&t, (const char *)arg, 0);
    while (!__atomic_load_n(&stop_polling, __ATOMIC_RELAXED)) diag_poll(f, NULL);
    return NULL;
}

static int child_concurrent(void)
{
    static const char *const names[2] = { "spin_a", "spin_b" };
    pthread_t th[2];
    char prefix[32];
    int k, rc = 0;
    for (k = 0; k < 2; k++) pthread_create(&th[k], NULL, busy_poller, (void *)names[k]);
    for (k = 0; k < 30; k++) {
        snprintf(prefix, sizeof prefix, "out%d", k);
        if (diag_dump(prefix) != 0) rc = 1;
        tt_sleep_ns(1 * MS);
    }
    __atomic_store_n(&stop_polling, 1, __ATOMIC_RELAXED);
    for (k = 0; k < 2; k++) pthread_join(th[k], NULL);
    return rc;
}

static const tt_child children[] = {
    { "counts", child_counts }, { "wrap", child_wrap },   { "exited", child_exited },
    { "slow", child_slow },     { "reset", child_reset }, { "fork", child_fork },
    { "bad", child_bad },       { "concurrent", child_concurrent },
    { "slow_nested", child_slow_nested }, { "slow_open", child_slow_open },
    { "snapshots", child_snapshots },
};

/* ---- tests ---------------------------------------------------------------- */

static void test_off_by_default(void)
{
    struct task t;
    char prefix[300];
    diag_poll(task_init(&t, "plain", 0), NULL);
    CHECK(diag__tls != NULL && diag__tls->ring == NULL);
    snprintf(prefix, sizeof prefix, "%s/out", fresh_dir());
    CHECK_EQ(diag_dump(prefix), 0);
    CHECK(tt_exists(strcat(prefix, ".polls.folded")));
    snprintf(prefix, sizeof prefix, "%s/out.trace.json", dir);
    CHECK(!tt_exists(prefix));
    CHECK(!diag__rt->snapshot_thread->running); /* no snapshot thread either */
}

static void test_counts_nesting_and_exited_thread(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=1000", NULL };
    unsigned long long main_tid, worker_tid;
    char *busy, *elapsed;
    char path[300];
    CHECK_EQ(tt_spawn(fresh_dir(), "counts", env), 0);
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(tr.processes, 1);
    CHECK_EQ(tr.threads, 2);
#if defined(__GLIBC__)
    worker_tid = tid_named(&tr, "tworker ");
#else
    worker_tid = tid_of(&tr, "worker"); /* no thread names (see worker_main) */
#endif
    main_tid = tr.tids[0] == worker_tid ? tr.tids[1] : tr.tids[0];
    CHECK(worker_tid != 0 && main_tid != 0 && worker_tid != main_tid);
    CHECK_EQ(count_events(&tr, main_tid, "outer"), 10);
    CHECK_EQ(count_events(&tr, main_tid, "outer;inner"), 10);
    CHECK_EQ(count_events(&tr, worker_tid, "worker"), 7); /* the thread exited before the dump */
    CHECK_EQ(tr.n, 27);
    CHECK(names_match_paths(&tr));
    CHECK(nesting_holds(&tr));
    CHECK(strictly_nested(&tr));
    /* Durations against the folded busy times of the same dump: each event
       is rounded to ns at both ends, the folded sum once (1 ns per event),
       and an event that starts or ends on its parent's tick, or on the tick
       its thread's last event ended, is moved 1 ns in from the start and 2
       from the end (a coarse counter does that often: qemu's ticks are
       16 ns). So they agree to within 4 ns per event (plus 1). */
    busy = tt_readf("%s/out.busy.folded", dir);
    CHECK_RANGE(sum_dur(&tr, "outer;inner"), tt_value(busy, "outer;inner") - 41, tt_value(busy, "outer;inner") + 41);
    CHECK_RANGE(sum_dur(&tr, "outer") - sum_dur(&tr, "outer;inner"), tt_value(busy, "outer") - 81,
                tt_value(busy, "outer") + 81);
    /* and against the test's clock: at least the spins, 300 us per inner
       poll and 500 us per outer one, at most the time around all the polls
       (2% for the calibration) */
    elapsed = tt_readf("%s/elapsed.txt", dir);
    CHECK(elapsed != NULL);
    if (elapsed) {
        double around = (double)strtoull(elapsed, NULL, 10) * 1.02;
        CHECK_RANGE(sum_dur(&tr, "outer;inner"), 10 * 300 * US * 0.98, around - 10 * 200 * US);
        CHECK_RANGE(sum_dur(&tr, "outer"), 10 * 500 * US * 0.98, around);
    }
    free(busy);
    free(elapsed);
}

static void test_ring_keeps_the_last_n(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=5", NULL };
    char path[300];
    int k;
    CHECK_EQ(tt_spawn(fresh_dir(), "wrap", env), 0);
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(tr.n, 5);
    for (k = 0; k < 5 && k < tr.n; k++) { /* f7 .. f11, oldest first */
        char want[8];
        snprintf(want, sizeof want, "f%d", k + 7);
        CHECK_STR(tr.ev[k].name, want);
        if (k) CHECK(tr.ev[k].ts >= tr.ev[k - 1].ts + tr.ev[k - 1].dur);
    }
}

/* The writer on polls made up in ticks, n of them as {start, end, path}
   (path 0 outer, 1 outer;inner, 2 outer;inner;leaf), in completion order (a
   child before its parent), converted at ns_per_tick; read back into tr.
   Then want[k] is the ts and end of event k as written (ns). */
static int write_made(const uint64_t (*polls)[3], int n, double ns_per_tick)
{
    static char stacks[] = "outer\0outer;inner\0outer;inner;leaf";
    size_t offsets[3] = { 0, 6, 18 };
    diag__event events[16];
    diag__trace_thread th;
    diag__trace_copy c;
    diag__buf b = { NULL, 0, 0, 0 };
    char path[300];
    FILE *f;
    int k;
    for (k = 0; k < n && k < 16; k++) {
        events[k].start = polls[k][0];
        events[k].dur = polls[k][1] - polls[k][0];
        events[k].path = (uint32_t)polls[k][2];
    }
    memset(&th, 0, sizeof th);
    th.tid = 1;
    th.count = (size_t)k;
    memset(&c, 0, sizeof c);
    c.events = events;
    c.threads = &th;
    c.nthreads = 1;
    c.stacks = stacks;
    c.offsets = offsets;
    diag__trace_json(&b, &c, ns_per_tick);
    snprintf(path, sizeof path, "%s/made.trace.json", fresh_dir());
    f = fopen(path, "w");
    if (b.failed || f == NULL) return 0;
    fwrite(b.data, 1, b.len, f);
    fclose(f);
    DIAG_FREE(b.data);
    return read_trace(&tr, path) && tr.n == n;
}

static void check_written(const uint64_t (*want)[2], int n)
{
    int k;
    for (k = 0; k < n && k < tr.n; k++) {
        CHECK_EQ(tr.ev[k].ts, want[k][0]);
        CHECK_EQ(tr.ev[k].ts + tr.ev[k].dur, want[k][1]);
    }
}

/* Polls whose ends coincide, as a clock that steps in 10 ns makes them:
   each child is written strictly inside its parent, 1 ns in from its start
   and 2 from its end, and before its next sibling. */
static void test_shared_ends_are_written_strictly_nested(void)
{
    static const uint64_t polls[][3] = {
        { 150, 200, 1 }, { 100, 200, 0 },                  /* a child ends with its parent */
        { 300, 400, 1 }, { 300, 400, 0 },                  /* a child with its parent's start and end */
        { 500, 550, 1 }, { 550, 600, 1 }, { 500, 600, 0 }, /* two children touching, and their parent */
        { 800, 900, 2 }, { 800, 900, 1 }, { 800, 900, 0 }, /* three deep, all the same */
        { 950, 952, 1 }, { 950, 952, 0 },                  /* 1 ns in 2 ns: no room */
    };
    static const uint64_t want[][2] = {
        { 150, 198 }, { 100, 200 }, { 301, 398 }, { 300, 400 }, { 501, 549 }, { 550, 598 },
        { 500, 600 }, { 802, 896 }, { 801, 898 }, { 800, 900 }, { 952, 952 }, { 950, 952 },
    };
    CHECK(write_made(polls, 12, 1.0));
    check_written(want, 12);
    CHECK_EQ(count_events(&tr, 0, "outer"), 5);
    CHECK_EQ(count_events(&tr, 0, "outer;inner"), 6);
    CHECK_EQ(count_events(&tr, 0, "outer;inner;leaf"), 1);
    CHECK(nesting_holds(&tr));
    tr.n = 10; /* all but the last two, which have no room */
    CHECK(strictly_nested(&tr));
}

/* At a rate where rounding shows: each end is rounded on its own (halves
   up) and dur is the end minus the start, never a duration rounded apart. */
static void test_ends_rounded_dur_is_their_difference(void)
{
    static const uint64_t polls[][3] = { { 1, 2, 0 }, { 11, 14, 0 }, { 21, 23, 0 }, { 31, 36, 0 } };
    /* at 0.5 ns a tick: 0.5 -> 1, 1 -> 1; 5.5 -> 6, 7; 10.5 -> 11, 11.5 -> 12; 15.5 -> 16, 18 */
    static const uint64_t want[][2] = { { 1, 1 }, { 6, 7 }, { 11, 12 }, { 16, 18 } };
    CHECK(write_made(polls, 4, 0.5));
    check_written(want, 4);
}

/* Ticks read on two CPUs can disagree: a child's end past its parent's, a
   poll starting before the one before it ended, a child all before its
   parent. All are written nested and apart, so no viewer can mis-nest them. */
static void test_clock_skew_is_written_nested(void)
{
    static const uint64_t polls[][3] = {
        { 120, 205, 1 }, { 100, 200, 0 },                  /* ends 5 ticks after its parent */
        { 310, 350, 1 }, { 345, 390, 1 }, { 300, 400, 0 }, /* the second child starts before the first ends */
        { 500, 600, 0 }, { 595, 700, 0 },                  /* two outer polls overlap */
        { 795, 798, 1 }, { 800, 900, 0 },                  /* the child seems to end before its parent began */
    };
    static const uint64_t want[][2] = {
        { 120, 198 }, { 100, 200 }, { 310, 344 }, { 345, 390 }, { 300, 400 },
        { 500, 594 }, { 595, 700 }, { 801, 801 }, { 800, 900 },
    };
    CHECK(write_made(polls, 9, 1.0));
    check_written(want, 9);
    CHECK_EQ(count_events(&tr, 0, "outer"), 5);
    CHECK_EQ(count_events(&tr, 0, "outer;inner"), 4);
    CHECK(nesting_holds(&tr));
    CHECK(strictly_nested(&tr));
}

/* A ring read while its thread writes it: every event copied is whole (its
   fields from one poll: here path and dur made from start) and they follow
   one another, however often the writer laps the reader. */
static diag__ring *lapped;
static int lapping_stop;

static void *lap_writer(void *arg)
{
    uint64_t k = 1;
    (void)arg;
    while (!__atomic_load_n(&lapping_stop, __ATOMIC_ACQUIRE)) {
        diag__ring_put(lapped, (uint32_t)k, k, 3 * k);
        k++;
    }
    return NULL;
}

static void test_ring_copy_is_whole_while_written(void)
{
    diag__event out[8];
    pthread_t th;
    uint64_t end = tt_now_ns() + 200 * MS;
    size_t i, n;
    long bad = 0, copied = 0;
    lapped = (diag__ring *)calloc(1, sizeof *lapped + 9 * sizeof(diag__event));
    CHECK(lapped != NULL);
    if (lapped == NULL) return;
    lapped->slots = 9; /* 8 events */
    lapped->events = (diag__event *)(void *)(lapped + 1);
    pthread_create(&th, NULL, lap_writer, NULL);
    while (tt_now_ns() < end) {
        n = diag__ring_copy(lapped, out);
        for (i = 0; i < n; i++) {
            bad += out[i].dur != 3 * out[i].start || out[i].path != (uint32_t)out[i].start ||
                   (i > 0 && out[i].start != out[i - 1].start + 1);
        }
        bad += n > 8;
        copied += (long)n;
    }
    __atomic_store_n(&lapping_stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    printf("  %ld events copied\n", copied);
    CHECK_EQ(bad, 0);
    CHECK(copied > 0);
    free(lapped);
}

static void test_exited_threads_kept_up_to_16(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=10", NULL };
    char path[300];
    CHECK_EQ(tt_spawn(fresh_dir(), "exited", env), 0);
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "short_lived"), 16);
    CHECK_EQ(tr.threads, 16); /* the main thread never polled: no ring */
}

static void test_slow_poll_writes_a_trace(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=100", "DIAGNOSE_SLOW_NS=2000000", "DIAGNOSE_QUIET=", "DIAGNOSE_OUT=out",
                          NULL };
    char path[300], *err;
    int i, found = 0;
    CHECK_EQ(tt_spawn(fresh_dir(), "slow", env), 0);
    snprintf(path, sizeof path, "%s/out.slow.1.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "fast"), 1);
    for (i = 0; i < tr.n; i++)
        if (strcmp(tr.ev[i].name, "slow") == 0 && tr.ev[i].dur >= 5 * MS * 0.98) found++;
    CHECK_EQ(found, 1);
    snprintf(path, sizeof path, "%s/out.slow.2.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK(count_events(&tr, 0, "slow") >= 3); /* the first two, and the one that asked */
    err = tt_readf("%s/stderr.txt", dir); /* DIAGNOSE_QUIET is not set */
    CHECK(err && strstr(err, "diagnose.h: slow poll; wrote out.slow.1.trace.json\n"));
    free(err);
}

static void test_slow_nested_poll_waits_for_its_parent(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=100", "DIAGNOSE_SLOW_NS=2000000", "DIAGNOSE_OUT=out", NULL };
    char path[300];
    event slow[2];
    int k;
    CHECK_EQ(tt_spawn(fresh_dir(), "slow_nested", env), 0);
    snprintf(path, sizeof path, "%s/out.slow.1.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "outer"), 1);
    CHECK_EQ(count_events(&tr, 0, "outer;inner"), 1);
    CHECK(nesting_holds(&tr));
    CHECK_EQ(tr.n, 2);
    memcpy(slow, tr.ev, sizeof slow);
    /* the same two polls in the exit's trace, written later: the same
       figures to the ns, as the tick rate is measured once */
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(tr.n, 2);
    for (k = 0; k < 2 && k < tr.n; k++) {
        CHECK_STR(tr.ev[k].path, slow[k].path);
        CHECK_EQ(tr.ev[k].ts, slow[k].ts);
        CHECK_EQ(tr.ev[k].dur, slow[k].dur);
    }
}

static void test_slow_poll_in_an_open_poll(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=100", "DIAGNOSE_SLOW_NS=2000000", "DIAGNOSE_OUT=out", NULL };
    char path[300];
    CHECK_EQ(tt_spawn(fresh_dir(), "slow_open", env), 0);
    snprintf(path, sizeof path, "%s/out.slow.1.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "outer"), 0); /* still open when written */
    CHECK_EQ(count_events(&tr, 0, "outer;inner"), 1);
}

static void test_snapshots_and_exit_write_it(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=100", "DIAGNOSE_INTERVAL=0.05", "DIAGNOSE_OUT=out", NULL };
    char path[300];
    CHECK_EQ(tt_spawn(fresh_dir(), "snapshots", env), 0);
    snprintf(path, sizeof path, "%s/out.1.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "ticked"), 3);
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "ticked"), 3);
}

static void test_reset_empties_the_trace(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=100", NULL };
    char path[300];
    CHECK_EQ(tt_spawn(fresh_dir(), "reset", env), 0);
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "before"), 0);
    CHECK_EQ(count_events(&tr, 0, "spanning"), 1); /* it ended after the reset */
    CHECK_EQ(count_events(&tr, 0, "after"), 4);
    CHECK_EQ(tr.threads, 1);
}

static void test_fork_child_starts_empty(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=100", NULL };
    char path[300];
    CHECK_EQ(tt_spawn(fresh_dir(), "fork", env), 0);
    snprintf(path, sizeof path, "%s/child.trace.json", dir);
    CHECK(read_trace(&tr, path));
    CHECK_EQ(count_events(&tr, 0, "parent"), 0);
    CHECK_EQ(count_events(&tr, 0, "other"), 0);
    CHECK_EQ(count_events(&tr, 0, "in_child"), 1);
    CHECK_EQ(tr.threads, 1); /* the parent's other thread is not in the child */
}

static void test_bad_value_is_named(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=lots", NULL };
    char path[300], *err;
    CHECK_EQ(tt_spawn(fresh_dir(), "bad", env), 0);
    snprintf(path, sizeof path, "%s/out.trace.json", dir);
    CHECK(!tt_exists(path));
    snprintf(path, sizeof path, "%s/out.polls.folded", dir);
    CHECK(tt_exists(path));
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, "diagnose.h: DIAGNOSE_TRACE='lots' is not a whole number; accepted: a whole number from 0 to "
                   "16777216; using 0\n");
    free(err);
}

static void test_dumps_while_threads_poll(void)
{
    const char *env[] = { "DIAGNOSE_TRACE=64", NULL };
    char path[300];
    int k, i, events = 0;
    CHECK_EQ(tt_spawn(fresh_dir(), "concurrent", env), 0);
    for (k = 0; k < 30; k++) {
        snprintf(path, sizeof path, "%s/out%d.trace.json", dir, k);
        CHECK(read_trace(&tr, path));
        CHECK(tr.n <= 128);
        CHECK(names_match_paths(&tr));
        /* whole events: on each thread, in order and apart */
        for (i = 1; i < tr.n; i++)
            if (tr.ev[i].tid == tr.ev[i - 1].tid) CHECK(tr.ev[i].ts >= tr.ev[i - 1].ts + tr.ev[i - 1].dur);
        events += tr.n;
    }
    CHECK(events > 30 * 64); /* most dumps saw both threads' full rings */
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    tt_quiet_exit_dump();
    RUN(test_off_by_default);
    RUN(test_counts_nesting_and_exited_thread);
    RUN(test_ring_keeps_the_last_n);
    RUN(test_shared_ends_are_written_strictly_nested);
    RUN(test_ends_rounded_dur_is_their_difference);
    RUN(test_clock_skew_is_written_nested);
    RUN(test_ring_copy_is_whole_while_written);
    RUN(test_exited_threads_kept_up_to_16);
    RUN(test_slow_poll_writes_a_trace);
    RUN(test_slow_nested_poll_waits_for_its_parent);
    RUN(test_slow_poll_in_an_open_poll);
    RUN(test_snapshots_and_exit_write_it);
    RUN(test_reset_empties_the_trace);
    RUN(test_fork_child_starts_empty);
    RUN(test_bad_value_is_named);
    RUN(test_dumps_while_threads_poll);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif /* DIAGNOSE_DISABLE */
