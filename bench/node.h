/* node.h - the future bench.c and mca_loops.c poll: it does nearly nothing,
   so the poll's cost is all that is left. A chain of nodes is the 8-level
   case; a node without a child is a leaf. Include after diagnose.h. */
#ifndef BENCH_NODE_H
#define BENCH_NODE_H

typedef struct node {
    diag_future base;
    diag_future *child; /* NULL: a leaf */
    uint64_t count;
} node;

__attribute__((noinline)) static diag_status leaf_poll(diag_future *f, void *cx)
{
    (void)cx;
    ((node *)f)->count++;
    return DIAG_PENDING;
}

#endif
