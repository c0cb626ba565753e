/* mca_loops.c - the loops bench/mca.sh traces: one iteration of each is
   recorded instruction by instruction (gdb) and given to llvm-mca.

       loop_bare    a poll through the function pointer (the reference)
       loop_floor   the clock floor of bench.c: two rdtsc around a poll,
                    added to a thread-local counter
       loop_diag    a diagnosed poll through diag_poll, 1 level
       loop_diag8   a chain of 8 nested diagnosed futures (per top poll)

   Each runs n times after a warm-up; `traced` marks where the recorded
   part starts. Built with bench.c's flags; run with DIAGNOSE_SLOW_NS=0 so
   the single-stepped polls do not take the slow-poll path. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdlib.h>

#define DEPTH 8

__thread uint64_t floor_ticks;

#include "node.h"

__attribute__((noinline)) static diag_status diag_node_poll(diag_future *f, void *cx)
{
    return diag_poll(((node *)f)->child, cx);
}

static diag_poll_fn volatile leaf_fn = leaf_poll;

__attribute__((noinline)) void loop_bare(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) f->poll(f, NULL);
}

__attribute__((noinline)) void loop_floor(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) {
        uint64_t t0 = __builtin_ia32_rdtsc();
        f->poll(f, NULL);
        floor_ticks += __builtin_ia32_rdtsc() - t0;
    }
}

__attribute__((noinline)) void loop_diag(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) diag_poll(f, NULL);
}

__attribute__((noinline)) void loop_diag8(diag_future *f, long n)
{
    long i;
    for (i = 0; i < n; i++) diag_poll(f, NULL);
}

__attribute__((noinline)) void traced(void) { __asm__ volatile(""); }

int main(int argc, char **argv)
{
    static const char *const names[DEPTH] = { "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8" };
    static node one, bare, chain[DEPTH];
    long n = argc > 1 ? atol(argv[1]) : 1000;
    int i;
    one.base.poll = bare.base.poll = leaf_fn;
    DIAGNOSE_AS(&one.base, "one");
    for (i = 0; i < DEPTH; i++) {
        chain[i].base.poll = i + 1 < DEPTH ? diag_node_poll : leaf_fn;
        chain[i].child = i + 1 < DEPTH ? &chain[i + 1].base : NULL;
        DIAGNOSE_AS(&chain[i].base, names[i]);
    }
    loop_bare(&bare.base, 1000);
    loop_floor(&bare.base, 1000);
    loop_diag(&one.base, 1000);
    loop_diag8(&chain[0].base, 1000);
    traced();
    loop_bare(&bare.base, n);
    loop_floor(&bare.base, n);
    loop_diag(&one.base, n);
    loop_diag8(&chain[0].base, n);
    return 0;
}
