/* The second translation unit of test_units: it includes diagnose.h
   without the implementation and polls futures of its own, one of them
   inside a future of the first unit. */
#include "diagnose.h"

#include <string.h>

struct unit_task {
    diag_future base;
    int pending, n;
};

static diag_status unit_task_poll(diag_future *self, void *cx)
{
    struct unit_task *t = (struct unit_task *)self;
    (void)cx;
    if (t->n++ < t->pending) return DIAG_PENDING;
    t->n = 0;
    return DIAG_READY;
}

static struct unit_task unit_b, unit_b_top;

/* Polls this unit's unit_b once (READY at its 2nd poll in each run). */
diag_status units_b_poll_child(void *cx);
diag_status units_b_poll_child(void *cx)
{
    diag_future init = DIAG_FUTURE_INIT(unit_task_poll);
    if (unit_b.base.poll == NULL) {
        unit_b.base = init;
        unit_b.pending = 1;
    }
    return diag_poll(DIAGNOSE_AS(&unit_b.base, "unit_b"), cx);
}

/* Runs unit_b_top to READY: 4 polls. Returns the number of polls. */
int units_b_run(void);
int units_b_run(void)
{
    diag_future init = DIAG_FUTURE_INIT(unit_task_poll);
    int polls = 1;
    memset(&unit_b_top, 0, sizeof unit_b_top);
    unit_b_top.base = init;
    unit_b_top.pending = 3;
    while (diag_poll(DIAGNOSE_AS(&unit_b_top.base, "unit_b_top"), NULL) == DIAG_PENDING) polls++;
    return polls;
}
