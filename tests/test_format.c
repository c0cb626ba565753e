/* Frame names and the pinned line format: hostile names never break the
   grammar ^[^ ;]+(;[^ ;]+)* [0-9]+$ or UTF-8, allowed names pass through
   exactly, DIAGNOSE derives a name from its argument, and sites with the
   same name share one line. Each test starts with diag_reset(), so a dump
   holds only its own paths. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

static char dir[256];

/* PENDING `pending` times, then READY; polls child (until READY) if set. */
struct task {
    diag_future base;
    int pending, n, polls, child_ready;
    diag_future *child;
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    t->polls++;
    if (t->child && !t->child_ready) t->child_ready = diag_poll(t->child, cx) == DIAG_READY;
    if (t->n++ < t->pending || (t->child && !t->child_ready)) return DIAG_PENDING;
    t->n = 0;
    t->child_ready = 0;
    return DIAG_READY;
}

static struct task task_make(int pending)
{
    struct task t;
    diag_future init = DIAG_FUTURE_INIT(task_poll);
    memset(&t, 0, sizeof t);
    t.base = init;
    t.pending = pending;
    return t;
}

static void drive(diag_future *f)
{
    while (diag_poll(f, NULL) == DIAG_PENDING) {
    }
}

static char *files[3];

/* Dumps to dir/out; files[0..2] = polls, busy, wall texts, each checked
   against the grammar, UTF-8, order and uniqueness. */
static void dump_all(void)
{
    static const char *const metrics[3] = { "polls", "busy", "wall" };
    char prefix[300];
    int i;
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    for (i = 0; i < 3; i++) {
        free(files[i]);
        files[i] = tt_readf("%s.%s.folded", prefix, metrics[i]);
        CHECK(files[i] != NULL);
        CHECK(tt_folded_ok(files[i]));
    }
    if (files[0] == NULL) files[0] = (char *)calloc(1, 1);
}

/* ---- hostile names -------------------------------------------------------- */

static char huge[10 * 1024 + 1], huge_separators[10 * 1024 + 1];

static const char *const hostile[] = {
    "semi;colon", "two words", "tab\there", "new\nline", "cr\rreturn", "form\ffeed", "\x01\x02\x1b[31mred",
    "del\x7f", "\xff\xfe", "cut\xc3", "cut3\xe2\x82", "overlong\xc0\xaf", "surrogate\xed\xa0\x80",
    "nbsp\xc2\xa0x", "linesep\xe2\x80\xa8x", "ideo\xe3\x80\x80space", "bom\xef\xbb\xbf", "", " ", ";", ";;;",
    "trailing ", "42", "x 42", "caf\xc3\xa9", huge, huge_separators,
};
#define NHOSTILE (sizeof hostile / sizeof hostile[0])

/* Every hostile name at the top level, and each under a hostile parent:
   all lines of all files keep the grammar and UTF-8. */
static void test_hostile_names(void)
{
    static struct task tasks[NHOSTILE], parents[NHOSTILE];
    size_t i;
    const char *line;
    memset(huge, 'a', sizeof huge - 1);
    for (i = 0; i + 1 < sizeof huge_separators; i++) huge_separators[i] = "; \t\n"[i % 4];
    diag_reset();
    for (i = 0; i < NHOSTILE; i++) {
        tasks[i] = task_make(1);
        parents[i] = task_make(0);
        drive(DIAGNOSE_AS(&tasks[i].base, hostile[i]));
        parents[i].child = DIAGNOSE_AS(&tasks[i].base, hostile[(i + 1) % NHOSTILE]);
        drive(DIAGNOSE_AS(&parents[i].base, hostile[i]));
        CHECK_EQ(tasks[i].polls, 4);
    }
    dump_all();
    /* each top-level name: 2 polls of its task, 2 of its parent; the
       documented replacement: each unsafe byte becomes '_' */
    CHECK_EQ(tt_value(files[0], "semi_colon"), 4);
    CHECK_EQ(tt_value(files[0], "two_words"), 4);
    CHECK_EQ(tt_value(files[0], "tab_here"), 4);
    CHECK_EQ(tt_value(files[0], "new_line"), 4);
    CHECK_EQ(tt_value(files[0], "cr_return"), 4);
    CHECK_EQ(tt_value(files[0], "del_"), 4);
    CHECK_EQ(tt_value(files[0], "__"), 4); /* \xff\xfe */
    CHECK_EQ(tt_value(files[0], "cut_"), 4);
    CHECK_EQ(tt_value(files[0], "x_42"), 4);
    CHECK_EQ(tt_value(files[0], "42"), 4);
    /* a parent's polls and its child's, joined by the only real ';' */
    CHECK_EQ(tt_value(files[0], "semi_colon;two_words"), 2);
    CHECK_EQ(tt_value(files[0], "tab_here;new_line"), 2);
    /* printable UTF-8 is kept; space-like code points are not */
    CHECK_EQ(tt_value(files[0], "caf\xc3\xa9"), 4);
    CHECK(strstr(files[0], "nbsp\xc2\xa0") == NULL);
    CHECK(strstr(files[0], "\xe2\x80\xa8") == NULL);
    CHECK(strstr(files[0], "\xe3\x80\x80") == NULL);
    CHECK(strstr(files[0], "\xef\xbb\xbf") == NULL);
    /* the empty name still makes a frame */
    CHECK_EQ(tt_value(files[0], "[unnamed]"), 4);
    /* the 10 kB name is one frame, cut short */
    for (line = files[0]; *line; line = strchr(line, '\n') + 1) {
        size_t len = (size_t)(strchr(line, '\n') - line);
        CHECK(len < 1024);
    }
    CHECK(strstr(files[0], "\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") != NULL);
}

