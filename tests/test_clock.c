/* The clock. Where the CPU has a counter the poll path reads it inline: x86's
   timestamp counter when CPUID calls it invariant, and aarch64's virtual
   counter always (cntfrq_el0 is set wherever Linux runs, qemu included).
   Its ticks are calibrated against CLOCK_MONOTONIC; on aarch64 the rate
   found is the one cntfrq_el0 states. Before calibration the slow-poll
   threshold is never above the true one, however slow the counter ticks
   (qemu's 62.5 MHz, Apple M1's 24 MHz). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */

static diag_status ready_poll(diag_future *self, void *cx)
{
    (void)self;
    (void)cx;
    return DIAG_READY;
}

static uint64_t early_threshold; /* diag__slow_ticks before the first poll */
static int early_exact;         /* slow_exact then */

static void test_counter_where_the_cpu_has_one(void)
{
    diag_future f = DIAG_FUTURE_INIT(ready_poll);
    CHECK_EQ(diag_poll(DIAGNOSE_AS(&f, "clock"), NULL), DIAG_READY);
    CHECK_EQ(diag__mode, 1);
#if defined(__aarch64__)
    CHECK_EQ(diag__use_tsc, 1);
    CHECK_EQ(diag__fast_clock(), 1);
#elif defined(__x86_64__) || defined(__i386__)
    CHECK_EQ(diag__fast_clock(), diag__use_tsc != 0);
#else
    CHECK_EQ(diag__fast_clock(), 0);
#endif
}

/* 20 ms is calibration enough: a read pair's error is a few us at most. */
static void test_calibrated_rate(void)
{
    double ns_per_tick;
    tt_spin_ns(20 * 1000000ull);
    ns_per_tick = diag__ns_per_tick();
    if (!diag__use_tsc) {
        CHECK(ns_per_tick == 1.0); /* ticks are nanoseconds */
        return;
    }
    CHECK_RANGE(ns_per_tick, 0.01, 100.0); /* 10 MHz to 100 GHz */
#if defined(__aarch64__)
    CHECK_RANGE(ns_per_tick * (double)diag__counter_hz(), 0.99e9, 1.01e9);
#endif
}

/* The threshold in ticks set at start-up, converted with the rate found
   since, is at most DIAGNOSE_SLOW_NS: no slow poll of the first 10 ms is
   judged fast unseen. */
static void test_early_slow_threshold_not_too_high(void)
{
    double ns_per_tick = diag__ns_per_tick();
    CHECK_EQ(early_exact, !diag__use_tsc);
    CHECK(diag__rt->slow_ns > 0);
    CHECK((double)early_threshold * ns_per_tick <= (double)diag__rt->slow_ns);
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

#endif

int main(void)
{
#ifdef DIAGNOSE_DISABLE
    return 0;
#else
    /* recording started at load; no poll yet, so none has calibrated */
    early_threshold = diag__slow_ticks;
    early_exact = __atomic_load_n(&diag__rt->slow_exact, __ATOMIC_ACQUIRE);
    RUN(test_counter_where_the_cpu_has_one);
    RUN(test_calibrated_rate);
    RUN(test_early_slow_threshold_not_too_high);
    return test_summary();
#endif
}
