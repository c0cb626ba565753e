/* Output that could mislead, and three direct tests of accounting that
   other tests only reached by chance:
   - the [overflow] row names the limit to raise (DIAGNOSE_MAX_PATHS, or
     memory);
   - the drop lint needs 3 drops: one abandoned run is not a pattern;
   - the wall SVG's heading says its total is every run's wall summed, and
     shows the elapsed time;
   - C1 control characters (U+0080..U+009F) in a name become '_';
   - busy time of two threads that polled and exited is kept, summed;
   - diag_reset after a thread exited leaves its paths out of later dumps. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */

#define MS 1000000ull

struct task {
    diag_future base;
    int pending, n;
    uint64_t spin_ns;
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    (void)cx;
    if (t->spin_ns) tt_spin_ns(t->spin_ns);
    if (t->n++ < t->pending) return DIAG_PENDING;
    t->n = 0;
    return DIAG_READY;
}

static diag_future *task_init(struct task *t, const char *name, int pending, uint64_t spin_ns)
{
    struct task zero = { DIAG_FUTURE_INIT(task_poll), 0, 0, 0 };
    *t = zero;
    t->pending = pending;
    t->spin_ns = spin_ns;
    return DIAGNOSE_AS(&t->base, name);
}

static char dir[256];

/* The summary table of a snapshot taken now, as text. Caller frees. */
static char *table_now(void)
{
    diag__snapshot snap;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) return NULL;
    if (diag__snapshot_take(&snap) == 0) {
        diag__print_table(out, &snap, "P");
        diag__snapshot_free(&snap);
    }
    fclose(out);
    return text;
}

/* The line of text that ends with `end` (static buffer), or "". */
static const char *line_ending(const char *text, const char *end)
{
    static char line[512];
    const char *p = text;
    size_t n = strlen(end);
    line[0] = '\0';
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= n && strncmp(p + len - n, end, n) == 0) {
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            return line;
        }
        p = nl ? nl + 1 : NULL;
    }
    return line;
}

/* ---- children ------------------------------------------------------------------ */

/* Three paths under DIAGNOSE_MAX_PATHS=1: the second and third overflow. */
static int child_three_paths(void)
{
    struct task a, b, c;
    diag_poll(task_init(&a, "first", 0, 0), NULL);
    diag_poll(task_init(&b, "second", 0, 0), NULL);
    diag_poll(task_init(&c, "third", 0, 0), NULL);
    return 0;
}

static const tt_child children[] = {
    { "three_paths", child_three_paths },
};

/* ---- [overflow] ------------------------------------------------------------------ */

/* At exit, with the cap reached: a line under the table says which setting,
   and its bound; the row keeps one token per column. */
static void test_overflow_row_names_the_setting(void)
{
    const char *env[] = { "DIAGNOSE_MAX_PATHS=1", "DIAGNOSE_QUIET=", "DIAGNOSE_OUT=o", NULL };
    char *err, *polls;
    CHECK_EQ(tt_spawn(dir, "three_paths", env), 0);
    err = tt_readf("%s/stderr.txt", dir);
    polls = tt_readf("%s/o.polls.folded", dir);
    CHECK_STR(polls, "[overflow] 2\nfirst 1\n"); /* the file keeps the plain frame */
    CHECK(err && strstr(err, "  [overflow]\n"));
    CHECK(err && strstr(err, "\n[overflow]: new paths past DIAGNOSE_MAX_PATHS=1: raise it, up to 1048574\n"));
    CHECK(err && strstr(err, "  first\n"));
    free(err);
    free(polls);
}

/* The note for each reason, as the line under the table prints it (the reason set by
   hand: running out of memory has its own tests in test_memory_pressure.c). */
