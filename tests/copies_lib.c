/* A library with its own copy of diagnose.h, for tests/test_copies.sh:
   copies_work(n) runs one marked future, named LIB_NAME, for n polls. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#ifndef LIB_NAME
#define LIB_NAME "lib"
#endif

struct countdown {
    diag_future base;
    int left;
};

static diag_status countdown_poll(diag_future *self, void *cx)
{
    struct countdown *c = (struct countdown *)self;
    (void)cx;
    return --c->left == 0 ? DIAG_READY : DIAG_PENDING;
}

__attribute__((visibility("default"))) void copies_work(int n);
void copies_work(int n)
{
    struct countdown c = { DIAG_FUTURE_INIT(countdown_poll), 0 };
    c.left = n;
    while (diag_poll(DIAGNOSE_AS(&c.base, LIB_NAME), NULL) == DIAG_PENDING) {
    }
}
