/* task.h - the configurable future of the accounting tests, and the time
   bounds they check against. Include after diagnose.h and test.h. */
#ifndef DIAG_TEST_TASK_H
#define DIAG_TEST_TASK_H

#define MS 1000000ull
/* Bounds of a measured time: what the test knows happened inside the
   measured interval (lower) and its own clock around it (upper), both
   widened by 2% + 50 us for the counter's calibration. */
#define LO(ns) ((double)(ns) * 0.98 - 50000.0)
#define HI(ns) ((double)(ns) * 1.02 + 50000.0)

/* Answers PENDING `pending` times and then READY; each poll first spins
   spin_ns, then polls `child` (if any, until it is READY) and `inner` (a
   plain future, every poll). A READY task starts over on its next poll. */
struct task {
    diag_future base;
    int pending, n, polls, child_ready;
    uint64_t spin_ns;
    diag_future *child, *inner;
    uint64_t child_outer_ns; /* test clock around the child's polls */
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    t->polls++;
    if (t->spin_ns) tt_spin_ns(t->spin_ns);
    if (t->child && !t->child_ready) {
        uint64_t t0 = tt_now_ns();
        t->child_ready = diag_poll(t->child, cx) == DIAG_READY;
        t->child_outer_ns += tt_now_ns() - t0;
    }
    if (t->inner) diag_poll(t->inner, cx);
    if (t->n++ < t->pending || (t->child && !t->child_ready)) return DIAG_PENDING;
    t->n = 0;
    t->child_ready = 0;
    return DIAG_READY;
}

TT_FN struct task task_make(int pending, uint64_t spin_ns)
{
    struct task t;
    diag_future init = DIAG_FUTURE_INIT(task_poll);
    memset(&t, 0, sizeof t);
    t.base = init;
    t.pending = pending;
    t.spin_ns = spin_ns;
    return t;
}

#endif
