/* Bad names and shapes: any bytes as a name give valid folded lines, and
   recursion deeper than DIAG_MAX_DEPTH is folded into the deepest frame,
   counted, and reported once at exit. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#ifdef DIAGNOSE_DISABLE
#define DIAG__NAME_MAX 160 /* the implementation's, for the compile-only build */
#endif

struct counter { diag_future base; struct counter *inner; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    if (c->inner) diag_poll(&c->inner->base, cx);
    return DIAG_READY;
}

static void poll_named(const char *name, int n)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), NULL };
    DIAGNOSE_AS(&c.base, name);
    while (n-- > 0) diag_poll(&c.base, NULL);
}


static char long_ascii[10241], long_utf8[10241];

static void test_bad_names_make_valid_lines(void)
{
    struct { const char *name, *frame; int polls; } cases[] = {
        { "semi;colon", "semi_colon", 1 },
        { "with space", "with_space", 2 },
        { "tab\there", "tab_here", 3 },
        { "new\nline", "new_line", 4 },
        { "\x01\x02" "ctl\x7f", "__ctl_", 5 },
        { "bad\xff\xfe", "bad__", 6 },
        { "trunc\xc3", "trunc_", 7 },
        { "overlong\xc0\xaf", "overlong__", 8 },
        { "surrogate\xed\xa0\x80", "surrogate___", 9 },
        { "caf\xc3\xa9", "caf\xc3\xa9", 10 },
        { "nbsp\xc2\xa0x", "nbsp__x", 11 },
        { "ls\xe2\x80\xa8x", "ls___x", 12 },
        { "cr\rx", "cr_x", 13 },
        { "", "[unnamed]", 14 },
    };
    size_t i, n = sizeof cases / sizeof cases[0];
    char want_long[DIAG__NAME_MAX + 1];
    char *polls, *busy, *wall;
    for (i = 0; i < n; i++) poll_named(cases[i].name, cases[i].polls);
    memset(long_ascii, 'x', sizeof long_ascii - 1);
    for (i = 0; i + 2 < sizeof long_utf8; i += 2) memcpy(long_utf8 + i, "\xc3\xa9", 2);
    poll_named(long_ascii, 20);
    poll_named(long_utf8, 21);
    polls = tt_dumped("polls");
    CHECK(tt_folded_ok(polls));
    for (i = 0; i < n; i++) {
        long long v = tt_value(polls, cases[i].frame);
        if (v != cases[i].polls) printf("  case %lu: %s\n", (unsigned long)i, cases[i].frame);
        CHECK_EQ(v, cases[i].polls);
    }
    /* 10 kB names: cut to DIAG__NAME_MAX bytes ending in "...", never in
       the middle of a UTF-8 sequence */
    memset(want_long, 'x', DIAG__NAME_MAX - 3);
    memcpy(want_long + DIAG__NAME_MAX - 3, "...", 4);
    CHECK_EQ(tt_value(polls, want_long), 20);
    for (i = 0; i + 2 <= DIAG__NAME_MAX - 3; i += 2) memcpy(want_long + i, "\xc3\xa9", 2);
    memcpy(want_long + i, "...", 4);
    CHECK_EQ(tt_value(polls, want_long), 21);
    CHECK_EQ(tt_lines(polls), n + 2);
    free(polls);
    busy = tt_dumped("busy");
    wall = tt_dumped("wall");
    CHECK(tt_folded_ok(busy) && tt_lines(busy) == n + 2);
    CHECK(tt_folded_ok(wall) && tt_lines(wall) == n + 2);
    free(busy);
    free(wall);
}

