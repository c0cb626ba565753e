/* Two translation units: this one holds the implementation, the other
   (test_units.b.c) only includes the header. Their futures nest across
   units and everything lands in one merged dump, in process and at exit. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

diag_status units_b_poll_child(void *cx);
int units_b_run(void);

/* A future of this unit whose polls poll the other unit's unit_b until
   it is READY, then answer READY. */
struct unit_a {
    diag_future base;
    int polls;
};

static diag_status unit_a_poll(diag_future *self, void *cx)
{
    struct unit_a *a = (struct unit_a *)self;
    a->polls++;
    return units_b_poll_child(cx);
}

static const char *const want = "unit_a 2\nunit_a;unit_b 2\nunit_b_top 4\n";

static int workload(void)
{
    struct unit_a a;
    diag_future init = DIAG_FUTURE_INIT(unit_a_poll);
    memset(&a, 0, sizeof a);
    a.base = init;
    while (diag_poll(DIAGNOSE_AS(&a.base, "unit_a"), NULL) == DIAG_PENDING) {
    }
    return a.polls == 2 && units_b_run() == 4 ? 0 : 1;
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (; (text = strstr(text, needle)) != NULL; text++) n++;
    return n;
}

static const tt_child children[] = { { "workload", workload } };

static void test_one_dump_in_process(void)
{
    char prefix[300];
    char *polls;
    diag_reset();
    CHECK_EQ(workload(), 0);
    snprintf(prefix, sizeof prefix, "%s/out", tt_tempdir());
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    CHECK_STR(polls, want);
    free(polls);
}

/* The exit-time write has both units' paths, once. */
static void test_one_dump_at_exit(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=u", "DIAGNOSE_QUIET=", NULL };
    const char *dir = tt_tempdir();
    char *polls, *err;
    CHECK_EQ(tt_spawn(dir, "workload", env), 0);
    polls = tt_readf("%s/u.polls.folded", dir);
    CHECK_STR(polls, want);
    err = tt_readf("%s/stderr.txt", dir);
    /* one table, with a row for each unit's paths */
    CHECK(err != NULL && count(err, "  unit_a\n") == 1 && count(err, "  unit_a;unit_b\n") == 1 &&
          count(err, "  unit_b_top\n") == 1);
    free(polls);
    free(err);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_one_dump_in_process);
    RUN(test_one_dump_at_exit);
    return test_summary();
}