static void test_overflow_note_for_memory(void)
{
    diag__row r;
    char note[160];
    int saved = diag__rt->overflow_why;
    uint32_t saved_max = diag__rt->max_paths;
    memset(&r, 0, sizeof r);
    r.stack = "[overflow]";
    diag__rt->max_paths = 500;
    diag__rt->overflow_why = DIAG__OVERFLOW_MEMORY;
    CHECK_STR(diag__row_note(&r, note, sizeof note), "[overflow]: new paths that found no memory\n");
    diag__rt->overflow_why = DIAG__OVERFLOW_MEMORY | DIAG__OVERFLOW_CAP;
    CHECK_STR(diag__row_note(&r, note, sizeof note),
              "[overflow]: new paths past DIAGNOSE_MAX_PATHS=500: raise it, up to 1048574; and paths that found no memory\n");
    diag__rt->overflow_why = 0;
    CHECK_STR(diag__row_note(&r, note, sizeof note), "");
    r.stack = "main";
    diag__rt->overflow_why = DIAG__OVERFLOW_CAP;
    CHECK_STR(diag__row_note(&r, note, sizeof note), "");
    diag__rt->overflow_why = saved;
    diag__rt->max_paths = saved_max;
}

/* ---- lints ----------------------------------------------------------------------- */

/* Dropped once or twice and never finished: no lint; three times: the lint. */
static void test_drop_lint_needs_three(void)
{
    static const char *const names[3] = { "drop.once", "drop.twice", "drop.thrice" };
    struct task t;
    int k, i;
    char *table;
    diag_reset();
    for (k = 0; k < 3; k++)
        for (i = 0; i <= k; i++) {
            diag_future *f = task_init(&t, names[k], 5, 0);
            diag_poll(f, NULL);
            diag_drop(f);
        }
    table = table_now();
    CHECK(table != NULL);
    if (table == NULL) return;
    CHECK(strstr(table, "lint: drop.once: dropped") == NULL);
    CHECK(strstr(table, "lint: drop.twice: dropped") == NULL);
    CHECK_STR(line_ending(table, "dropped 3 times, finished 0"), "lint: drop.thrice: dropped 3 times, finished 0");
    free(table);
}

/* ---- the wall SVG's heading ------------------------------------------------------- */

/* "12.3ms" and the like, in ns. */
static double parse_duration(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (strncmp(end, "ns", 2) == 0) return v;
    if (strncmp(end, "us", 2) == 0) return v * 1e3;
    if (strncmp(end, "ms", 2) == 0) return v * 1e6;
    if (strncmp(end, "s", 1) == 0) return v * 1e9;
    return -1;
}

/* Four runs open at once across a 50 ms sleep, after a reset: the heading
   says the total is the runs' walls summed (about 200 ms) and the elapsed
   time since the reset (about 50 ms, which the test clock bounds). */
static void test_wall_heading_says_summed_and_elapsed(void)
{
    static const char *const head = ">diagnose.h: wall time, total ";
    struct task t[4];
    diag_future *f[4];
    char prefix[300];
    char *svg, *at;
    uint64_t t0, t1;
    double total, elapsed;
    int k;
    t0 = tt_now_ns(); /* before the reset: the elapsed time counts from inside it */
    CHECK_EQ(diag_reset(), 0);
    for (k = 0; k < 4; k++) {
        f[k] = task_init(&t[k], "overlap", 1, 0);
        diag_poll(f[k], NULL);
    }
    tt_sleep_ns(50 * MS);
    for (k = 0; k < 4; k++) diag_poll(f[k], NULL);
    snprintf(prefix, sizeof prefix, "%s/heading", dir);
    CHECK_EQ(diag_write_svg(prefix), 0);
    t1 = tt_now_ns();
    svg = tt_readf("%s.wall.svg", prefix);
    at = svg ? strstr(svg, head) : NULL;
    CHECK(at != NULL);
    if (at == NULL) {
        free(svg);
        return;
    }
    at += strlen(head);
    total = parse_duration(at);
    at = strstr(at, " (every run's wall summed), ");
    CHECK(at != NULL);
    if (at == NULL) {
        free(svg);
        return;
    }
    elapsed = parse_duration(at + strlen(" (every run's wall summed), "));
    CHECK(strncmp(strchr(at + strlen(" (every run's wall summed), "), ' '), " elapsed</text>", 15) == 0);
    /* each run slept 50 ms; three digits shown, so 1% for rounding */
    CHECK_RANGE(total, 4 * 50e6 * 0.97, 4 * (double)(t1 - t0) * 1.02);
    CHECK_RANGE(elapsed, 50e6 * 0.97, (double)(t1 - t0) * 1.02 + 50000);
    /* the point: summed walls are not time that passed (under valgrind the
       polls around the sleep took 23 ms more; 4 x 50 ms > 2 x 73 ms) */
    CHECK(total > 2 * elapsed);
    free(svg);
    /* the other headings keep their form */
    svg = tt_readf("%s.busy.svg", prefix);
    CHECK(svg && strstr(svg, ">diagnose.h: busy time, total ") && !strstr(svg, "elapsed"));
    free(svg);
}

