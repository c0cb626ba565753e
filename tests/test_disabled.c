/* The compiled-out form, as a program: with DIAGNOSE_DISABLE defined
   before the include (and DIAGNOSE_IMPLEMENTATION too, as in a real
   program), the same user code polls its futures, marks return the same
   pointer, diag_dump returns 0 and nothing is ever written, not at exit
   either. */
#ifndef DIAGNOSE_DISABLE
#define DIAGNOSE_DISABLE
#endif
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <dirent.h>

struct task {
    diag_future base;
    int pending, n, polls;
    diag_future *child;
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    t->polls++;
    if (t->child) diag_poll(t->child, cx);
    return t->n++ < t->pending ? DIAG_PENDING : DIAG_READY;
}

/* Entries of d other than . and .. */
static int entries(const char *d)
{
    DIR *dp = opendir(d);
    struct dirent *e;
    int n = 0;
    if (dp == NULL) return -1;
    while ((e = readdir(dp)) != NULL) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dp);
    return n;
}

/* Everything a profiled program would do; returns 0 when it all behaved. */
static int program(void)
{
    struct task parent, child;
    diag_future init = DIAG_FUTURE_INIT(task_poll);
    diag_span span = DIAG_SPAN_INIT("span");
    diag_fiber fiber;
    diag_future *f;
    int pending = 0, bad = 0;
    memset(&parent, 0, sizeof parent);
    memset(&child, 0, sizeof child);
    parent.base = init;
    child.base = init;
    parent.pending = 3;
    parent.child = DIAGNOSE_AS(&child.base, "child");
    f = DIAGNOSE(&parent.base);
    bad += f != &parent.base || parent.child != &child.base;
    while (diag_poll(f, NULL) == DIAG_PENDING) pending++;
    bad += pending != 3 || parent.polls != 4 || child.polls != 4;
    diag_wake(f);
    diag_drop(f);
    memset(&fiber, 0, sizeof fiber);
    diag_span_begin(&span);
    diag_fiber_switch(&fiber);
    diag_fiber_switch(NULL);
    diag_span_end(&span, DIAG_READY);
    diag_span_cancel(&span);
    diag_fiber_drop(&fiber);
    bad += diag_dump(NULL) != 0 || diag_dump("explicit") != 0 || diag_reset() != 0;
    return bad;
}

static const tt_child children[] = { { "program", program } };

static void test_polls_happen_nothing_written(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=", "DIAGNOSE_QUIET=", NULL };
    const char *dir = tt_tempdir();
    char *err;
    /* in a child, so its exit is seen too: status 0, only its stderr.txt */
    CHECK_EQ(tt_spawn(dir, "program", env), 0);
    CHECK_EQ(entries(dir), 1);
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, "");
    free(err);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    RUN(test_polls_happen_nothing_written);
    return test_summary();
}