/* Bad names in both frames of a nested path. */
static void test_bad_names_nested(void)
{
    struct counter inner = { DIAG_FUTURE_INIT(counter_poll), NULL };
    struct counter outer = { DIAG_FUTURE_INIT(counter_poll), &inner };
    char *polls;
    DIAGNOSE_AS(&outer.base, "out er;");
    DIAGNOSE_AS(&inner.base, "in\nner\xff");
    diag_poll(&outer.base, NULL);
    diag_poll(&outer.base, NULL);
    polls = tt_dumped("polls");
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(tt_value(polls, "out_er_"), 2);
    CHECK_EQ(tt_value(polls, "out_er_;in_ner_"), 2);
    free(polls);
}

/* DIAGNOSE's derived name is the argument text without & and *. */
static void test_derived_names(void)
{
    struct counter arr[2] = { { DIAG_FUTURE_INIT(counter_poll), NULL }, { DIAG_FUTURE_INIT(counter_poll), NULL } };
    diag_future *p = &arr[1].base;
    char *polls;
    diag_poll(DIAGNOSE(&arr[0].base), NULL);
    diag_poll(DIAGNOSE(p), NULL);
    diag_poll(DIAGNOSE(p), NULL);
    polls = tt_dumped("polls");
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(tt_value(polls, "arr[0].base"), 1);
    CHECK_EQ(tt_value(polls, "p"), 2);
    free(polls);
}

/* ---- recursion deeper than DIAG_MAX_DEPTH ---- */
#define CHAIN 100

static struct counter chain[CHAIN];

static void build_chain(void)
{
    int i;
    for (i = 0; i < CHAIN; i++) {
        chain[i].base.poll = counter_poll;
        chain[i].inner = i + 1 < CHAIN ? &chain[i + 1] : NULL;
        DIAGNOSE_AS(&chain[i].base, "rec");
    }
}

/* A chain of 100 nested polls, 3 times: the first 63 frames get one line
   each with 3 polls, the 64th frame gets its own 3 plus the 36 deeper polls
   of each round; the snapshot counts 108 folded polls. */
static void test_deep_recursion_folded(void)
{
#ifndef DIAGNOSE_DISABLE /* reads the snapshot's count of folded polls */
    char stack[DIAG_MAX_DEPTH * 4 + 1] = "";
    char *polls;
    diag__snapshot snap;
    int i, round;
    build_chain();
    for (round = 0; round < 3; round++) diag_poll(&chain[0].base, NULL);
    polls = tt_dumped("polls");
    CHECK(tt_folded_ok(polls));
    for (i = 1; i <= DIAG_MAX_DEPTH; i++) {
        strcat(stack, i == 1 ? "rec" : ";rec");
        if (i < DIAG_MAX_DEPTH) CHECK_EQ(tt_value(polls, stack), 3);
    }
    CHECK_EQ(tt_value(polls, stack), 3 + 3 * (CHAIN - DIAG_MAX_DEPTH));
    CHECK(diag__snapshot_take(&snap) == 0);
    CHECK_EQ(snap.folded, 3 * (CHAIN - DIAG_MAX_DEPTH));
    diag__snapshot_free(&snap);
    free(polls);
#endif
}

static int child_deep(void)
{
    int round;
    build_chain();
    for (round = 0; round < 3; round++) diag_poll(&chain[0].base, NULL);
    diag_dump(NULL); /* a dump does not report; the exit does, once */
    return 0;
}

static const tt_child children[] = { { "deep", child_deep } };

static void test_depth_reported_once_at_exit(void)
{
    const char *dir = tt_tempdir();
    const char *env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", NULL };
    char want[256], *err;
    CHECK_EQ(tt_spawn(dir, "deep", env), 0);
    snprintf(want, sizeof want,
             "diagnose.h: %d runs or polls deeper than %d frames were folded into their deepest frame\n",
             3 * (CHAIN - DIAG_MAX_DEPTH), DIAG_MAX_DEPTH);
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, want);
    free(err);
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    RUN(test_bad_names_make_valid_lines);
    RUN(test_bad_names_nested);
    RUN(test_derived_names);
    RUN(test_deep_recursion_folded);
    RUN(test_depth_reported_once_at_exit);
    return test_summary();
}