/* ---- direct tests ------------------------------------------------------------------ */

/* U+0080..U+009F (two bytes each in UTF-8) are control characters: '_'
   for each byte. U+00A0 is a space (refused too); U+00A1 is the first kept. */
static void test_c1_control_characters(void)
{
    struct task a, b, c, d;
    char prefix[300], *polls;
    diag_reset();
    diag_poll(task_init(&a, "nel\xc2\x85x", 0, 0), NULL);
    diag_poll(task_init(&b, "c1\xc2\x80" "first\xc2\x9f" "last", 0, 0), NULL);
    diag_poll(task_init(&c, "inverted\xc2\xa1kept", 0, 0), NULL);
    diag_poll(task_init(&d, "nbsp\xc2\xa0refused", 0, 0), NULL);
    snprintf(prefix, sizeof prefix, "%s/c1", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK_STR(polls, "c1__first__last 1\ninverted\xc2\xa1kept 1\nnbsp__refused 1\nnel__x 1\n");
    CHECK(tt_folded_ok(polls));
    free(polls);
}

/* One poll that spins 2 ms, then the thread exits. */
static void *spin_once_and_exit(void *arg)
{
    struct task t;
    (void)arg;
    diag_poll(task_init(&t, "exited.spin", 0, 2 * MS), NULL);
    return NULL;
}

/* Two threads one after the other, each one 2 ms poll, both gone before
   the dump: the path keeps both polls and at least 4 ms of busy time. */
static void test_busy_of_exited_threads(void)
{
    pthread_t th;
    char prefix[300], *busy, *polls;
    uint64_t t0, t1;
    int k;
    diag_reset();
    t0 = tt_now_ns();
    for (k = 0; k < 2; k++) {
        CHECK_EQ(pthread_create(&th, NULL, spin_once_and_exit, NULL), 0);
        pthread_join(th, NULL);
    }
    t1 = tt_now_ns();
    snprintf(prefix, sizeof prefix, "%s/exited", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    busy = tt_readf("%s.busy.folded", prefix);
    CHECK_STR(polls, "exited.spin 2\n");
    /* 2 x 2 ms spun inside the polls (2% + 50 us for calibration); at most
       the time both threads took */
    CHECK_RANGE(tt_value(busy, "exited.spin"), 2 * (2e6 * 0.98 - 50000), (double)(t1 - t0) * 1.02 + 50000);
    free(polls);
    free(busy);
}

static void *poll_once_and_exit(void *arg)
{
    struct task t;
    (void)arg;
    diag_poll(task_init(&t, "exited.before.reset", 0, 0), NULL);
    return NULL;
}

/* A thread polls and exits; diag_reset; a dump has no line for its path,
   and what the main thread polls after the reset is there. */
static void test_reset_after_exited_thread(void)
{
    pthread_t th;
    struct task t;
    char prefix[300], *polls;
    diag_reset();
    CHECK_EQ(pthread_create(&th, NULL, poll_once_and_exit, NULL), 0);
    pthread_join(th, NULL);
    snprintf(prefix, sizeof prefix, "%s/before-reset", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK_STR(polls, "exited.before.reset 1\n"); /* it was counted */
    free(polls);
    CHECK_EQ(diag_reset(), 0);
    diag_poll(task_init(&t, "after.reset", 0, 0), NULL);
    snprintf(prefix, sizeof prefix, "%s/after-reset", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK_STR(polls, "after.reset 1\n");
    free(polls);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    RUN(test_overflow_row_names_the_setting);
    RUN(test_overflow_note_for_memory);
    RUN(test_drop_lint_needs_three);
    RUN(test_wall_heading_says_summed_and_elapsed);
    RUN(test_c1_control_characters);
    RUN(test_busy_of_exited_threads);
    RUN(test_reset_after_exited_thread);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif
