/* protothreads.c - diagnosing protothreads (stackless coroutines in a switch).

   A protothread is a function that keeps its resume point in a struct and
   returns whenever it has to wait; the scheduler calls it again later. The
   macros are written below, in a dozen lines, since diagnose.h has no
   dependencies. To measure one, the recipe is one span per protothread and
   DIAG_CALL around each call: a call of the function is a poll of the span,
   and its run ends when the protothread ends. A protothread that is
   abandoned before it ends is cancelled with diag_span_cancel (a drop).
   A protothread spawned by another runs inside its parent's call, so its
   path nests under the parent's: reader;read_msg.

   The schedule is a tick loop (one call of each live protothread per tick,
   then a sleep), so the poll counts are exact:
     led        blinks 3 times, every 4 ticks: called at ticks 0..12, 13 polls
     reader     spawns read_msg for each of 4 messages, which arrive at
                ticks 2, 5, 8, 11: 12 polls (ticks 0..11)
     read_msg   polled by reader from its spawn to its message, including
                the tick it is spawned on: 3 + 4 + 4 + 4 = 15 polls, 4 runs
     watchdog   waits for a fault that never comes; polled at ticks 0..12,
                then cancelled when the loop ends: 13 polls, 1 drop

   Run: make build/examples/protothreads && build/examples/protothreads */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdio.h>
#include <time.h>

/* ---- protothreads: the resume point is a line number, resumed by switch ---- */

struct pt {
    int line;       /* where to resume; 0: at the top */
    diag_span span; /* measurement state; a zero span is not measured */
};

enum { PT_WAITING, PT_YIELDED, PT_ENDED };

#define PT_INITIALIZER(name) { 0, DIAG_SPAN_INIT(name) }
#define PT_BEGIN(p) switch ((p)->line) { case 0:
/* The case label sits in an if (0) block so that the line store does not
   fall through into it: the compiler's fall-through warning stays quiet. */
#define PT_WAIT_UNTIL(p, cond)                                      \
    do {                                                            \
        (p)->line = __LINE__;                                       \
        if (0) {                                                    \
        case __LINE__:;                                             \
        }                                                           \
        if (!(cond)) return PT_WAITING;                             \
    } while (0)
#define PT_YIELD(p)                                                 \
    do {                                                            \
        (p)->line = __LINE__;                                       \
        return PT_YIELDED;                                          \
    case __LINE__:;                                                 \
    } while (0)
#define PT_END(p) } (p)->line = 0; return PT_ENDED
/* Starts child and waits, calling it once per call of the parent, until it ends. */
#define PT_SPAWN(p, fn, child)                                      \
    do {                                                            \
        (child)->line = 0;                                          \
        PT_WAIT_UNTIL((p), pt_schedule((fn), (child)) == PT_ENDED); \
    } while (0)

typedef int (*pt_fn)(struct pt *p);

/* The whole diagnose.h recipe: one call of a protothread is one poll of its
   span (DIAG_CALL); PT_ENDED ends the run, so the run's wall is the
   protothread's life. */
static int pt_schedule(pt_fn fn, struct pt *p)
{
    return DIAG_CALL(&p->span, fn(p), PT_ENDED);
}

/* A protothread that will never be called again: its open run is a drop. */
static void pt_abandon(struct pt *p)
{
    diag_span_cancel(&p->span);
}

/* ---- the program: a LED, a message reader and a watchdog ---- */

#define TICK_NS 500000L
#define MESSAGES 4

static int tick;

static void spin_ns(long ns) /* stands for the CPU work of parsing a message */
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < ns);
}

static int messages_arrived(void) /* message k arrives at tick 2 + 3k */
{
    int n = tick < 2 ? 0 : (tick - 2) / 3 + 1;
    return n < MESSAGES ? n : MESSAGES;
}

/* Protothreads keep no locals across waits: their state lives in structs
   whose first member is the pt. */
struct led { struct pt pt; int blinks, deadline, on; };

static int led_thread(struct pt *p)
{
    struct led *led = (struct led *)p;
    PT_BEGIN(p);
    for (led->blinks = 0; led->blinks < 3; led->blinks++) {
        led->deadline = tick + 4;
        PT_WAIT_UNTIL(p, tick >= led->deadline);
        led->on = !led->on;
        printf("tick %2d: led %s\n", tick, led->on ? "on" : "off");
    }
    PT_END(p);
}

struct read_msg { struct pt pt; int *taken; };

static int read_msg_thread(struct pt *p)
{
    struct read_msg *r = (struct read_msg *)p;
    PT_BEGIN(p);
    PT_WAIT_UNTIL(p, *r->taken < messages_arrived());
    spin_ns(100000);
    printf("tick %2d: message %d read\n", tick, ++*r->taken);
    PT_END(p);
}

struct reader { struct pt pt; int taken; struct read_msg child; };

static int reader_thread(struct pt *p)
{
    struct reader *r = (struct reader *)p;
    PT_BEGIN(p);
    while (r->taken < MESSAGES) PT_SPAWN(p, read_msg_thread, &r->child.pt);
    PT_END(p);
}

struct watchdog { struct pt pt; int fault; };

static int watchdog_thread(struct pt *p)
{
    struct watchdog *w = (struct watchdog *)p;
    PT_BEGIN(p);
    for (;;) {
        PT_WAIT_UNTIL(p, w->fault);
        printf("tick %2d: fault\n", tick);
        w->fault = 0;
        PT_YIELD(p);
    }
    PT_END(p);
}

int main(void)
{
    static struct led led = { PT_INITIALIZER("led"), 0, 0, 0 };
    static struct reader reader = { PT_INITIALIZER("reader"), 0, { PT_INITIALIZER("read_msg"), 0 } };
    static struct watchdog watchdog = { PT_INITIALIZER("watchdog"), 0 };
    struct timespec pause = { 0, TICK_NS };
    int led_done = 0, reader_done = 0;
    reader.child.taken = &reader.taken;
    for (tick = 0; !led_done || !reader_done; tick++) {
        if (!led_done) led_done = pt_schedule(led_thread, &led.pt) == PT_ENDED;
        if (!reader_done) reader_done = pt_schedule(reader_thread, &reader.pt) == PT_ENDED;
        pt_schedule(watchdog_thread, &watchdog.pt);
        nanosleep(&pause, NULL);
    }
    pt_abandon(&watchdog.pt);
    printf("done after %d ticks\n", tick);
    return 0;
}
