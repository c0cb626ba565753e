/* The smallest end-to-end check: one future, three polls, three files. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

struct counter { diag_future base; int n; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    (void)cx;
    return ++c->n == 3 ? DIAG_READY : DIAG_PENDING;
}

static void test_three_polls_in_three_files(void)
{
    const char *dir = tt_tempdir();
    char prefix[300];
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0 };
    diag_future *f = &c.base;
    char *polls, *busy, *wall;
    DIAGNOSE(&c.base); /* as a statement: must build compiled out too */
    DIAGNOSE_AS(f, "smoke");
    while (diag_poll(f, NULL) == DIAG_PENDING) {
    }
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    polls = tt_readf("%s.polls.folded", prefix);
    busy = tt_readf("%s.busy.folded", prefix);
    wall = tt_readf("%s.wall.folded", prefix);
    CHECK_STR(polls, "smoke 3\n");
    CHECK(tt_folded_ok(busy) && tt_lines(busy) == 1 && tt_value(busy, "smoke") >= 0);
    CHECK(tt_folded_ok(wall) && tt_value(wall, "smoke") >= tt_value(busy, "smoke"));
    free(polls);
    free(busy);
    free(wall);
}

int main(void)
{
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_three_polls_in_three_files);
    return test_summary();
}