/* ---- names that pass through ---------------------------------------------- */

static void test_allowed_names_exact(void)
{
    struct task a = task_make(0), b = task_make(0), c = task_make(2);
    diag_reset();
    drive(DIAGNOSE_AS(&a.base, "Foo::bar<int>(3)[0]#1@x+y=z,a&b/c.d-e_f:"));
    drive(DIAGNOSE_AS(&b.base, "_:.-/<>()[]#@+=,&"));
    drive(DIAGNOSE_AS(&c.base, "AZaz09"));
    dump_all();
    CHECK_STR(files[0], "AZaz09 3\nFoo::bar<int>(3)[0]#1@x+y=z,a&b/c.d-e_f: 1\n_:.-/<>()[]#@+=,& 1\n");
}

static int evaluations;
static struct task fetch, items[3];
static diag_future *next_future(void)
{
    evaluations++;
    return &items[1].base;
}

/* DIAGNOSE names the frame after its argument's text, evaluated once. */
static void test_derived_names(void)
{
    struct task *ptr = &items[2];
    diag_future *fut;
    fetch = task_make(1);
    items[0] = task_make(0);
    items[1] = task_make(0);
    items[2] = task_make(0);
    diag_reset();
    fut = DIAGNOSE(&fetch.base);
    CHECK(fut == &fetch.base);
    drive(fut);
    drive(DIAGNOSE(&items[0].base));
    drive(DIAGNOSE(&(ptr->base)));
    evaluations = 0;
    fut = DIAGNOSE(next_future());
    CHECK_EQ(evaluations, 1);
    CHECK(fut == &items[1].base);
    evaluations = 0;
    fut = DIAGNOSE_AS(next_future(), "named");
    CHECK_EQ(evaluations, 1);
    drive(fut);
    dump_all();
    CHECK(strstr(files[0], "fetch") != NULL);
    CHECK_EQ(tt_value(files[0], "fetch.base"), 2);
    CHECK_EQ(tt_value(files[0], "items[0].base"), 1);
    CHECK_EQ(tt_value(files[0], "ptr->base"), 1);
    CHECK_EQ(tt_value(files[0], "named"), 1);
    CHECK_EQ(tt_lines(files[0]), 4);
}

/* Marking a future again renames its later runs; the run in progress
   keeps the path it started with. */
static void test_rename_applies_to_next_run(void)
{
    struct task t = task_make(3);
    diag_reset();
    CHECK_EQ(diag_poll(DIAGNOSE_AS(&t.base, "before"), NULL), DIAG_PENDING);
    CHECK_EQ(diag_poll(&t.base, NULL), DIAG_PENDING);
    DIAGNOSE_AS(&t.base, "after");
    CHECK_EQ(diag_poll(&t.base, NULL), DIAG_PENDING);
    CHECK_EQ(diag_poll(&t.base, NULL), DIAG_READY);
    CHECK_EQ(diag_poll(&t.base, NULL), DIAG_PENDING);
    dump_all();
    CHECK_STR(files[0], "after 1\nbefore 4\n");
    diag_drop(&t.base);
}

/* ---- merging -------------------------------------------------------------- */

static const char site_name1[] = "dup", site_name2[] = "dup"; /* distinct objects, same text */

/* Two sites with the same name, and names equal once sanitized, print one
   line each with their values added. */
static void test_same_name_one_line(void)
{
    struct task a = task_make(2), b = task_make(1), c = task_make(0), d = task_make(0);
    struct task ka = task_make(0), kb = task_make(0);
    diag_reset();
    drive(DIAGNOSE_AS(&a.base, site_name1));
    drive(DIAGNOSE_AS(&b.base, site_name2));
    drive(DIAGNOSE_AS(&c.base, "same name"));
    drive(DIAGNOSE_AS(&d.base, "same;name"));
    /* children under each of the two "dup" paths */
    a.child = DIAGNOSE_AS(&ka.base, "kid");
    b.child = DIAGNOSE_AS(&kb.base, "kid");
    drive(&a.base);
    drive(&b.base);
    dump_all();
    CHECK_STR(files[0], "dup 10\ndup;kid 2\nsame_name 2\n");
    /* the same lines in the other files */
    CHECK_EQ(tt_lines(files[1]), 3);
    CHECK_EQ(tt_lines(files[2]), 3);
    CHECK(tt_value(files[1], "dup;kid") >= 0 && tt_value(files[2], "same_name") >= 0);
}

int main(void)
{
    setenv("DIAGNOSE_QUIET", "1", 1);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    RUN(test_hostile_names);
    RUN(test_allowed_names_exact);
    RUN(test_derived_names);
    RUN(test_rename_applies_to_next_run);
    RUN(test_same_name_one_line);
    return test_summary();
}
