/* The smallest end-to-end check: one future, three polls, three files; and
   the library's start-up (the thread's table, the path, the run's record)
   is not charged to the first future of a process. */
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

/* A child: the first marked future of the process, polled three times
   doing nothing, then a second one the same way (a new path and run too,
   but the library started); their busy and wall times in ns go to busy.txt. */
static int first_future(void)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0 }, d = { DIAG_FUTURE_INIT(counter_poll), 0 };
    diag_future *f = DIAGNOSE_AS(&c.base, "first"), *g = DIAGNOSE_AS(&d.base, "second");
    tt_row r, q;
    FILE *out;
    while (diag_poll(f, NULL) == DIAG_PENDING) {
    }
    while (diag_poll(g, NULL) == DIAG_PENDING) {
    }
    r = tt_row_of("first");
    q = tt_row_of("second");
    out = fopen("busy.txt", "w");
    if (out == NULL) return 1;
    fprintf(out, "%llu %llu %llu %llu %llu\n", (unsigned long long)r.polls, (unsigned long long)r.busy,
            (unsigned long long)q.busy, (unsigned long long)r.wall, (unsigned long long)q.wall);
    return fclose(out) != 0;
}

/* The first future's three empty polls take less than 1 us more than the
   second's; the library's start-up added 2 us to them when it was charged
   to the poll. Its run's wall is less than 8 us longer than the second's:
   the thread's table of histograms, made inside it, added 17 to 25 us.
   Best of three processes: an interrupt inside one run cannot fail it.
   Under ThreadSanitizer, whose first atomics and first touches of memory
   are slow in any code, and under an emulator (TT_EXEC), only the counts
   are checked. */
#if defined(__SANITIZE_THREAD__)
#define TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TSAN 1
#endif
#endif
static void test_start_up_is_not_the_future_s(void)
{
    unsigned long long polls = 0, first = 0, second = 0, first_wall = 0, second_wall = 0;
    long long best = 1LL << 62, best_wall = 1LL << 62;
    int i;
    for (i = 0; i < 3 && (best >= 1000 || best_wall >= 8000); i++) {
        const char *dir = tt_tempdir();
        char *text;
        CHECK_EQ(tt_spawn(dir, "first", NULL), 0);
        text = tt_readf("%s/busy.txt", dir);
        CHECK(text != NULL &&
              sscanf(text, "%llu %llu %llu %llu %llu", &polls, &first, &second, &first_wall, &second_wall) == 5);
        CHECK_EQ(polls, 3);
        if ((long long)first - (long long)second < best) best = (long long)first - (long long)second;
        if ((long long)first_wall - (long long)second_wall < best_wall)
            best_wall = (long long)first_wall - (long long)second_wall;
        free(text);
    }
    CHECK(first_wall > 0 && second_wall > 0); /* measured (busy may be 0 ticks of a coarse counter: qemu's are 16 ns) */
#ifndef TSAN
    if (getenv("TT_EXEC") != NULL && *getenv("TT_EXEC") != '\0') {
        printf("  times not checked: under TT_EXEC (an emulator) they are the emulator's\n");
        return;
    }
    CHECK_RANGE(best, -1e9, 999);
    CHECK_RANGE(best_wall, -1e9, 7999);
#endif
}

static const tt_child children[] = { { "first", first_future } };

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_three_polls_in_three_files);
    RUN(test_start_up_is_not_the_future_s);
    return test_summary();
}
