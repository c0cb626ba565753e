/* diagnose.h - exact profiling of asynchronous C code, written as flame graphs.
   version 0.1.0

   In exactly ONE .c file of your program, before any other #include:

       #define DIAGNOSE_IMPLEMENTATION
       #include "diagnose.h"

   Everywhere else just #include "diagnose.h". Link with -pthread.
   Compilers: gcc or clang (C99 or later, C++11 or later; -Wpedantic is
   fine). The header is GNU C: atomic builtins, __thread, attributes, and
   DIAG_CALL's statement expression. Compiled out (DIAGNOSE_DISABLE), it
   is plain C99.

   CONTENTS
     WHAT IT DOES       what diagnose.h measures and why; a quick start
     API                every type, macro and function, with its threads
     WHAT IS MEASURED   runs, paths, the four metrics, the lints
     ENVIRONMENT        the DIAGNOSE_* variables
     OUTPUT             folded, pending, trace and pprof files; HTTP
     CONFIGURATION      #defines before the #include; libraries and plugins
     HOW IT WORKS       for maintainers: the data, the locks, the threads
   What each poll, path and run costs: docs/performance.md.

   ---- WHAT IT DOES ---------------------------------------------------------
   Sampling profilers see the executor, not the future: a future's work is
   spread over many short polls on whatever thread the executor picked.
   diagnose.h traces instead. Every poll of a future you mark is timed with
   the CPU timestamp counter and added to a per-thread table keyed by the
   *calling context*: the chain of marked futures that were being polled.
   At exit the tables are merged and written as folded stacks, one file per
   metric, that flamegraph.pl, inferno and speedscope open as they are.

   QUICK START

       struct fetch { diag_future base; int state; };
       static diag_status fetch_poll(diag_future *self, void *cx) {
           struct fetch *f = (struct fetch *)self;    // base is the first member
           return ++f->state == 3 ? DIAG_READY : DIAG_PENDING;
       }

       struct fetch f = { DIAG_FUTURE_INIT(fetch_poll), 0 };
       diag_future *fut = DIAGNOSE(&f.base);          // or DIAGNOSE_AS(&f.base, "fetch")
       while (diag_poll(fut, NULL) == DIAG_PENDING) { ... other work ... }

   At exit: diagnose.polls.folded, diagnose.busy.folded, diagnose.wall.folded
   and a summary table on stderr.

   ---- API ------------------------------------------------------------------
   "Threads:" says who may call. None is async-signal-safe (a snapshot on
   a signal: DIAGNOSE_SIGNAL).
   diag_status      DIAG_PENDING (0) or DIAG_READY (1).
   diag_poll_fn     diag_status (*)(diag_future *self, void *cx).
   diag_future      struct { diag_poll_fn poll; <private measurement state> }.
                    Embed it in your future, usually first. All-zero
                    private state (= {0}, .poll = fn) is valid, unmarked.
   DIAG_FUTURE_INIT(fn)
                    Initializer for a diag_future, valid in C and C++.
   DIAGNOSE(f)      Marks the diag_future *f for measurement and returns f.
                    f is evaluated once. The frame name is the argument's
                    text without leading '&' or '*': DIAGNOSE(&fetch.base)
                    is "fetch.base". Marking again renames future runs.
                    Threads (both): before f is shared, or f's poller.
   DIAGNOSE_AS(f, name)
                    The same with an explicit name (static lifetime), kept
                    as it is when made of letters, digits and
                    _ : . - / < > ( ) [ ] # @ + = , & (other bytes: '_').
   diag_poll(f, cx) Calls f->poll(f, cx) and returns its result, timing the
                    poll when f is marked. Unmarked futures are transparent:
                    marked futures they poll attach to the nearest marked
                    ancestor. A NULL f or f->poll: returns DIAG_READY and
                    says so once on stderr (DIAG_DEBUG: aborts).
                    Threads: any, one poll of f at a time; no lock but at
                    a thread's first poll and its first run in a context.
   diag_drop(f)     The owner abandons f before READY (cancelled, lost a
                    race): ends its run's wall and counts a drop. No effect
                    on a future not in a run (never polled, or READY).
                    Threads: any, but not while f's poll runs on another.
   diag_wake(f)     An executor made f runnable. The time from the first
                    wake to the next poll is the path's scheduling delay
                    (written to PREFIX.sched.folded). Threads: any, also
                    from inside a poll; no lock.
   diag_dump(prefix)
                    Writes the folded and pending files now (see OUTPUT)
                    from one snapshot; counting goes on. Never waits for
                    polls running. prefix NULL: DIAGNOSE_OUT or "diagnose".
                    Returns 0, or -1 with errno set (nothing is printed).
                    Threads: any; one dump at a time (a call may wait).
   diag_write_svg(prefix)
                    Writes PREFIX.<metric>.svg, an interactive flame graph
                    of each folded file (frames under 0.1 px left out, and
                    counted at the bottom right; wall heading: all runs'
                    walls summed, and time elapsed).
                    Prefix, return, threads as diag_dump; one snapshot.
   diag_reset()     Starts a fresh window: later dumps count only what
                    happens after the call (runs still open count from it).
                    Returns 0, or -1 with errno set. Threads: any.

   THE SPAN LAYER (for code not shaped as diag_future)
   diag_span s = DIAG_SPAN_INIT("name");  one per task; zero = unmarked
   diag_span_init(&s, "name");     the same at run time; before s is shared
   diag_span_begin(&s);            a poll starts; any thread, one at a time
   diag_span_end(&s, DIAG_PENDING or DIAG_READY);  it ends; begin's thread
   diag_span_cancel(&s);           the task is dropped; threads: diag_drop
   diag_span_wake(&s);             it became runnable; any thread
   diag_poll, diag_drop and diag_wake are these calls on f->span. A run may
   move between threads. An end without its begin counts nothing
   (DIAG_DEBUG: aborts if it would end a run). A future that polls itself
   counts every nested poll in its run's path; the first READY ends it.

   CALL-STYLE ASYNC (protothreads, async.h, Contiki: one call is one poll)
   DIAG_CALL(s, call, done)
                    Evaluates call as one poll of the span s (diag_span *)
                    and has call's value; when that value == done, the run
                    ends (READY). An expression: each argument is evaluated
                    once; compiled out, just call. Threads: as begin/end.
                    A GNU C statement expression with __typeof__ (plain
                    C99 cannot keep the value's type with one evaluation).
   diag_span_at(task, name)
                    The span of the task at this address, for a struct with
                    no room for one: made on first use (name, static
                    lifetime), released when its run ends through DIAG_CALL
                    or diag_drop_at. A NULL task, DIAGNOSE=0 or no memory:
                    an unmeasured span. Threads: any; one look-up under
                    a mutex of its own.
   DIAG_CALL_AT(task, name, call, done)
                    DIAG_CALL(diag_span_at(task, name), call, done):
                        while (DIAG_CALL_AT(&t, "fetch", fetch(&t), DONE) != DONE) ...
   diag_drop_at(task)
                    The task is abandoned: a drop, and its span is released.
                    Threads: as diag_drop.

   STACKFUL COROUTINES (ucontext, minicoro, libco...; docs/fibers.md)
   diag_fiber       One per coroutine; all zero is a new one.
   diag_fiber_switch(to)
                    Right before the thread switches into the coroutine of
                    fiber to; diag_fiber_switch(NULL) once back on its own
                    stack. A span begun in a coroutine stays with it across
                    yields (busy only while it runs), nests under its open
                    spans, else under the thread's span at the switch in,
                    and may end on any thread. Threads: the switching one.
   diag_fiber_drop(f)
                    The coroutine is destroyed: its open spans end, as
                    drops. Threads: any, while f is switched out.

   NON-LOCAL EXITS. C++: a poll an exception leaves ends as if PENDING (its
   run stays open); the exception goes on. C: after a longjmp out of polls,
   diag_drop(f) of the outermost future left, on the same thread, ends its
   poll and those above and drops f's run (the others stay open). Else the
   polls stay open (exit names them); a diag_span_end that finds its poll
   below the top ends the ones above (one warning).

   ---- WHAT IS MEASURED (in full: docs/measured.md, docs/live.md) ----------
   A *run* of a future lasts from the start of its first poll to the end of
   the poll that returned READY, or to diag_drop. Its *path* is the chain of
   names of the marked futures being polled, outermost first, when its first
   poll began. Per path, summed over all runs and threads:
     polls   number of polls.
     busy    ns inside those polls minus nested marked polls (self time).
     wall    ns of the runs (a pending one: up to the dump), as self wall:
             minus the children's walls, never below zero.
     sched   ns from diag_wake to the next poll (only with wakes).
   The table adds p50, p99 (within 6% of the exact nearest-rank times)
   and max of a poll per path, then "lint:" lines:
   slow polls, runs never finished, drops, self-wakes, orphans, lost wakes,
   polls still running. Depth, paths, names, clock: docs/limits.md.

   ---- ENVIRONMENT (in full: docs/environment.md) --------------------------
   DIAGNOSE=0              record nothing: no files, no table.
   DIAGNOSE_OUT=prefix     output prefix (default "diagnose"); "%p": the pid.
   DIAGNOSE_QUIET=1        write the files but not the table.
   DIAGNOSE_SVG=1          at exit, also diag_write_svg's flame graphs.
   DIAGNOSE_MAX_PATHS=n    cap on distinct paths (at most DIAG_PATH_TABLE_SIZE - 2).
   DIAGNOSE_SLOW_NS=n      a poll this long is slow (default 1000000; 0: off).
   DIAGNOSE_INTERVAL=s     every s seconds, a numbered snapshot PREFIX.N.*.
   DIAGNOSE_SIGNAL=USR2    this signal, sent to the process, asks for a
                           numbered snapshot; only the library's thread
                           takes it (docs/live.md). Not a fault's (SEGV ...).
   DIAGNOSE_STUCK_S=s      an open run this old is stuck (default 10).
   DIAGNOSE_TRACE=n        each thread keeps its last n polls: PREFIX.trace.json.
   DIAGNOSE_HTTP=[host:]port  serve it over HTTP; a port alone: 127.0.0.1.
   DIAGNOSE_PPROF=1        every dump also writes PREFIX.pb.gz (pprof).
   Read once, before main; a set-uid or set-gid program ignores them all.
   A value not understood gets one stderr line, and the default is used.
   Every stderr line escapes the control bytes a value, prefix or path
   brings (\n, \x1b ...).

   ---- OUTPUT (in full: docs/output.md, docs/live.md, docs/timeline.md) ----
   PREFIX.polls.folded, PREFIX.busy.folded, PREFIX.wall.folded (and
   PREFIX.sched.folded when diag_wake was used), written at normal exit
   (return from main or exit()) exactly once, and by diag_dump. Each line is
   frames outermost first joined by ';', one space, a decimal integer:

       main 12
       main;concat 5
       main;extend 5

   Every line matches ^[^ ;]+(;[^ ;]+)* [0-9]+$ and is valid UTF-8; each
   path appears once (threads merged), lines sorted bytewise, the same
   paths in every metric's file. A dump's files are written to temporary
   names and renamed once all are written: a failure leaves the earlier set
   whole. A forked child writes its own (its pid appended to a prefix
   without "%p"). A profiled program it spawns replaces them unless the
   prefix has "%p"; the program after an exec (the same pid) replaces
   them, "%p" or not. If they cannot be written at exit, one stderr line
   says why and they go to $TMPDIR (or /tmp). The exit code never changes
   (exits, signals, exec: docs/exits.md).
   PREFIX.pending.folded and .txt, by every dump when runs are open:

       main;fetch: 3 open, oldest 12.4s, running 2.10s, stuck

   PREFIX.trace.json (DIAGNOSE_TRACE=n), by every dump: a Chrome trace of
   each thread's last n polls; after a slow poll, PREFIX.slow.N.trace.json.
   PREFIX.pb.gz (DIAGNOSE_PPROF=1), by every dump: samples polls, busy, wall
   per path, the folded files' values, for go tool pprof and speedscope.
   DIAGNOSE_HTTP (docs/http.md) serves, each from a snapshot of its own: /
   (a page: pending, flame graph, table), /polls.folded ... /pending.txt,
   /busy.svg ..., /trace.json as a dump writes them, and
   /debug/pprof/profile?seconds=N (1-300, default 30): the next N seconds.

   ---- CONFIGURATION (#define before the #include) --------------------------
   DIAGNOSE_DISABLE   compile out: DIAGNOSE(f) is f, diag_poll calls the poll
                      function directly, diag_dump and diag_write_svg write
                      nothing and return 0.
   DIAG_MAX_DEPTH     frames in a path and nested polls per thread (64).
   DIAG_PATH_TABLE_SIZE  size of the path table: the hard cap on distinct
                      paths (1048576). Old name DIAG_MAX_PATHS, still read.
   DIAG_FIBER_DEPTH   open spans a coroutine keeps across a switch (8).
   DIAG_MALLOC, DIAG_REALLOC, DIAG_FREE   allocator (define all or none).
   DIAG_DEBUG         abort with a message on misuse instead of ignoring it.
   DIAG_API           starts the declaration of each function defined for
                      other files (the public ones, and what the inline poll
                      path calls): extern by default; e.g. extern __attribute__
                      ((visibility("default"))) exports them from a library
                      built -fvisibility=hidden. The poll path stays static
                      inline; compiled out, so is every function.

   LIBRARIES AND PLUGINS (docs/libraries.md): a shared library may define
   DIAGNOSE_IMPLEMENTATION too. The copies in one process share one runtime:
   one set of files, one table, paths across copies. Copies of another
   version or configuration keep a runtime of their own, and write under
   PREFIX.abi-XXXXXXXX. Without /proc or memfd_create every copy keeps its
   own, and the last to write replaces the others' files (a library's
   copy says so on stderr). Two copies linked into one executable are a
   link error.

   ---- HOW IT WORKS (for maintainers) ---------------------------------------
   The implementation's parts are marked ">>name" (grep '>>') in the order
   data flows, the public functions (>>api) last. A function comes before
   its callers; the forward declarations at the top of >>state each close a
   cycle.
   Data flows span -> frame -> slot -> row -> writers:
   span     diag_span, in the user's task: name, the open run's path (0:
            none) and start, a pending wake, the last path resolved, the
            run's record.
   frame    a poll in progress on its thread's stack (diag__thread.stack):
            span, slot, start, nested polls' time. An end pops it and adds
            to its slot one poll, dt to poll time and dt minus the nested
            time to busy, and dt to the parent frame's nested time.
   path     an id in the process's path table, (parent id, name) -> id,
            found at a run's first poll in a per-thread cache, else in the
            shared index under the runtime lock. 0: the root, 1: [overflow].
            Ids only grow; the table's chunks never move.
   slot     a path's counters on one thread (diag__slot): diag__thread.dir
            holds chunks of 256 slots by path id, made on first use, never
            moved. Its histogram (256 buckets, 8 per power of two) is a
            byte per bucket for a window of 29; each 256th poll of a bucket,
            and polls outside the window, go to the thread's table of
            histograms (diag__hot), else to the path's shared row. An
            exiting thread's slots are added into the runtime's `retired`
            table, their histograms into the shared rows.
   row      a snapshot (diag__snapshot_read) sums every live thread's
            slots and `retired` into one row per path, less the reset
            baselines, plus open runs' wall up to now, then sorts the rows
            by folded stack (equal stacks merge). The table reads the
            histograms of its rows only (diag__hists_read).
   writers  take a snapshot: folded files, the table and lints (stderr, at
            exit), SVG, pending files (from the open-run records), pprof,
            the page, and the trace (which copies the per-thread rings
            itself). Each writes into a diag__buf: a dump renames it into
            a file, the HTTP server sends it.
   Coroutines (>>fibers): a switch out moves the coroutine's frames off the
   thread's stack into its diag_fiber (as ticks run so far); a switch in
   puts them back on top, starts moved past the time away.
   Open runs: a run's first poll takes a record (diag__run) from its
   thread's chunks; its end, on any thread, frees it with one release
   store. A run may end on another thread than it began, so open_runs and
   open_start_sum are right only summed over threads: a snapshot reads
   again (8 tries) while a torn pair makes the pending wall absurd.
   All of this lives in the runtime, one for the copies of one ABI key.

   Locks. Only two nest: the dump lock, then the runtime lock (dumps and
   fork take them in that order). Nothing is taken under the others.
     dump lock  one dump at a time, from its snapshot to its last rename:
                diag_dump, diag_write_svg, numbered snapshots, a library's
                unload, exit. An exit that waits for it goes first.
     runtime lock  (diag__rt->lock) new paths, the thread list, `retired`,
                reset baselines, parked records, exited threads' rings, the
                copies and their key, an entry of a thread's table of
                histograms passing to another path (tried, never waited
                for); it keeps threads' tables alive while a snapshot reads
                them (polls go on, new paths wait).
     spans-by-address lock  the diag_span_at table.
     registry lock  a spin lock in the mapping the copies share.
   At exit every wait is bounded (1 s), then given up.

   Who touches what:
   - The owner thread alone writes its frames, slots (relaxed load + store:
     an exact add), table of histograms, ring and cache; others read the
     slots with relaxed loads, and its stack up to its depth
     (release/acquire). A histogram's counts move from a slot to its
     thread's table, then to the shared row, never back: readers read in
     that order, so a count moving is read twice at worst, never missed.
   - Any thread: a span's wake, run records' wake times, self-wake counts
     and shared histogram rows (atomics). A run's end, on any thread,
     counts in that thread's slot.
   - diag_reset: baselines under the runtime lock; zeroes live maxima (a
     racing poll may put its own back: still a real poll).
   - The snapshot thread writes numbered snapshots and slow-poll traces
     (these without the dump lock), asked by a byte on its pipe: from the
     DIAGNOSE_SIGNAL handler (all the handler does) or a slow poll. Work
     that locks or allocates is marked per thread: an exit() from a
     handler inside it writes no files. The signal is blocked on the
     thread that starts the runtime, whose later threads inherit the mask;
     the snapshot thread alone unblocks it, so the handler runs there.
     With DIAGNOSE_HTTP it also polls the server's sockets and answers,
     each answer from a snapshot taken without the dump lock (>>http); the
     server's table is its alone.
   - Thread exit (the key's destructor), under the runtime lock: the table
     joins `retired`, the records are parked, the ring joins the exited.
   - fork: the prepare handlers take the locks, the parent unlocks; the
     child unlocks, clears the registry lock, resets, drops the other
     threads' stacks (their runs stay open), has no snapshot thread,
     unblocks DIAGNOSE_SIGNAL (for a program it execs) and closes its
     copies of the server's sockets.
   - exit and dlclose run each copy's atexit handler: a copy that leaves
     hands the key and the snapshot thread to one that stays; the last
     stops the snapshot thread and writes the files and the table.
*/
#ifndef DIAGNOSE_H
#define DIAGNOSE_H

#if defined(DIAGNOSE_IMPLEMENTATION) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* clock_gettime, pthread, secure_getenv under -std=c99 */
#endif

#include <stddef.h>
#include <stdint.h>

#define DIAGNOSE_VERSION_MAJOR 0
#define DIAGNOSE_VERSION_MINOR 1
#define DIAGNOSE_VERSION_PATCH 0

#ifndef DIAG_MAX_DEPTH
#define DIAG_MAX_DEPTH 64
#endif
/* The path table's size, fixed at compile time; DIAGNOSE_MAX_PATHS (the
   environment) caps paths below it at run time. DIAG_MAX_PATHS is its old
   name, still accepted and still defined. */
#ifndef DIAG_PATH_TABLE_SIZE
#ifdef DIAG_MAX_PATHS
#define DIAG_PATH_TABLE_SIZE DIAG_MAX_PATHS
#else
#define DIAG_PATH_TABLE_SIZE (1u << 20)
#endif
#endif
#ifndef DIAG_MAX_PATHS
#define DIAG_MAX_PATHS DIAG_PATH_TABLE_SIZE
#endif
#if DIAG_MAX_DEPTH < 2 || DIAG_MAX_DEPTH > 4096
#error "diagnose.h: DIAG_MAX_DEPTH must be between 2 and 4096"
#endif
#if DIAG_PATH_TABLE_SIZE < 256 || DIAG_PATH_TABLE_SIZE > (1u << 28)
#error "diagnose.h: DIAG_PATH_TABLE_SIZE must be between 256 and 2^28"
#endif
#if defined(DIAG_MALLOC) != defined(DIAG_FREE) || defined(DIAG_MALLOC) != defined(DIAG_REALLOC)
#error "diagnose.h: define all of DIAG_MALLOC, DIAG_REALLOC and DIAG_FREE, or none"
#endif
#ifndef DIAG_FIBER_DEPTH
#define DIAG_FIBER_DEPTH 8
#endif
#if DIAG_FIBER_DEPTH < 1 || DIAG_FIBER_DEPTH > DIAG_MAX_DEPTH
#error "diagnose.h: DIAG_FIBER_DEPTH must be 1 to DIAG_MAX_DEPTH"
#endif
#ifndef DIAG_API
#define DIAG_API extern /* see CONFIGURATION */
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum diag_status { DIAG_PENDING = 0, DIAG_READY = 1 } diag_status;
typedef struct diag_future diag_future;
typedef diag_status (*diag_poll_fn)(diag_future *self, void *cx);

struct diag__run;

/* Measurement state of one task. Private fields: read the doc block. */
typedef struct diag_span {
    const char *name;   /* frame name; NULL: not measured */
    uint64_t run_start; /* ticks at the first poll of the current run */
    uint64_t woke_at;   /* ticks of a wake not yet followed by a poll, or 0 */
    uint32_t path;      /* path of the current run; 0: not in a run */
    uint32_t last_parent, last_path; /* the last path resolved, by parent */
    uint32_t flags;
    struct diag__run *run; /* record of the open run, read by dumps; NULL: none */
} diag_span;

struct diag_future {
    diag_poll_fn poll;
    diag_span span;
};

#define DIAG_SPAN_INIT(name) { (name), 0, 0, 0, 0, 0, 0, 0 }
#define DIAG_FUTURE_INIT(fn) { (fn), DIAG_SPAN_INIT(0) }

/* DIAG_SPAN_INIT at run time, for a span in allocated memory. */
static inline void diag_span_init(diag_span *s, const char *name)
{
    diag_span zero = DIAG_SPAN_INIT(0);
    *s = zero;
    s->name = name;
}
#define DIAG__NAME_DERIVED 1u

/* A stackful coroutine's open spans while it is switched out: see
   diag_fiber_switch. All zero: a new fiber. Private fields. */
typedef struct diag__saved_frame {
    diag_span *span;
    uint64_t ran, child; /* ticks the poll has run so far, and its nested polls' part */
    uint32_t path;
} diag__saved_frame;
typedef struct diag_fiber {
    uint32_t depth; /* frames saved */
    diag__saved_frame frames[DIAG_FIBER_DEPTH];
} diag_fiber;

#ifdef DIAGNOSE_DISABLE
/* ---- compiled out: the same names and types, no code on the poll path ---- */
static inline diag_future *diag__mark(diag_future *f, const char *name, unsigned flags)
{ (void)name; (void)flags; return f; }
#define DIAGNOSE(f) diag__mark((f), 0, 0) /* a call, so `DIAGNOSE(&x);` alone is no "statement with no effect" */
#define DIAGNOSE_AS(f, name) diag__mark((f), (name), 0)
static inline diag_status diag_poll(diag_future *f, void *cx) { return f->poll(f, cx); }
static inline void diag_drop(diag_future *f) { (void)f; }
static inline void diag_wake(diag_future *f) { (void)f; }
static inline int diag_dump(const char *prefix) { (void)prefix; return 0; }
static inline int diag_write_svg(const char *prefix) { (void)prefix; return 0; }
static inline int diag_reset(void) { return 0; }
static inline void diag_span_begin(diag_span *s) { (void)s; }
static inline void diag_span_end(diag_span *s, diag_status status) { (void)s; (void)status; }
static inline void diag_span_cancel(diag_span *s) { (void)s; }
static inline void diag_span_wake(diag_span *s) { (void)s; }
static inline void diag_fiber_switch(diag_fiber *to) { (void)to; }
static inline void diag_fiber_drop(diag_fiber *f) { (void)f; }
/* call-style async, compiled out: the call alone */
static inline diag_span *diag_span_at(const void *task, const char *name)
{
    static diag_span unmeasured;
    (void)task;
    (void)name;
    return &unmeasured;
}
static inline void diag_drop_at(const void *task) { (void)task; }
#define DIAG_CALL(s, call, done) ((void)(s), (void)sizeof(done), (call))
#define DIAG_CALL_AT(task, name, call, done) ((void)(task), (void)(name), (void)sizeof(done), (call))

#else /* !DIAGNOSE_DISABLE */

DIAG_API int diag_dump(const char *prefix);
DIAG_API int diag_write_svg(const char *prefix);
DIAG_API int diag_reset(void);
DIAG_API void diag_span_cancel(diag_span *s);
DIAG_API void diag_fiber_switch(diag_fiber *to);
DIAG_API void diag_fiber_drop(diag_fiber *f);

/* ---- internal: the per-thread table, read by the inline poll path ---- */
#define DIAG__CHUNK_BITS 8
#define DIAG__CHUNK (1u << DIAG__CHUNK_BITS)
#define DIAG__DIR ((DIAG_PATH_TABLE_SIZE + DIAG__CHUNK - 1) / DIAG__CHUNK)
#define DIAG__HIST 256  /* buckets of poll time in ticks: 8 per power of two (see diag__bucket) */
#define DIAG__WINDOW 29 /* buckets in a row a slot counts itself (hist[1 + i]: bucket base + i) */
#define DIAG__HIST_MISSES 30 /* hist[]: polls outside the window since it moved, modulo 256 */
#define DIAG__HIST_BASE 31   /* hist[]: the window's first bucket (a new slot's: 16) */
#define DIAG__ROOT 0u
#define DIAG__OVERFLOW 1u
#define DIAG__LIKELY(x) __builtin_expect(!!(x), 1)
#define DIAG__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define DIAG__LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define DIAG__STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
/* Only the owning thread writes a slot, so a relaxed load and store is an
   exact add, and another thread can read the counter safely at any time. */
#define DIAG__ADD(x, v) DIAG__STORE(x, DIAG__LOAD(x) + (v))

/* Counters of one path on one thread, in ticks: 128 bytes, the fields every
   poll writes in the first 64. Runs start and end on any thread, so
   open_runs and open_start_sum are only right summed over all threads:
   pending wall at time T = open_runs * T - open_start_sum.
   hist: the poll-time histogram's bytes. A slot counts the polls of a
   window of 29 of the 256 buckets, hist[1 + i] for bucket base + i, modulo
   256: each 256th, and polls outside the window, go out of line to the
   thread's table of histograms (see >>hist), so a slot stays small however
   fine the buckets. hist[0]: 1 + the window index of the latest poll, not
   yet counted (0: none); whoever reads hist adds it (see diag_span_end).
   A new slot's window is buckets 16 to 44 (16 to 127 ticks).
   The counters are listed once, here, and every place that adds, resets,
   merges or converts them expands the list: X(name in the slot, name in a
   row, kind, to_ns). Kind SUM: a sum, windowed as now minus its value at
   the last reset; GAUGE: a sum of gauges, read as it is (a reset keeps it
   as the row's open_base); PEAK: a maximum, zeroed by a reset. to_ns 1:
   ticks that a row converts to ns. POLLED: the fields every poll writes,
   before hist; RUNS: after it. */
#define DIAG__SLOT_POLLED(X)                \
    X(polls, polls, SUM, 0)                 \
    X(busy, busy, SUM, 1)                   \
    X(poll_ticks, poll_time, SUM, 1)        \
    X(max, max, PEAK, 1)
#define DIAG__SLOT_RUNS(X)                  \
    X(wall, wall, SUM, 1)                   \
    X(open_runs, pending, GAUGE, 0)         \
    X(open_start_sum, start_sum, GAUGE, 0)  \
    X(done, done, SUM, 0)                   \
    X(drops, drops, SUM, 0)                 \
    X(wakes, wakes, SUM, 0)                 \
    X(sched, sched, SUM, 1)                 \
    X(slow, slow, SUM, 0) /* polls of DIAGNOSE_SLOW_NS or more */
#define DIAG__SLOT_COUNTERS(X) DIAG__SLOT_POLLED(X) DIAG__SLOT_RUNS(X)
#define DIAG__SLOT_FIELD(slot, row, kind, to_ns) uint64_t slot;
typedef struct diag__slot {
    DIAG__SLOT_POLLED(DIAG__SLOT_FIELD)
    uint8_t hist[32];
    DIAG__SLOT_RUNS(DIAG__SLOT_FIELD)
} diag__slot;
typedef char diag__slot_is_128_bytes[sizeof(diag__slot) == 128 ? 1 : -1];

typedef struct diag__frame {
    diag_span *span;
    diag__slot *slot;
    uint64_t start, child; /* ticks; child: inclusive time of nested polls */
    uint32_t path;
} diag__frame;

/* (parent, name) -> path, open addressing; an entry is a path id (0: empty),
   whose key is read from the path table. */
typedef struct diag__map {
    uint32_t *entries;
    uint32_t cap, count;
} diag__map;

/* An open run, for dumps to list with its age. The thread where the run
   begins takes a free record (span NULL) and publishes span with release;
   the run's end, on any thread, frees it with one store. Records never
   move and are never freed, so a dump reads them while threads poll. */
typedef struct diag__run {
    diag_span *span;          /* NULL: free */
    struct diag__run *parent; /* record of the run this one began inside, or NULL */
    uint64_t parent_start;    /* that run's start: tells a reused parent record */
    uint64_t start;           /* ticks of the run's first poll */
    uint64_t polled;          /* ticks of the last poll that followed a wake (or start) */
    uint64_t woke;            /* ticks of the latest wake, 0: never woken */
    uint64_t suspended;       /* ticks of the switch out of its coroutine, 0: not suspended */
    uint32_t path;
} diag__run;

typedef struct diag__run_chunk {
    struct diag__run_chunk *next; /* appended by the owner with release */
    diag__run *runs;
    uint32_t count;
} diag__run_chunk;

/* A thread's records: head and the chunks' next links are read by dumps;
   the rest only by the owner, which looks for a free record from cursor on. */
typedef struct diag__runs {
    diag__run_chunk *head, *tail, *cursor;
    uint32_t index, taken, total; /* taken: records taken since the cursor was at head */
} diag__runs;

/* One recorded poll of the flight recorder (DIAGNOSE_TRACE): 24 bytes. */
typedef struct diag__event {
    uint64_t start, dur; /* ticks */
    uint32_t path;
    uint32_t orphan; /* the trace writer's: no parent in the file, so named by its whole path */
} diag__event;

/* A thread's ring of its last n polls, n + 1 slots: the one being written
   never holds an event a reader keeps (see the flight recorder section). */
typedef struct diag__ring {
    uint64_t done;          /* events written; atomic, published with release */
    uint32_t pos, slots;    /* the next slot (owner only); n + 1 */
    uint64_t tid;           /* the trace's thread number */
    char name[16];          /* the thread's name */
    struct diag__ring *next; /* exited threads' rings, newest first */
    diag__event *events;    /* right after this header, same allocation */
} diag__ring;

typedef struct diag__thread {
    uint32_t depth;
    diag__ring *ring; /* NULL unless DIAGNOSE_TRACE: here, next to depth, in the line every poll reads */
    diag__frame stack[DIAG_MAX_DEPTH];
    diag__slot *dir[DIAG__DIR]; /* chunks of slots by path; published with release */
    diag__slot **base;          /* reset baselines, same shape; under the lock */
    diag__map cache;            /* (parent, name) -> path, this thread only */
    uint64_t folded;            /* runs or polls folded at DIAG_MAX_DEPTH; atomic, never reset */
    struct diag__thread *next;
    diag__runs runs;            /* records of the runs that began on this thread */
    diag_fiber *fiber;          /* the coroutine running now, or NULL: see >>fibers */
    uint32_t fiber_base;        /* depth at the switch into it: its frames are above */
    uint64_t fiber_in;          /* ticks at that switch if it put frames back, else 0 */
    struct diag__hot *hot;      /* poll-time histograms of its busiest paths (see >>hist), or NULL */
    struct diag__hot *hot_base; /* their baselines at the last reset; under the lock */
    uint32_t asides;            /* polls' buckets counted in hot (owner only): its entries' clock */
} diag__thread;

DIAG_API __thread diag__thread *diag__tls;
#if defined(__x86_64__) || defined(__i386__)
/* The inline poll path's table. x86 reads a thread-local with the segment
   register in the load itself, so a coroutine resumed on another thread
   (see diag_fiber_switch) reads that thread's. */
#define DIAG__TLS() diag__tls
#else
/* Elsewhere a compiler may keep the thread pointer in a register across a
   call (aarch64 gcc -O2 does), and a span that a coroutine ends on another
   thread than it began would be counted in the first thread's table. A
   call reads the thread pointer afresh. */
DIAG_API diag__thread *diag__tls_get(void);
#define DIAG__TLS() diag__tls_get()
#endif
DIAG_API int diag__mode; /* 0 not started, 1 recording, 2 off */
DIAG_API int diag__use_tsc;
DIAG_API uint64_t diag__slow_ticks; /* polls this long go to diag__slow_poll */

DIAG_API int diag__start(void);
DIAG_API uint64_t diag__clock_ns(void);
DIAG_API diag__thread *diag__attach(void);
DIAG_API diag__slot *diag__slot_grow(diag__thread *t, uint32_t path);
DIAG_API void diag__begin_rest(diag__thread *t, diag_span *s);
DIAG_API void diag__end_rest(diag__thread *t, diag_span *s, diag_status status, uint64_t now, uint64_t dt, int counted);
DIAG_API void diag__end_all(diag__thread *t, diag_span *s, diag_status status);
DIAG_API void diag__end_unmatched(diag__thread *t, diag_span *s, diag_status status);
DIAG_API void diag__poll_unwound(diag_span *s);
DIAG_API void diag__wake_noted(diag_span *s, uint64_t now);
DIAG_API diag_status diag__poll_invalid(diag_future *f);

static inline int diag__on(void)
{
    if (DIAG__LIKELY(diag__mode == 1)) return 1;
    return diag__mode == 0 && diag__start();
}

/* The CPU's own counter, read inline by the fast paths below: the timestamp
   counter on x86, the virtual counter (cntvct_el0) on aarch64. Elsewhere
   there is none: diag__fast_clock() is 0 and they take their out-of-line
   rest. The read has no barrier: it may run a few instructions early,
   which a poll's time cannot tell from its own code (diag__clock_pair,
   where the order of reads matters, puts one in). */
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
#define DIAG__COUNTER 1
#else
#define DIAG__COUNTER 0
#endif

static inline int diag__fast_clock(void) { return DIAG__COUNTER && diag__use_tsc; }

static inline uint64_t diag__fast_now(void)
{
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
    uint64_t ticks;
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(ticks));
    return ticks;
#else
    return diag__clock_ns();
#endif
}

static inline uint64_t diag__now(void)
{
    if (DIAG__COUNTER && DIAG__LIKELY(diag__use_tsc)) return diag__fast_now();
    return diag__clock_ns();
}

static inline diag__slot *diag__slot_at(diag__thread *t, uint32_t path)
{
    diag__slot *chunk = t->dir[path >> DIAG__CHUNK_BITS];
    if (DIAG__UNLIKELY(chunk == NULL)) return diag__slot_grow(t, path);
    return &chunk[path & (DIAG__CHUNK - 1)];
}

/* The bucket of a poll of `ticks`: one per tick below 16, then 8 per power
   of two, each 1/8 of its power wide: [16,18), [18,20) ... [30,32), [32,36)
   ... All of a bucket is within 1/8 of its lower bound. 256 and up from
   2^34 ticks (seconds): the poll path needs no more, as no slot's window
   reaches past 255; diag__bucket makes them 255. */
static inline unsigned diag__bucket_of(uint64_t ticks)
{
    unsigned shift = 60u - (unsigned)__builtin_clzll(ticks | 8u); /* the top bit's number less 3 */
    return (shift << 3) + (unsigned)(ticks >> shift);
}

static inline unsigned diag__bucket(uint64_t ticks)
{
    unsigned b = diag__bucket_of(ticks);
    return b < DIAG__HIST ? b : DIAG__HIST - 1;
}

static inline diag_future *diag__mark(diag_future *f, const char *name, unsigned flags)
{
    if (f) {
        f->span.name = name;
        f->span.flags = flags;
        f->span.last_path = 0;
    }
    return f;
}

#define DIAGNOSE(f) diag__mark((f), #f, DIAG__NAME_DERIVED)
#define DIAGNOSE_AS(f, name) diag__mark((f), (name), 0)

/* The poll path. Inline, the common case only: a poll of a run already
   open, on a thread with a table, timed by the timestamp counter, that is
   not woken. Anything else (a new run, a wake, a new chunk, another clock,
   too deep) goes to diag__begin_rest, which does the whole begin; the end
   leaves a wrapping histogram byte, the flight recorder, a slow poll and
   the end of a run to diag__end_rest. Each rest is called last, so that
   nothing lives across it: the inline part needs few registers.
   The begin of a poll of s, recording on (diag__on) and s marked: */
static inline __attribute__((always_inline)) void diag__begin(diag_span *s)
{
    diag__thread *t = DIAG__TLS();
    diag__slot *chunk;
    diag__frame *fr;
    uint32_t depth, path;
    if (DIAG__UNLIKELY(t == NULL)) t = diag__attach();
    depth = t->depth;
    path = s->path;
    if (DIAG__UNLIKELY(depth >= DIAG_MAX_DEPTH || path == 0 || !diag__fast_clock() || DIAG__LOAD(s->woke_at) != 0 ||
                       (chunk = t->dir[path >> DIAG__CHUNK_BITS]) == NULL)) {
        diag__begin_rest(t, s);
        return;
    }
    fr = &t->stack[depth];
    fr->slot = &chunk[path & (DIAG__CHUNK - 1)];
    fr->child = 0;
    /* Dumps read the stack for the polls running now (plain moves on x86) */
    DIAG__STORE(fr->start, diag__fast_now());
    DIAG__STORE(fr->span, s);
    DIAG__STORE(fr->path, path);
    __atomic_store_n(&t->depth, depth + 1, __ATOMIC_RELEASE);
}

static inline void diag_span_begin(diag_span *s)
{
    if (s->name != NULL && diag__on()) diag__begin(s);
}

/* The run's end frees its record: one store (see diag__run). */
static inline void diag__run_close(diag_span *s)
{
    struct diag__run *r = s->run;
    if (r == NULL) return;
    __atomic_store_n(&r->span, (diag_span *)NULL, __ATOMIC_RELEASE);
    DIAG__STORE(s->run, (struct diag__run *)NULL);
}

/* For bench/breakdown.sh only, which builds with these set to 0 to measure
   what each part of the inline end of a poll costs: the histogram byte, the
   max and slow-poll compares, the poll-time sum. A build with any of them
   0 records less than this file promises. */
#ifndef DIAG__COST_HIST
#define DIAG__COST_HIST 1
#endif
#ifndef DIAG__COST_MAX_SLOW
#define DIAG__COST_MAX_SLOW 1
#endif
#ifndef DIAG__COST_SUM
#define DIAG__COST_SUM 1
#endif

/* The end of a poll. Its common case is written out here, inline, as the
   hot path: the same accounting as diag__frame_pop, which serves every
   out-of-line end (diag__end_all, an unwound or abandoned frame).
   The histogram lags one poll behind: a poll's bucket is counted at the
   next poll of its slot, and readers count the one in hist[0] themselves.
   Counting it at once means a store to an address computed from the
   timestamp just read, which held the next timestamp read back: it cost
   about 10 ns a poll, a third of the whole poll (bench/, x86-64). With
   nothing pending hist[0] is 0, so the add lands on hist[0] itself and is
   overwritten: no branch. A byte about to wrap, or a poll outside the
   slot's window, goes out of line (diag__hist_add). */
static inline void diag_span_end(diag_span *s, diag_status status)
{
    diag__thread *t = DIAG__TLS();
    diag__frame *fr;
    diag__slot *slot;
    uint32_t depth;
    uint64_t now, dt, self;
    unsigned last = 0, in_window = 0;
    uint8_t n = 1;
    if (DIAG__UNLIKELY(t == NULL || t->depth == 0 || t->stack[t->depth - 1].span != s)) {
        diag__end_unmatched(t, s, status);
        return;
    }
    if (DIAG__UNLIKELY(!diag__fast_clock())) {
        diag__end_all(t, s, status);
        return;
    }
    now = diag__fast_now();
    depth = t->depth - 1;
    fr = &t->stack[depth];
    DIAG__STORE(t->depth, depth);
    dt = now - fr->start;
    if (DIAG__UNLIKELY((int64_t)dt < 0)) dt = 0; /* a clock that went back */
    self = dt - fr->child;
    if (DIAG__UNLIKELY((int64_t)self < 0)) self = 0;
    if (depth) fr[-1].child += dt;
    slot = fr->slot;
    DIAG__ADD(slot->polls, 1);
    DIAG__ADD(slot->busy, self);
    if (DIAG__COST_SUM) DIAG__ADD(slot->poll_ticks, dt);
    if (DIAG__COST_MAX_SLOW && DIAG__UNLIKELY(dt > DIAG__LOAD(slot->max))) DIAG__STORE(slot->max, dt);
    if (DIAG__COST_HIST) {
        last = DIAG__LOAD(slot->hist[0]);
        n = (uint8_t)(DIAG__LOAD(slot->hist[last]) + 1u);
        in_window = diag__bucket_of(dt) - DIAG__LOAD(slot->hist[DIAG__HIST_BASE]);
    }
    if (DIAG__UNLIKELY(n == 0 || in_window >= DIAG__WINDOW)) {
        diag__end_rest(t, s, status, now, dt, 0);
        return;
    }
    if (DIAG__COST_HIST) {
        DIAG__STORE(slot->hist[last], n);
        DIAG__STORE(slot->hist[0], (uint8_t)(in_window + 1));
    }
    if (DIAG__UNLIKELY(t->ring != NULL || (DIAG__COST_MAX_SLOW && dt >= DIAG__LOAD(diag__slow_ticks)) || status == DIAG_READY))
        diag__end_rest(t, s, status, now, dt, 1); /* the histogram done, here: with the flight recorder, every poll */
}

static inline void diag_span_wake(diag_span *s)
{
    uint64_t now;
    if (s->name == NULL || diag__mode != 1 || DIAG__LOAD(s->woke_at) != 0) return;
    now = diag__now();
    DIAG__STORE(s->woke_at, now ? now : 1);
    diag__wake_noted(s, now);
}

#ifdef __cplusplus
/* A poll that an exception leaves ends as one that returned PENDING: counted,
   busy until the unwinding, its frame popped; its run stays open, for the
   owner to poll again or drop. The exception goes on unchanged. On the
   normal path the destructor sees NULL and compiles to nothing. The end
   for the unwinding is out of line: a second call of diag_span_end would
   keep the compiler from inlining the first. */
struct diag__poll_guard {
    diag_span *span;
    ~diag__poll_guard() { if (span) diag__poll_unwound(span); }
};
#endif

/* The measured poll (f marked, recording on), out of line: diag_poll then
   stays a few loads and a tail call when the future is unmarked or
   recording is off, instead of saving registers for a measurement it does
   not make. */
__attribute__((noinline, unused)) static diag_status diag__poll_measured(diag_future *f, void *cx)
{
    diag_status status;
    diag__begin(&f->span);
#ifdef __cplusplus
    {
        diag__poll_guard unwinding = { &f->span };
        status = f->poll(f, cx);
        unwinding.span = NULL;
    }
#else
    status = f->poll(f, cx);
#endif
    diag_span_end(&f->span, status);
    return status;
}

static inline diag_status diag_poll(diag_future *f, void *cx)
{
    if (DIAG__UNLIKELY(f == NULL || f->poll == NULL)) return diag__poll_invalid(f);
    if (DIAG__LIKELY(f->span.name != NULL && diag__mode == 1)) return diag__poll_measured(f, cx);
    if (f->span.name != NULL && diag__on()) return diag__poll_measured(f, cx); /* the first poll starts recording */
    return f->poll(f, cx); /* unmarked, or off */
}

static inline void diag_drop(diag_future *f)
{
    if (f) diag_span_cancel(&f->span);
}

static inline void diag_wake(diag_future *f)
{
    if (f) diag_span_wake(&f->span);
}

/* ---- call-style async: one call of a function is one poll --------------- */

#define DIAG__SPAN_AT 2u /* span flag: owned by the diag_span_at table */
DIAG_API diag_span *diag_span_at(const void *task, const char *name);
DIAG_API void diag_drop_at(const void *task);
DIAG_API void diag__at_release(diag_span *s);

static inline void diag__call_end(diag_span *s, int done)
{
    diag_span_end(s, done ? DIAG_READY : DIAG_PENDING);
    if (done && DIAG__UNLIKELY(s->flags & DIAG__SPAN_AT)) diag__at_release(s);
}

/* A statement expression, so that the call's value keeps its type: GNU C,
   as the rest of the header (see the top); C99 has no way to hold a value
   of the call's type, evaluated once, for the compare. The locals get a
   number of their own (__COUNTER__), so that a DIAG_CALL in the call of
   another shadows nothing. */
#define DIAG__CAT2(a, b) a##b
#define DIAG__CAT(a, b) DIAG__CAT2(a, b)
#define DIAG__CALL(s, call, done, n)                                                                       \
    __extension__({                                                                                        \
        diag_span *DIAG__CAT(diag__call_s, n) = (s);                                                       \
        __typeof__(call) DIAG__CAT(diag__call_r, n) = (diag_span_begin(DIAG__CAT(diag__call_s, n)), (call)); \
        diag__call_end(DIAG__CAT(diag__call_s, n), DIAG__CAT(diag__call_r, n) == (done));                \
        DIAG__CAT(diag__call_r, n);                                                                        \
    })
#define DIAG_CALL(s, call, done) DIAG__CALL(s, call, done, __COUNTER__)
#define DIAG_CALL_AT(task, name, call, done) DIAG_CALL(diag_span_at((task), (name)), call, done)

#endif /* DIAGNOSE_DISABLE */

#ifdef __cplusplus
}
#endif
#endif /* DIAGNOSE_H */

/* ======================================================================== */
/*                              IMPLEMENTATION                              */
/* ======================================================================== */
#if defined(DIAGNOSE_IMPLEMENTATION) && !defined(DIAGNOSE_DISABLE) && !defined(DIAG__IMPLEMENTED)
#define DIAG__IMPLEMENTED

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#if !defined(CLOCK_MONOTONIC) || !defined(O_NOFOLLOW)
#error "diagnose.h: the implementation needs POSIX. Put #define DIAGNOSE_IMPLEMENTATION and #include \"diagnose.h\" before other includes, or compile with -D_GNU_SOURCE."
#endif

#ifndef DIAG_MALLOC
#define DIAG_MALLOC(size) malloc(size)
#define DIAG_REALLOC(p, size) realloc(p, size)
#define DIAG_FREE(p) free(p)
#endif

#define DIAG__NAME_MAX 160 /* bytes of one sanitized frame name */
#define DIAG__TABLE_ROWS 25

#ifdef __cplusplus
extern "C" {
#endif
/* >>state: the runtime every copy shares, and its types ---------------------- */

__thread diag__thread *diag__tls;
int diag__mode;
int diag__use_tsc;
uint64_t diag__slow_ticks = UINT64_MAX;

typedef struct diag__path {
    const char *name;
    uint32_t parent, depth, flags;
} diag__path;

/* Process-wide state, under diag__rt->lock except where marked; one per DIAG__ABI key, never freed (see "copies"). */
static pthread_once_t diag__once = PTHREAD_ONCE_INIT;
struct diag__copy_info;
struct diag__snapshot_thread;

/* DIAGNOSE_HTTP, as read (see >>http): where the profile is served. */
typedef struct diag__address {
    int family;            /* AF_INET or AF_INET6; 0: not set, no server */
    unsigned port;         /* 0: any free port */
    unsigned char ip[16];  /* network order: 4 bytes for AF_INET */
    char host[64];         /* as a Host header names it: 127.0.0.1, localhost, [::1] */
} diag__address;
typedef struct diag__runtime {
    pthread_key_t key;
    uint64_t tsc0, mono0;       /* clock origin, for calibration (read-only) */
    uint64_t reset_at;          /* ticks of the last reset or fork */
    diag__path *paths[DIAG__DIR]; /* chunks, never moved: read without the lock */
    uint32_t npaths, max_paths;
    diag__map index;            /* (parent, name) -> path */
    diag__thread *threads;      /* live threads */
    diag__thread retired;       /* merged tables of threads that exited */
    unsigned nretired;
    int forked, exit_done;
    uint64_t unmeasured;        /* atomic: polls on threads without a table */
    int said_invalid;           /* atomic: warned once */
    uint64_t slow_ns;           /* DIAGNOSE_SLOW_NS; 0: no slow-poll lint */
    int slow_exact;             /* atomic: diag__slow_ticks is calibrated */
    diag__run_chunk *parked;    /* records of threads that exited, for the next new thread */
    uint64_t stuck_ns;          /* DIAGNOSE_STUCK_S: an open run this old is stuck */
    void *self_wakes[DIAG__DIR]; /* chunks of self-wakes by path: all, then quick ones (uint64_t); atomic */
    uint64_t *self_wakes_base;  /* their values at the last reset, 2 per path, npaths then; under the lock */
    uint32_t nself_wakes_base;
    int quiet, svg;             /* DIAGNOSE_QUIET, DIAGNOSE_SVG, read at start-up */
    const char *out;            /* DIAGNOSE_OUT or "diagnose", as given */
    char *start_dir;            /* working directory at start-up and '/', for a relative out; or NULL */
    void *hist[DIAG__DIR];      /* chunks of paths' shared histograms (see diag__hist_piece); atomic */
    void *hist_base[DIAG__DIR]; /* their values at the last reset */
    int overflow_why;           /* atomic: DIAG__OVERFLOW_CAP | DIAG__OVERFLOW_MEMORY, why [overflow] has polls */
    int use_tsc;                /* read-only: diag__use_tsc of every copy */
    pthread_mutex_t lock;       /* the runtime lock (see HOW IT WORKS) */
    diag__thread *no_table;     /* of threads without a table: its full stack leaves polls unmeasured */
    struct diag__snapshot_thread *snapshot_thread;
    uint64_t slow_ticks;        /* atomic: the calibrated diag__slow_ticks, once slow_exact */
    uint64_t quick_wake_ticks;  /* atomic: DIAG__QUICK_WAKE_NS in ticks, once measured (0: not yet) */
    struct diag__copy_info *copies; /* the copies in the process now, newest first */
    const struct diag__copy_info *key_owner; /* whose diag__thread_exit the key calls; NULL: no key */
    const struct diag__copy_info *fork_owner;  /* the copy whose fork handlers take the lock */
    const struct diag__copy_info *fork_locker; /* the copy whose fork handlers hold it now */
    char tag[16];               /* "" or ".abi-" and 8 hex digits of its key, after every prefix (see "copies") */
    struct diag__trace_state *trace; /* the flight recorder's shared state */
    struct diag__at_state *at;       /* the diag_span_at table */
    pthread_mutex_t dump_lock;  /* one dump at a time (see HOW IT WORKS) */
    uint64_t open_at_thread_end; /* polls not ended when their thread exited */
    int said_unwound;           /* atomic: warned once of frames a later end unwound */
    int said_fiber_deep;        /* atomic: warned once of a coroutine's spans too deep to move */
    int exit_waiting;           /* atomic: the exit dump waits for the dump lock: others let it go first */
    uint64_t interval_ns;       /* DIAGNOSE_INTERVAL; 0: no timer (see diag__snapshot_thread_start) */
    int signo;                  /* DIAGNOSE_SIGNAL; 0: none */
    uint32_t trace_n;           /* DIAGNOSE_TRACE: events per thread; 0: off */
    uint64_t ns_per_tick;       /* atomic: the bits of the double every file converts with; 0: not yet */
    diag__address http;         /* DIAGNOSE_HTTP */
    int pprof;                  /* DIAGNOSE_PPROF: dumps write PREFIX.pb.gz too */
    struct diag__http_state *server; /* the HTTP server's sockets; NULL: none (see >>http) */
} diag__runtime;

/* What the runtime needs of a copy's code: when the copy leaves, what pointed into it moves to one that stays. */
typedef struct diag__copy_info {
    struct diag__copy_info *next; /* in diag__rt->copies */
    void (*thread_exit)(void *); /* the key's destructor */
    void (*tls_clear)(void);     /* forgets this copy's diag__tls of the calling thread */
    void *(*snapshot_thread_main)(void *);
    void (*snapshot_thread_signal)(int);
    int in_executable;           /* never unloaded: it leaves only at exit */
} diag__copy_info;

/* Until start-up finds the runtime (and forever with DIAGNOSE=0), a zeroed
   one of this copy's own: the paths that run while off read only zeros. */
static diag__runtime diag__local;
static diag__runtime *diag__rt = &diag__local;

#define DIAG__OVERFLOW_CAP 1    /* new paths past DIAGNOSE_MAX_PATHS */
#define DIAG__OVERFLOW_MEMORY 2 /* new paths or slots found no memory */
#define DIAG__OVERFLOWED(why) __atomic_fetch_or(&diag__rt->overflow_why, (why), __ATOMIC_RELAXED)

/* A snapshot's rows: by path in ticks while it reads the tables, then one
   per stack in ns, sorted (diag__rows_finish). A row has the slot's
   counters under their row names (DIAG__SLOT_COUNTERS: pending is the runs
   open now, start_sum their starts), then its own: X(name, kind) as there. */
#define DIAG__ROW_ONLY(X)                                                                   \
    X(self_wall, SUM)  /* ns: wall less the walls of the paths run inside it */              \
    X(started, SUM)    /* runs started in the window */                                     \
    X(self_wakes, SUM) /* wakes from the path's own poll */                                 \
    X(quick_self_wakes, SUM) /* of them, less than DIAG__QUICK_WAKE_NS into their poll */  \
    X(open, SUM)       /* open runs listed now */                                           \
    X(oldest, PEAK)    /* ns: the oldest open run's age */                                  \
    X(running, PEAK)   /* ns: the longest poll running now + 1 (0: none) */                 \
    X(orphans, SUM)    /* open runs whose parent run ended */                               \
    X(lost, SUM)       /* open runs not woken, polled or running for DIAGNOSE_STUCK_S */ \
    X(suspended, SUM)  /* open runs whose coroutine is switched out in their poll */     \
    X(suspended_for, PEAK) /* ns: the longest such switch-out so far + 1 (0: none) */
#define DIAG__ROW_FIELD(row, kind) uint64_t row;
#define DIAG__ROW_SHARED_FIELD(slot, row, kind, to_ns) uint64_t row;
typedef struct diag__row {
    const char *stack;
    DIAG__SLOT_COUNTERS(DIAG__ROW_SHARED_FIELD)
    DIAG__ROW_ONLY(DIAG__ROW_FIELD)
    uint64_t *hist; /* DIAG__HIST counts of polls by bucket (diag__bucket), in snap->hists; NULL without */
    uint64_t open_base; /* while reading: open runs at the window's start */
    uint32_t path;      /* while finishing: the path it was read from */
} diag__row;

typedef struct diag__snapshot {
    diag__row *rows;
    size_t count;
    char *text;          /* the stacks */
    uint64_t *hists;     /* DIAG__HIST per row that has one (diag__hists_read: only the table needs them) */
    uint32_t *row_of;    /* path -> its row (UINT32_MAX: none), for diag__hists_read; or NULL */
    uint32_t npaths;
    double ns_per_tick;
    uint64_t elapsed_ns; /* since start, or since the last reset */
    uint64_t reset_at;   /* ticks of the last reset (or fork, or the start) */
    unsigned threads;
    uint64_t folded, unmeasured;
} diag__snapshot;

typedef struct diag__buf {
    char *data;
    size_t len, cap;
    int failed;
} diag__buf;

/* The only calls to code further down: each closes a cycle. */
static uint64_t diag__thread_number(void);   /* rings <- copies: numbers are process-wide */
static void diag__trace_slow(void);          /* a slow poll -> the snapshot thread */
static const struct diag__copy_info *diag__copy_self(void); /* the snapshot thread's owner */
static int diag__runtime_new(void);          /* copies -> start-up: the first copy makes it */

static void *diag__alloc_zero(size_t size)
{
    void *p = DIAG_MALLOC(size);
    if (p) memset(p, 0, size);
    return p;
}

static char *diag__copy(const char *text)
{
    size_t n = strlen(text) + 1;
    char *copy = (char *)DIAG_MALLOC(n);
    if (copy) memcpy(copy, text, n);
    return copy;
}

/* >>stderr: every line the library writes ------------------------------------ */

/* Writes text to stderr with SIGPIPE blocked on this thread, so a closed
   pipe (prog 2>&1 | head) neither kills the program nor changes its exit
   code: the SIGPIPE it raised is taken back, one pending before stays. An
   error ends the text quietly. write(2): no stdio lock or buffer, at exit too. */
static void diag__stderr_write(const char *text, size_t len)
{
    sigset_t pipe_only, old, pending;
    struct timespec zero = { 0, 0 };
    int saved = errno, was_pending, broken = 0;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, text, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            broken = n < 0 && errno == EPIPE;
            break;
        }
        text += n;
        len -= (size_t)n;
    }
    if (broken && !was_pending)
        while (sigtimedwait(&pipe_only, NULL, &zero) < 0 && errno == EINTR) {
        }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
}

/* Length of the valid UTF-8 at s of a printable code point above U+00A0,
   not a space or invisible separator (viewers split on them); else 0. */
static size_t diag__utf8_printable(const unsigned char *s)
{
    uint32_t cp;
    size_t n, i;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) n = 2, cp = s[0] & 0x1Fu;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) n = 3, cp = s[0] & 0x0Fu;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) n = 4, cp = s[0] & 0x07u;
    else return 0;
    for (i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0xA1 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        cp == 0x205F || cp == 0x3000 || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFF))
        return 0;
    return n;
}

/* Copies len bytes of text into out (cap bytes) as a terminal shows them
   and nothing more: a control byte, a backslash or a byte that does not
   begin printable UTF-8 is written \n, \t, \r, \\ or \xNN, so that a
   prefix, path or value a user gave can neither end the line nor forge
   another. Stops before an escape that would not fit; returns the length. */
static size_t diag__escape(const char *text, size_t len, char *out, size_t cap)
{
    static const char named[] = "\n\t\r\\", as[] = "ntr\\";
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, n = 0;
    while (i < len) {
        char esc[8];
        size_t step = s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\' ? 1 : diag__utf8_printable(s + i), put;
        const char *name = s[i] ? strchr(named, s[i]) : NULL;
        int plain = step != 0 && i + step <= len;
        if (plain) put = step;
        else if (name) put = (size_t)snprintf(esc, sizeof esc, "\\%c", as[name - named]);
        else put = (size_t)snprintf(esc, sizeof esc, "\\x%02x", s[i]);
        if (n + put > cap) break;
        memcpy(out + n, plain ? text + i : esc, put);
        n += put;
        i += plain ? step : 1;
    }
    return n;
}

/* printf to stderr through diag__stderr_write, one line: what the
   arguments bring is escaped (diag__escape), and the line ends in '\n'. */
__attribute__((format(printf, 1, 2))) static void diag__warn(const char *format, ...)
{
    char raw[4096], line[8192];
    va_list ap;
    int n;
    size_t len;
    va_start(ap, format);
    n = vsnprintf(raw, sizeof raw, format, ap);
    va_end(ap);
    if (n < 0) return;
    len = (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1; /* cut: still a whole line */
    if (len > 0 && raw[len - 1] == '\n') len--;
    len = diag__escape(raw, len, line, sizeof line - 1);
    line[len++] = '\n';
    diag__stderr_write(line, len);
}

static void diag__say_once(int *flag, const char *message)
{
    if (__atomic_exchange_n(flag, 1, __ATOMIC_RELAXED) == 0) diag__stderr_write(message, strlen(message));
}

/* Marks the library's work that locks or allocates (dumps, reset, new
   paths, thread tables, start-up): an exit() from a signal handler inside
   it must not dump (the lock is this thread's, malloc maybe half way). */
static __thread unsigned diag__inside_depth;

static void diag__inside_enter(void)
{
    diag__inside_depth++;
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* marked before the work starts */
}

static void diag__inside_leave(void)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST); /* the work is done before the mark goes */
    diag__inside_depth--;
}

static int diag__inside(void) { return diag__inside_depth != 0; }

/* >>clock -------------------------------------------------------------------- */

static uint64_t diag__clock_read(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t diag__clock_ns(void) { return diag__clock_read(CLOCK_MONOTONIC); }

static uint64_t diag__realtime_ns(void) { return diag__clock_read(CLOCK_REALTIME); }

/* Milliseconds from now until `at` (CLOCK_MONOTONIC ns), rounded up. */
static int diag__ms_until(uint64_t at)
{
    uint64_t now = diag__clock_ns();
    return at > now ? (int)((at - now + 999999u) / 1000000u) : 0;
}

#if defined(__aarch64__)
#define DIAG__COUNTER_NAME "cntvct" /* as the table's first line names the clock */
/* The virtual counter's rate in Hz, as the firmware set cntfrq_el0. */
static uint64_t diag__counter_hz(void)
{
    uint64_t hz;
    __asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(hz));
    return hz;
}
/* The lowest rate the counter may run at, in ticks per ns, for the slow-poll
   threshold before calibration (diag__slow_start): half what cntfrq_el0
   says, for a firmware that rounds it. */
#define DIAG__MIN_TICKS_PER_NS ((double)diag__counter_hz() / 2e9)
#else
#define DIAG__COUNTER_NAME "tsc"
#define DIAG__MIN_TICKS_PER_NS 0.25 /* no invariant TSC runs below 250 MHz */
#endif

/* 1 if the fast paths may read the CPU's counter (diag__use_tsc): on x86
   an invariant timestamp counter (CPUID says so); on aarch64 the virtual
   counter, one clock for every core, when cntfrq_el0 gives its rate (a
   firmware that leaves it 0 leaves clock_gettime). */
static int diag__tsc_is_invariant(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0x80000007u, &a, &b, &c, &d)) return 0;
    return ((d >> 8) & 1u) != 0;
#elif defined(__aarch64__)
    uint64_t hz = diag__counter_hz();
    return hz >= 1000000u && hz <= 10000000000u;
#else
    return 0;
#endif
}

/* diag__now, read after the instructions before it: on aarch64 the
   counter may be read early, before a clock_gettime just called. */
static uint64_t diag__now_in_order(void)
{
#if defined(__aarch64__)
    __asm__ __volatile__("isb" ::: "memory");
#endif
    return diag__now();
}

/* One (ticks, monotonic ns) pair, the monotonic time taken as the middle of
   two reads around the tick read. The tightest of a few tries is kept: a
   preemption between the reads would skew the rate by its whole length,
   which over the 1 ms a short program calibrates on is a large error. */
static void diag__clock_pair(uint64_t *ticks, uint64_t *mono)
{
    uint64_t best = UINT64_MAX;
    int i;
    for (i = 0; i < 16 && best > 2000; i++) {
        uint64_t before = diag__clock_ns(), t = diag__now_in_order(), after = diag__clock_ns();
        if (after - before < best) {
            best = after - before;
            *ticks = t;
            *mono = before + best / 2;
        }
    }
}

/* The rate is measured once, by the first conversion (a dump, a slow-poll
   trace, the slow-poll threshold), over the run so far but at least this
   long (a dump sooner waits for it): rate good to about 1e-5. */
#define DIAG__CALIBRATE_NS 10000000u

/* Nanoseconds per tick: measured once (see DIAG__CALIBRATE_NS), then the
   same for every file, so a poll reads the same wherever it is written. */
static double diag__ns_per_tick(void)
{
    uint64_t ticks, mono, bits = __atomic_load_n(&diag__rt->ns_per_tick, __ATOMIC_ACQUIRE), none = 0;
    double rate = 1.0;
    if (!diag__use_tsc) return rate;
    if (bits == 0) {
        for (diag__clock_pair(&ticks, &mono); mono - diag__rt->mono0 < DIAG__CALIBRATE_NS;
             diag__clock_pair(&ticks, &mono)) {
            uint64_t left = DIAG__CALIBRATE_NS - (mono - diag__rt->mono0);
            struct timespec wait = { 0, (long)left };
            nanosleep(&wait, NULL);
        }
        rate = (double)(mono - diag__rt->mono0) / (double)(ticks - diag__rt->tsc0);
        memcpy(&bits, &rate, sizeof bits);
        if (!__atomic_compare_exchange_n(&diag__rt->ns_per_tick, &none, bits, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            bits = none; /* another thread measured it first */
    }
    memcpy(&rate, &bits, sizeof rate);
    return rate;
}

/* x (not negative) to the nearest integer, halves up; no libm. */
static uint64_t diag__round(double x)
{
    uint64_t n = (uint64_t)x;
    return x - (double)n >= 0.5 ? n + 1 : n;
}

static uint64_t diag__to_ns(uint64_t ticks, double ns_per_tick)
{
    return diag__round((double)ticks * ns_per_tick);
}

/* >>locks: the dump lock, and bounded waits at exit -------------------------- */

/* Set on the thread that runs the exit dump: a lock held elsewhere is waited
   for until this time (CLOCK_REALTIME ns), then given up. 0: no limit. */
static __thread uint64_t diag__exit_deadline;
#define DIAG__EXIT_WAIT_NS 1000000000u

/* pthread_mutex_lock, or at exit until diag__exit_deadline: 0, or ETIMEDOUT. */
static int diag__lock_or_give_up(pthread_mutex_t *m)
{
    struct timespec until;
    if (diag__exit_deadline == 0) return pthread_mutex_lock(m);
    until.tv_sec = (time_t)(diag__exit_deadline / 1000000000u);
    until.tv_nsec = (long)(diag__exit_deadline % 1000000000u);
    return pthread_mutex_timedlock(m, &until);
}

/* Takes diag__rt->dump_lock (0: locked): the exit dump until diag__exit_deadline,
   others after it (exit_waiting): mutexes are not fair, and a thread dumping
   in a loop could win it every time until the exit dump gave up. */
static int diag__dump_lock_take(void)
{
    if (diag__exit_deadline != 0) return diag__lock_or_give_up(&diag__rt->dump_lock);
    while (__atomic_load_n(&diag__rt->exit_waiting, __ATOMIC_ACQUIRE)) {
        struct timespec ms = { 0, 1000000 };
        nanosleep(&ms, NULL); /* the exit ends the process, this thread too */
    }
    return pthread_mutex_lock(&diag__rt->dump_lock);
}

/* >>names: frame names as the files write them ------------------------------- */

/* Makes room for n more bytes and a NUL; returns 0, or -1 and sets failed. */
static int diag__buf_reserve(diag__buf *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *d;
    if (b->failed) return -1;
    if (b->len + n + 1 <= b->cap) return 0;
    while (cap < b->len + n + 1) cap *= 2;
    d = (char *)DIAG_REALLOC(b->data, cap);
    if (d == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

static void diag__buf_put(diag__buf *b, const char *s, size_t n)
{
    if (diag__buf_reserve(b, n) != 0) return;
    memmove(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void diag__buf_str(diag__buf *b, const char *s) { diag__buf_put(b, s, strlen(s)); }

static void diag__buf_u64(diag__buf *b, uint64_t v)
{
    char digits[24];
    size_t n = 0;
    do digits[sizeof digits - 1 - n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    diag__buf_put(b, digits + sizeof digits - n, n);
}

static int diag__frame_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("_:.-/<>()[]#@+=,&", c) != NULL);
}

/* Writes a frame name made only of safe bytes into out (at least
   DIAG__NAME_MAX + 1 bytes): allowed ASCII and printable UTF-8 are kept,
   every other byte becomes '_'; long names are cut with "..."; an empty
   name is "[unnamed]". A derived name (DIAGNOSE's argument text) first
   loses leading '&', '*', '(' and blanks and trailing ')' and blanks. */
static size_t diag__sanitize(const char *name, int derived, char *out)
{
    const unsigned char *s = (const unsigned char *)(name ? name : "");
    size_t end, len = 0, i = 0;
    if (derived)
        while (*s == '&' || *s == '*' || *s == '(' || *s == ' ' || *s == '\t') s++;
    end = strlen((const char *)s);
    if (derived)
        while (end > 0 && (s[end - 1] == ')' || s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
    while (i < end) {
        size_t n = diag__frame_char(s[i]) ? 1 : diag__utf8_printable(s + i);
        int safe = n != 0 && i + n <= end;
        size_t step = safe ? n : 1; /* a byte not safe becomes '_' */
        if (len + step > DIAG__NAME_MAX - 3) {
            memcpy(out + len, "...", 3);
            len += 3;
            break;
        }
        memcpy(out + len, safe ? (const char *)s + i : "_", step);
        len += step;
        i += step;
    }
    if (len == 0) {
        memcpy(out, "[unnamed]", 9);
        len = 9;
    }
    out[len] = '\0';
    return len;
}

/* The program's name as the trace, the pprof profile and the page give it. */
static const char *diag__program_name(void)
{
#if defined(__GLIBC__)
    return program_invocation_short_name;
#else
    return "process";
#endif
}

/* v in 3 digits and the unit of its size, of units each 1000 times the one
   before (in the first, v whole): 999ns, 12.3us, 450ms, 1.20s; 123M. */
static void diag__format_3(char *out, size_t cap, double v, const char *const *units, int nunits)
{
    int u = 0;
    while (v >= 999.5 && u < nunits - 1) v /= 1000.0, u++;
    if (u == 0 || v >= 99.95) snprintf(out, cap, "%.0f%s", v, units[u]);
    else if (v >= 9.995) snprintf(out, cap, "%.1f%s", v, units[u]);
    else snprintf(out, cap, "%.2f%s", v, units[u]);
}

/* A duration in at most 6 characters: 999ns, 12.3us, 450ms, 1.20s. */
static void diag__format_ns(char *out, size_t cap, uint64_t ns)
{
    static const char *const units[] = { "ns", "us", "ms", "s" };
    diag__format_3(out, cap, (double)ns, units, 4);
}

/* A count in at most width characters (5 or more): whole when it fits,
   else 3 digits and k, M, G, T, P or E (123456789 in 8: "123M"). */
static void diag__format_count(char *out, size_t cap, uint64_t n, size_t width)
{
    static const char *const units[] = { "", "k", "M", "G", "T", "P", "E" };
    snprintf(out, cap, "%llu", (unsigned long long)n);
    if (strlen(out) > width) diag__format_3(out, cap, (double)n, units, 7);
}

/* >>settings: every DIAGNOSE_* variable, parsed one way ---------------------- */

/* NULL in a set-uid or set-gid program (AT_SECURE), whatever the libc. */
static const char *diag__getenv(const char *name)
{
#if defined(__GLIBC__)
    return secure_getenv(name);
#elif defined(__linux__)
    return getauxval(AT_SECURE) ? NULL : getenv(name);
#else
    return getuid() != geteuid() || getgid() != getegid() ? NULL : getenv(name);
#endif
}

/* Every variable is read once, at start-up (diag__settings_read; DIAGNOSE
   in diag__start_once). Unset or empty: the default, silently; a value not
   understood: one line, "diagnose.h: NAME='VALUE' <problem>; accepted:
   <what>; using <default>" ("ignored" if off by default), and the default. */
static void diag__setting_refused(const char *name, const char *value, const char *problem, const char *accepted,
                                  const char *fallback)
{
    diag__warn("diagnose.h: %s='%s' %s; accepted: %s; %s%s\n", name, value, problem, accepted,
            fallback ? "using " : "ignored", fallback ? fallback : "");
}

/* The variable's value, or NULL when it is unset or empty. */
static const char *diag__setting_text(const char *name)
{
    const char *v = diag__getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

static int diag__same_word(const char *a, const char *b) /* ASCII, any case */
{
    for (; *a && *b; a++, b++)
        if ((*a | 0x20) != (*b | 0x20)) return 0;
    return *a == *b;
}

/* A yes/no: 0/1, off/on, no/yes, false/true in any case; otherwise fallback. */
static int diag__setting_bool(const char *name, int fallback)
{
    static const char *const words[][2] = { { "0", "1" }, { "off", "on" }, { "no", "yes" }, { "false", "true" } };
    const char *v = diag__setting_text(name);
    size_t i;
    if (v == NULL) return fallback;
    for (i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (diag__same_word(v, words[i][0])) return 0;
        if (diag__same_word(v, words[i][1])) return 1;
    }
    diag__setting_refused(name, v, "is not understood", "0/1, off/on, no/yes, false/true (any case)",
                          fallback ? "1" : "0");
    return fallback;
}

/* A whole number from min to max (max UINT64_MAX: none); anything else (a sign, blanks) refused: fallback. */
static uint64_t diag__setting_uint(const char *name, uint64_t fallback, uint64_t min, uint64_t max)
{
    const char *v = diag__setting_text(name), *p, *problem = NULL;
    char accepted[96], using_text[24];
    uint64_t n = 0;
    if (v == NULL) return fallback;
    for (p = v; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - digit) / 10) break; /* past 2^64 - 1 */
        n = n * 10 + digit;
    }
    if (*v == '-' && v[1] >= '0' && v[1] <= '9') problem = "is negative";
    else if (p == v || (*p != '\0' && (*p < '0' || *p > '9'))) problem = "is not a whole number";
    else if (*p != '\0' || n > max) problem = "is above the maximum";
    else if (n < min) problem = "is below the minimum";
    if (problem == NULL) return n;
    if (max == UINT64_MAX) snprintf(accepted, sizeof accepted, "a whole number, %llu or more", (unsigned long long)min);
    else snprintf(accepted, sizeof accepted, "a whole number from %llu to %llu", (unsigned long long)min,
                  (unsigned long long)max);
    snprintf(using_text, sizeof using_text, "%llu", (unsigned long long)fallback);
    diag__setting_refused(name, v, problem, accepted, using_text);
    return fallback;
}

/* Seconds, decimals allowed ("2", "0.25", ".5"; read the same in every
   locale), from min to max; otherwise fallback (0: the setting is off). */
static double diag__setting_seconds(const char *name, double fallback, double min, double max)
{
    const char *v = diag__setting_text(name), *p = v, *problem = NULL;
    char accepted[96], using_text[32];
    double seconds = 0;
    int digits = 0;
    if (v == NULL) return fallback;
    for (; *p >= '0' && *p <= '9'; p++, digits++) seconds = seconds * 10 + (*p - '0');
    if (*p == '.') {
        double scale = 1;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) seconds += (*p - '0') * (scale /= 10);
    }
    if (*v == '-' && (v[1] == '.' || (v[1] >= '0' && v[1] <= '9'))) problem = "is negative";
    else if (digits == 0 || *p != '\0') problem = "is not a number of seconds";
    else if (seconds < min) problem = "is below the minimum";
    else if (seconds > max) problem = "is above the maximum";
    if (problem == NULL) return seconds;
    snprintf(accepted, sizeof accepted, "seconds from %g to %g, decimals allowed", min, max);
    snprintf(using_text, sizeof using_text, "%g", fallback);
    diag__setting_refused(name, v, problem, accepted, fallback > 0 ? using_text : NULL);
    return fallback;
}

/* A signal to catch: a name with or without SIG in any case (USR1, sigusr2,
   HUP ...) or a number; otherwise fallback (0: off). Refused by name and
   by number: KILL and STOP, which cannot be caught, and the signals of a
   fault, whose handler returns to the fault and is called again forever. */
static int diag__setting_signal(const char *name, int fallback)
{
    static const struct { const char *name; int signo; const char *refused; } names[] = {
        { "HUP", SIGHUP, NULL }, { "INT", SIGINT, NULL }, { "QUIT", SIGQUIT, NULL }, { "USR1", SIGUSR1, NULL },
        { "USR2", SIGUSR2, NULL }, { "PIPE", SIGPIPE, NULL }, { "ALRM", SIGALRM, NULL }, { "TERM", SIGTERM, NULL },
        { "CHLD", SIGCHLD, NULL }, { "CONT", SIGCONT, NULL }, { "TSTP", SIGTSTP, NULL }, { "TTIN", SIGTTIN, NULL },
        { "TTOU", SIGTTOU, NULL }, { "URG", SIGURG, NULL }, { "XCPU", SIGXCPU, NULL }, { "XFSZ", SIGXFSZ, NULL },
        { "VTALRM", SIGVTALRM, NULL }, { "PROF", SIGPROF, NULL }, { "WINCH", SIGWINCH, NULL },
        { "KILL", SIGKILL, "cannot be caught" }, { "STOP", SIGSTOP, "cannot be caught" },
        { "SEGV", SIGSEGV, "is a fault signal" }, { "BUS", SIGBUS, "is a fault signal" },
        { "ILL", SIGILL, "is a fault signal" }, { "FPE", SIGFPE, "is a fault signal" },
        { "ABRT", SIGABRT, "is a fault signal" }, { "TRAP", SIGTRAP, "is a fault signal" },
        { "SYS", SIGSYS, "is a fault signal" },
    };
    const char *v = diag__setting_text(name), *word = v, *problem = "is not a signal";
    char using_text[16];
    int signo = 0;
    size_t i;
    if (v == NULL) return fallback;
    if ((v[0] | 0x20) == 's' && (v[1] | 0x20) == 'i' && (v[2] | 0x20) == 'g') word = v + 3;
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
        if (diag__same_word(word, names[i].name)) signo = names[i].signo;
    if (signo == 0 && *v >= '1' && *v <= '9') {
        const char *p = v;
        for (; *p >= '0' && *p <= '9' && signo < 1000; p++) signo = signo * 10 + (*p - '0');
        if (*p != '\0' || signo > 64) signo = 0;
    }
    if (signo > 0) problem = NULL;
    for (i = 0; signo > 0 && i < sizeof names / sizeof names[0]; i++)
        if (names[i].signo == signo) problem = names[i].refused;
    if (problem == NULL) return signo;
    snprintf(using_text, sizeof using_text, "%d", fallback);
    diag__setting_refused(name, v, problem,
                          "a name with or without SIG, any case (USR1, usr2, SIGHUP, ...) or a number from 1 to 64, "
                          "not KILL, STOP, SEGV, BUS, ILL, FPE, ABRT, TRAP or SYS",
                          fallback ? using_text : NULL);
    return fallback;
}

/* DIAGNOSE_OUT (a copy: the program may change its environment), or
   "diagnose"; and the start-up directory, for a relative one (diag__pinned_dir). */
static void diag__setting_out(void)
{
    const char *v = diag__setting_text("DIAGNOSE_OUT");
    char dir[4096];
    size_t n;
    diag__rt->out = diag__copy(v ? v : "diagnose"); /* "diagnose" too: the copy that read it may be unloaded */
    if (diag__rt->out == NULL || diag__rt->out[0] == '/' || getcwd(dir, sizeof dir - 1) == NULL) return;
    n = strlen(dir);
    if (dir[n - 1] != '/') dir[n++] = '/';
    dir[n] = '\0';
    diag__rt->start_dir = diag__copy(dir); /* NULL: out stays relative to the directory of the day */
}

/* What to put before a relative DIAGNOSE_OUT: the start-up directory once
   the program has changed directory (or its directory is gone), so files
   land where it started; "" until then, so paths read as the user wrote them. */
static const char *diag__pinned_dir(void)
{
    char dir[4096];
    size_t n;
    if (diag__rt->start_dir == NULL) return "";
    if (getcwd(dir, sizeof dir - 1) == NULL) return diag__rt->start_dir;
    n = strlen(dir);
    if (dir[n - 1] != '/') dir[n++] = '/';
    dir[n] = '\0';
    return strcmp(dir, diag__rt->start_dir) == 0 ? "" : diag__rt->start_dir;
}

/* The port of DIAGNOSE_HTTP: 0 to 65535, digits only; -1 otherwise. */
static long diag__setting_port(const char *p)
{
    long port = 0;
    if (*p == '\0') return -1;
    for (; *p >= '0' && *p <= '9' && port <= 65535; p++) port = port * 10 + (*p - '0');
    return *p == '\0' && port <= 65535 ? port : -1;
}

/* DIAGNOSE_HTTP=[host:]port into diag__rt->http: host an IPv4 address,
   localhost or an IPv6 address in brackets, 127.0.0.1 when only a port is
   given; port 0: any free port. No name is looked up: start-up runs
   before main, where a DNS query could wait for seconds. */
static void diag__setting_http(void)
{
    const char *v = diag__setting_text("DIAGNOSE_HTTP"), *colon;
    diag__address *a = &diag__rt->http;
    size_t n;
    long port;
    if (v == NULL) return;
    colon = strrchr(v, ':');
    n = colon ? (size_t)(colon - v) : 9;
    port = n < sizeof a->host ? diag__setting_port(colon ? colon + 1 : v) : -1;
    if (port >= 0) {
        char name[sizeof a->host];
        memcpy(a->host, colon ? v : "127.0.0.1", n);
        a->host[n] = '\0';
        snprintf(name, sizeof name, "%s", diag__same_word(a->host, "localhost") ? "127.0.0.1" : a->host);
        if (name[0] != '[') {
            a->family = inet_pton(AF_INET, name, a->ip) == 1 ? AF_INET : 0;
        } else if (n > 2 && name[n - 1] == ']') {
            name[n - 1] = '\0';
            a->family = inet_pton(AF_INET6, name + 1, a->ip) == 1 ? AF_INET6 : 0;
        }
    }
    if (a->family == 0)
        diag__setting_refused("DIAGNOSE_HTTP", v, "is not [host:]port",
                              "a port from 0 to 65535 (0: any free one), or host:port with host an IPv4 address, "
                              "localhost or an IPv6 address in brackets", NULL);
    a->port = (unsigned)port;
}

#define DIAG__SLOW_DEFAULT_NS 1000000u
#define DIAG__STUCK_DEFAULT_S 10.0
#define DIAG__SECONDS_MAX 86400.0 /* one day: the upper bound of every setting in seconds */
#define DIAG__TRACE_MAX 16777216u /* events per thread */

/* Every other DIAGNOSE_* variable, once, by the copy that makes the runtime. */
static void diag__settings_read(void)
{
    /* max_paths counts the user's paths: the root and [overflow] are extra */
    diag__rt->max_paths =
        (uint32_t)diag__setting_uint("DIAGNOSE_MAX_PATHS", DIAG_PATH_TABLE_SIZE - 2, 1, DIAG_PATH_TABLE_SIZE - 2);
    diag__rt->quiet = diag__setting_bool("DIAGNOSE_QUIET", 0);
    diag__rt->svg = diag__setting_bool("DIAGNOSE_SVG", 0);
    diag__setting_out();
    diag__rt->slow_ns = diag__setting_uint("DIAGNOSE_SLOW_NS", DIAG__SLOW_DEFAULT_NS, 0, UINT64_MAX);
    diag__rt->stuck_ns =
        (uint64_t)(diag__setting_seconds("DIAGNOSE_STUCK_S", DIAG__STUCK_DEFAULT_S, 0.001, DIAG__SECONDS_MAX) * 1e9);
    diag__rt->trace_n = (uint32_t)diag__setting_uint("DIAGNOSE_TRACE", 0, 0, DIAG__TRACE_MAX);
    diag__rt->interval_ns = (uint64_t)(diag__setting_seconds("DIAGNOSE_INTERVAL", 0, 0.001, DIAG__SECONDS_MAX) * 1e9);
    diag__rt->signo = diag__setting_signal("DIAGNOSE_SIGNAL", 0);
    diag__setting_http();
    diag__rt->pprof = diag__setting_bool("DIAGNOSE_PPROF", 0);
}

/* The poll path compares a poll's ticks with diag__slow_ticks, but the tick
   rate is not known at start-up (nor worth measuring then). So the threshold
   starts low, as if at DIAG__MIN_TICKS_PER_NS: a poll that may be slow goes
   to diag__slow_poll, judged with the rate so far, until after
   DIAG__CALIBRATE_NS it is set in ticks, with the rate every file uses. */

static void diag__slow_start(void)
{
    uint64_t ns = diag__rt->slow_ns;
    if (ns == 0) return; /* lint off: the threshold stays UINT64_MAX */
    if (!diag__use_tsc) {  /* ticks are nanoseconds */
        diag__slow_ticks = ns;
        diag__rt->slow_exact = 1;
        return;
    }
    diag__slow_ticks = (uint64_t)((double)ns * DIAG__MIN_TICKS_PER_NS);
}

/* >>paths: (parent path, name) -> path id ------------------------------------ */

/* The path table is in chunks that never move, so a thread's cache can
   read the key of a path it was given (under the lock) without the lock. */
static diag__path *diag__path_at(uint32_t path)
{
    return &__atomic_load_n(&diag__rt->paths[path >> DIAG__CHUNK_BITS], __ATOMIC_ACQUIRE)[path & (DIAG__CHUNK - 1)];
}

/* A path's name is its key; it changes (under the lock) when its library is
   unloaded (diag__keep_names), so look-ups without the lock read it atomically. */
static const char *diag__path_name(uint32_t path)
{
    return __atomic_load_n(&diag__path_at(path)->name, __ATOMIC_RELAXED);
}

static int diag__reserve_path(void)
{
    uint32_t c = diag__rt->npaths >> DIAG__CHUNK_BITS;
    if (diag__rt->paths[c] == NULL) {
        diag__path *chunk = (diag__path *)diag__alloc_zero(DIAG__CHUNK * sizeof *chunk);
        if (chunk == NULL) return -1;
        __atomic_store_n(&diag__rt->paths[c], chunk, __ATOMIC_RELEASE);
    }
    return 0;
}

static uint32_t diag__add_path(const char *name, uint32_t parent, uint32_t depth, uint32_t flags)
{
    diag__path *p = &diag__rt->paths[diag__rt->npaths >> DIAG__CHUNK_BITS][diag__rt->npaths & (DIAG__CHUNK - 1)];
    p->name = name;
    p->parent = parent;
    p->depth = depth;
    p->flags = flags;
    return diag__rt->npaths++;
}

static uint32_t diag__hash(uint32_t parent, const char *name)
{
    uint64_t h = (uint64_t)(uintptr_t)name * 0x9E3779B97F4A7C15ull;
    h ^= (parent + 0x632BE59Bu) * 0xC2B2AE3D27D4EB4Full;
    return (uint32_t)(h >> 32);
}

/* 4 bytes an entry, at most 3/4 full: the caches are most of the memory a path costs besides its slots. */
static uint32_t diag__map_get(const diag__map *m, uint32_t parent, const char *name)
{
    uint32_t i;
    if (m->cap == 0) return 0;
    for (i = diag__hash(parent, name) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        uint32_t path = m->entries[i];
        if (path == 0) return 0;
        if (diag__path_name(path) == name && diag__path_at(path)->parent == parent) return path;
    }
}

static void diag__map_insert(diag__map *m, uint32_t parent, const char *name, uint32_t path)
{
    uint32_t i = diag__hash(parent, name) & (m->cap - 1);
    while (m->entries[i] != 0) i = (i + 1) & (m->cap - 1);
    m->entries[i] = path;
    m->count++;
}

/* Returns -1 when the table must grow and cannot; it then stays as it was.
   path's key (parent, name) need not be in the path table yet. */
static int diag__map_put(diag__map *m, uint32_t parent, const char *name, uint32_t path)
{
    if ((m->count + 1) * 4 > m->cap * 3) {
        diag__map bigger;
        uint32_t i;
        bigger.cap = m->cap ? m->cap * 2 : 64;
        bigger.count = 0;
        bigger.entries = (uint32_t *)diag__alloc_zero(bigger.cap * sizeof *bigger.entries);
        if (bigger.entries == NULL) return -1;
        for (i = 0; i < m->cap; i++)
            if (m->entries[i] != 0) {
                const diag__path *key = diag__path_at(m->entries[i]);
                diag__map_insert(&bigger, key->parent, diag__path_name(m->entries[i]), m->entries[i]);
            }
        DIAG_FREE(m->entries);
        *m = bigger;
    }
    diag__map_insert(m, parent, name, path);
    return 0;
}

/* Under the lock. Folds at DIAG_MAX_DEPTH, overflows at the path cap. */
static uint32_t diag__path_of(uint32_t parent, const char *name, uint32_t flags)
{
    uint32_t depth = diag__path_at(parent)->depth + 1;
    uint32_t path = diag__map_get(&diag__rt->index, parent, name);
    if (path != 0) return path;
    if (parent == DIAG__OVERFLOW) return DIAG__OVERFLOW;
    if (depth > DIAG_MAX_DEPTH) return parent;
    if (diag__rt->npaths - 2 >= diag__rt->max_paths) {
        DIAG__OVERFLOWED(DIAG__OVERFLOW_CAP);
        return DIAG__OVERFLOW;
    }
    if (diag__reserve_path() != 0 || diag__map_put(&diag__rt->index, parent, name, diag__rt->npaths) != 0) {
        DIAG__OVERFLOWED(DIAG__OVERFLOW_MEMORY);
        return DIAG__OVERFLOW;
    }
    return diag__add_path(name, parent, depth, flags);
}

static uint32_t diag__resolve(diag__thread *t, diag_span *s, uint32_t parent)
{
    uint32_t path = diag__map_get(&t->cache, parent, s->name);
    if (path == 0) {
        diag__inside_enter();
        pthread_mutex_lock(&diag__rt->lock);
        path = diag__path_of(parent, s->name, s->flags);
        pthread_mutex_unlock(&diag__rt->lock);
        /* An entry's key is its path's: a context folded into its parent or
           into [overflow] is looked up again; a full cache only costs speed. */
        if (diag__path_name(path) == s->name && diag__path_at(path)->parent == parent)
            diag__map_put(&t->cache, parent, s->name, path);
        diag__inside_leave();
    }
    if (path == parent && parent != DIAG__OVERFLOW) DIAG__ADD(t->folded, 1);
    s->last_parent = parent;
    s->last_path = path;
    return path;
}

/* >>hist: poll-time histograms: slots' windows, threads' tables, shared rows */

/* *at, or a zeroed allocation of size put there if it was NULL (of threads
   racing, the first's); NULL without memory. Any thread, with or without
   the lock, also from the poll path. */
static void *diag__made(void **at, size_t size)
{
    void *p = __atomic_load_n(at, __ATOMIC_ACQUIRE), *fresh;
    if (p != NULL) return p;
    diag__inside_enter(); /* see diag__exit_interrupted */
    fresh = diag__alloc_zero(size);
    diag__inside_leave();
    if (fresh == NULL) return NULL;
    if (__atomic_compare_exchange_n(at, &p, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return fresh;
    DIAG_FREE(fresh); /* another thread's came first: p is it */
    return p;
}

/* Path's width counters (atomics) in the chunked table dir, the chunk made
   on first use; NULL without memory. */
static uint64_t *diag__counters_at(void **dir, uint32_t path, size_t width)
{
    uint64_t *chunk = (uint64_t *)diag__made(&dir[path >> DIAG__CHUNK_BITS], DIAG__CHUNK * width * sizeof *chunk);
    return chunk ? chunk + (size_t)(path & (DIAG__CHUNK - 1)) * width : NULL;
}

/* A path's shared row of DIAG__HIST counts, in diag__rt->hist (baselines:
   hist_base), is DIAG__PIECES pieces of 32 buckets, each made on first use:
   a path's polls fill few. dir[c]: chunk c's pointers to pieces, by path. */
#define DIAG__PIECE 32
#define DIAG__PIECES (DIAG__HIST / DIAG__PIECE)

/* Piece k of path's row in dir, made if make and it is not; NULL: none. */
static uint64_t *diag__hist_piece(void **dir, uint32_t path, unsigned k, int make)
{
    void **pieces = (void **)(make ? diag__made(&dir[path >> DIAG__CHUNK_BITS], sizeof(void *) * DIAG__CHUNK * DIAG__PIECES)
                                   : __atomic_load_n(&dir[path >> DIAG__CHUNK_BITS], __ATOMIC_ACQUIRE));
    void **at = pieces ? &pieces[(path & (DIAG__CHUNK - 1)) * DIAG__PIECES + k] : NULL;
    if (at == NULL) return NULL;
    return (uint64_t *)(make ? diag__made(at, DIAG__PIECE * sizeof(uint64_t)) : __atomic_load_n(at, __ATOMIC_ACQUIRE));
}

/* Adds n polls of bucket b to path's row in dir (an atomic add); without
   memory for its piece, to [overflow]'s; without even that, they are lost. */
static void diag__hist_count(void **dir, uint32_t path, unsigned b, uint64_t n)
{
    uint64_t *piece = diag__hist_piece(dir, path, b / DIAG__PIECE, 1);
    if (piece == NULL) piece = diag__hist_piece(dir, DIAG__OVERFLOW, b / DIAG__PIECE, 1);
    if (piece != NULL) __atomic_fetch_add(&piece[b % DIAG__PIECE], n, __ATOMIC_RELAXED);
}

/* A thread's table of the poll-time histograms of the paths it polls most:
   what a slot does not count itself goes there by plain adds (owner only),
   so that threads polling one path share no cache line. A path finds its
   entry at path mod DIAG__HOT; an entry held by another path goes to it
   once the holder had nothing in DIAG__HOT_IDLE of the thread's adds; until
   then the path's counts go to its shared row. */
#define DIAG__HOT 16
#define DIAG__HOT_IDLE (4 * DIAG__HOT)
typedef struct diag__hot {
    uint32_t path;  /* 0: free; from one path to another only under the runtime lock */
    uint32_t used;  /* the thread's adds (diag__thread.asides) at the last one here */
    uint64_t count[DIAG__HIST];
} diag__hot;

/* Under the lock: entry e's counts go to its path's row of dir (hist or
   hist_base), and it is free. */
static void diag__hot_evict(void **dir, diag__hot *e)
{
    unsigned h;
    for (h = 0; e->path != 0 && h < DIAG__HIST; h++)
        if (e->count[h] != 0) diag__hist_count(dir, e->path, h, e->count[h]);
    memset(e->count, 0, sizeof e->count);
    __atomic_store_n(&e->path, 0u, __ATOMIC_RELEASE);
}

/* t's entry for path, or NULL: none free, none idle, the lock busy, or no memory. */
static diag__hot *diag__hot_entry(diag__thread *t, uint32_t path)
{
    diag__hot *e;
    if (t->hot == NULL) {
        diag__inside_enter(); /* from the poll path: see diag__exit_interrupted */
        t->hot = (diag__hot *)diag__alloc_zero(DIAG__HOT * sizeof *t->hot);
        diag__inside_leave();
        if (t->hot == NULL) return NULL;
    }
    e = &t->hot[path & (DIAG__HOT - 1)];
    if (e->path == path) return e;
    if (e->path != 0) {
        if (t->asides - e->used < DIAG__HOT_IDLE) return NULL;
        diag__inside_enter();
        if (pthread_mutex_trylock(&diag__rt->lock) == 0) {
            diag__hot_evict(diag__rt->hist, e);
            pthread_mutex_unlock(&diag__rt->lock);
        }
        diag__inside_leave();
        if (e->path != 0) return NULL;
    }
    __atomic_store_n(&e->path, path, __ATOMIC_RELEASE); /* before the counts: see diag__hists_hot */
    return e;
}

/* n polls of path in bucket b that its slot does not count: to t's table,
   else (no entry for it now) to the path's shared row. */
static void diag__hist_aside(diag__thread *t, uint32_t path, unsigned b, uint64_t n)
{
    diag__hot *e;
    t->asides++;
    e = diag__hot_entry(t, path);
    if (e != NULL) {
        DIAG__ADD(e->count[b], n);
        e->used = t->asides;
        return;
    }
    diag__hist_count(diag__rt->hist, path, b, n);
}

/* Adds sign (1, or -1 for a baseline) times what slot s counts itself to
   the DIAG__HIST counts hist: its window's bytes and its pending poll. The
   pending byte and the base first, as a move stores them last (release):
   a reader sees the window before the move or after it, never the counts
   of one at the place of the other (see diag__window_move). */
static void diag__window_add(uint64_t *hist, const diag__slot *s, uint64_t sign)
{
    unsigned last = __atomic_load_n(&s->hist[0], __ATOMIC_ACQUIRE), i;
    unsigned base = __atomic_load_n(&s->hist[DIAG__HIST_BASE], __ATOMIC_ACQUIRE);
    if (base > DIAG__HIST - DIAG__WINDOW) return; /* never set so */
    for (i = 0; i < DIAG__WINDOW; i++) hist[base + i] += sign * DIAG__LOAD(s->hist[1 + i]);
    if (last != 0 && last <= DIAG__WINDOW) hist[base + last - 1] += sign;
}

/* The slot's window starts at bucket base, with nothing in it; pending: 1 +
   the window index of a poll not yet counted, or 0. */
static void diag__window_set(diag__slot *slot, unsigned base, unsigned pending)
{
    DIAG__STORE(slot->hist[DIAG__HIST_MISSES], 0);
    __atomic_store_n(&slot->hist[DIAG__HIST_BASE], (uint8_t)base, __ATOMIC_RELEASE); /* see diag__window_add */
    __atomic_store_n(&slot->hist[0], (uint8_t)pending, __ATOMIC_RELEASE);
}

/* The base of a window with bucket b 20th of its 29, or as near as it goes:
   a path's first poll is often its slowest (cold caches, set-up), and more
   room below keeps the next ones in. Not below 16 ticks unless b is: the
   shortest polls are a little over two reads of the clock. */
static unsigned diag__window_around(unsigned b)
{
    unsigned base = b >= 16 + 19 ? b - 19 : b < 16 ? b : 16;
    return base < DIAG__HIST - DIAG__WINDOW ? base : DIAG__HIST - DIAG__WINDOW;
}

/* The base of a window that holds bucket b and the most of e's counts. */
static unsigned diag__window_best(const diag__hot *e, unsigned b)
{
    unsigned lo = b >= DIAG__WINDOW - 1 ? b - (DIAG__WINDOW - 1) : 0;
    unsigned hi = b < DIAG__HIST - DIAG__WINDOW ? b : DIAG__HIST - DIAG__WINDOW, base, best_base = lo, i;
    uint64_t sum = 0, best;
    for (i = lo; i < lo + DIAG__WINDOW; i++) sum += e->count[i];
    best = sum;
    for (base = lo + 1; base <= hi; base++) {
        sum += e->count[base + DIAG__WINDOW - 1] - e->count[base - 1];
        if (sum > best) {
            best = sum;
            best_base = base;
        }
    }
    return best_base;
}

/* The window holds too few of the slot's polls (see diag__hist_add): its
   counts go aside, then (release) its bytes are zeroed, and it moves to
   hold bucket b and the most of the path's polls on this thread. A reader
   reads the slots, then (acquire) the tables: a count moving is read twice
   at worst, never missed. */
static void diag__window_move(diag__thread *t, diag__slot *slot, uint32_t path, unsigned b)
{
    diag__hot *e;
    unsigned base = slot->hist[DIAG__HIST_BASE], i;
    for (i = 0; i < DIAG__WINDOW; i++)
        if (slot->hist[1 + i] != 0) diag__hist_aside(t, path, base + i, slot->hist[1 + i]);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (i = 0; i < DIAG__WINDOW; i++) DIAG__STORE(slot->hist[1 + i], 0);
    e = diag__hot_entry(t, path);
    diag__window_set(slot, e != NULL ? diag__window_best(e, b) : diag__window_around(b), 0);
}

/* The path whose polls slot counts: path, or [overflow] for its thread's fallback slot (see diag__slot_grow). */
static uint32_t diag__slot_path(const diag__thread *t, const diag__slot *slot, uint32_t path)
{
    const diag__slot *chunk = t->dir[path >> DIAG__CHUNK_BITS];
    return chunk != NULL && slot == &chunk[path & (DIAG__CHUNK - 1)] ? path : DIAG__OVERFLOW;
}

/* A poll's bucket, out of line (see diag_span_end): the pending poll is
   counted (a byte's 256th aside), then the poll is pending if its bucket
   is in the window; else it is counted aside. An empty window goes where
   the poll is; one that holds less than half the polls outside it since
   it was set (or than 255) moves. */
static void diag__hist_add(diag__thread *t, const diag__frame *fr, uint64_t dt)
{
    diag__slot *slot = fr->slot;
    uint32_t path = diag__slot_path(t, slot, fr->path);
    unsigned b = diag__bucket(dt), last = slot->hist[0], base = slot->hist[DIAG__HIST_BASE], i, held = 0, n;
    if (last != 0 && last <= DIAG__WINDOW) {
        uint8_t was = slot->hist[last];
        if (was == 255) diag__hist_aside(t, path, base + last - 1, 256); /* first: a reader may count 256 twice, never none */
        DIAG__STORE(slot->hist[last], (uint8_t)(was + 1u));
    }
    DIAG__STORE(slot->hist[0], 0);
    if (b - base < DIAG__WINDOW) {
        DIAG__STORE(slot->hist[0], (uint8_t)(b - base + 1));
        return;
    }
    for (i = 1; i <= DIAG__WINDOW; i++) held += slot->hist[i];
    if (held == 0) { /* nothing in the window: it goes where this poll is */
        base = diag__window_around(b);
        diag__window_set(slot, base, b - base + 1);
        return;
    }
    diag__hist_aside(t, path, b, 1);
    n = slot->hist[DIAG__HIST_MISSES] + 1u;
    DIAG__STORE(slot->hist[DIAG__HIST_MISSES], (uint8_t)n);
    if (n > 2 * held || n == 255) diag__window_move(t, slot, path, b);
}

/* Under the lock: what the slots of chunk c count themselves (of a thread
   that exits, or its baselines) goes to the rows of dir (hist or
   hist_base), so tables join by plain adds. */
static void diag__hist_flush(void **dir, diag__slot *chunk, uint32_t c)
{
    uint32_t i;
    unsigned k;
    for (i = 0; chunk != NULL && i < DIAG__CHUNK; i++) {
        uint8_t *bytes = chunk[i].hist;
        unsigned base = bytes[DIAG__HIST_BASE];
        if (base > DIAG__HIST - DIAG__WINDOW) continue; /* never set so */
        for (k = 0; k < DIAG__WINDOW; k++)
            if (bytes[1 + k] != 0) diag__hist_count(dir, c * DIAG__CHUNK + i, base + k, bytes[1 + k]);
        if (bytes[0] != 0 && bytes[0] <= DIAG__WINDOW) diag__hist_count(dir, c * DIAG__CHUNK + i, base + bytes[0] - 1, 1);
        memset(bytes, 0, DIAG__HIST_MISSES);
    }
}

/* Under the lock: a table of DIAG__HOT entries (or NULL) to the rows of dir. */
static void diag__hot_flush(void **dir, diag__hot *hot)
{
    unsigned i;
    for (i = 0; hot != NULL && i < DIAG__HOT; i++) diag__hot_evict(dir, &hot[i]);
}

/* >>runs: records of the open runs ------------------------------------------- */

/* A run takes a record at its first poll (never per poll), so that a dump
   can say which runs are open, since when, inside which, whether woken. */
#define DIAG__RUNS_FIRST 64u          /* records of a thread's first chunk */

/* Adds a chunk as big as all the others together, so that a thread whose
   records stay taken looks through them a bounded number of times per run. */
static int diag__runs_grow(diag__runs *rs)
{
    uint32_t n = rs->total > DIAG__RUNS_FIRST ? rs->total : DIAG__RUNS_FIRST;
    diag__run_chunk *c;
    diag__inside_enter(); /* from the poll path: see diag__exit_interrupted */
    c = (diag__run_chunk *)diag__alloc_zero(sizeof *c + n * sizeof(diag__run));
    diag__inside_leave();
    if (c == NULL) return -1;
    c->runs = (diag__run *)(void *)(c + 1);
    c->count = n;
    if (rs->tail) __atomic_store_n(&rs->tail->next, c, __ATOMIC_RELEASE);
    else __atomic_store_n(&rs->head, c, __ATOMIC_RELEASE);
    rs->tail = rs->cursor = c;
    rs->index = 0;
    rs->total += c->count;
    return 0;
}

/* A free record of the thread's, or NULL without memory: looks on from the
   cursor; at the end starts over if the last pass found a quarter free, else grows. */
static diag__run *diag__runs_take(diag__runs *rs)
{
    for (;;) {
        while (rs->cursor != NULL) {
            diag__run_chunk *c = rs->cursor;
            while (rs->index < c->count) {
                diag__run *r = &c->runs[rs->index++];
                if (__atomic_load_n(&r->span, __ATOMIC_ACQUIRE) == NULL) {
                    rs->taken++;
                    return r;
                }
            }
            rs->cursor = c->next;
            rs->index = 0;
        }
        if (rs->head != NULL && rs->taken >= rs->total / 4) rs->cursor = rs->head;
        else if (diag__runs_grow(rs) != 0) return NULL;
        rs->taken = 0;
    }
}

/* A run's first poll fills the record r it took (diag__runs_take, before
   the poll's start is read: growing the records is the library's time, not
   the poll's); r NULL, no memory: dumps do not list the run. */
static void diag__run_open(diag__thread *t, diag__run *r, diag_span *s, uint32_t path, uint64_t now)
{
    diag__run *parent = NULL;
    if (r == NULL) return;
    if (t->depth > 0) parent = t->stack[t->depth - 1].span->run;
    DIAG__STORE(r->parent, parent);
    DIAG__STORE(r->parent_start, parent ? DIAG__LOAD(parent->start) : 0);
    DIAG__STORE(r->start, now);
    DIAG__STORE(r->polled, now);
    DIAG__STORE(r->woke, 0);
    DIAG__STORE(r->suspended, 0);
    DIAG__STORE(r->path, path);
    __atomic_store_n(&r->span, s, __ATOMIC_RELEASE);
    DIAG__STORE(s->run, r);
}

/* Self-wakes of path since the last reset (which 0), or those of them
   quick, less than DIAG__QUICK_WAKE_NS into their poll (1). Under the lock. */
static uint64_t diag__self_wakes(uint32_t path, unsigned which)
{
    const uint64_t *chunk = (const uint64_t *)__atomic_load_n(&diag__rt->self_wakes[path >> DIAG__CHUNK_BITS], __ATOMIC_ACQUIRE);
    uint64_t n = chunk ? __atomic_load_n(&chunk[(path & (DIAG__CHUNK - 1)) * 2 + which], __ATOMIC_RELAXED) : 0;
    return n - (path < diag__rt->nself_wakes_base ? diag__rt->self_wakes_base[path * 2 + which] : 0);
}

/* Under the lock, at a reset: the baseline of the self-wake counts. */
static int diag__live_reset(void)
{
    uint32_t p, n = diag__rt->npaths;
    uint64_t *base = (uint64_t *)DIAG_REALLOC(diag__rt->self_wakes_base, sizeof *base * 2 * (n ? n : 1));
    if (base == NULL) return -1;
    diag__rt->self_wakes_base = base;
    diag__rt->nself_wakes_base = 0; /* diag__self_wakes reads no baseline while it is being written */
    for (p = 0; p < n * 2; p++) base[p] = diag__self_wakes(p / 2, p % 2);
    diag__rt->nself_wakes_base = n;
    return 0;
}

/* A self-wake this soon into its poll is quick: the poll did next to nothing
   (a busy loop), where one that worked first and then wakes itself to let
   others run is a yield. */
#define DIAG__QUICK_WAKE_NS 10000

/* DIAG__QUICK_WAKE_NS in ticks: measured once the run has lasted 1 ms;
   before, as at the slowest counter (shorter: fewer wakes are quick). */
static uint64_t diag__quick_wake_ticks(void)
{
    uint64_t ticks = DIAG__LOAD(diag__rt->quick_wake_ticks), now, mono;
    if (ticks != 0) return ticks;
    if (!diag__use_tsc) return DIAG__QUICK_WAKE_NS;
    diag__clock_pair(&now, &mono);
    if (mono - diag__rt->mono0 < 1000000u || now <= diag__rt->tsc0)
        return (uint64_t)(DIAG__QUICK_WAKE_NS * DIAG__MIN_TICKS_PER_NS);
    ticks = (uint64_t)((double)DIAG__QUICK_WAKE_NS * (double)(now - diag__rt->tsc0) / (double)(mono - diag__rt->mono0));
    DIAG__STORE(diag__rt->quick_wake_ticks, ticks);
    return ticks;
}

/* A wake that made s runnable: its time goes to the run's record; one from
   inside s's own poll on this thread is a self-wake, counted per path for
   the process, and as quick if that poll had run less than
   DIAG__QUICK_WAKE_NS (rare next to polls: a slot stays 128 bytes). */
void diag__wake_noted(diag_span *s, uint64_t now)
{
    diag__thread *t = diag__tls;
    diag__run *r = DIAG__LOAD(s->run);
    uint32_t i;
    if (r != NULL) DIAG__STORE(r->woke, now ? now : 1); /* a record freed meanwhile: at worst a missed lint */
    if (t == NULL || t == diag__rt->no_table) return;
    for (i = t->depth; i-- > 0;)
        if (t->stack[i].span == s) {
            uint64_t *count = diag__counters_at(diag__rt->self_wakes, t->stack[i].path, 2);
            if (count == NULL) return; /* not counted */
            __atomic_fetch_add(&count[0], 1, __ATOMIC_RELAXED);
            if (now < t->stack[i].start + diag__quick_wake_ticks())
                __atomic_fetch_add(&count[1], 1, __ATOMIC_RELAXED);
            return;
        }
}

/* Under the lock: an exiting thread's records, still held by runs that outlive it, go to the next new thread. */
static void diag__runs_park(diag__thread *t)
{
    if (t->runs.head == NULL) return;
    __atomic_store_n(&t->runs.tail->next, diag__rt->parked, __ATOMIC_RELEASE);
    diag__rt->parked = t->runs.head;
    memset(&t->runs, 0, sizeof t->runs);
}

/* Under the lock: a new thread takes the parked records as its own. */
static void diag__runs_adopt(diag__thread *t)
{
    diag__run_chunk *c = diag__rt->parked;
    if (c == NULL) return;
    diag__rt->parked = NULL;
    t->runs.head = t->runs.cursor = c;
    for (; c != NULL; c = c->next) {
        t->runs.total += c->count;
        t->runs.tail = c;
    }
}

typedef struct diag__running {
    const diag_span *span;
    uint64_t start; /* ticks */
} diag__running;

typedef struct diag__live {
    diag__row *rows; /* by path, in ticks */
    uint32_t npaths;
    uint64_t now, stuck_ticks;
    diag__running *running; /* sorted by span */
    size_t nrunning, cap;
} diag__live;

static int diag__compare_running(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const diag__running *)a)->span, y = (uintptr_t)((const diag__running *)b)->span;
    return x < y ? -1 : x > y;
}

/* The polls thread t is running, without waiting: a frame is taken when its
   start reads the same before and after its other fields (a poll writes start first). */
static void diag__live_stack(diag__live *L, const diag__thread *t)
{
    uint32_t depth = __atomic_load_n(&t->depth, __ATOMIC_ACQUIRE), i;
    if (depth > DIAG_MAX_DEPTH) depth = DIAG_MAX_DEPTH;
    for (i = 0; i < depth; i++) {
        const diag__frame *fr = &t->stack[i];
        uint64_t start = __atomic_load_n(&fr->start, __ATOMIC_ACQUIRE);
        const diag_span *span = DIAG__LOAD(fr->span);
        uint32_t path = DIAG__LOAD(fr->path);
        uint64_t age;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (DIAG__LOAD(fr->start) != start || path >= L->npaths) continue;
        if (L->nrunning == L->cap) {
            size_t cap = L->cap ? L->cap * 2 : 64;
            diag__running *r = (diag__running *)DIAG_REALLOC(L->running, cap * sizeof *r);
            if (r == NULL) return; /* a running poll less is listed */
            L->running = r;
            L->cap = cap;
        }
        L->running[L->nrunning].span = span;
        L->running[L->nrunning++].start = start;
        age = L->now > start ? L->now - start : 0;
        if (age + 1 > L->rows[path].running) L->rows[path].running = age + 1;
    }
}

/* An open run lost its wake when nothing can move it on: not running, not
   woken since its last woken poll began (or it began) DIAGNOSE_STUCK_S ago,
   and no open run it began inside would poll it. Whether its path is polled
   only after wakes (the last woken poll is the last poll): diag__lint_live. */
static int diag__live_lost(const diag__live *L, const diag__run *r, const diag_span *span, int orphan)
{
    uint64_t woke = DIAG__LOAD(r->woke), polled = DIAG__LOAD(r->polled);
    diag__running running;
    if (DIAG__LOAD(r->parent) != NULL && !orphan) return 0;
    if (woke > polled || L->now < polled || L->now - polled < L->stuck_ticks) return 0;
    running.span = span;
    running.start = 0;
    return !L->nrunning || !bsearch(&running, L->running, L->nrunning, sizeof running, diag__compare_running);
}

/* One more open run whose coroutine has been switched out for `away`. */
static void diag__live_suspended(diag__row *row, uint64_t away)
{
    row->suspended++;
    if (away + 1 > row->suspended_for) row->suspended_for = away + 1;
}

/* The records of one chain, each counted when its span and start read the
   same before and after its other fields: listed whole or not at all. */
static void diag__live_records(diag__live *L, const diag__run_chunk *c)
{
    for (; c != NULL; c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE)) {
        uint32_t i;
        for (i = 0; i < c->count; i++) {
            const diag__run *r = &c->runs[i];
            const diag_span *span = __atomic_load_n(&r->span, __ATOMIC_ACQUIRE);
            const diag__run *parent;
            uint64_t start, parent_start, suspended, age;
            uint32_t path;
            int orphan;
            if (span == NULL) continue;
            start = DIAG__LOAD(r->start);
            path = DIAG__LOAD(r->path);
            parent = DIAG__LOAD(r->parent);
            parent_start = DIAG__LOAD(r->parent_start);
            suspended = DIAG__LOAD(r->suspended);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (DIAG__LOAD(r->span) != span || DIAG__LOAD(r->start) != start || path >= L->npaths) continue;
            orphan = parent != NULL && (__atomic_load_n(&parent->span, __ATOMIC_ACQUIRE) == NULL ||
                                        DIAG__LOAD(parent->start) != parent_start);
            age = L->now > start ? L->now - start : 0;
            L->rows[path].open++;
            if (age > L->rows[path].oldest) L->rows[path].oldest = age;
            if (suspended != 0) diag__live_suspended(&L->rows[path], L->now > suspended ? L->now - suspended : 0);
            L->rows[path].orphans += (uint64_t)orphan;
            L->rows[path].lost += (uint64_t)diag__live_lost(L, r, span, orphan);
        }
    }
}

/* Under the lock: per path, the open runs, the oldest one's age, the
   longest poll running now, orphans and lost wakes, into the rows (ticks). */
static void diag__live_read(diag__row *rows, uint32_t npaths, double ns_per_tick)
{
    diag__live L;
    diag__thread *t;
    uint32_t p;
    memset(&L, 0, sizeof L);
    L.rows = rows;
    L.npaths = npaths;
    L.stuck_ticks = (uint64_t)((double)diag__rt->stuck_ns / ns_per_tick);
    L.now = diag__now();
    for (t = diag__rt->threads; t != NULL; t = t->next) diag__live_stack(&L, t);
    if (L.nrunning) qsort(L.running, L.nrunning, sizeof *L.running, diag__compare_running);
    for (t = diag__rt->threads; t != NULL; t = t->next)
        diag__live_records(&L, __atomic_load_n(&t->runs.head, __ATOMIC_ACQUIRE));
    diag__live_records(&L, diag__rt->parked);
    for (p = 0; p < npaths; p++) {
        rows[p].self_wakes = diag__self_wakes(p, 0);
        rows[p].quick_self_wakes = diag__self_wakes(p, 1);
    }
    DIAG_FREE(L.running);
}

/* >>rings: the flight recorder's per-thread rings of the last polls ---------- */

/* DIAGNOSE_TRACE=n gives every thread a ring of its last n polls, written as
   a Chrome trace by every dump and, after a slow poll, by the snapshot thread.
   The owner writes an event's fields, then `done` (release stores); a reader
   copies the n events below `done` (acquire), then reads it again: event j
   is next overwritten after `done` became j + n + 1, so each j >= done - n is whole. */
#define DIAG__TRACE_EXITED 16     /* exited threads whose rings are kept */
#define DIAG__TRACE_SLOW_GAP_NS 1000000000u /* between two slow-poll traces */
#define DIAG__TRACE_SLOW_MAX 100u /* slow-poll traces per process: a day-long run stays bounded */

struct diag__trace_state {
    uint32_t n;            /* DIAGNOSE_TRACE; 0: off */
    uint64_t next_tid;     /* under the lock */
    diag__ring *exited;    /* newest first, at most DIAG__TRACE_EXITED; under the lock */
    int slow_state;        /* atomic: DIAG__SLOW_* */
    unsigned slow_written; /* the snapshot thread's: N in PREFIX.slow.N.trace.json, */
    uint64_t write_at, rearm_at; /* when to write one, when to take requests again (ns) */
};
/* One per runtime, shared by its copies (see "copies"). */

/* A slow poll inside other polls asks with 'w' (NESTED): its parents are
   as slow, so the outermost one's end soon asks with 't' (ASKED), and the
   trace holds the whole nest; the snapshot thread waits for that at most
   DIAG__TRACE_NEST_NS, for outer polls that never end. After writing, the
   state stays ASKED for DIAG__TRACE_SLOW_GAP_NS: polls do not ask. */
enum { DIAG__SLOW_IDLE, DIAG__SLOW_NESTED, DIAG__SLOW_ASKED };
#define DIAG__TRACE_NEST_NS 100000000u

static int diag__trace_slow_wanted(void) { return diag__rt->trace->n != 0 && diag__rt->slow_ns != 0; }

static void diag__thread_name(diag__ring *r)
{
#if defined(__GLIBC__)
    char name[16];
    if (pthread_getname_np(pthread_self(), name, sizeof name) == 0) memcpy(r->name, name, sizeof name);
#else
    (void)r;
#endif
}

/* Under the lock, when thread t gets its table; without memory, no ring. */
static void diag__trace_attach(diag__thread *t)
{
    diag__ring *r;
    if (diag__rt->trace->n == 0) return;
    /* Only the header is cleared: events are read once written, so a ring's pages are touched as it fills. */
    r = (diag__ring *)DIAG_MALLOC(sizeof *r + ((size_t)diag__rt->trace->n + 1) * sizeof(diag__event));
    if (r == NULL) return;
    memset(r, 0, sizeof *r);
    r->slots = diag__rt->trace->n + 1;
    r->tid = diag__thread_number();
    r->events = (diag__event *)(void *)(r + 1);
    diag__thread_name(r);
    t->ring = r;
}

/* Under the lock, as thread t exits: its ring joins the exited ones (the DIAG__TRACE_EXITED newest kept). */
static void diag__trace_retire(diag__thread *t)
{
    diag__ring *r = t->ring, **link;
    unsigned kept;
    if (r == NULL) return;
    t->ring = NULL;
    diag__thread_name(r); /* threads are often named after they start */
    r->next = diag__rt->trace->exited;
    diag__rt->trace->exited = r;
    for (link = &r->next, kept = 1; *link != NULL && kept < DIAG__TRACE_EXITED; kept++) link = &(*link)->next;
    while (*link != NULL) {
        diag__ring *old = *link;
        *link = old->next;
        DIAG_FREE(old);
    }
}

static void diag__ring_put(diag__ring *r, uint32_t path, uint64_t start, uint64_t dur)
{
    diag__event *e = &r->events[r->pos];
    __atomic_store_n(&e->start, start, __ATOMIC_RELEASE);
    __atomic_store_n(&e->dur, dur, __ATOMIC_RELEASE);
    __atomic_store_n(&e->path, path, __ATOMIC_RELEASE);
    __atomic_store_n(&r->done, DIAG__LOAD(r->done) + 1, __ATOMIC_RELEASE);
    r->pos = r->pos + 1 == r->slots ? 0 : r->pos + 1;
}

/* Copies ring r's whole events, oldest first, into out; returns how many. */
static size_t diag__ring_copy(const diag__ring *r, diag__event *out)
{
    uint64_t n = r->slots - 1, done = __atomic_load_n(&r->done, __ATOMIC_ACQUIRE), first, j;
    size_t count = 0, skip;
    first = done > n ? done - n : 0;
    for (j = first; j < done; j++) {
        const diag__event *e = &r->events[j % r->slots];
        out[count].start = __atomic_load_n(&e->start, __ATOMIC_ACQUIRE);
        out[count].dur = __atomic_load_n(&e->dur, __ATOMIC_ACQUIRE);
        out[count++].path = __atomic_load_n(&e->path, __ATOMIC_ACQUIRE);
    }
    done = __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
    skip = done > n + first ? (size_t)(done - n - first) : 0; /* overwritten while copied */
    if (skip >= count) return 0;
    memmove(out, out + skip, (count - skip) * sizeof *out);
    return count - skip;
}

/* >>threads: per-thread tables ----------------------------------------------- */

/* A chunk of DIAG__CHUNK new slots (windows at bucket 16: see diag__slot), or NULL. */
static diag__slot *diag__slots_new(void)
{
    diag__slot *chunk = (diag__slot *)diag__alloc_zero(DIAG__CHUNK * sizeof *chunk);
    uint32_t i;
    for (i = 0; chunk != NULL && i < DIAG__CHUNK; i++) chunk[i].hist[DIAG__HIST_BASE] = 16;
    return chunk;
}

static diag__thread *diag__attach_table(void)
{
    diag__thread *t;
    diag__slot *first;
    pthread_mutex_lock(&diag__rt->lock);
    t = diag__rt->key_owner ? (diag__thread *)pthread_getspecific(diag__rt->key) : NULL;
    pthread_mutex_unlock(&diag__rt->lock);
    if (t != NULL) return t; /* another copy attached this thread: frames stack across copies */
    t = (diag__thread *)diag__alloc_zero(sizeof *t);
    first = diag__slots_new();
    if (t == NULL || first == NULL) {
        DIAG_FREE(t);
        DIAG_FREE(first);
        return diag__rt->no_table;
    }
    t->dir[0] = first; /* holds the overflow path, so a thread can always count */
    /* now, not inside the first run of the thread's first future, whose wall
       would hold it (NULL: diag__hot_entry tries again) */
    t->hot = (diag__hot *)diag__alloc_zero(DIAG__HOT * sizeof *t->hot);
    pthread_mutex_lock(&diag__rt->lock);
    t->next = diag__rt->threads;
    diag__rt->threads = t;
    if (diag__rt->key_owner) pthread_setspecific(diag__rt->key, t);
    diag__runs_adopt(t);
    diag__trace_attach(t);
    pthread_mutex_unlock(&diag__rt->lock);
    return t;
}

#if !defined(__x86_64__) && !defined(__i386__)
/* See DIAG__TLS: out of line, and with an asm a compiler cannot see
   through, so that no call of it is taken for another. */
__attribute__((noinline)) diag__thread *diag__tls_get(void)
{
    __asm__ volatile("");
    return diag__tls;
}
#endif

diag__thread *diag__attach(void)
{
    diag__thread *t;
    diag__inside_enter(); /* it allocates and takes the lock */
    t = diag__attach_table();
    diag__inside_leave();
    diag__tls = t;
    return t;
}

diag__slot *diag__slot_grow(diag__thread *t, uint32_t path)
{
    diag__slot *chunk;
    diag__inside_enter();
    chunk = diag__slots_new();
    diag__inside_leave();
    if (chunk == NULL) {
        DIAG__OVERFLOWED(DIAG__OVERFLOW_MEMORY);
        return &t->dir[0][DIAG__OVERFLOW];
    }
    __atomic_store_n(&t->dir[path >> DIAG__CHUNK_BITS], chunk, __ATOMIC_RELEASE);
    return &chunk[path & (DIAG__CHUNK - 1)];
}

static uint64_t diag__peak(uint64_t a, uint64_t b) { return a > b ? a : b; }

/* Two values of one counter (DIAG__SLOT_COUNTERS) as one: sums add, peaks the larger. */
#define DIAG__MERGE_SUM(a, b) ((a) + (b))
#define DIAG__MERGE_GAUGE(a, b) ((a) + (b))
#define DIAG__MERGE_PEAK(a, b) diag__peak(a, b)

/* Adds slot b into a, as a thread's table joins the retired one (histograms: diag__hist_flush). */
static void diag__slot_merge(diag__slot *a, const diag__slot *b)
{
#define DIAG__X(slot, row, kind, to_ns) a->slot = DIAG__MERGE_##kind(a->slot, b->slot);
    DIAG__SLOT_COUNTERS(DIAG__X)
#undef DIAG__X
}

/* Moves chunk c of src into dst[c], adding where dst already has one. */
static void diag__chunk_merge(diag__slot **dst, diag__slot **src, uint32_t c)
{
    uint32_t i;
    if (dst[c] == NULL) {
        dst[c] = src[c];
    } else if (src[c] != NULL) {
        for (i = 0; i < DIAG__CHUNK; i++) diag__slot_merge(&dst[c][i], &src[c][i]);
        DIAG_FREE(src[c]);
    }
    src[c] = NULL;
}

static void diag__free_table(diag__thread *t)
{
    uint32_t c;
    for (c = 0; c < DIAG__DIR; c++) {
        DIAG_FREE(t->dir[c]);
        if (t->base) DIAG_FREE(t->base[c]);
    }
    DIAG_FREE(t->base);
    DIAG_FREE(t->hot);
    DIAG_FREE(t->hot_base);
    DIAG_FREE(t->cache.entries);
    DIAG_FREE(t);
}

/* A thread that exits keeps its counts: its table joins the retired one, so
   memory stays bounded by paths, not by how many threads came and went. */
static void diag__thread_exit(void *arg)
{
    diag__thread *t = (diag__thread *)arg, **link;
    const struct diag__copy_info *copy;
    uint32_t c;
    diag__inside_enter();
    pthread_mutex_lock(&diag__rt->lock);
    for (link = &diag__rt->threads; *link != NULL; link = &(*link)->next)
        if (*link == t) {
            *link = t->next;
            break;
        }
    diag__hot_flush(diag__rt->hist, t->hot);
    diag__hot_flush(diag__rt->hist_base, t->hot_base);
    for (c = 0; c < DIAG__DIR; c++) {
        diag__hist_flush(diag__rt->hist, t->dir[c], c);
        if (t->base) diag__hist_flush(diag__rt->hist_base, t->base[c], c);
    }
    if (t->base != NULL && diag__rt->retired.base == NULL) {
        diag__rt->retired.base = t->base;
        t->base = NULL;
    }
    for (c = 0; c < DIAG__DIR; c++) {
        diag__chunk_merge(diag__rt->retired.dir, t->dir, c);
        if (t->base) diag__chunk_merge(diag__rt->retired.base, t->base, c);
    }
    diag__rt->retired.folded += t->folded;
    __atomic_fetch_add(&diag__rt->open_at_thread_end, t->depth, __ATOMIC_RELAXED);
    diag__rt->nretired++;
    diag__runs_park(t);
    diag__trace_retire(t);
    for (copy = diag__rt->copies; copy != NULL; copy = copy->next) copy->tls_clear(); /* every copy's diag__tls */
    pthread_mutex_unlock(&diag__rt->lock);
    diag__free_table(t);
    diag__tls = NULL;
    diag__inside_leave();
}

/* >>poll: the slow paths of the poll ----------------------------------------- */

/* Where the trace draws the poll of frame fr: from its start, or, for a
   coroutine's poll put back by the last switch (see >>fibers), from that
   switch, since its start was moved back by the time it had run before. */
static uint64_t diag__segment_start(const diag__thread *t, const diag__frame *fr)
{
    int in_fiber = t->fiber != NULL && (uint32_t)(fr - t->stack) >= t->fiber_base;
    return in_fiber && fr->start < t->fiber_in ? t->fiber_in : fr->start;
}

/* A poll that longjmp leaves never reaches its diag_span_end: its frame
   stays on the thread's stack, and every later poll there would be counted
   under it. diag_drop of the future the landing site abandons unwinds the
   stack to where it was before that poll. A diag_span_end that finds its
   span below the top unwinds the frames above it, and says so once. (In
   C++, an exception ends each poll it leaves: see diag__poll_guard.) */

/* The end-of-poll accounting, out of line: pops t's top frame, a poll
   that ended at now, and adds it to its slot's counters (the rest is
   diag__end_rest's); returns its ticks. The inline diag_span_end does the
   same for its common case itself: it is the hot path, where a call would
   cost more than the work. */
static uint64_t diag__frame_pop(diag__thread *t, uint64_t now)
{
    diag__frame *fr;
    diag__slot *slot;
    uint64_t dt;
    DIAG__STORE(t->depth, t->depth - 1); /* dumps read the stack: see diag_span_end */
    fr = &t->stack[t->depth];
    slot = fr->slot;
    dt = now > fr->start ? now - fr->start : 0;
    if (t->depth) t->stack[t->depth - 1].child += dt;
    DIAG__ADD(slot->polls, 1);
    DIAG__ADD(slot->busy, dt > fr->child ? dt - fr->child : 0);
    DIAG__ADD(slot->poll_ticks, dt);
    if (dt > DIAG__LOAD(slot->max)) DIAG__STORE(slot->max, dt);
    return dt;
}

/* Ends the top frame's poll now, as a poll that returned PENDING. Reads
   only the thread's own memory: the future of a frame that a longjmp left
   may have lived on the stack it discarded, so its run stays open (and
   diag__end_rest, told PENDING, reads no span). */
static void diag__frame_abandon(diag__thread *t, uint64_t now)
{
    uint64_t dt = diag__frame_pop(t, now);
    diag__end_rest(t, NULL, DIAG_PENDING, now, dt, 0);
}

/* Ends the polls above depth `depth`, innermost first; returns how many. */
static uint32_t diag__unwind_to(diag__thread *t, uint32_t depth)
{
    uint64_t now = diag__now();
    uint32_t n = t->depth - depth;
    while (t->depth > depth) diag__frame_abandon(t, now);
    return n;
}

/* diag_drop of a future whose poll is open on this thread: a longjmp left
   it. The stack goes back to where it was before its outermost open poll,
   which ends now with every poll above it. */
static void diag__drop_unwind(diag__thread *t, const diag_span *s)
{
    uint32_t i;
    for (i = 0; i < t->depth; i++)
        if (t->stack[i].span == s) {
            diag__unwind_to(t, i);
            return;
        }
}

/* A diag_span_end whose span is on the stack below the top: the polls
   above it were left without their end. Ends them now, and s's poll as
   PENDING (the caller ends its run if it said READY); returns 0 if s is
   not on the stack. Not at DIAG_MAX_DEPTH, where a poll folded into the
   deepest frame legitimately ends unmatched. (Not diag_span_end itself:
   a second call of it would keep the compiler from inlining the first.) */
static int diag__end_unwind(diag__thread *t, const diag_span *s)
{
    uint32_t i = t->depth, n;
    if (t->depth >= DIAG_MAX_DEPTH) return 0;
    while (i > 0 && t->stack[i - 1].span != s) i--;
    if (i == 0) return 0;
    n = diag__unwind_to(t, i);
    diag__unwind_to(t, i - 1);
    if (__atomic_exchange_n(&diag__rt->said_unwound, 1, __ATOMIC_RELAXED) == 0) {
        char name[DIAG__NAME_MAX + 1];
        diag__sanitize(s->name, (s->flags & DIAG__NAME_DERIVED) != 0, name);
        diag__warn("diagnose.h: diag_span_end of %s found %u poll%s above it never ended (left by a longjmp, or a coroutine switch without diag_fiber_switch?); "
                   "ended %s now\n", name, n, n == 1 ? "" : "s", n == 1 ? "it" : "them");
    }
    return 1;
}

/* The end of a poll that a C++ exception leaves: diag_span_end(s,
   DIAG_PENDING), out of line (see diag__poll_guard). */
void diag__poll_unwound(diag_span *s)
{
    diag__thread *t = diag__tls;
    if (t != NULL && t->depth > 0 && t->stack[t->depth - 1].span == s) diag__frame_abandon(t, diag__now());
    else diag__end_unmatched(t, s, DIAG_PENDING);
}

/* Nested deeper than DIAG_MAX_DEPTH: the poll counts in the deepest frame,
   and its time stays in that frame's busy time. */
static void diag__begin_too_deep(diag__thread *t, diag_span *s)
{
    diag__frame *top = &t->stack[DIAG_MAX_DEPTH - 1];
    if (t == diag__rt->no_table) {
        __atomic_fetch_add(&diag__rt->unmeasured, 1, __ATOMIC_RELAXED);
        return;
    }
    if (s->path == 0) {
        diag__run *r = diag__runs_take(&t->runs);
        s->path = top->path;
        s->run_start = diag__now();
        DIAG__ADD(top->slot->open_runs, 1);
        DIAG__ADD(top->slot->open_start_sum, s->run_start);
        diag__run_open(t, r, s, s->path, s->run_start);
    }
    DIAG__ADD(top->slot->polls, 1);
    DIAG__ADD(t->folded, 1);
}

/* Ends s's run, whose path's slot is slot: its wall, the open-run gauges,
   and one finished (done) or abandoned (drops) run. */
static void diag__run_end(diag__slot *slot, diag_span *s, uint64_t wall, int dropped)
{
    DIAG__ADD(slot->wall, wall);
    DIAG__ADD(slot->open_runs, (uint64_t)-1);
    DIAG__ADD(slot->open_start_sum, (uint64_t)0 - s->run_start);
    if (dropped) DIAG__ADD(slot->drops, 1);
    else DIAG__ADD(slot->done, 1);
    s->path = 0;
    diag__run_close(s);
}

/* The end of a poll that was not measured as a frame: a folded poll, a
   thread without a table, or a span_end without its begin. Ends the run
   if the poll said READY; counts nothing else. */
void diag__end_unmatched(diag__thread *t, diag_span *s, diag_status status)
{
    diag__slot *slot;
    uint64_t now;
    int unwound = t != NULL && t->depth > 0 && diag__end_unwind(t, s);
    (void)unwound; /* read with DIAG_DEBUG only */
    if (status != DIAG_READY || s->path == 0) return;
    if (t == NULL || t == diag__rt->no_table) {
        s->path = 0;
        diag__run_close(s);
        return;
    }
#ifdef DIAG_DEBUG
    if (!unwound && t->depth < DIAG_MAX_DEPTH) {
        diag__warn("diagnose.h: diag_span_end of '%s' without its diag_span_begin\n", s->name);
        abort();
    }
#endif
    slot = diag__slot_at(t, s->path);
    now = diag__now();
    diag__run_end(slot, s, now - s->run_start, 0);
}

static void diag__woken(diag__slot *slot, diag_span *s, uint64_t now, uint64_t woke)
{
    /* Only the wake we read is cleared: a wake that lands during this poll
       belongs to the next one. */
    if (__atomic_compare_exchange_n(&s->woke_at, &woke, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        DIAG__ADD(slot->wakes, 1);
        DIAG__ADD(slot->sched, now > woke ? now - woke : 0);
        if (s->run) DIAG__STORE(s->run->polled, now);
    }
}

/* The whole begin of a poll, for what the inline part leaves (see
   diag_span_begin): a new run, a wake, a chunk not yet there, a clock that
   is not the timestamp counter, a thread without a table or too deep. */
void diag__begin_rest(diag__thread *t, diag_span *s)
{
    diag__run *run = NULL;
    diag__frame *fr;
    uint32_t path;
    uint64_t now, woke;
    if (t->depth >= DIAG_MAX_DEPTH) {
        diag__begin_too_deep(t, s);
        return;
    }
    fr = &t->stack[t->depth];
    path = s->path;
    if (path == 0) { /* a new run: its path is the context it starts in */
        uint32_t parent = t->depth ? t->stack[t->depth - 1].path : DIAG__ROOT;
        path = (s->last_parent == parent && s->last_path) ? s->last_path
                                                          : diag__resolve(t, s, parent);
    }
    fr->slot = diag__slot_at(t, path);
    if (s->path == 0) run = diag__runs_take(&t->runs); /* before the start: see diag__run_open */
    now = diag__now();
    if (s->path == 0) {
        /* No memory for path's slots here: an overflow run, so that its end
           finds the open run where it was counted. */
        if (DIAG__UNLIKELY(fr->slot == &t->dir[0][DIAG__OVERFLOW])) path = DIAG__OVERFLOW;
        s->path = path;
        s->run_start = now;
        DIAG__ADD(fr->slot->open_runs, 1);
        DIAG__ADD(fr->slot->open_start_sum, now);
        diag__run_open(t, run, s, path, now);
    }
    woke = DIAG__LOAD(s->woke_at);
    if (DIAG__UNLIKELY(woke != 0)) diag__woken(fr->slot, s, now, woke);
    /* Dumps read the stack for the polls running now (plain moves on x86) */
    DIAG__STORE(fr->start, now);
    DIAG__STORE(fr->span, s);
    DIAG__STORE(fr->path, path);
    fr->child = 0;
    __atomic_store_n(&t->depth, t->depth + 1, __ATOMIC_RELEASE);
}

static void diag__slow_poll(diag__slot *slot, uint64_t ticks)
{
    uint64_t now, mono;
    double ns_per_tick;
    if (__atomic_load_n(&diag__rt->slow_exact, __ATOMIC_ACQUIRE)) {
        /* a poll that read the early threshold can land here after it
           changed, or in a copy whose diag__slow_ticks is not yet exact */
        uint64_t exact = DIAG__LOAD(diag__rt->slow_ticks);
        DIAG__STORE(diag__slow_ticks, exact);
        if (ticks >= exact) {
            DIAG__ADD(slot->slow, 1);
            diag__trace_slow();
        }
        return;
    }
    diag__clock_pair(&now, &mono);
    if (now <= diag__rt->tsc0) return;
    ns_per_tick = (double)(mono - diag__rt->mono0) / (double)(now - diag__rt->tsc0);
    if (mono - diag__rt->mono0 >= DIAG__CALIBRATE_NS) {
        ns_per_tick = diag__ns_per_tick(); /* measured now (no wait), or by a dump before */
        DIAG__STORE(diag__rt->slow_ticks, (uint64_t)((double)diag__rt->slow_ns / ns_per_tick) + 1);
        DIAG__STORE(diag__slow_ticks, DIAG__LOAD(diag__rt->slow_ticks));
        __atomic_store_n(&diag__rt->slow_exact, 1, __ATOMIC_RELEASE);
    }
    if ((double)ticks * ns_per_tick >= (double)diag__rt->slow_ns) {
        DIAG__ADD(slot->slow, 1);
        diag__trace_slow();
    }
}

/* The rest of a poll's end (see diag_span_end): the frame is popped and its
   counters added; here the histogram (unless counted: a byte that wraps, a
   poll outside the window), the flight recorder, the slow-poll lint and,
   if the poll said READY, the end of the run (s is read only then). */
void diag__end_rest(diag__thread *t, diag_span *s, diag_status status, uint64_t now, uint64_t dt, int counted)
{
    const diag__frame *fr = &t->stack[t->depth];
    diag__slot *slot = fr->slot;
    if (!counted) diag__hist_add(t, fr, dt);
    if (t->ring != NULL) {
        uint64_t start = diag__segment_start(t, fr);
        diag__ring_put(t->ring, fr->path, start, now > start ? now - start : 0);
    }
    if (dt >= DIAG__LOAD(diag__slow_ticks)) diag__slow_poll(slot, dt);
    if (status == DIAG_READY && s->path != 0) diag__run_end(slot, s, now - s->run_start, 0);
}

/* The whole end of a poll whose frame is the top of t's stack, with any
   clock (the inline part takes only the timestamp counter). */
void diag__end_all(diag__thread *t, diag_span *s, diag_status status)
{
    uint64_t now = diag__now(), dt = diag__frame_pop(t, now);
    diag__end_rest(t, s, status, now, dt, 0);
}

diag_status diag__poll_invalid(diag_future *f)
{
#ifdef DIAG_DEBUG
    diag__warn("diagnose.h: diag_poll of %s\n", f ? "a future with a NULL poll function" : "a NULL future");
    abort();
#else
    (void)f;
    diag__say_once(&diag__rt->said_invalid,
                   "diagnose.h: diag_poll of a NULL future or NULL poll function; returned DIAG_READY\n");
    return DIAG_READY;
#endif
}

/* >>fibers: a coroutine's spans go with it ---------------------------------- */

/* A stackful coroutine yields in the middle of its spans. At the switch out
   (diag_fiber_switch) its frames, those above the depth the thread had
   when it switched in, leave the thread's stack for the diag_fiber, each
   kept as the ticks it has run; the switch back in, on any thread, puts
   them on top of that thread's stack with their starts moved to now minus
   what they ran. So a span counts busy only while its coroutine runs, a
   poll is one begin/end pair however many yields it spans, and a span
   begun in the coroutine nests under its innermost open one. The frame
   under them (the scheduler's poll) is given their running time as
   nested time at the switch out, and has it taken back at the switch in
   (their end adds it all again), so it keeps only its own time. A run
   record is marked suspended while its poll is away, for the dumps. */

static void diag__fiber_mark(diag_span *s, uint64_t suspended)
{
    diag__run *r = s->run;
    if (r != NULL) DIAG__STORE(r->suspended, suspended);
}

/* Cuts each of t's fiber frames at now for the trace: the part that ran. */
static void diag__fiber_trace_cut(diag__thread *t, uint64_t now)
{
    uint32_t i = t->depth;
    while (i-- > t->fiber_base) {
        uint64_t start = diag__segment_start(t, &t->stack[i]);
        diag__ring_put(t->ring, t->stack[i].path, start, now > start ? now - start : 0);
    }
}

/* The switch out of t's fiber f at now: its frames go into f. Frames
   beyond DIAG_FIBER_DEPTH end now, as a longjmp's would (see
   diag__unwind_to), so that the rest still balance. */
static void diag__fiber_save(diag__thread *t, diag_fiber *f, uint64_t now)
{
    uint32_t base = t->fiber_base, n, i;
    f->depth = 0;
    if (t->depth <= base) return;
    if (t->depth - base > DIAG_FIBER_DEPTH) {
        diag__say_once(&diag__rt->said_fiber_deep, "diagnose.h: more than DIAG_FIBER_DEPTH spans open in a "
                                                   "coroutine at a switch; the innermost ended there\n");
        diag__unwind_to(t, base + DIAG_FIBER_DEPTH);
    }
    if (t->ring != NULL) diag__fiber_trace_cut(t, now);
    n = t->depth - base;
    for (i = 0; i < n; i++) {
        const diag__frame *fr = &t->stack[base + i];
        diag__saved_frame *sv = &f->frames[i];
        sv->span = fr->span;
        sv->ran = now > fr->start ? now - fr->start : 0;
        sv->child = fr->child;
        sv->path = fr->path;
    }
    diag__fiber_mark(f->frames[n - 1].span, now ? now : 1);
    if (base > 0) t->stack[base - 1].child += f->frames[0].ran;
    f->depth = n;
    __atomic_store_n(&t->depth, base, __ATOMIC_RELEASE);
}

/* The switch into f at now: its frames go on top of t's stack. With no
   room (DIAG_MAX_DEPTH) they are left out: their polls are not counted,
   and their runs end when their spans end. */
static void diag__fiber_restore(diag__thread *t, diag_fiber *f, uint64_t now)
{
    uint32_t base = t->depth, n = f->depth, i;
    f->depth = 0;
    if (base + n > DIAG_MAX_DEPTH) {
        diag__say_once(&diag__rt->said_fiber_deep, "diagnose.h: a coroutine's spans did not fit under "
                                                   "DIAG_MAX_DEPTH at a switch; their polls are not counted\n");
        return;
    }
    for (i = 0; i < n; i++) {
        diag__frame *fr = &t->stack[base + i];
        const diag__saved_frame *sv = &f->frames[i];
        DIAG__STORE(fr->start, now - sv->ran); /* written first: see diag__live_stack */
        DIAG__STORE(fr->span, sv->span);
        DIAG__STORE(fr->path, sv->path);
        fr->slot = diag__slot_at(t, sv->path);
        fr->child = sv->child;
    }
    diag__fiber_mark(f->frames[n - 1].span, 0);
    if (base > 0) t->stack[base - 1].child -= f->frames[0].ran;
    t->fiber_in = now;
    __atomic_store_n(&t->depth, base + n, __ATOMIC_RELEASE);
}

/* >>at: spans by address, for call-style async ------------------------------- */

/* A task whose struct has no room for a span gets one here, keyed by its
   address: an open-addressing table (linear probing, at most half full,
   deletion by backward shift) of pointers to spans, under one mutex (make
   bench: "DIAG_CALL_AT"). Spans come in blocks, never freed or moved (a poll
   holds its span's address); released ones go on a free list. Not a
   diag__map, which keeps path ids keyed in the path table, never removed. */
typedef struct diag__at_span {
    diag_span span; /* first: a diag_span * of the table is a diag__at_span * */
    const void *task;
    struct diag__at_span *next_free;
} diag__at_span;

#define DIAG__AT_BLOCK 64 /* spans allocated at once */

struct diag__at_state {
    pthread_mutex_t lock;
    diag__at_span **slots; /* cap entries, NULL: empty */
    diag__at_span *free;
    uint32_t cap, count;
    int forks_handled;
};
/* One per runtime: a task may be polled through one copy, dropped through another. */

static diag_span diag__at_unmeasured; /* name NULL: begin and end skip it */

/* Marked as library work (see diag__inside_enter): it may allocate. */
static void diag__at_lock(void)
{
    diag__inside_enter();
    pthread_mutex_lock(&diag__rt->at->lock);
}
static void diag__at_unlock(void)
{
    pthread_mutex_unlock(&diag__rt->at->lock);
    diag__inside_leave();
}

static uint32_t diag__at_home(const void *task, uint32_t cap)
{
    return (uint32_t)(((uint64_t)(uintptr_t)task * 0x9E3779B97F4A7C15ull) >> 32) & (cap - 1);
}

/* The slot holding task, or the empty slot where it would go. */
static uint32_t diag__at_find(const void *task)
{
    uint32_t i = diag__at_home(task, diag__rt->at->cap);
    while (diag__rt->at->slots[i] != NULL && diag__rt->at->slots[i]->task != task)
        i = (i + 1) & (diag__rt->at->cap - 1);
    return i;
}

/* Room for one more entry, growing the table to stay at most half full. */
static int diag__at_room(void)
{
    diag__at_span **old = diag__rt->at->slots;
    uint32_t old_cap = diag__rt->at->cap, cap = old_cap ? old_cap * 2 : 64, i;
    if ((diag__rt->at->count + 1) * 2 <= old_cap) return 1;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    diag__rt->at->slots = (diag__at_span **)diag__alloc_zero(cap * sizeof *old);
    if (diag__rt->at->slots == NULL) {
        diag__rt->at->slots = old;
        return 0;
    }
    diag__rt->at->cap = cap;
    for (i = 0; i < old_cap; i++)
        if (old[i] != NULL) diag__rt->at->slots[diag__at_find(old[i]->task)] = old[i];
    DIAG_FREE(old);
    return 1;
}

static diag__at_span *diag__at_new(void)
{
    diag__at_span *a = diag__rt->at->free;
    if (a == NULL) {
        diag__at_span *block = (diag__at_span *)DIAG_MALLOC(DIAG__AT_BLOCK * sizeof *block);
        int i;
        if (block == NULL) return NULL;
        for (i = DIAG__AT_BLOCK - 1; i >= 0; i--) {
            block[i].next_free = a;
            a = &block[i];
        }
    }
    diag__rt->at->free = a->next_free;
    return a;
}

/* Empties slot i; moves later entries of its probe run back into the gap. */
static void diag__at_remove(uint32_t i)
{
    uint32_t mask = diag__rt->at->cap - 1, j = i;
    diag__rt->at->slots[i] = NULL;
    diag__rt->at->count--;
    for (;;) {
        uint32_t home;
        j = (j + 1) & mask;
        if (diag__rt->at->slots[j] == NULL) return;
        home = diag__at_home(diag__rt->at->slots[j]->task, diag__rt->at->cap);
        if (((j - home) & mask) >= ((j - i) & mask)) { /* the gap lies on its probe run */
            diag__rt->at->slots[i] = diag__rt->at->slots[j];
            diag__rt->at->slots[j] = NULL;
            i = j;
        }
    }
}

/* >>reset: baselines subtracted by every later dump -------------------------- */

/* Under the lock: the baseline of t's table of histograms, a copy; taken
   before the slots' (as the shared rows' before it), so that buckets moving
   from one to the next meanwhile are in the window, not taken out twice. */
static int diag__reset_hot(diag__thread *t)
{
    unsigned i, h;
    if (t->hot == NULL) return 0;
    if (t->hot_base == NULL) t->hot_base = (diag__hot *)diag__alloc_zero(DIAG__HOT * sizeof *t->hot_base);
    if (t->hot_base == NULL) return -1;
    for (i = 0; i < DIAG__HOT; i++) {
        t->hot_base[i].path = __atomic_load_n(&t->hot[i].path, __ATOMIC_ACQUIRE);
        for (h = 0; h < DIAG__HIST; h++) t->hot_base[i].count[h] = DIAG__LOAD(t->hot[i].count[h]);
    }
    return 0;
}

/* Every counter is a sum, so a window is "now minus the baseline"; wall's
   includes the pending part, so runs open across the reset count from it. */
#define DIAG__BASE_SUM(f) base->f = DIAG__LOAD(live->f);
#define DIAG__BASE_GAUGE(f) base->f = DIAG__LOAD(live->f);
#define DIAG__BASE_PEAK(f) DIAG__STORE(live->f, 0);
static int diag__reset_table(diag__thread *t, uint32_t nchunks, uint64_t now)
{
    uint32_t c, i;
    if (diag__reset_hot(t) != 0) return -1;
    if (t->base == NULL) {
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        t->base = (diag__slot **)diag__alloc_zero(DIAG__DIR * sizeof *t->base);
        if (t->base == NULL) return -1;
    }
    for (c = 0; c < nchunks; c++) {
        diag__slot *chunk = __atomic_load_n(&t->dir[c], __ATOMIC_ACQUIRE);
        if (chunk == NULL) continue;
        if (t->base[c] == NULL) t->base[c] = (diag__slot *)diag__alloc_zero(DIAG__CHUNK * sizeof(diag__slot));
        if (t->base[c] == NULL) return -1;
        for (i = 0; i < DIAG__CHUNK; i++) {
            diag__slot *live = &chunk[i], *base = &t->base[c][i];
            unsigned h;
            /* open_runs' baseline: runs started since = done + drops + open - it.
               A maximum is zeroed (a racing poll may put back its own). */
#define DIAG__X(slot, row, kind, to_ns) DIAG__BASE_##kind(slot)
            DIAG__SLOT_COUNTERS(DIAG__X)
#undef DIAG__X
            base->wall += DIAG__LOAD(live->open_runs) * now - DIAG__LOAD(live->open_start_sum);
            for (h = 0; h < sizeof live->hist; h++) base->hist[h] = DIAG__LOAD(live->hist[h]);
        }
    }
    return 0;
}

/* The shared histograms' baseline: a copy of every piece made. */
static int diag__reset_hists(uint32_t npaths)
{
    uint32_t p;
    unsigned k, h;
    for (p = 0; p < npaths; p++) {
        if (__atomic_load_n(&diag__rt->hist[p >> DIAG__CHUNK_BITS], __ATOMIC_ACQUIRE) == NULL &&
            diag__rt->hist_base[p >> DIAG__CHUNK_BITS] == NULL) {
            p |= DIAG__CHUNK - 1; /* skip the chunk */
            continue;
        }
        for (k = 0; k < DIAG__PIECES; k++) {
            const uint64_t *live = diag__hist_piece(diag__rt->hist, p, k, 0);
            uint64_t *base = diag__hist_piece(diag__rt->hist_base, p, k, live != NULL);
            if (live != NULL && base == NULL) return -1;
            for (h = 0; base != NULL && h < DIAG__PIECE; h++) base[h] = live ? __atomic_load_n(&live[h], __ATOMIC_RELAXED) : 0;
        }
    }
    return 0;
}

static int diag__reset_locked(void)
{
    uint32_t nchunks = (diag__rt->npaths + DIAG__CHUNK - 1) / DIAG__CHUNK;
    uint64_t now = diag__now();
    diag__thread *t;
    int rc = diag__reset_hists(diag__rt->npaths) != 0 || diag__reset_table(&diag__rt->retired, nchunks, now) != 0 ? -1 : 0;
    for (t = diag__rt->threads; t != NULL; t = t->next)
        if (diag__reset_table(t, nchunks, now) != 0) rc = -1;
    if (diag__live_reset() != 0) rc = -1;
    diag__rt->reset_at = now;
    __atomic_store_n(&diag__rt->unmeasured, 0, __ATOMIC_RELAXED);
    return rc;
}

/* >>snapshot: all tables merged into rows, one per folded stack -------------- */

static int diag__compare_rows(const void *a, const void *b)
{
    return strcmp(((const diag__row *)a)->stack, ((const diag__row *)b)->stack);
}

/* Adds thread t's table to the rows (by path, in ticks; open runs: gauges,
   no baseline). The histograms are read apart (diag__hists_read). */
#define DIAG__TAKE_SUM(r, f) o->r += DIAG__LOAD(s->f) - (b ? b->f : 0);
#define DIAG__TAKE_GAUGE(r, f) o->r += DIAG__LOAD(s->f);
#define DIAG__TAKE_PEAK(r, f) o->r = diag__peak(o->r, DIAG__LOAD(s->f));
static void diag__add_table(diag__row *rows, const diag__thread *t, uint32_t npaths)
{
    uint32_t p;
    for (p = 0; p < npaths; p++) {
        const diag__slot *s = __atomic_load_n(&t->dir[p >> DIAG__CHUNK_BITS], __ATOMIC_ACQUIRE);
        const diag__slot *b = t->base ? t->base[p >> DIAG__CHUNK_BITS] : NULL;
        diag__row *o = &rows[p];
        if (s == NULL) {
            p |= DIAG__CHUNK - 1; /* skip the missing chunk */
            continue;
        }
        s += p & (DIAG__CHUNK - 1);
        if (b) b += p & (DIAG__CHUNK - 1);
        /* wall: the open runs' part is added by the caller */
#define DIAG__X(slot, row, kind, to_ns) DIAG__TAKE_##kind(row, slot)
        DIAG__SLOT_COUNTERS(DIAG__X)
#undef DIAG__X
        o->open_base += b ? b->open_runs : 0;
    }
}

/* The folded stack of every path, NUL-terminated, into text at offsets[p]:
   a parent's id is below its children's, so its stack is there first. */
static int diag__stacks(diag__buf *text, size_t *offsets, uint32_t npaths)
{
    char frame[DIAG__NAME_MAX + 1];
    uint32_t p;
    offsets[0] = 0;
    diag__buf_put(text, "", 1);
    for (p = 1; p < npaths; p++) {
        const diag__path *path = diag__path_at(p);
        size_t len = diag__sanitize(path->name, (path->flags & DIAG__NAME_DERIVED) != 0, frame);
        size_t parent_len = path->parent == DIAG__ROOT ? 0 : strlen(text->data + offsets[path->parent]);
        if (diag__buf_reserve(text, parent_len + len + 2) != 0) return -1;
        offsets[p] = text->len;
        if (parent_len) { /* room was made above, so the source cannot move */
            diag__buf_put(text, text->data + offsets[path->parent], parent_len);
            diag__buf_put(text, ";", 1);
        }
        diag__buf_put(text, frame, len);
        diag__buf_put(text, "", 1);
    }
    return text->failed ? -1 : 0;
}

/* Adds row b into a: two paths that print the same stack. */
static void diag__row_add(diag__row *a, const diag__row *b)
{
#define DIAG__X(slot, row, kind, to_ns) a->row = DIAG__MERGE_##kind(a->row, b->row);
    DIAG__SLOT_COUNTERS(DIAG__X)
#undef DIAG__X
#define DIAG__X(row, kind) a->row = DIAG__MERGE_##kind(a->row, b->row);
    DIAG__ROW_ONLY(DIAG__X)
#undef DIAG__X
}

static void diag__snapshot_free(diag__snapshot *snap)
{
    DIAG_FREE(snap->rows);
    DIAG_FREE(snap->text);
    DIAG_FREE(snap->hists);
    DIAG_FREE(snap->row_of);
    memset(snap, 0, sizeof *snap);
}

/* Adds the wall of the runs still open at `now` (read after the tables, so
   none seen open began after it). Polls go on meanwhile: a run seen half
   begun or ended (open_runs and open_start_sum are two stores), or begun
   and ended on two threads between their reads, makes the open wall absurd
   (below zero, or above open_runs times the time since start): returns 0
   and the caller reads again; on the last of eight tries a path still
   torn is written without its open runs. */
static int diag__add_open_runs(diag__row *rows, uint32_t npaths, uint64_t now, int last)
{
    uint32_t p;
    int possible = 1;
    for (p = 0; p < npaths; p++) {
        uint64_t pending = rows[p].pending * now - rows[p].start_sum;
        if (rows[p].pending > (uint64_t)INT64_MAX || pending > (uint64_t)INT64_MAX || /* below zero */
            pending > rows[p].pending * (now - diag__rt->tsc0)) {
            possible = 0;
            if (last) continue; /* still torn: leave the open runs out, not a wild number */
        }
        rows[p].wall += pending;
    }
    return possible;
}

/* A path's row from ticks to ns, in place; self_wall holds its children's walls on entry. */
#define DIAG__TO_NS_0(f)
#define DIAG__TO_NS_1(f) r->f = diag__to_ns(r->f, ns_per_tick);
static void diag__row_to_ns(diag__row *r, double ns_per_tick)
{
    uint64_t child_wall = r->self_wall;
    r->self_wall = r->wall > child_wall ? diag__to_ns(r->wall - child_wall, ns_per_tick) : 0;
#define DIAG__X(slot, row, kind, to_ns) DIAG__TO_NS_##to_ns(row)
    DIAG__SLOT_COUNTERS(DIAG__X)
#undef DIAG__X
    r->started = r->done + r->drops + r->pending - r->open_base;
    r->oldest = diag__to_ns(r->oldest, ns_per_tick);
    r->running = r->running ? diag__to_ns(r->running - 1, ns_per_tick) + 1 : 0;
    r->suspended_for = r->suspended_for ? diag__to_ns(r->suspended_for - 1, ns_per_tick) + 1 : 0;
}

/* The rows by path in ticks to rows in ns, sorted, one per stack, without
   the rows nothing happened on. Paths that print the same stack (sites
   named alike, names equal once sanitized) make one row, values summed;
   row_of (or NULL), all UINT32_MAX on entry, gets each path's row. */
static size_t diag__rows_finish(diag__row *rows, uint32_t npaths, const char *text, const size_t *offsets,
                                uint32_t *row_of, double ns_per_tick)
{
    uint32_t p;
    size_t i, n = 0, out;
    for (p = 2; p < npaths; p++) rows[diag__path_at(p)->parent].self_wall += rows[p].wall; /* see diag__row_to_ns */
    for (p = 1; p < npaths; p++) {
        diag__row *r = &rows[p];
        if (r->polls == 0 && r->wall == 0 && r->open == 0) continue;
        diag__row_to_ns(r, ns_per_tick);
        r->stack = text + offsets[p];
        r->path = p;
        rows[n++] = *r; /* n < p: a row moves only down, over one already moved */
    }
    /* qsort sorts elements this large through pointers, so the rows move once. */
    qsort(rows, n, sizeof *rows, diag__compare_rows);
    for (i = 0, out = 0; i < n; i++) {
        uint32_t path = rows[i].path;
        if (out > 0 && strcmp(rows[out - 1].stack, rows[i].stack) == 0) diag__row_add(&rows[out - 1], &rows[i]);
        else if (out++ != i) rows[out - 1] = rows[i];
        if (row_of) row_of[path] = (uint32_t)(out - 1);
    }
    return out;
}

/* Takes the lock while it reads; threads keep polling meanwhile. with_hist:
   ready for diag__hists_read (rows' hist stay NULL until then). The rows are read
   by path, where the tables keep them, and sorted after: no second array
   of totals, whose fresh pages would cost more than the reading. */
static int diag__snapshot_read(diag__snapshot *snap, int with_hist)
{
    size_t *offsets = NULL;
    diag__buf text = { NULL, 0, 0, 0 };
    diag__thread *t;
    uint32_t npaths;
    uint64_t now;
    int attempt;
    memset(snap, 0, sizeof *snap);
    snap->ns_per_tick = diag__ns_per_tick();
    if (diag__lock_or_give_up(&diag__rt->lock) != 0) {
        errno = ETIMEDOUT;
        return -1;
    }
    npaths = diag__rt->npaths;
    snap->rows = (diag__row *)diag__alloc_zero(npaths * sizeof *snap->rows);
    snap->row_of = with_hist ? (uint32_t *)DIAG_MALLOC(npaths * sizeof *snap->row_of) : NULL;
    snap->npaths = npaths;
    offsets = (size_t *)DIAG_MALLOC(npaths * sizeof *offsets);
    if (offsets == NULL || snap->rows == NULL || (with_hist && snap->row_of == NULL) ||
        diag__stacks(&text, offsets, npaths) != 0) {
        pthread_mutex_unlock(&diag__rt->lock);
        DIAG_FREE(offsets);
        DIAG_FREE(text.data);
        diag__snapshot_free(snap);
        errno = ENOMEM;
        return -1;
    }
    for (attempt = 0;; attempt++) {
        diag__add_table(snap->rows, &diag__rt->retired, npaths);
        snap->folded = diag__rt->retired.folded;
        snap->threads = diag__rt->nretired;
        for (t = diag__rt->threads; t != NULL; t = t->next) {
            diag__add_table(snap->rows, t, npaths);
            snap->folded += DIAG__LOAD(t->folded);
            snap->threads++;
        }
        now = diag__now();
        if (diag__add_open_runs(snap->rows, npaths, now, attempt == 7) || attempt == 7) break;
        memset(snap->rows, 0, npaths * sizeof *snap->rows);
        sched_yield(); /* a writer preempted between its two stores must run first */
    }
    diag__live_read(snap->rows, npaths, snap->ns_per_tick);
    snap->elapsed_ns = diag__to_ns(now - diag__rt->reset_at, snap->ns_per_tick);
    snap->reset_at = diag__rt->reset_at;
    pthread_mutex_unlock(&diag__rt->lock);
    snap->unmeasured = __atomic_load_n(&diag__rt->unmeasured, __ATOMIC_RELAXED);
    snap->text = text.data;
    if (snap->row_of) memset(snap->row_of, 0xFF, npaths * sizeof *snap->row_of); /* UINT32_MAX: no row */
    snap->count = diag__rows_finish(snap->rows, npaths, text.data, offsets, snap->row_of, snap->ns_per_tick);
    DIAG_FREE(offsets);
    return 0;
}

/* Under the lock: the buckets held by thread t's slots, less their
   baselines', for the paths listed, into their rows' histograms. */
static void diag__hists_held(diag__snapshot *snap, const diag__thread *t, const uint32_t *paths, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        uint32_t p = paths[i];
        const diag__slot *s = __atomic_load_n(&t->dir[p >> DIAG__CHUNK_BITS], __ATOMIC_ACQUIRE);
        const diag__slot *b = t->base ? t->base[p >> DIAG__CHUNK_BITS] : NULL;
        uint64_t *hist = snap->rows[snap->row_of[p]].hist;
        if (s != NULL) diag__window_add(hist, s + (p & (DIAG__CHUNK - 1)), 1);
        if (b != NULL) diag__window_add(hist, b + (p & (DIAG__CHUNK - 1)), (uint64_t)-1);
    }
}

/* Under the lock: the entries of thread t's table of histograms, less
   their baselines, whose paths have a row with a histogram. */
static void diag__hists_hot(diag__snapshot *snap, const diag__thread *t)
{
    unsigned i, h;
    for (i = 0; t->hot != NULL && i < DIAG__HOT; i++) {
        uint32_t p = __atomic_load_n(&t->hot[i].path, __ATOMIC_ACQUIRE), b = t->hot_base ? t->hot_base[i].path : 0;
        uint64_t *hist = p && p < snap->npaths && snap->row_of[p] != UINT32_MAX ? snap->rows[snap->row_of[p]].hist : NULL;
        uint64_t *base = b && b < snap->npaths && snap->row_of[b] != UINT32_MAX ? snap->rows[snap->row_of[b]].hist : NULL;
        for (h = 0; hist != NULL && h < DIAG__HIST; h++) hist[h] += DIAG__LOAD(t->hot[i].count[h]);
        for (h = 0; base != NULL && h < DIAG__HIST; h++) base[h] -= t->hot_base[i].count[h];
    }
}

/* Under the lock: the shared rows, less their baselines, of the paths listed. */
static void diag__hists_shared(diag__snapshot *snap, const uint32_t *paths, uint32_t n)
{
    uint32_t i, k, h;
    for (i = 0; i < n; i++) {
        uint64_t *hist = snap->rows[snap->row_of[paths[i]]].hist;
        for (k = 0; k < DIAG__PIECES; k++, hist += DIAG__PIECE) {
            const uint64_t *live = diag__hist_piece(diag__rt->hist, paths[i], k, 0);
            const uint64_t *base = diag__hist_piece(diag__rt->hist_base, paths[i], k, 0);
            for (h = 0; h < DIAG__PIECE; h++)
                hist[h] += (live ? __atomic_load_n(&live[h], __ATOMIC_RELAXED) : 0) - (base ? base[h] : 0);
        }
    }
}

/* The poll-time histograms of the rows order[0..n) (of rows 0..n if order is
   NULL), for a snapshot read with_hist. Under the lock, the slots first,
   then the shared rows: a bucket moving meanwhile is counted twice at
   worst, never missed. -1 without memory or the lock: no histograms. */
static int diag__hists_read(diag__snapshot *snap, const diag__row *const *order, size_t n)
{
    uint32_t *paths, npaths = 0, p;
    const diag__thread *t;
    size_t i;
    if (snap->row_of == NULL || snap->hists != NULL || n == 0) return -1;
    snap->hists = (uint64_t *)diag__alloc_zero(n * DIAG__HIST * sizeof(uint64_t));
    paths = (uint32_t *)DIAG_MALLOC(snap->npaths * sizeof *paths);
    if (snap->hists == NULL || paths == NULL || diag__lock_or_give_up(&diag__rt->lock) != 0) {
        DIAG_FREE(snap->hists);
        DIAG_FREE(paths);
        snap->hists = NULL;
        return -1;
    }
    for (i = 0; i < n; i++) snap->rows[order ? (size_t)(order[i] - snap->rows) : i].hist = snap->hists + i * DIAG__HIST;
    for (p = 0; p < snap->npaths; p++)
        if (snap->row_of[p] != UINT32_MAX && snap->rows[snap->row_of[p]].hist != NULL) paths[npaths++] = p;
    for (t = diag__rt->threads; t != NULL; t = t->next) {
        diag__hists_held(snap, t, paths, npaths);
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the slots, then the tables: see diag__window_move */
        diag__hists_hot(snap, t);
    }
    diag__hists_shared(snap, paths, npaths);
    pthread_mutex_unlock(&diag__rt->lock);
    for (i = 0; i < n * DIAG__HIST; i++) /* below its baseline, as a count read twice can leave it */
        if ((int64_t)snap->hists[i] < 0) snap->hists[i] = 0;
    DIAG_FREE(paths);
    return 0;
}

/* A whole snapshot with every row's histogram, for readers other than the writers. */
__attribute__((unused)) static int diag__snapshot_take(diag__snapshot *snap)
{
    if (diag__snapshot_read(snap, 1) != 0) return -1;
    diag__hists_read(snap, NULL, snap->count);
    return 0;
}

/* Bucket b's ticks: [lo, hi) (see diag__bucket). */
static void diag__bucket_bounds(unsigned b, uint64_t *lo, uint64_t *hi)
{
    unsigned shift = b < 8 ? 0 : (b >> 3) - 1;
    uint64_t first = b - (shift << 3);
    *lo = first << shift;
    *hi = (first + 1) << shift;
}

/* A row's poll time in ns at the nearest rank of percent: the
   ceil(percent/100 polls)-th shortest. Its bucket is exact; in it, the
   point whose distance to either bound is the same fraction of the value,
   2 lo hi / (lo + hi), within 1/17 (5.9%) of every time of a bucket 1/8
   wide (diag__bucket). Never above max; in the last bucket, max. */
static uint64_t diag__quantile(const diag__snapshot *snap, const diag__row *r, unsigned percent)
{
    uint64_t total = 0, seen = 0, want, lo, hi, ns;
    unsigned h;
    if (r->hist == NULL) return r->max;
    for (h = 0; h < DIAG__HIST; h++) total += r->hist[h];
    if (total == 0) return 0;
    want = total / 100 * percent + (total % 100 * percent + 99) / 100;
    for (h = 0; h < DIAG__HIST - 1 && seen + r->hist[h] < want; h++) seen += r->hist[h];
    if (h == DIAG__HIST - 1) return r->max;
    diag__bucket_bounds(h, &lo, &hi);
    if (hi - lo == 1) ns = diag__to_ns(lo, snap->ns_per_tick);
    else ns = diag__round(2.0 * (double)lo * (double)hi / (double)(lo + hi) * snap->ns_per_tick);
    return ns < r->max ? ns : r->max;
}

/* Pointers to the rows (only those with open runs if open_only), sorted by
   compare (caller frees), or NULL with *n 0 when there are no rows or no memory. */
static const diag__row **diag__rows_sorted(const diag__snapshot *snap, int (*compare)(const void *, const void *),
                                           int open_only, size_t *n)
{
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    const diag__row **order = snap->count ? (const diag__row **)DIAG_MALLOC(snap->count * sizeof *order) : NULL;
    size_t i;
    *n = 0;
    if (order == NULL) return NULL;
    for (i = 0; i < snap->count; i++)
        if (!open_only || snap->rows[i].open) order[(*n)++] = &snap->rows[i];
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    qsort(order, *n, sizeof *order, compare);
    return order;
}

/* >>folded: the folded files ------------------------------------------------- */

enum { DIAG__POLLS, DIAG__BUSY, DIAG__WALL, DIAG__SCHED, DIAG__METRICS };
#define DIAG__OPEN DIAG__METRICS /* open runs: PREFIX.pending.*, not one of the metrics */
static const char *const diag__metric_names[DIAG__METRICS + 1] = { "polls", "busy", "wall", "sched", "pending" };

static uint64_t diag__metric(const diag__row *r, int metric)
{
    switch (metric) {
    case DIAG__POLLS: return r->polls;
    case DIAG__BUSY: return r->busy;
    case DIAG__WALL: return r->self_wall;
    case DIAG__OPEN: return r->open;
    default: return r->sched;
    }
}

/* "<stack> <value>" per row; for DIAG__OPEN, the rows with open runs only. */
static void diag__folded(diag__buf *b, const diag__snapshot *snap, int metric)
{
    size_t i;
    for (i = 0; i < snap->count; i++) {
        if (metric == DIAG__OPEN && snap->rows[i].open == 0) continue;
        diag__buf_str(b, snap->rows[i].stack);
        diag__buf_put(b, " ", 1);
        diag__buf_u64(b, diag__metric(&snap->rows[i], metric));
        diag__buf_put(b, "\n", 1);
    }
}

/* A dump's files are renamed into place only once all are written, so a
   failure part-way (a full disk, a signal) leaves the earlier set whole:
   while this thread writes a set (diag__write_set), each file stays under
   its temporary name, listed here. */
#define DIAG__SET_MAX 16 /* files of one set: 13 at most (4 folded, 3 pending, trace, pprof, 4 SVG) */
typedef struct diag__set {
    char *files[DIAG__SET_MAX]; /* "path\0temporary name"; an empty temporary name: path is removed */
    unsigned n;
} diag__set;
static __thread diag__set *diag__set_now; /* NULL: a file is renamed as soon as written */

/* Lists path (tmp: its temporary file, or "": to be removed); -1 with errno. */
static int diag__set_add(const char *path, const char *tmp)
{
    size_t a = strlen(path) + 1, b = strlen(tmp) + 1;
    char *both = diag__set_now->n < DIAG__SET_MAX ? (char *)DIAG_MALLOC(a + b) : NULL;
    if (both == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(both, path, a);
    memcpy(both + a, tmp, b);
    diag__set_now->files[diag__set_now->n++] = both;
    return 0;
}

/* Removes path now, or with the set (none left is no error). */
static int diag__remove_file(const char *path)
{
    if (diag__set_now != NULL) return diag__set_add(path, "");
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* The end of a set: if rc is 0, every file is renamed into place (signals
   held back meanwhile, so that none cuts the renames short on this thread),
   unless a directory stands at one of the paths (EISDIR, checked first);
   else (or from the first rename that fails, failed_path set) the rest
   are removed. Returns rc, or -1 with errno. */
static int diag__set_end(diag__set *set, int rc, char *failed_path, size_t cap)
{
    sigset_t all, old;
    struct stat st;
    int saved = errno;
    unsigned i;
    for (i = 0; i < set->n && rc == 0; i++)
        if (lstat(set->files[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            rc = -1;
            saved = EISDIR;
            snprintf(failed_path, cap, "%s", set->files[i]);
        }
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (i = 0; i < set->n; i++) {
        const char *path = set->files[i], *tmp = path + strlen(path) + 1;
        int done = rc == 0 && (*tmp ? rename(tmp, path) == 0 : unlink(path) == 0 || errno == ENOENT);
        if (!done && rc == 0) {
            rc = -1;
            saved = errno;
            snprintf(failed_path, cap, "%s", path);
        }
        if (!done && *tmp) unlink(tmp);
        DIAG_FREE(set->files[i]);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return rc;
}

/* Writes data to path through a temporary file and rename(), so a reader
   never sees half a file and a symlink at path is replaced, not followed;
   within a set, the rename waits for diag__set_end. */
static int diag__write_file(const char *path, const char *data, size_t len)
{
    char tmp[4200];
    int fd, saved;
    size_t done = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    unlink(tmp); /* a leftover of a killed process that had our pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ENOSPC;
            goto fail;
        }
        done += (size_t)n;
    }
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    if (diag__set_now != NULL ? diag__set_add(path, tmp) == 0 : rename(tmp, path) == 0) return 0;
    fd = -1;
fail:
    saved = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}

/* Writes what b holds to path (see diag__write_file) and frees it, leaving
   b->data NULL; ENOMEM when b ran out of memory while it was built. */
static int diag__write_buf(const char *path, diag__buf *b)
{
    int rc = b->failed ? -1 : diag__write_file(path, b->data, b->len);
    if (b->failed) errno = ENOMEM;
    DIAG_FREE(b->data);
    b->data = NULL;
    return rc;
}

/* Appends n bytes of s to out (*len of cap used) if they fit with a NUL and a byte to spare; whether they did. */
static int diag__append(char *out, size_t *len, size_t cap, const char *s, size_t n)
{
    if (*len + n + 1 >= cap) return 0;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
    return 1;
}

/* The prefix to write to: "%p" becomes the pid; a forked child without "%p"
   gets ".pid" appended (never its parent's files); then the runtime's tag. */
static int diag__resolve_prefix(const char *prefix, char *out, size_t cap)
{
    size_t len = 0;
    int has_pid = 0, fits;
    char pid[24];
    const char *dir = "";
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if (prefix == NULL || *prefix == '\0') { /* the setting, pinned to the start-up directory */
        dir = diag__pinned_dir();
        prefix = diag__rt->out ? diag__rt->out : "diagnose";
    }
    fits = diag__append(out, &len, cap, dir, strlen(dir));
    for (; *prefix && fits; prefix++) {
        int is_pid = prefix[0] == '%' && prefix[1] == 'p';
        fits = is_pid ? diag__append(out, &len, cap, pid, strlen(pid)) : diag__append(out, &len, cap, prefix, 1);
        prefix += is_pid;
        has_pid |= is_pid;
    }
    if (fits && diag__rt->forked && !has_pid)
        fits = diag__append(out, &len, cap, ".", 1) && diag__append(out, &len, cap, pid, strlen(pid));
    if (fits && diag__append(out, &len, cap, diag__rt->tag, strlen(diag__rt->tag))) return 0;
    errno = ENAMETOOLONG;
    return -1;
}

static int diag__has_wakes(const diag__snapshot *snap)
{
    size_t i;
    for (i = 0; i < snap->count; i++)
        if (snap->rows[i].wakes) return 1;
    return 0;
}

typedef void (*diag__writer)(diag__buf *b, const diag__snapshot *snap, int metric);

/* PREFIX.<metric>.<ext> by `build` per metric (sched only with wakes); -1 with errno and failed_path set. */
static int diag__write_metrics(const char *prefix, const char *ext, diag__writer build, const diag__snapshot *snap,
                               char *failed_path, size_t cap)
{
    int metric, metrics = diag__has_wakes(snap) ? DIAG__METRICS : DIAG__SCHED;
    for (metric = 0; metric < metrics; metric++) {
        diag__buf b = { NULL, 0, 0, 0 };
        snprintf(failed_path, cap, "%s.%s.%s", prefix, diag__metric_names[metric], ext);
        diag__buf_put(&b, "", 0);
        build(&b, snap, metric);
        if (diag__write_buf(failed_path, &b) != 0) return -1;
    }
    return 0;
}

/* >>pending: what is open now (PREFIX.pending.*) ----------------------------- */

#define DIAG__PENDING_LINES 25 /* pending lines at the end of the summary, at most */

static int diag__compare_oldest(const void *a, const void *b)
{
    const diag__row *x = *(const diag__row *const *)a, *y = *(const diag__row *const *)b;
    if (x->oldest != y->oldest) return x->oldest < y->oldest ? 1 : -1;
    return strcmp(x->stack, y->stack);
}

/* "<path>: <n> open, oldest <age>[, running <age>][, stuck]" and a newline. */
static void diag__pending_line(diag__buf *b, const diag__row *r)
{
    char age[16];
    diag__buf_str(b, r->stack);
    diag__buf_str(b, ": ");
    diag__buf_u64(b, r->open);
    diag__format_ns(age, sizeof age, r->oldest);
    diag__buf_str(b, " open, oldest ");
    diag__buf_str(b, age);
    if (r->running) {
        diag__format_ns(age, sizeof age, r->running - 1);
        diag__buf_str(b, ", running ");
        diag__buf_str(b, age);
    }
    if (r->suspended) {
        diag__format_ns(age, sizeof age, r->suspended_for - 1);
        diag__buf_str(b, ", ");
        diag__buf_u64(b, r->suspended);
        diag__buf_str(b, " suspended, longest ");
        diag__buf_str(b, age);
    }
    if (r->oldest >= diag__rt->stuck_ns) diag__buf_str(b, ", stuck");
    diag__buf_put(b, "\n", 1);
}

/* Writes (or, with nothing open, removes) one PREFIX.pending.<ext> file. */
static int diag__pending_file(const char *prefix, const char *ext, diag__buf *b, int any, char *failed_path,
                              size_t cap)
{
    snprintf(failed_path, cap, "%s.pending.%s", prefix, ext);
    if (!any) return diag__remove_file(failed_path);
    return diag__write_buf(failed_path, b);
}

/* PREFIX.pending.txt's text into b: the paths with open runs for people,
   oldest first, one diag__pending_line each ("" when none is open). */
static void diag__pending_text(diag__buf *b, const diag__snapshot *snap)
{
    size_t n, i, open = 0;
    const diag__row **order = diag__rows_sorted(snap, diag__compare_oldest, 1, &n);
    diag__buf_put(b, "", 0);
    for (i = 0; i < snap->count; i++) open += snap->rows[i].open != 0;
    if (order == NULL && open) b->failed = 1; /* open runs, but no memory to order them */
    for (i = 0; i < n; i++) diag__pending_line(b, order[i]);
    DIAG_FREE(order);
}

/* PREFIX.pending.folded (open runs per path, the folded grammar) and
   PREFIX.pending.txt; a dump that finds no open run removes both. */
static int diag__write_pending(const char *prefix, const diag__snapshot *snap, char *failed_path, size_t cap)
{
    diag__buf folded = { NULL, 0, 0, 0 }, text = { NULL, 0, 0, 0 };
    int rc, any;
    diag__buf_put(&folded, "", 0);
    diag__folded(&folded, snap, DIAG__OPEN);
    any = folded.len != 0;
    diag__pending_text(&text, snap);
    rc = diag__pending_file(prefix, "folded", &folded, any, failed_path, cap);
    if (rc == 0) rc = diag__pending_file(prefix, "txt", &text, any, failed_path, cap);
    DIAG_FREE(folded.data);
    DIAG_FREE(text.data);
    return rc;
}

/* The end of the summary: the pending lines, each after "pending: ". */
static void diag__print_pending(FILE *out, const diag__snapshot *snap, const char *prefix)
{
    size_t n, i;
    const diag__row **order = diag__rows_sorted(snap, diag__compare_oldest, 1, &n);
    for (i = 0; i < n && i < DIAG__PENDING_LINES; i++) {
        diag__buf b = { NULL, 0, 0, 0 };
        diag__pending_line(&b, order[i]);
        if (!b.failed) fprintf(out, "pending: %s", b.data);
        DIAG_FREE(b.data);
    }
    if (n > DIAG__PENDING_LINES)
        fprintf(out, "pending: (%lu more paths in %s.pending.txt)\n", (unsigned long)(n - DIAG__PENDING_LINES), prefix);
    DIAG_FREE(order);
}

/* >>table: the summary table and its lints ----------------------------------- */

static int diag__compare_busy(const void *a, const void *b)
{
    const diag__row *x = *(const diag__row *const *)a, *y = *(const diag__row *const *)b;
    if (x->busy != y->busy) return x->busy < y->busy ? 1 : -1;
    return strcmp(x->stack, y->stack);
}

#define DIAG__LINT_POLLS 100 /* "polled many times": at least this many polls */
#define DIAG__LINT_DROPS 3   /* "dropped more often than finished": one abandoned run is no pattern */
#define DIAG__LINT_LINES 20  /* lints printed at most; the rest are counted */
#define DIAG__LINT_SELF_WAKES 20 /* "wakes itself": at least this many quick self-wakes (DIAG__QUICK_WAKE_NS) */

/* Lints of what is open and running at the dump (see diag__live_read);
   wakes: the program uses diag_wake. Returns how many lines it added. */
static unsigned diag__lint_live(char (*lines)[200], const diag__row *r, int wakes)
{
    unsigned n = 0;
    char a[16];
    /* a poll that works, then wakes itself to let others run (a yield) is no busy loop: only quick ones count */
    if (r->quick_self_wakes >= DIAG__LINT_SELF_WAKES && r->quick_self_wakes * 2 > r->wakes) {
        diag__format_ns(a, sizeof a, DIAG__QUICK_WAKE_NS);
        snprintf(lines[n++], sizeof lines[0],
                 "%llu of %llu wakes were self-wakes (diag_wake inside its own poll) less than %s into it: a busy loop through the executor",
                 (unsigned long long)r->quick_self_wakes, (unsigned long long)(r->wakes > r->self_wakes ? r->wakes : r->self_wakes), a);
    }
    if (r->orphans)
        snprintf(lines[n++], sizeof lines[0], "%llu open %s outlived the run%s began in (orphaned: forgotten, never dropped?)",
                 (unsigned long long)r->orphans, r->orphans == 1 ? "run" : "runs", r->orphans == 1 ? " it" : "s they");
    /* only where every poll starts a run or follows a wake: then a run's last woken poll is its last poll */
    if (r->lost && wakes && r->polls <= r->wakes + r->started) {
        diag__format_ns(a, sizeof a, diag__rt->stuck_ns);
        snprintf(lines[n++], sizeof lines[0], "%llu open run%s not woken, polled or running for %s or more (lost wake?)",
                 (unsigned long long)r->lost, r->lost == 1 ? "" : "s", a);
    }
    if (r->running && diag__rt->slow_ns && r->running - 1 >= diag__rt->slow_ns) {
        diag__format_ns(a, sizeof a, r->running - 1);
        snprintf(lines[n++], sizeof lines[0], "a poll still running at the dump had run for %s", a);
    }
    return n;
}

/* One "lint: <path>: <what>" line per finding of row r while *budget lasts; returns how many it found. */
static unsigned diag__lint_row(FILE *out, const diag__row *r, unsigned *budget, int wakes)
{
    char lines[7][200];
    unsigned n = 0, i;
    if (r->slow) {
        char a[16], b[16];
        diag__format_ns(a, sizeof a, diag__rt->slow_ns);
        diag__format_ns(b, sizeof b, r->max);
        snprintf(lines[n++], sizeof lines[0], "%llu of %llu polls took %s or more (max %s)",
                 (unsigned long long)r->slow, (unsigned long long)r->polls, a, b);
    }
    if (r->done == 0 && r->pending > 0 && r->polls >= DIAG__LINT_POLLS)
        snprintf(lines[n++], sizeof lines[0], "%llu polls, never finished (%llu run%s pending)",
                 (unsigned long long)r->polls, (unsigned long long)r->pending, r->pending == 1 ? "" : "s");
    if (r->drops > r->done && r->drops >= DIAG__LINT_DROPS)
        snprintf(lines[n++], sizeof lines[0], "dropped %llu times, finished %llu", (unsigned long long)r->drops,
                 (unsigned long long)r->done);
    n += diag__lint_live(lines + n, r, wakes);
    for (i = 0; i < n && *budget > 0; i++, --*budget) fprintf(out, "lint: %s: %s\n", r->stack, lines[i]);
    return n;
}

/* Lints for every path, in the table's order (most busy first). */
static void diag__print_lints(FILE *out, const diag__row *const *order, size_t count, int wakes)
{
    unsigned budget = DIAG__LINT_LINES, found = 0;
    size_t i;
    for (i = 0; i < count; i++) found += diag__lint_row(out, order[i], &budget, wakes);
    if (found > DIAG__LINT_LINES) fprintf(out, "(%u more lints)\n", found - DIAG__LINT_LINES);
}

/* The line under the table for an [overflow] row (its row keeps one token
   per column): which limit sent paths there, what to raise; "" for others. */
static const char *diag__row_note(const diag__row *r, char *note, size_t cap)
{
    int why = __atomic_load_n(&diag__rt->overflow_why, __ATOMIC_RELAXED);
    const char *memory = why & DIAG__OVERFLOW_MEMORY ? "paths that found no memory" : "";
    if (strcmp(r->stack, "[overflow]") != 0 || why == 0) return "";
    if (why & DIAG__OVERFLOW_CAP)
        snprintf(note, cap, "[overflow]: new paths past DIAGNOSE_MAX_PATHS=%lu: raise it, up to %lu%s%s\n",
                 (unsigned long)diag__rt->max_paths, (unsigned long)(DIAG_PATH_TABLE_SIZE - 2),
                 *memory ? "; and " : "", memory);
    else snprintf(note, cap, "[overflow]: new %s\n", memory);
    return note;
}

/* The table's rows, most busy first, its legend and the lints (the page
   of DIAGNOSE_HTTP shows these as they are; prefix is not used). */
static void diag__print_rows(FILE *out, diag__snapshot *snap, const char *prefix)
{
    const diag__row **order;
    char t[7][16], note[160];
    const char *overflow = "";
    size_t i, n;
    int sched = diag__has_wakes(snap);
    (void)prefix;
    order = diag__rows_sorted(snap, diag__compare_busy, 0, &n);
    if (order == NULL) return;
    if (order[0]->hist == NULL) diag__hists_read(snap, order, n < DIAG__TABLE_ROWS ? n : DIAG__TABLE_ROWS);
    fprintf(out, "%8s %6s %6s %6s %6s %6s %6s %5s %5s %5s", "polls", "busy", "wall", "mean", "p50", "p99", "max",
            "runs", "drops", "b/w");
    if (sched) fprintf(out, " %6s", "sched");
    fputs("  path\n", out);
    for (i = 0; i < snap->count && i < DIAG__TABLE_ROWS; i++) {
        const diag__row *r = order[i];
        char ratio[16], n_polls[24], n_runs[24], n_drops[24];
        diag__format_ns(t[0], sizeof t[0], r->busy);
        diag__format_ns(t[1], sizeof t[1], r->wall);
        diag__format_ns(t[2], sizeof t[2], r->polls ? r->poll_time / r->polls : 0);
        diag__format_ns(t[3], sizeof t[3], diag__quantile(snap, r, 50));
        diag__format_ns(t[4], sizeof t[4], diag__quantile(snap, r, 99));
        diag__format_ns(t[5], sizeof t[5], r->max);
        if (r->wall) snprintf(ratio, sizeof ratio, "%.0f%%", 100.0 * (double)r->busy / (double)r->wall);
        else snprintf(ratio, sizeof ratio, "-");
        diag__format_count(n_polls, sizeof n_polls, r->polls, 8);
        diag__format_count(n_runs, sizeof n_runs, r->started, 5);
        diag__format_count(n_drops, sizeof n_drops, r->drops, 5);
        fprintf(out, "%8s %6s %6s %6s %6s %6s %6s %5s %5s %5s", n_polls, t[0], t[1], t[2], t[3], t[4], t[5], n_runs,
                n_drops, ratio);
        if (sched) { /* mean delay per wake; "-" for a path never woken */
            if (r->wakes) diag__format_ns(t[6], sizeof t[6], r->sched / r->wakes);
            else snprintf(t[6], sizeof t[6], "-");
            fprintf(out, " %6s", t[6]);
        }
        fprintf(out, "  %s\n", r->stack);
        if (*overflow == '\0') overflow = diag__row_note(r, note, sizeof note);
    }
    if (snap->count > DIAG__TABLE_ROWS)
        fprintf(out, "(%lu more paths in the folded files)\n", (unsigned long)(snap->count - DIAG__TABLE_ROWS));
    fputs("busy: self time in polls; wall: time from first poll to READY or drop; b/w: busy/wall\n", out);
    fputs("runs: started; the ones not finished or dropped are still open\n", out);
    if (sched) fputs("sched: mean time from diag_wake to the next poll\n", out);
    fputs(overflow, out);
    diag__print_lints(out, order, snap->count, sched);
    DIAG_FREE(order);
}

/* The summary table: a heading, the rows and lints, the pending lines. */
static void diag__print_table(FILE *out, diag__snapshot *snap, const char *prefix)
{
    fprintf(out, "diagnose.h: %lu path%s, %u thread%s, clock %s; files %s.{polls,busy,wall%s}.folded\n",
            (unsigned long)snap->count, snap->count == 1 ? "" : "s", snap->threads, snap->threads == 1 ? "" : "s",
            diag__use_tsc ? DIAG__COUNTER_NAME : "clock_gettime", prefix, diag__has_wakes(snap) ? ",sched" : "");
    diag__print_rows(out, snap, prefix);
    diag__print_pending(out, snap, prefix);
}

typedef void (*diag__printer)(FILE *out, diag__snapshot *snap, const char *prefix);

/* What print prints, as text in memory (*len bytes and a NUL), or NULL.
   The caller frees it with free(): open_memstream's buffer comes from
   malloc, whatever DIAG_MALLOC is. */
static char *diag__print_text(diag__printer print, diag__snapshot *snap, const char *prefix, size_t *len)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, len);
    if (out == NULL) return NULL;
    print(out, snap, prefix);
    if (fclose(out) == 0) return text;
    free(text);
    return NULL;
}

/* The table in one write (see diag__stderr_write), built in memory. */
static void diag__print_table_to_stderr(diag__snapshot *snap, const char *prefix)
{
    size_t len = 0;
    char *text = diag__print_text(diag__print_table, snap, prefix, &len);
    if (text == NULL) {
        diag__warn("diagnose.h: out of memory for the summary table\n");
        return;
    }
    diag__stderr_write(text, len);
    free(text);
}

/* >>svg: flame graph SVG ----------------------------------------------------- */

/* One self-contained SVG per metric, drawn as flamegraph.pl draws a folded
   file: a frame is as wide as the sum of the rows beneath it, roots at the
   bottom. Each frame is a nested <svg> box, so its label is clipped without
   measuring text; the script only moves and resizes boxes, from the exact
   values in data-x (offset) and data-v (inclusive value). */
#define DIAG__SVG_WIDTH 1200u /* px of the picture */
#define DIAG__SVG_PAD 10u     /* px left and right of the frames */
#define DIAG__SVG_ROW 16u     /* px per level: 15 of frame, 1 of gap */
#define DIAG__SVG_TOP 36u     /* px above the frames: heading, "Reset zoom" */
#define DIAG__SVG_BOTTOM 26u  /* px below: the hover line */

/* Indexed by metric. */
static const char *const diag__svg_titles[DIAG__METRICS + 1] = { "polls", "busy time", "wall time",
                                                                 "scheduling delay", "open runs" };

/* ES5, so any SVG viewer with a script engine runs it. */
static const char *const diag__svg_script[] = {
    "(function () {\n",
    "  /* the picture's own <svg>: the document, or a part of DIAGNOSE_HTTP's page */\n",
    "  var me = document.currentScript, root = me ? me.parentNode : document.documentElement;\n",
    "  var pad = +root.getAttribute('data-pad');\n",
    "  var width = +root.getAttribute('data-width'), total = +root.getAttribute('data-total');\n",
    "  var frames = [].slice.call(root.getElementsByClassName('f'));\n",
    "  var details = document.getElementById('details'), idle = details.textContent;\n",
    "  var reset = document.getElementById('reset');\n",
    "  function num(g, key) { return +g.getAttribute('data-' + key); }\n",
    "  function frameOf(node) {\n",
    "    for (; node && node !== root; node = node.parentNode)\n",
    "      if (node.getAttribute && node.getAttribute('class') === 'f') return node;\n",
    "    return null;\n",
    "  }\n",
    "  function place(g, x, w, faded) {\n",
    "    var box = g.getElementsByTagName('svg')[0];\n",
    "    box.setAttribute('x', (pad + x).toFixed(2));\n",
    "    box.setAttribute('width', w.toFixed(2));\n",
    "    g.style.display = '';\n",
    "    g.style.opacity = faded ? '0.5' : '';\n",
    "  }\n",
    "  /* Ancestors of z span the width, faded; z's subtree is scaled to the\n",
    "     width; everything else is hidden. z null: the whole profile. */\n",
    "  function zoom(z) {\n",
    "    var x0 = z ? num(z, 'x') : 0, v0 = z ? num(z, 'v') : total, d0 = z ? num(z, 'd') : 0;\n",
    "    frames.forEach(function (g) {\n",
    "      var x = num(g, 'x'), v = num(g, 'v'), d = num(g, 'd');\n",
    "      if (d < d0 && x <= x0 && x + v >= x0 + v0) place(g, 0, width, true);\n",
    "      else if (x >= x0 && x + v <= x0 + v0) place(g, (x - x0) * width / v0, v * width / v0, false);\n",
    "      else g.style.display = 'none';\n",
    "    });\n",
    "    reset.style.opacity = z ? '1' : '0';\n",
    "  }\n",
    "  root.addEventListener('mouseover', function (e) {\n",
    "    var g = frameOf(e.target);\n",
    "    details.textContent = g ? g.getElementsByTagName('title')[0].textContent : idle;\n",
    "  });\n",
    "  root.addEventListener('click', function (e) { zoom(frameOf(e.target)); });\n",
    "})();\n",
};

typedef struct diag__svg_open {
    const char *name; /* points into a row's stack */
    size_t len;
    uint64_t start; /* value offset of the frame's left edge */
} diag__svg_open;

typedef struct diag__svg {
    diag__buf *out;
    int metric;
    uint64_t total;  /* sum of the rows' values: the full width */
    uint64_t elapsed_ns; /* since the start or the last reset, for the wall heading */
    unsigned levels; /* frames in the deepest stack */
    diag__svg_open *open;
    unsigned nopen;
    uint64_t left_out; /* frames under 0.1 px, not drawn */
} diag__svg;

/* Orders stacks frame by frame (';' below every other byte), so the rows
   beneath a frame are adjacent: bytewise, "a-b" sorts between "a" and "a;c". */
static int diag__svg_compare(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)(*(const diag__row *const *)a)->stack;
    const unsigned char *y = (const unsigned char *)(*(const diag__row *const *)b)->stack;
    int kx, ky;
    while (*x && *x == *y) x++, y++;
    kx = *x == ';' ? 1 : *x ? *x + 1 : 0;
    ky = *y == ';' ? 1 : *y ? *y + 1 : 0;
    return kx - ky;
}

/* Text content and attribute values: names may hold & < > (see OUTPUT). */
static void diag__svg_escape(diag__buf *b, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (s[i] == '&') diag__buf_str(b, "&amp;");
        else if (s[i] == '<') diag__buf_str(b, "&lt;");
        else if (s[i] == '>') diag__buf_str(b, "&gt;");
        else if (s[i] == '"') diag__buf_str(b, "&quot;");
        else diag__buf_put(b, s + i, 1);
    }
}

/* "3 polls" or a duration such as "1.50ms". */
static void diag__svg_value(char *out, size_t cap, int metric, uint64_t v)
{
    if (metric == DIAG__POLLS) snprintf(out, cap, "%llu poll%s", (unsigned long long)v, v == 1 ? "" : "s");
    else if (metric == DIAG__OPEN) snprintf(out, cap, "%llu open", (unsigned long long)v);
    else diag__format_ns(out, cap, v);
}

/* A color from the name alone (FNV-1a), the same in every picture, in a range
   per metric: polls green, busy flamegraph.pl's hot, wall blue, sched purple. */
static void diag__svg_color(char *out, size_t cap, int metric, const char *name, size_t len)
{
    static const unsigned char range[DIAG__METRICS + 1][6] = { /* r, r span, g, g span, b, b span */
        { 60, 70, 160, 70, 50, 60 },
        { 205, 50, 0, 230, 0, 55 },
        { 60, 70, 120, 80, 200, 55 },
        { 150, 70, 70, 60, 190, 60 },
        { 200, 55, 150, 60, 0, 40 },
    };
    const unsigned char *c = range[metric];
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < len; i++) h = (h ^ (unsigned char)name[i]) * 16777619u;
    snprintf(out, cap, "rgb(%u,%u,%u)", c[0] + c[1] * (h & 255u) / 255u, c[2] + c[3] * ((h >> 8) & 255u) / 255u,
             c[4] + c[5] * ((h >> 16) & 255u) / 255u);
}

/* v with two decimals and a '.', whatever the program's locale. */
static void diag__svg_fixed(char *out, size_t cap, double v)
{
    uint64_t hundredths = diag__round(v * 100.0);
    snprintf(out, cap, "%llu.%02u", (unsigned long long)(hundredths / 100), (unsigned)(hundredths % 100));
}

/* Draws an open frame ending at value offset end, at level depth; none under 0.1 px, as flamegraph.pl (counted). */
static void diag__svg_frame(diag__svg *g, const diag__svg_open *f, unsigned depth, uint64_t end)
{
    char head[128], box[320], value[32], color[32], share[24], x[24], w[24];
    double scale = (double)(DIAG__SVG_WIDTH - 2 * DIAG__SVG_PAD) / (double)g->total;
    uint64_t v = end - f->start;
    if ((double)v * scale < 0.1) {
        g->left_out++;
        return;
    }
    diag__svg_value(value, sizeof value, g->metric, v);
    diag__svg_color(color, sizeof color, g->metric, f->name, f->len);
    diag__svg_fixed(share, sizeof share, 100.0 * (double)v / (double)g->total);
    diag__svg_fixed(x, sizeof x, DIAG__SVG_PAD + (double)f->start * scale);
    diag__svg_fixed(w, sizeof w, (double)v * scale);
    snprintf(head, sizeof head, "<g class=\"f\" data-x=\"%llu\" data-v=\"%llu\" data-d=\"%u\"><title>",
             (unsigned long long)f->start, (unsigned long long)v, depth);
    snprintf(box, sizeof box,
             ": %s (%s%%)</title><svg x=\"%s\" y=\"%u\" width=\"%s\" height=\"%u\">"
             "<rect width=\"100%%\" height=\"100%%\" rx=\"2\" fill=\"%s\"/><text x=\"3\" y=\"11\">",
             value, share, x, DIAG__SVG_TOP + (g->levels - 1 - depth) * DIAG__SVG_ROW, w, DIAG__SVG_ROW - 1, color);
    diag__buf_str(g->out, head);
    diag__svg_escape(g->out, f->name, f->len);
    diag__buf_str(g->out, box);
    diag__svg_escape(g->out, f->name, f->len);
    diag__buf_str(g->out, "</text></svg></g>\n");
}

/* Opens the frames of one stack at value offset x, after closing the open ones it does not share. */
static void diag__svg_stack(diag__svg *g, const char *s, uint64_t x)
{
    unsigned d = 0;
    while (d < g->nopen && *s) {
        size_t len = strcspn(s, ";");
        if (len != g->open[d].len || memcmp(s, g->open[d].name, len) != 0) break;
        s += len + (s[len] == ';');
        d++;
    }
    while (g->nopen > d) {
        g->nopen--;
        diag__svg_frame(g, &g->open[g->nopen], g->nopen, x);
    }
    while (*s && g->nopen < g->levels) {
        diag__svg_open *f = &g->open[g->nopen++];
        f->name = s;
        f->len = strcspn(s, ";");
        f->start = x;
        s += f->len + (s[f->len] == ';');
    }
}

/* The frames, then how many were too narrow to draw, on the right of the bottom line. */
static void diag__svg_frames(diag__svg *g, const diag__row **order, size_t n, unsigned height)
{
    char line[160];
    uint64_t x = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        uint64_t v = diag__metric(order[i], g->metric);
        if (v == 0) continue;
        diag__svg_stack(g, order[i]->stack, x);
        x += v;
    }
    diag__svg_stack(g, "", x);
    snprintf(line, sizeof line,
             "<text id=\"left-out\" x=\"%u\" y=\"%u\" text-anchor=\"end\">%llu frame%s narrower than 0.1 px "
             "not drawn</text>\n", DIAG__SVG_WIDTH - DIAG__SVG_PAD, height - 9, (unsigned long long)g->left_out,
             g->left_out == 1 ? "" : "s");
    diag__buf_str(g->out, line);
}

static void diag__svg_document(diag__svg *g, const diag__row **order, size_t n)
{
    char line[512], value[96];
    unsigned height = DIAG__SVG_TOP + g->levels * DIAG__SVG_ROW + DIAG__SVG_BOTTOM;
    size_t i;
    diag__svg_value(value, sizeof value, g->metric, g->total);
    if (g->metric == DIAG__WALL) { /* runs overlap: their sum can be many times the time that passed */
        char elapsed[16];
        diag__format_ns(elapsed, sizeof elapsed, g->elapsed_ns);
        snprintf(value + strlen(value), sizeof value - strlen(value), " (every run's wall summed), %s elapsed",
                 elapsed);
    }
    snprintf(line, sizeof line,
             "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
             "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%u\" height=\"%u\" "
             "viewBox=\"0 0 %u %u\" data-total=\"%llu\" data-width=\"%u\" data-pad=\"%u\">\n",
             DIAG__SVG_WIDTH, height, DIAG__SVG_WIDTH, height, (unsigned long long)g->total,
             DIAG__SVG_WIDTH - 2 * DIAG__SVG_PAD, DIAG__SVG_PAD);
    diag__buf_str(g->out, line);
    diag__buf_str(g->out, "<style>text{font:12px Verdana,sans-serif;fill:#000}g.f{cursor:pointer}"
                          "g.f:hover rect{stroke:#000;stroke-width:1}#reset{cursor:pointer;opacity:0}</style>\n"
                          "<rect width=\"100%\" height=\"100%\" fill=\"#f8f8f8\"/>\n");
    snprintf(line, sizeof line,
             "<text id=\"heading\" x=\"%u\" y=\"22\" text-anchor=\"middle\" style=\"font-size:16px\">"
             "diagnose.h: %s, total %s</text>\n<text id=\"reset\" x=\"%u\" y=\"22\">Reset zoom</text>\n"
             "<text id=\"details\" x=\"%u\" y=\"%u\">%s</text>\n",
             DIAG__SVG_WIDTH / 2, diag__svg_titles[g->metric], value, DIAG__SVG_PAD, DIAG__SVG_PAD, height - 9,
             g->total ? "Hover a frame for its value, click to zoom." : "Nothing was measured.");
    diag__buf_str(g->out, line);
    if (g->total) diag__svg_frames(g, order, n, height);
    diag__buf_str(g->out, "<script type=\"text/ecmascript\"><![CDATA[\n");
    for (i = 0; i < sizeof diag__svg_script / sizeof diag__svg_script[0]; i++) diag__buf_str(g->out, diag__svg_script[i]);
    diag__buf_str(g->out, "]]></script>\n</svg>\n");
}

/* The SVG of one metric into b (b->failed on allocation failure). */
static void diag__svg_write(diag__buf *b, const diag__snapshot *snap, int metric)
{
    diag__svg g;
    size_t i, n;
    const diag__row **order = diag__rows_sorted(snap, diag__svg_compare, 0, &n);
    memset(&g, 0, sizeof g);
    g.out = b;
    g.metric = metric;
    g.elapsed_ns = snap->elapsed_ns;
    for (i = 0; i < snap->count; i++) {
        const char *s = snap->rows[i].stack;
        unsigned levels = 1;
        if (diag__metric(&snap->rows[i], metric) == 0) continue;
        g.total += diag__metric(&snap->rows[i], metric);
        while ((s = strchr(s, ';')) != NULL) s++, levels++;
        if (levels > g.levels) g.levels = levels;
    }
    g.open = (diag__svg_open *)DIAG_MALLOC((g.levels + 1) * sizeof *g.open);
    if ((order == NULL && snap->count) || g.open == NULL) b->failed = 1;
    else diag__svg_document(&g, order, n);
    DIAG_FREE(order);
    DIAG_FREE(g.open);
}

/* With DIAGNOSE_SVG=1: PREFIX.pending.svg, where the open runs sit. */
static int diag__write_pending_svg(const char *prefix, const diag__snapshot *snap, char *failed_path, size_t cap)
{
    diag__buf b = { NULL, 0, 0, 0 };
    size_t i;
    int any = 0;
    for (i = 0; i < snap->count; i++) any |= snap->rows[i].open != 0;
    if (any) {
        diag__buf_put(&b, "", 0);
        diag__svg_write(&b, snap, DIAG__OPEN);
    }
    return diag__pending_file(prefix, "svg", &b, any, failed_path, cap); /* frees b */
}

/* >>trace: PREFIX.trace.json ------------------------------------------------- */

/* What a trace file is made of, copied under the lock. */
typedef struct diag__trace_thread {
    uint64_t tid;
    char name[16];
    size_t first, count; /* its events in diag__trace_copy's events */
} diag__trace_thread;

typedef struct diag__trace_copy {
    diag__event *events;
    diag__trace_thread *threads;
    size_t nthreads;
    char *stacks;    /* folded stack of every path, at offsets[path] */
    size_t *offsets;
    uint64_t origin, reset_at; /* ticks */
} diag__trace_copy;

static void diag__trace_copy_free(diag__trace_copy *c)
{
    DIAG_FREE(c->events);
    DIAG_FREE(c->threads);
    DIAG_FREE(c->stacks);
    DIAG_FREE(c->offsets);
}

static void diag__trace_copy_ring(diag__trace_copy *c, const diag__ring *r, size_t *used)
{
    diag__trace_thread *th = &c->threads[c->nthreads++];
    th->tid = r->tid;
    memcpy(th->name, r->name, sizeof th->name);
    th->first = *used;
    th->count = diag__ring_copy(r, c->events + *used);
    *used += th->count;
}

static int diag__trace_take(diag__trace_copy *c)
{
    diag__buf text = { NULL, 0, 0, 0 };
    const diag__thread *t;
    const diag__ring *r;
    size_t rings = 0, used = 0;
    memset(c, 0, sizeof *c);
    if (diag__lock_or_give_up(&diag__rt->lock) != 0) { /* at exit: 1 s at most */
        errno = ETIMEDOUT;
        return -1;
    }
    for (t = diag__rt->threads; t != NULL; t = t->next) rings += t->ring != NULL;
    for (r = diag__rt->trace->exited; r != NULL; r = r->next) rings++;
    c->events = (diag__event *)DIAG_MALLOC((rings * diag__rt->trace->n + 1) * sizeof *c->events);
    c->threads = (diag__trace_thread *)DIAG_MALLOC((rings + 1) * sizeof *c->threads);
    c->offsets = (size_t *)DIAG_MALLOC(diag__rt->npaths * sizeof *c->offsets);
    if (c->events == NULL || c->threads == NULL || c->offsets == NULL ||
        diag__stacks(&text, c->offsets, diag__rt->npaths) != 0) {
        pthread_mutex_unlock(&diag__rt->lock);
        DIAG_FREE(text.data);
        diag__trace_copy_free(c);
        errno = ENOMEM;
        return -1;
    }
    c->stacks = text.data;
    for (t = diag__rt->threads; t != NULL; t = t->next)
        if (t->ring) diag__trace_copy_ring(c, t->ring, &used);
    for (r = diag__rt->trace->exited; r != NULL; r = r->next) diag__trace_copy_ring(c, r, &used);
    c->origin = diag__rt->tsc0;
    c->reset_at = diag__rt->reset_at;
    pthread_mutex_unlock(&diag__rt->lock);
    return 0;
}

/* ns as microseconds with three decimals: exact, and 1 ns is far above a
   double's rounding step, so diag__trace_nest's nesting survives readers. */
static void diag__buf_us(diag__buf *b, uint64_t ns)
{
    char frac[4];
    diag__buf_u64(b, ns / 1000);
    frac[0] = '.';
    frac[1] = (char)('0' + ns / 100 % 10);
    frac[2] = (char)('0' + ns / 10 % 10);
    frac[3] = (char)('0' + ns % 10);
    diag__buf_put(b, frac, 4);
}

/* "pid": P, "tid": T */
static void diag__trace_ids(diag__buf *b, uint64_t tid)
{
    diag__buf_str(b, "\"pid\": ");
    diag__buf_u64(b, (uint64_t)getpid());
    diag__buf_str(b, ", \"tid\": ");
    diag__buf_u64(b, tid);
}

/* An "M" event naming the process (tid 0) or a thread; sanitized names need no JSON escapes. */
static void diag__trace_meta(diag__buf *b, const char *what, uint64_t tid, const char *name)
{
    char safe[DIAG__NAME_MAX + 1];
    diag__sanitize(name, 0, safe);
    diag__buf_str(b, "{\"ph\": \"M\", \"name\": \"");
    diag__buf_str(b, what);
    diag__buf_str(b, "\", ");
    diag__trace_ids(b, tid);
    diag__buf_str(b, ", \"args\": {\"name\": \"");
    diag__buf_str(b, safe);
    if (tid) {
        diag__buf_put(b, " ", 1); /* a thread's number, so that equal names stay apart */
        diag__buf_u64(b, tid);
    }
    diag__buf_str(b, "\"}},\n");
}

/* A poll around the one diag__trace_nest is at: ticks, as written (ns),
   the earliest start written of its children so far, its stack. */
typedef struct diag__trace_open {
    uint64_t start, end, ws, we, next;
    const char *stack;
    size_t len;
} diag__trace_open;

/* Moves a poll's written [*ws, *we] inside its parent p's (NULL: none), 1 ns
   in from p's start and 2 from its end, and to end 1 ns before *next, the
   earliest start written on its level so far; then it is *next. Readers
   that add ts and dur in doubles, or truncate each to ns (Perfetto), then
   still nest it and keep its neighbours apart; a parent under 3 ns has its
   children 0 ns long at its end. */
static void diag__trace_place(const diag__trace_open *p, uint64_t *next, uint64_t *ws, uint64_t *we)
{
    uint64_t lo = 0, hi = UINT64_MAX;
    if (p != NULL) {
        int room = p->we - p->ws >= 3;
        lo = room ? p->ws + 1 : p->we;
        hi = room ? p->we - 2 : p->we;
    }
    if (*next <= hi) hi = *next > lo ? *next - 1 : lo;
    *ws = *ws < lo ? lo : *ws > hi ? hi : *ws;
    *we = *we < *ws ? *ws : *we > hi ? hi : *we;
    *next = *ws;
}

/* Where the counters of two CPUs are not in step (some virtual machines
   and multi-socket hosts), a thread that moved mid-poll can read its
   child's end after its own: a poll that far outside its parent's ticks
   is still its child, and is placed inside. */
#define DIAG__TRACE_SKEW_NS 1000u

/* Turns the events [first, end) of one thread (ticks, in completion order:
   a child before its parent) into what is written: start and dur in ns
   from the origin, each end rounded (dur is end minus start), then placed
   by diag__trace_place. Walked newest first, a parent comes first: `open`
   (DIAG_MAX_DEPTH) holds the polls around, and the nearest of the path less
   its last frame is the parent, if their ticks meet (give or take a skew). */
static void diag__trace_nest(diag__trace_copy *c, size_t first, size_t end, double ns_per_tick,
                             diag__trace_open *open)
{
    size_t depth = 0, k = end;
    uint64_t root_next = UINT64_MAX, skew = (uint64_t)((double)DIAG__TRACE_SKEW_NS / ns_per_tick);
    while (k-- > first) {
        diag__event *e = &c->events[k];
        const char *stack = c->stacks + c->offsets[e->path], *semi = strrchr(stack, ';');
        size_t plen = semi ? (size_t)(semi - stack) : 0;
        uint64_t from = e->start > c->origin ? e->start - c->origin : 0;
        uint64_t ws = diag__to_ns(from, ns_per_tick), we = diag__to_ns(from + e->dur, ns_per_tick);
        while (depth > 0 &&
               (semi == NULL || open[depth - 1].len != plen || memcmp(open[depth - 1].stack, stack, plen) != 0))
            depth--;
        if (depth > 0 && (e->start + e->dur + skew < open[depth - 1].start || e->start > open[depth - 1].end + skew))
            depth = 0; /* a poll of the parent's path, but another one: this poll's parent is not in the ring */
        e->orphan = depth == 0 && semi != NULL;
        diag__trace_place(depth ? &open[depth - 1] : NULL, depth ? &open[depth - 1].next : &root_next, &ws, &we);
        if (depth < DIAG_MAX_DEPTH) {
            diag__trace_open *o = &open[depth++];
            o->start = e->start;
            o->end = e->start + e->dur;
            o->ws = ws;
            o->we = we;
            o->next = UINT64_MAX;
            o->stack = stack;
            o->len = strlen(stack);
        }
        e->start = ws;
        e->dur = we - ws;
    }
}

/* One "X" event; e's start and dur are in ns (see diag__trace_nest). No
   args: speedscope would add them to the frame's name; the nesting gives
   the path, and a poll without its parent in the file is named by it. */
static void diag__trace_event(diag__buf *b, const diag__trace_copy *c, uint64_t tid, const diag__event *e)
{
    const char *stack = c->stacks + c->offsets[e->path], *frame = strrchr(stack, ';');
    diag__buf_str(b, "{\"ph\": \"X\", \"name\": \"");
    diag__buf_str(b, frame && !e->orphan ? frame + 1 : stack);
    diag__buf_str(b, "\", \"ts\": ");
    diag__buf_us(b, e->start);
    diag__buf_str(b, ", \"dur\": ");
    diag__buf_us(b, e->dur);
    diag__buf_str(b, ", ");
    diag__trace_ids(b, tid);
    diag__buf_str(b, "},\n");
}

/* The file, from c; rewrites c's events (see diag__trace_nest). */
static void diag__trace_json(diag__buf *b, diag__trace_copy *c, double ns_per_tick)
{
    size_t i, k;
    diag__trace_open *open = (diag__trace_open *)DIAG_MALLOC(DIAG_MAX_DEPTH * sizeof *open);
    if (open == NULL) {
        b->failed = 1;
        return;
    }
    diag__buf_str(b, "{\"traceEvents\": [\n");
    diag__trace_meta(b, "process_name", 0, diag__program_name());
    for (i = 0; i < c->nthreads; i++) {
        const diag__trace_thread *th = &c->threads[i];
        size_t first = th->first, end = th->first + th->count;
        /* after a reset (or in a forked child): the polls that ended since */
        while (first < end && c->events[first].start + c->events[first].dur < c->reset_at) first++;
        if (first == end) continue; /* no polls: no thread in the file */
        diag__trace_meta(b, "thread_name", th->tid, th->name[0] ? th->name : "thread");
        diag__trace_nest(c, first, end, ns_per_tick, open);
        for (k = first; k < end; k++) diag__trace_event(b, c, th->tid, &c->events[k]);
    }
    DIAG_FREE(open);
    b->len -= 2; /* the last ",\n": there is always the process's event */
    diag__buf_str(b, "\n]}\n");
}

/* The trace file's text into b (b->failed without memory); -1 with errno
   set when the rings could not be copied. */
static int diag__trace_build(diag__buf *b, double ns_per_tick)
{
    diag__trace_copy c;
    if (diag__trace_take(&c) != 0) return -1;
    diag__trace_json(b, &c, ns_per_tick);
    diag__trace_copy_free(&c);
    return 0;
}

/* Writes PREFIX.trace.json when DIAGNOSE_TRACE is set; on failure names
   the file in failed_path and returns -1 with errno set. */
static int diag__trace_write(const char *prefix, double ns_per_tick, char *failed_path, size_t cap)
{
    diag__buf b = { NULL, 0, 0, 0 };
    if (diag__rt->trace->n == 0) return 0;
    snprintf(failed_path, cap, "%s.trace.json", prefix);
    if (diag__trace_build(&b, ns_per_tick) != 0) return -1;
    return diag__write_buf(failed_path, &b);
}

/* >>pprof: the profile as pprof reads it (profile.proto, gzipped) ------------ */

/* PREFIX.pb.gz (DIAGNOSE_PPROF=1) and DIAGNOSE_HTTP's /debug/pprof/profile:
   a profile.proto message, which go tool pprof, speedscope and the
   scrapers of continuous profilers read. Three sample types, polls
   (count), busy and wall (nanoseconds), the values of the folded files;
   one sample per path, its locations leaf first; one location and one
   function per frame name. Each sample has two numeric labels: runs (runs
   started) and open (runs open at the end). Written by hand: varints and
   length-delimited fields are all a profile needs. Then gzip, with no
   zlib: one deflate block of the fixed Huffman codes (diag__deflate). */
enum { /* field numbers of profile.proto */
    DIAG__PB_SAMPLE_TYPE = 1, DIAG__PB_SAMPLE = 2, DIAG__PB_MAPPING = 3, DIAG__PB_LOCATION = 4, DIAG__PB_FUNCTION = 5,
    DIAG__PB_STRING = 6, DIAG__PB_TIME = 9, DIAG__PB_DURATION = 10, DIAG__PB_PERIOD_TYPE = 11, DIAG__PB_PERIOD = 12,
    DIAG__PB_DEFAULT_TYPE = 14
};
/* The string table starts with these; frame names follow, by function id. */
static const char *const diag__pb_strings[] = { "", "polls", "count", "busy", "nanoseconds", "wall", "runs", "open" };
enum { DIAG__PBS_POLLS = 1, DIAG__PBS_COUNT, DIAG__PBS_BUSY, DIAG__PBS_NS, DIAG__PBS_WALL, DIAG__PBS_RUNS,
       DIAG__PBS_OPEN, DIAG__PBS_FRAMES };

static size_t diag__pb_size(uint64_t v) /* bytes of v as a varint */
{
    size_t n = 1;
    while (v >= 0x80) v >>= 7, n++;
    return n;
}

static void diag__pb_varint(diag__buf *b, uint64_t v)
{
    char bytes[10];
    size_t n = 0;
    while (v >= 0x80) {
        bytes[n++] = (char)(v | 0x80);
        v >>= 7;
    }
    bytes[n++] = (char)v;
    diag__buf_put(b, bytes, n);
}

/* A field's key: wire type 0 (a varint follows) or 2 (a length, then bytes). */
static void diag__pb_key(diag__buf *b, unsigned field, unsigned wire) { diag__pb_varint(b, field << 3 | wire); }

static void diag__pb_uint(diag__buf *b, unsigned field, uint64_t v)
{
    diag__pb_key(b, field, 0);
    diag__pb_varint(b, v);
}

static void diag__pb_bytes(diag__buf *b, unsigned field, const char *data, size_t n)
{
    diag__pb_key(b, field, 2);
    diag__pb_varint(b, n);
    diag__buf_put(b, data, n);
}

/* A message of n varint fields, given as (field, value) pairs. */
static void diag__pb_message(diag__buf *b, unsigned field, const uint64_t *pairs, size_t n)
{
    size_t i, len = 0;
    for (i = 0; i < n; i++) len += diag__pb_size(pairs[2 * i] << 3) + diag__pb_size(pairs[2 * i + 1]);
    diag__pb_key(b, field, 2);
    diag__pb_varint(b, len);
    for (i = 0; i < n; i++) diag__pb_uint(b, (unsigned)pairs[2 * i], pairs[2 * i + 1]);
}

/* A packed repeated varint field. */
static void diag__pb_packed(diag__buf *b, unsigned field, const uint64_t *v, size_t n)
{
    size_t i, len = 0;
    for (i = 0; i < n; i++) len += diag__pb_size(v[i]);
    diag__pb_key(b, field, 2);
    diag__pb_varint(b, len);
    for (i = 0; i < n; i++) diag__pb_varint(b, v[i]);
}

/* A frame name's function: id 1, 2 ... in the order first seen. */
typedef struct diag__pb_frame {
    const char *name; /* in a row's stack; NULL: an empty slot */
    size_t len;
    uint64_t id;
} diag__pb_frame;

typedef struct diag__pb {
    diag__pb_frame *slots; /* open addressing, at most half full */
    size_t cap, count;
    const diag__pb_frame **by_id; /* [id - 1] */
    uint64_t *locations; /* one sample's, leaf first */
    diag__buf scratch; /* one nested message at a time */
} diag__pb;

/* The frame slot of name, or the empty slot where it goes. */
static diag__pb_frame *diag__pb_slot(diag__pb *p, const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < len; i++) h = (h ^ (unsigned char)name[i]) * 16777619u; /* FNV-1a */
    for (i = h & (p->cap - 1); p->slots[i].name != NULL; i = (i + 1) & (p->cap - 1))
        if (p->slots[i].len == len && memcmp(p->slots[i].name, name, len) == 0) break;
    return &p->slots[i];
}

/* Fills p->locations with the ids of stack's frames, leaf first, giving
   new names theirs; returns how many. */
static size_t diag__pb_frames(diag__pb *p, const char *stack)
{
    size_t n = 0, i;
    while (n < DIAG_MAX_DEPTH) {
        size_t len = strcspn(stack, ";");
        diag__pb_frame *f = diag__pb_slot(p, stack, len);
        if (f->name == NULL) {
            f->name = stack;
            f->len = len;
            f->id = ++p->count;
            p->by_id[f->id - 1] = f;
        }
        p->locations[n++] = f->id;
        if (stack[len] == '\0') break;
        stack += len + 1;
    }
    for (i = 0; i < n / 2; i++) { /* outermost first to leaf first */
        uint64_t id = p->locations[i];
        p->locations[i] = p->locations[n - 1 - i];
        p->locations[n - 1 - i] = id;
    }
    return n;
}

static int diag__pb_init(diag__pb *p, const diag__snapshot *snap)
{
    size_t frames = 1, i;
    memset(p, 0, sizeof *p);
    for (i = 0; i < snap->count; i++) {
        const char *s = snap->rows[i].stack;
        for (frames++; (s = strchr(s, ';')) != NULL; s++) frames++;
    }
    for (p->cap = 64; p->cap < 2 * frames; p->cap *= 2) {
    }
    p->slots = (diag__pb_frame *)diag__alloc_zero(p->cap * sizeof *p->slots);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    p->by_id = (const diag__pb_frame **)DIAG_MALLOC(frames * sizeof *p->by_id);
    p->locations = (uint64_t *)DIAG_MALLOC(DIAG_MAX_DEPTH * sizeof *p->locations);
    return p->slots && p->by_id && p->locations ? 0 : -1;
}

static void diag__pb_free(diag__pb *p)
{
    DIAG_FREE(p->slots);
    DIAG_FREE(p->by_id);
    DIAG_FREE(p->locations);
    DIAG_FREE(p->scratch.data);
}

/* a - b, or 0 below zero: a self wall can shrink as a child's grows. */
static uint64_t diag__pb_less(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

/* The sample of row r, less its values in base (the window's start; NULL:
   none), if it has one: a window leaves out the paths it saw no poll of. */
static void diag__pb_sample(diag__pb *p, diag__buf *out, const diag__row *r, const diag__row *base, int window)
{
    uint64_t values[3], runs[4] = { 1, DIAG__PBS_RUNS, 3, 0 }, open[4] = { 1, DIAG__PBS_OPEN, 3, 0 };
    size_t n;
    values[0] = diag__pb_less(r->polls, base ? base->polls : 0);
    values[1] = diag__pb_less(r->busy, base ? base->busy : 0);
    values[2] = diag__pb_less(r->self_wall, base ? base->self_wall : 0);
    runs[3] = diag__pb_less(r->started, base ? base->started : 0);
    open[3] = r->open;
    if (window && values[0] == 0) return;
    n = diag__pb_frames(p, r->stack);
    p->scratch.len = 0;
    diag__pb_packed(&p->scratch, 1, p->locations, n);
    diag__pb_packed(&p->scratch, 2, values, 3);
    diag__pb_message(&p->scratch, 3, runs, 2);
    diag__pb_message(&p->scratch, 3, open, 2);
    if (!p->scratch.failed) diag__pb_bytes(out, DIAG__PB_SAMPLE, p->scratch.data, p->scratch.len);
    else out->failed = 1;
}

/* The functions and locations of the frames seen, the one mapping they
   are in (the program, its functions known: nothing to symbolize), and
   the string table. */
static void diag__pb_names(diag__pb *p, diag__buf *out)
{
    uint64_t mapping[6] = { 1, 1, 5, 0, 7, 1 }; /* id 1, filename, has_functions */
    char program[DIAG__NAME_MAX + 1];
    size_t i, len = diag__sanitize(diag__program_name(), 0, program);
    mapping[3] = DIAG__PBS_FRAMES + p->count;
    diag__pb_message(out, DIAG__PB_MAPPING, mapping, 3);
    for (i = 0; i < p->count; i++) {
        uint64_t id = i + 1, name = DIAG__PBS_FRAMES + i;
        uint64_t function[6] = { 1, 0, 2, 0, 3, 0 }, line[2] = { 1, 0 };
        function[1] = id;
        function[3] = function[5] = name;
        line[1] = id;
        diag__pb_message(out, DIAG__PB_FUNCTION, function, 3);
        p->scratch.len = 0;
        diag__pb_uint(&p->scratch, 1, id);
        diag__pb_uint(&p->scratch, 2, 1); /* the mapping */
        diag__pb_message(&p->scratch, 4, line, 1); /* Location.line: one Line, its function */
        if (!p->scratch.failed) diag__pb_bytes(out, DIAG__PB_LOCATION, p->scratch.data, p->scratch.len);
    }
    for (i = 0; i < sizeof diag__pb_strings / sizeof diag__pb_strings[0]; i++)
        diag__pb_bytes(out, DIAG__PB_STRING, diag__pb_strings[i], strlen(diag__pb_strings[i]));
    for (i = 0; i < p->count; i++) diag__pb_bytes(out, DIAG__PB_STRING, p->by_id[i]->name, p->by_id[i]->len);
    diag__pb_bytes(out, DIAG__PB_STRING, program, len);
    if (p->scratch.failed) out->failed = 1;
}

/* The profile of snap into out, uncompressed. base: the snapshot at the
   start of a window (rows sorted by stack, as snap's), whose values are
   taken away; then only the paths polled in the window are in it. NULL:
   snap's values as they are, every row (those of the folded files).
   time_ns: CLOCK_REALTIME at the start; duration_ns: how long. */
static void diag__pprof_raw(diag__buf *out, const diag__snapshot *snap, const diag__snapshot *base, int window,
                            uint64_t time_ns, uint64_t duration_ns)
{
    static const uint64_t types[3][4] = { { 1, DIAG__PBS_POLLS, 2, DIAG__PBS_COUNT },
                                          { 1, DIAG__PBS_BUSY, 2, DIAG__PBS_NS },
                                          { 1, DIAG__PBS_WALL, 2, DIAG__PBS_NS } };
    diag__pb p;
    size_t i, j = 0;
    if (diag__pb_init(&p, snap) != 0) {
        diag__pb_free(&p);
        out->failed = 1;
        return;
    }
    for (i = 0; i < 3; i++) diag__pb_message(out, DIAG__PB_SAMPLE_TYPE, types[i], 2);
    for (i = 0; i < snap->count; i++) {
        const diag__row *r = &snap->rows[i], *b = NULL;
        while (base && j < base->count && strcmp(base->rows[j].stack, r->stack) < 0) j++;
        if (base && j < base->count && strcmp(base->rows[j].stack, r->stack) == 0) b = &base->rows[j];
        diag__pb_sample(&p, out, r, b, window);
    }
    diag__pb_names(&p, out);
    diag__pb_uint(out, DIAG__PB_TIME, time_ns);
    diag__pb_uint(out, DIAG__PB_DURATION, duration_ns);
    diag__pb_message(out, DIAG__PB_PERIOD_TYPE, types[0], 2);
    diag__pb_uint(out, DIAG__PB_PERIOD, 1);
    diag__pb_uint(out, DIAG__PB_DEFAULT_TYPE, DIAG__PBS_BUSY);
    diag__pb_free(&p);
}

/* CRC-32 of gzip (the reflected polynomial 0xEDB88320). */
static uint32_t diag__crc32(const unsigned char *data, size_t len)
{
    uint32_t table[256], crc = 0xFFFFFFFFu;
    unsigned i, k;
    for (i = 0; i < 256; i++) {
        uint32_t c = i;
        for (k = 0; k < 8; k++) c = c & 1u ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    while (len--) crc = table[(crc ^ *data++) & 0xFFu] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

static void diag__le32(diag__buf *b, uint32_t v)
{
    char bytes[4];
    int i;
    for (i = 0; i < 4; i++) bytes[i] = (char)(v >> (8 * i) & 0xFFu);
    diag__buf_put(b, bytes, 4);
}

/* Deflate's bits, first bit first, into out. */
typedef struct diag__bits {
    diag__buf *out;
    uint64_t acc;
    unsigned n;
} diag__bits;

static void diag__bits_put(diag__bits *w, uint32_t v, unsigned n)
{
    w->acc |= (uint64_t)v << w->n;
    for (w->n += n; w->n >= 8; w->n -= 8) {
        char byte = (char)(w->acc & 0xFFu);
        diag__buf_put(w->out, &byte, 1);
        w->acc >>= 8;
    }
}

/* A Huffman code goes out from its top bit down. */
static void diag__bits_code(diag__bits *w, uint32_t code, unsigned n)
{
    uint32_t reversed = 0;
    unsigned i;
    for (i = 0; i < n; i++) reversed |= ((code >> i) & 1u) << (n - 1 - i);
    diag__bits_put(w, reversed, n);
}

/* A literal byte, the end (256) or a length's code (257 to 285), in
   deflate's fixed code: 8 bits from 0x30, 9 from 0x190, 7 from 0, 8 from
   0xC0, for symbols from 0, 144, 256 and 280. */
static void diag__deflate_symbol(diag__bits *w, unsigned sym)
{
    if (sym < 144) diag__bits_code(w, 0x30 + sym, 8);
    else if (sym < 256) diag__bits_code(w, 0x190 + sym - 144, 9);
    else if (sym < 280) diag__bits_code(w, sym - 256, 7);
    else diag__bits_code(w, 0xC0 + sym - 280, 8);
}

/* A value from its codes' table: code i covers base(i) and the next
   2^extra(i) - 1, extra(i) = 0 below `first`, then (i - first) / step + 1,
   base(0) = base0. *code and the extra bits' value back; the caller
   writes both. */
static unsigned diag__deflate_bucket(unsigned value, unsigned base0, unsigned first, unsigned step, unsigned *extra,
                                     unsigned *offset)
{
    unsigned i, base = base0;
    for (i = 0;; i++) {
        *extra = i < first ? 0 : (i - first) / step + 1;
        if (value < base + (1u << *extra)) break;
        base += 1u << *extra;
    }
    *offset = value - base;
    return i;
}

/* A match: length 3 to 258 at distance 1 to 32768. */
static void diag__deflate_match(diag__bits *w, unsigned len, unsigned dist)
{
    unsigned extra, offset, code;
    if (len == 258) { /* its own code: 284's range would hold it too, but stops at 257 */
        diag__deflate_symbol(w, 285);
    } else {
        code = diag__deflate_bucket(len, 3, 8, 4, &extra, &offset);
        diag__deflate_symbol(w, 257 + code);
        diag__bits_put(w, offset, extra);
    }
    code = diag__deflate_bucket(dist, 1, 4, 2, &extra, &offset);
    diag__bits_code(w, code, 5);
    diag__bits_put(w, offset, extra);
}

#define DIAG__DEFLATE_HASH_BITS 15

/* data as one deflate block of fixed codes: each position looks for the
   last one whose next three bytes hashed alike, within 32 KiB, and takes
   the match if it is 3 bytes or more (greedy, one candidate). A profile
   of 4000 paths shrinks to about a third (zlib -9: a quarter). */
static void diag__deflate(diag__buf *out, const unsigned char *data, size_t len)
{
    diag__bits w;
    uint32_t *last = (uint32_t *)DIAG_MALLOC(((size_t)1 << DIAG__DEFLATE_HASH_BITS) * sizeof *last);
    size_t i = 0;
    if (last == NULL) {
        out->failed = 1;
        return;
    }
    memset(last, 0xFF, ((size_t)1 << DIAG__DEFLATE_HASH_BITS) * sizeof *last);
    w.out = out;
    w.acc = 0;
    w.n = 0;
    diag__bits_put(&w, 3, 3); /* BFINAL, then BTYPE 01: fixed codes */
    while (i < len) {
        size_t match = 0, dist = 0, k;
        for (k = i; k < i + 1 || k < i + match; k++) { /* hash every position, the matched ones too */
            uint32_t h, before;
            if (k + 3 > len) break;
            h = ((uint32_t)data[k] << 16 | (uint32_t)data[k + 1] << 8 | data[k + 2]) * 2654435761u >>
                (32 - DIAG__DEFLATE_HASH_BITS);
            before = last[h];
            last[h] = (uint32_t)k;
            if (k > i || before == UINT32_MAX || i - before > 32768) continue;
            while (match < 258 && i + match < len && data[before + match] == data[i + match]) match++;
            if (match < 3) match = 0;
            dist = i - before;
        }
        if (match) diag__deflate_match(&w, (unsigned)match, (unsigned)dist);
        else diag__deflate_symbol(&w, data[i]);
        i += match ? match : 1;
    }
    diag__deflate_symbol(&w, 256);
    diag__bits_put(&w, 0, 7); /* to the byte's end */
    DIAG_FREE(last);
}

/* data as a gzip member (RFC 1952) of one deflate block. */
static void diag__gzip(diag__buf *out, const char *data, size_t len)
{
    static const char header[10] = { 0x1f, (char)0x8b, 8, 0, 0, 0, 0, 0, 0, (char)0xff }; /* deflate, no name, OS unknown */
    diag__buf_put(out, header, sizeof header);
    diag__deflate(out, (const unsigned char *)data, len);
    diag__le32(out, diag__crc32((const unsigned char *)data, len));
    diag__le32(out, (uint32_t)len);
}

/* The gzipped profile (see diag__pprof_raw) into out. */
static void diag__pprof(diag__buf *out, const diag__snapshot *snap, const diag__snapshot *base, int window,
                        uint64_t time_ns, uint64_t duration_ns)
{
    diag__buf raw = { NULL, 0, 0, 0 };
    diag__buf_put(&raw, "", 0);
    diag__pprof_raw(&raw, snap, base, window, time_ns, duration_ns);
    if (raw.failed) out->failed = 1;
    else diag__gzip(out, raw.data, raw.len);
    DIAG_FREE(raw.data);
}

/* With DIAGNOSE_PPROF=1: PREFIX.pb.gz, snap's values as they are, over the
   time since the start or the last reset. */
static int diag__pprof_write(const char *prefix, const diag__snapshot *snap, char *failed_path, size_t cap)
{
    diag__buf b = { NULL, 0, 0, 0 };
    if (!diag__rt->pprof) return 0;
    snprintf(failed_path, cap, "%s.pb.gz", prefix);
    diag__pprof(&b, snap, NULL, 0, diag__realtime_ns() - snap->elapsed_ns, snap->elapsed_ns);
    return diag__write_buf(failed_path, &b);
}

/* >>page: the HTML page DIAGNOSE_HTTP serves at / ----------------------------- */

/* One snapshot as one page that needs nothing from the network: what is
   pending and stuck, a flame graph of the chosen metric (the SVG of
   diag__svg_write, inside the page), and the summary table, all in the
   HTML as served. The page asks to be loaded again every `refresh`
   seconds (0: never); links choose the metric. */
#define DIAG__PAGE_REFRESH 5 /* s: how often the page reloads itself, unless ?refresh= says */
static const char diag__page_style[] =
    "body{font:14px sans-serif;margin:1em 2em;color:#222}h1{font-size:1.3em;margin:0 0 .3em}"
    "h2{font-size:1.1em;margin:1.2em 0 .3em}pre{font:12px monospace;background:#f4f4f4;padding:.6em;"
    "overflow-x:auto;margin:0}nav{margin-bottom:.4em}nav a,nav b{margin-right:.8em}"
    ".stuck{color:#b00;font-weight:bold}#flame svg{max-width:100%;height:auto}";

/* The page's own address with another metric or refresh. */
static void diag__page_link(diag__buf *b, int metric, unsigned refresh)
{
    diag__buf_str(b, "/?metric=");
    diag__buf_str(b, diag__metric_names[metric]);
    diag__buf_str(b, "&amp;refresh=");
    diag__buf_u64(b, refresh);
}

/* The heading: the program, and the window's paths, threads and length. */
static void diag__page_head(diag__buf *b, const diag__snapshot *snap, int metric, unsigned refresh)
{
    char name[DIAG__NAME_MAX + 1], elapsed[16];
    diag__sanitize(diag__program_name(), 0, name);
    diag__format_ns(elapsed, sizeof elapsed, snap->elapsed_ns);
    diag__buf_str(b, "<h1>diagnose.h: ");
    diag__svg_escape(b, name, strlen(name));
    diag__buf_str(b, " (pid ");
    diag__buf_u64(b, (uint64_t)getpid());
    diag__buf_str(b, ")</h1>\n<p id=\"summary\">");
    diag__buf_u64(b, snap->count);
    diag__buf_str(b, snap->count == 1 ? " path, " : " paths, ");
    diag__buf_u64(b, snap->threads);
    diag__buf_str(b, snap->threads == 1 ? " thread, " : " threads, ");
    diag__buf_str(b, elapsed);
    diag__buf_str(b, " since the start or the last diag_reset. ");
    diag__buf_str(b, refresh ? "This page reloads itself (<a href=\"" : "Not reloading (<a href=\"");
    diag__page_link(b, metric, refresh ? 0 : DIAG__PAGE_REFRESH);
    diag__buf_str(b, refresh ? "\">stop</a>).</p>\n" : "\">reload every few seconds</a>).</p>\n");
}

/* The pending lines, as PREFIX.pending.txt has them; stuck ones stand out. */
static void diag__page_pending(diag__buf *b, const diag__snapshot *snap)
{
    diag__buf text = { NULL, 0, 0, 0 };
    const char *line;
    diag__pending_text(&text, snap);
    diag__buf_str(b, "<h2>Pending and stuck</h2>\n");
    if (text.failed || text.len == 0) {
        diag__buf_str(b, text.failed ? "<p>(out of memory)</p>\n" : "<p id=\"pending\">No run is open.</p>\n");
        DIAG_FREE(text.data);
        return;
    }
    diag__buf_str(b, "<pre id=\"pending\">");
    for (line = text.data; *line; line = strchr(line, '\n') + 1) {
        size_t len = (size_t)(strchr(line, '\n') - line);
        int stuck = len >= 7 && memcmp(line + len - 7, ", stuck", 7) == 0;
        diag__buf_str(b, stuck ? "<span class=\"stuck\">" : "");
        diag__svg_escape(b, line, len);
        diag__buf_str(b, stuck ? "</span>\n" : "\n");
    }
    diag__buf_str(b, "</pre>\n");
    DIAG_FREE(text.data);
}

/* The links that choose the metric, and its flame graph: the SVG of
   diag__svg_write inside the page, without its XML declaration. */
static void diag__page_flame(diag__buf *b, const diag__snapshot *snap, int metric, unsigned refresh)
{
    diag__buf svg = { NULL, 0, 0, 0 };
    const char *start;
    int m, last = diag__has_wakes(snap) ? DIAG__SCHED : DIAG__WALL;
    diag__buf_str(b, "<h2>Flame graph</h2>\n<nav id=\"metrics\">");
    for (m = 0; m <= DIAG__OPEN; m++) {
        if (m > last && m != DIAG__OPEN) continue;
        diag__buf_str(b, m == metric ? "<b>" : "<a href=\"");
        if (m != metric) {
            diag__page_link(b, m, refresh);
            diag__buf_str(b, "\">");
        }
        diag__buf_str(b, diag__svg_titles[m]);
        diag__buf_str(b, m == metric ? "</b> " : "</a> ");
    }
    diag__svg_write(&svg, snap, metric);
    start = svg.data ? strstr(svg.data, "<svg") : NULL;
    diag__buf_str(b, "</nav>\n<div id=\"flame\">\n");
    diag__buf_str(b, start ? start : "<p>(out of memory)</p>\n");
    diag__buf_str(b, "</div>\n");
    if (svg.failed) b->failed = 1;
    DIAG_FREE(svg.data);
}

/* The summary table's rows and lints, and links to the files. */
static void diag__page_table(diag__buf *b, diag__snapshot *snap)
{
    static const char *const files[] = { "polls.folded", "busy.folded", "wall.folded", "pending.txt",
                                         "busy.svg", "debug/pprof/profile?seconds=30" };
    size_t len = 0, i;
    char *text = diag__print_text(diag__print_rows, snap, "", &len);
    diag__buf_str(b, "<h2>Table</h2>\n<pre id=\"table\">");
    if (text) diag__svg_escape(b, text, len);
    else b->failed = 1;
    free(text); /* open_memstream's */
    diag__buf_str(b, "</pre>\n<p id=\"files\">The same, as files:");
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        diag__buf_str(b, " <a href=\"/");
        diag__buf_str(b, files[i]);
        diag__buf_str(b, "\">");
        diag__buf_str(b, i + 1 < sizeof files / sizeof files[0] ? files[i] : "pprof (30 s)");
        diag__buf_str(b, "</a>");
    }
    diag__buf_str(b, "</p>\n");
}

/* The page: metric is the flame graph's, refresh its reload period (s). */
static void diag__page(diag__buf *b, diag__snapshot *snap, int metric, unsigned refresh)
{
    diag__buf_str(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    if (refresh) {
        diag__buf_str(b, "<meta http-equiv=\"refresh\" content=\"");
        diag__buf_u64(b, refresh);
        diag__buf_str(b, "\">\n");
    }
    diag__buf_str(b, "<title>diagnose.h</title>\n<style>");
    diag__buf_str(b, diag__page_style);
    diag__buf_str(b, "</style></head>\n<body>\n");
    diag__page_head(b, snap, metric, refresh);
    diag__page_pending(b, snap);
    diag__page_flame(b, snap, metric, refresh);
    diag__page_table(b, snap);
    diag__buf_str(b, "</body></html>\n");
}

/* >>dump: snapshot, write, free; one dump at a time -------------------------- */

enum { DIAG__FOLDED_FILES = 1, DIAG__SVG_FILES = 2 }; /* what a set holds */

/* One dump's files at prefix, all or none (see diag__set): the folded,
   pending, pprof and trace files, the SVGs (with PREFIX.pending.svg), or both.
   -1 with errno and failed_path set. */
static int diag__write_set(const char *prefix, diag__snapshot *snap, int what, char *failed_path, size_t cap)
{
    diag__set set;
    int rc = 0;
    set.n = 0;
    diag__set_now = &set;
    if (what & DIAG__FOLDED_FILES) {
        rc = diag__write_metrics(prefix, "folded", diag__folded, snap, failed_path, cap);
        if (rc == 0) rc = diag__write_pending(prefix, snap, failed_path, cap);
        if (rc == 0) rc = diag__pprof_write(prefix, snap, failed_path, cap);
        if (rc == 0) rc = diag__trace_write(prefix, snap->ns_per_tick, failed_path, cap);
    }
    if (rc == 0 && (what & DIAG__SVG_FILES)) {
        rc = diag__write_metrics(prefix, "svg", diag__svg_write, snap, failed_path, cap);
        if (rc == 0) rc = diag__write_pending_svg(prefix, snap, failed_path, cap);
    }
    diag__set_now = NULL;
    return diag__set_end(&set, rc, failed_path, cap);
}

/* What the exit and numbered snapshots write: the folded set, and the SVGs with DIAGNOSE_SVG. */
static int diag__write_all(const char *prefix, diag__snapshot *snap, char *failed_path, size_t cap)
{
    return diag__write_set(prefix, snap, DIAG__FOLDED_FILES | (diag__rt->svg ? DIAG__SVG_FILES : 0), failed_path, cap);
}

/* Writes one snapshot's files, under diag__rt->dump_lock: prefix and arg are
   what diag__snapshot_write was given. Returns 0, or -1 with errno set. */
typedef int (*diag__files_writer)(diag__snapshot *snap, const char *prefix, int arg);

/* Snapshot, write, free: every writer of files (diag_dump, diag_write_svg,
   numbered snapshots, exit, unload) holds diag__rt->dump_lock from the
   snapshot to the last rename: a prefix's files come from one snapshot, the
   last dump wins, no two share a temporary file. with_hist: for the table.
   -1 with errno set if no snapshot was taken (ETIMEDOUT: the exit gave up), else write's value. */
static int diag__snapshot_write(int with_hist, diag__files_writer write, const char *prefix, int arg)
{
    diag__snapshot snap;
    int rc = -1;
    diag__inside_enter();
    if (diag__dump_lock_take() != 0) {
        errno = ETIMEDOUT;
    } else {
        if (diag__snapshot_read(&snap, with_hist) == 0) {
            rc = write(&snap, prefix, arg);
            diag__snapshot_free(&snap);
        }
        pthread_mutex_unlock(&diag__rt->dump_lock);
    }
    diag__inside_leave();
    return rc;
}

/* A writer: the files at prefix (NULL: DIAGNOSE_OUT), failures said on stderr; -1 only if no prefix can be made. */
static int diag__write_or_warn(diag__snapshot *snap, const char *prefix, int arg)
{
    char resolved[4096], failed[4200];
    (void)arg;
    if (diag__resolve_prefix(prefix, resolved, sizeof resolved) != 0) return -1;
    if (diag__write_set(resolved, snap, DIAG__FOLDED_FILES, failed, sizeof failed) != 0)
        diag__warn("diagnose.h: cannot write %s: %s\n", failed, strerror(errno));
    return 0;
}

/* A writer: diag_dump's and diag_write_svg's files (what: DIAG__*_FILES) at prefix. */
static int diag__write_files(diag__snapshot *snap, const char *prefix, int what)
{
    char failed[4200];
    return diag__write_set(prefix, snap, what, failed, sizeof failed);
}

/* diag_dump and diag_write_svg: the files of `what` at prefix. */
static int diag__dump_with(const char *prefix, int what)
{
    char resolved[4096];
    if (!diag__on()) return 0;
    if (diag__resolve_prefix(prefix, resolved, sizeof resolved) != 0) return -1;
    return diag__snapshot_write(0, diag__write_files, resolved, what);
}

/* >>http: DIAGNOSE_HTTP, the profile served by the snapshot thread ---------- */

/* DIAGNOSE_HTTP=[host:]port makes the snapshot thread (>>snapshots) an
   HTTP/1.1 server too: it polls the listening socket and the connections
   with its pipe, and never waits for a client. One request a connection,
   answered with "Connection: close". Each answer comes from a snapshot of
   its own (diag__snapshot_read: the runtime lock for as long as a dump
   holds it; never the dump lock), built in memory, then sent as fast as
   the client reads it. Nothing here runs on a polling thread.
   /debug/pprof/profile?seconds=N takes a snapshot at once and another N
   seconds later, and answers with the difference (diag__pprof); a
   diag_reset between the two leaves the window from the reset on.
   Paths are looked up by diag__http_find and nowhere else: none reaches
   the file system. A request that is not GET or HEAD, whose Host names
   another server (DNS rebinding: a web page's script that reached this
   port under another name), or that is too long or not HTTP, is refused
   (diag__http_parse). The other limits are these: */
#define DIAG__HTTP_CONNS 64       /* connections at once; a new one closes the oldest still reading */
#define DIAG__HTTP_HEAD_MAX 8192  /* bytes of a request head; more: 431 */
#define DIAG__HTTP_READ_NS 5000000000ull   /* from accept to the head's end, at most */
#define DIAG__HTTP_WRITE_NS 10000000000ull /* a client that reads none of its answer this long is closed */
#define DIAG__HTTP_LINGER_NS 1000000000ull /* after the answer, what the client still sends is read, then closed */
#define DIAG__HTTP_SECONDS 30     /* a pprof window's length without ?seconds=, as in Go */
#define DIAG__HTTP_SECONDS_MAX 300
#ifdef MSG_NOSIGNAL
#define DIAG__NOSIGNAL MSG_NOSIGNAL
#else
#define DIAG__NOSIGNAL 0 /* the thread blocks every signal: a SIGPIPE stays pending there */
#endif

enum { DIAG__HTTP_READING, DIAG__HTTP_WINDOW, DIAG__HTTP_WRITING, DIAG__HTTP_LINGER, DIAG__HTTP_CLOSED };

typedef struct diag__http_conn {
    int fd, state;
    unsigned slot;            /* its place in diag__http_state.fds */
    int head_only;            /* HEAD: the answer without its body */
    uint64_t since, deadline; /* CLOCK_MONOTONIC ns: accepted (a window: its start); the state's end */
    size_t got, sent, drained;
    diag__buf out;            /* the answer */
    diag__snapshot base;      /* a pprof window's first snapshot */
    uint64_t base_time;       /* CLOCK_REALTIME ns of it */
    char local[64];           /* the address the client reached, as a Host header names it */
    char head[DIAG__HTTP_HEAD_MAX + 1];
} diag__http_conn;

/* The server: the snapshot thread's alone once start-up has made it. fds
   lists every descriptor it holds (-1: none) for a forked child to close:
   a slot is cleared before its descriptor is closed. */
struct diag__http_state {
    int fds[1 + DIAG__HTTP_CONNS]; /* atomic: [0] the listening socket, then the connections' */
    unsigned port;                 /* the port bound */
    unsigned nconns;
    diag__http_conn *conns[DIAG__HTTP_CONNS];
    uint64_t accept_at;            /* out of descriptors: accept again from then on (0: now) */
    uint64_t windows;              /* atomic: pprof windows opened so far (tests wait for one) */
};

/* ---- the request --------------------------------------------------------- */

/* A request head, as far as it has come (see diag__http_parse). */
typedef struct diag__http_request {
    int status;         /* 0: not complete yet; 200: route it; else the status to answer */
    int head_only;      /* HEAD */
    const char *target; /* path and query, target_len bytes */
    size_t target_len;
} diag__http_request;

static int diag__http_tchar(unsigned char c) /* a byte of a token: a method or a header's name */
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int diag__http_lower(char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* The n bytes at s are word, in any case (ASCII). */
static int diag__http_same(const char *s, size_t n, const char *word)
{
    size_t i;
    if (strlen(word) != n) return 0;
    for (i = 0; i < n; i++)
        if (diag__http_lower(s[i]) != diag__http_lower(word[i])) return 0;
    return 1;
}

/* A line's length without its CR LF or LF (nl: its '\n'). */
static size_t diag__http_line_len(const char *line, const char *nl)
{
    return (size_t)(nl - line) - (nl > line && nl[-1] == '\r');
}

/* The first line so far (no newline yet) already starts no request. */
static int diag__http_garbage(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && diag__http_tchar((unsigned char)p[i])) i++;
    if (i < n && (i == 0 || p[i] != ' ')) return 1;
    for (; i < n; i++)
        if (((unsigned char)p[i] < ' ' && p[i] != '\r') || p[i] == 0x7f) return 1;
    return 0;
}

/* "METHOD /target HTTP/1.x": 0, with the target and the method's status
   (200 for GET and HEAD, else 405) in rq; or 400. */
static int diag__http_request_line(diag__http_request *rq, const char *line, size_t len)
{
    size_t m = 0, t;
    while (m < len && diag__http_tchar((unsigned char)line[m])) m++;
    if (m == 0 || m + 1 >= len || line[m] != ' ' || line[m + 1] != '/') return 400;
    for (t = m + 1; t < len && (unsigned char)line[t] > ' ' && line[t] != 0x7f; t++) {
    }
    if (len - t != 9 || line[t] != ' ' || memcmp(line + t + 1, "HTTP/1.", 7) != 0 || line[len - 1] < '0' ||
        line[len - 1] > '9')
        return 400;
    rq->target = line + m + 1;
    rq->target_len = t - m - 1;
    rq->head_only = m == 4 && memcmp(line, "HEAD", 4) == 0;
    rq->status = (m == 3 && memcmp(line, "GET", 3) == 0) || rq->head_only ? 200 : 405;
    return 0;
}

/* "Name: value": 0, the Host header's value (blanks around it left out)
   in *host; 400 for a line that is no header, or a second Host. */
static int diag__http_header(const char *line, size_t len, const char **host, size_t *host_len)
{
    size_t n = 0, i;
    while (n < len && diag__http_tchar((unsigned char)line[n])) n++;
    if (n == 0 || n == len || line[n] != ':') return 400;
    for (i = n + 1; i < len; i++)
        if (((unsigned char)line[i] < ' ' && line[i] != '\t') || line[i] == 0x7f) return 400;
    if (!diag__http_same(line, n, "host")) return 0;
    if (*host != NULL) return 400;
    for (i = n + 1; i < len && (line[i] == ' ' || line[i] == '\t'); i++) {
    }
    while (len > i && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    *host = line + i;
    *host_len = len - i;
    return 0;
}

/* A Host header's value names this server: localhost, 127.0.0.1, [::1],
   the host of DIAGNOSE_HTTP or the address the client reached (local),
   in any case, with or without a port. Not 0.0.0.0 or [::]: a client
   reaches an address, and a web page that sends a request to 0.0.0.0
   reaches this machine's loopback. */
static int diag__http_host_ok(const char *h, size_t n, const char *local)
{
    static const unsigned char any[16] = { 0 };
    const char *names[5] = { "localhost", "127.0.0.1", "[::1]", NULL, NULL };
    const char *end = n > 0 && h[0] == '[' ? (const char *)memchr(h, ']', n) : NULL;
    const char *colon = (const char *)memchr(h, ':', n);
    size_t name = end ? (size_t)(end - h) + 1 : colon ? (size_t)(colon - h) : n, i;
    if (memcmp(diag__rt->http.ip, any, sizeof any) != 0) names[3] = diag__rt->http.host;
    if (strcmp(local, "0.0.0.0") != 0 && strcmp(local, "[::]") != 0) names[4] = local;
    if (n > 0 && h[0] == '[' && end == NULL) return 0;
    if (name < n && (h[name] != ':' || name + 1 == n)) return 0;
    for (i = name + 1; i < n; i++)
        if (h[i] < '0' || h[i] > '9') return 0;
    for (i = 0; i < 5; i++)
        if (names[i] && diag__http_same(h, name, names[i])) return 1;
    return 0;
}

/* Reads a request head, len bytes so far, into rq. Its status stays 0
   while the head is not complete; otherwise it is the answer's, which
   more bytes never change: 400 not HTTP/1.x (as soon as the first bytes
   show it), 405 not GET or HEAD, 403 a Host header that names another
   server (local: see diag__http_host_ok), 431 no end of the head within
   DIAG__HTTP_HEAD_MAX bytes, 200 to route rq->target. No allocation: a
   pure function of its input, fuzzed by tests/fuzz_http.c. */
static void diag__http_parse(diag__http_request *rq, const char *head, size_t len, const char *local)
{
    const char *end = head + (len < DIAG__HTTP_HEAD_MAX ? len : DIAG__HTTP_HEAD_MAX), *line, *nl, *host = NULL;
    size_t host_len = 0;
    int method;
    memset(rq, 0, sizeof *rq);
    nl = (const char *)memchr(head, '\n', (size_t)(end - head));
    if (nl == NULL) {
        rq->status = diag__http_garbage(head, (size_t)(end - head)) ? 400 : len > DIAG__HTTP_HEAD_MAX ? 431 : 0;
        return;
    }
    if (diag__http_request_line(rq, head, diag__http_line_len(head, nl)) != 0) {
        rq->status = 400;
        return;
    }
    method = rq->status;
    rq->status = 0;
    for (line = nl + 1;; line = nl + 1) {
        size_t n;
        nl = (const char *)memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL) {
            rq->status = len > DIAG__HTTP_HEAD_MAX ? 431 : 0;
            return;
        }
        n = diag__http_line_len(line, nl);
        if (n == 0) break;
        if (diag__http_header(line, n, &host, &host_len) != 0) {
            rq->status = 400;
            return;
        }
    }
    rq->status = method != 200 ? method : host && !diag__http_host_ok(host, host_len, local) ? 403 : 200;
}

/* The value of query parameter `name` (v, *n bytes), or NULL. */
static const char *diag__http_param(const char *q, size_t qn, const char *name, size_t *n)
{
    size_t k = strlen(name);
    const char *end = q + qn;
    while (q < end) {
        const char *amp = (const char *)memchr(q, '&', (size_t)(end - q)), *stop = amp ? amp : end;
        if ((size_t)(stop - q) > k && memcmp(q, name, k) == 0 && q[k] == '=') {
            *n = (size_t)(stop - q) - k - 1;
            return q + k + 1;
        }
        if (amp == NULL) break;
        q = amp + 1;
    }
    return NULL;
}

/* Query parameter `name` as a whole number from 0 to max; absent: dflt;
   anything else: -1. */
static long diag__http_number(const char *q, size_t qn, const char *name, long dflt, long max)
{
    size_t n, i;
    const char *v = diag__http_param(q, qn, name, &n);
    long value = 0;
    if (v == NULL) return dflt;
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || value > max) return -1;
        value = value * 10 + (v[i] - '0');
    }
    return n > 0 && value <= max ? value : -1;
}

/* ?metric=: polls, busy, wall, sched or pending (open runs); absent:
   dflt; another word: -1. */
static int diag__http_metric(const char *q, size_t qn, int dflt)
{
    size_t n;
    const char *v = diag__http_param(q, qn, "metric", &n);
    int m;
    if (v == NULL) return dflt;
    for (m = 0; m <= DIAG__OPEN; m++)
        if (diag__http_same(v, n, diag__metric_names[m])) return m;
    return -1;
}

/* ---- the answer ---------------------------------------------------------- */

enum { DIAG__SERVE_PAGE, DIAG__SERVE_FOLDED, DIAG__SERVE_SVG, DIAG__SERVE_PENDING, DIAG__SERVE_TRACE,
       DIAG__SERVE_PPROF, DIAG__SERVE_ERROR };
static const char *const diag__http_types[] = { "text/html; charset=utf-8", "text/plain; charset=utf-8",
                                                "image/svg+xml", "text/plain; charset=utf-8", "application/json",
                                                "application/octet-stream", "text/plain; charset=utf-8" };

/* What the path serves (DIAG__SERVE_*, with *metric), or -1 (404). These
   are all the paths there are: /, /trace.json, /debug/pprof/profile, and
   /NAME.folded and /NAME.svg for each of polls, busy, wall, sched and
   pending, and /pending.txt. */
static int diag__http_find(const char *path, size_t n, int *metric)
{
    static const char *const ends[] = { ".folded", ".svg", ".txt" };
    static const int serves[] = { DIAG__SERVE_FOLDED, DIAG__SERVE_SVG, DIAG__SERVE_PENDING };
    int m, e;
    *metric = DIAG__BUSY;
    if (n == 1 && path[0] == '/') return DIAG__SERVE_PAGE;
    if (n == 11 && memcmp(path, "/trace.json", n) == 0) return DIAG__SERVE_TRACE;
    if (n == 20 && memcmp(path, "/debug/pprof/profile", n) == 0) return DIAG__SERVE_PPROF;
    for (m = 0; m <= DIAG__OPEN; m++) {
        size_t k = strlen(diag__metric_names[m]);
        for (e = 0; e < 3 && n > k + 1 && path[0] == '/' && memcmp(path + 1, diag__metric_names[m], k) == 0; e++) {
            if (n != k + 1 + strlen(ends[e]) || memcmp(path + k + 1, ends[e], n - k - 1) != 0) continue;
            *metric = m;
            return e < 2 || m == DIAG__OPEN ? serves[e] : -1;
        }
    }
    return -1;
}

static const char *diag__http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Internal Server Error";
    }
}

/* The answer, to send: status, the headers every answer has, and the
   body unless the request was HEAD. */
static void diag__http_answer(diag__http_conn *c, int status, int serve, const char *body, size_t len)
{
    char head[700];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %lu\r\n%s%sCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: default-src 'none'; "
                     "style-src 'unsafe-inline'; script-src 'unsafe-inline'\r\nConnection: close\r\n\r\n",
                     status, diag__http_reason(status), diag__http_types[serve], (unsigned long)len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     serve == DIAG__SERVE_PPROF ? "Content-Disposition: attachment; filename=\"profile.pb.gz\"\r\n" : "");
    c->out.len = 0;
    diag__buf_put(&c->out, head, (size_t)n);
    if (!c->head_only) diag__buf_put(&c->out, body, len);
    c->state = DIAG__HTTP_WRITING;
    c->sent = 0;
    c->deadline = diag__clock_ns() + DIAG__HTTP_WRITE_NS;
}

/* An answer that is not 200: its status, and a line that says why. */
static void diag__http_fail(diag__http_conn *c, int status)
{
    static const struct { int status; const char *why; } whys[] = {
        { 400, "not a request this server reads" },
        { 403, "the Host header names another server (see DIAGNOSE_HTTP in docs/http.md)" },
        { 404, "no such page: try /" },
        { 405, "only GET and HEAD" },
        { 431, "the request head is over 8 KiB" },
        { 503, "too many connections" },
    };
    char text[200];
    const char *why = "out of memory, or no snapshot";
    size_t i;
    for (i = 0; i < sizeof whys / sizeof whys[0]; i++)
        if (whys[i].status == status) why = whys[i].why;
    snprintf(text, sizeof text, "%d %s: %s\n", status, diag__http_reason(status), why);
    diag__http_answer(c, status, DIAG__SERVE_ERROR, text, strlen(text));
}

/* The answer to a path other than the pprof window's, from a snapshot
   taken now; q: the query. */
static void diag__http_serve_now(diag__http_conn *c, int serve, int metric, const char *q, size_t qn)
{
    diag__snapshot snap;
    diag__buf body = { NULL, 0, 0, 0 };
    int page = serve == DIAG__SERVE_PAGE;
    long refresh = page ? diag__http_number(q, qn, "refresh", DIAG__PAGE_REFRESH, 3600) : 0;
    if (page) metric = diag__http_metric(q, qn, metric);
    if (metric < 0 || refresh < 0) {
        diag__http_fail(c, 400);
        return;
    }
    if (diag__snapshot_read(&snap, page) != 0) {
        diag__http_fail(c, 500);
        return;
    }
    diag__buf_put(&body, "", 0);
    if (!page && ((metric == DIAG__SCHED && !diag__has_wakes(&snap)) ||
                  (serve == DIAG__SERVE_TRACE && diag__rt->trace->n == 0)))
        metric = -1; /* what a dump would not write either */
    else if (page) diag__page(&body, &snap, metric, (unsigned)refresh);
    else if (serve == DIAG__SERVE_FOLDED) diag__folded(&body, &snap, metric);
    else if (serve == DIAG__SERVE_SVG) diag__svg_write(&body, &snap, metric);
    else if (serve == DIAG__SERVE_PENDING) diag__pending_text(&body, &snap);
    else if (diag__trace_build(&body, snap.ns_per_tick) != 0) body.failed = 1;
    diag__snapshot_free(&snap);
    if (metric < 0) diag__http_fail(c, 404);
    else if (body.failed) diag__http_fail(c, 500);
    else diag__http_answer(c, 200, serve, body.data, body.len);
    DIAG_FREE(body.data);
}

/* /debug/pprof/profile?seconds=N: the window's first snapshot, now. */
static void diag__http_window_open(diag__http_conn *c, const char *q, size_t qn)
{
    long seconds = diag__http_number(q, qn, "seconds", DIAG__HTTP_SECONDS, DIAG__HTTP_SECONDS_MAX);
    if (seconds < 1) {
        diag__http_fail(c, 400);
        return;
    }
    if (diag__snapshot_read(&c->base, 0) != 0) {
        diag__http_fail(c, 500);
        return;
    }
    c->base_time = diag__realtime_ns();
    c->since = diag__clock_ns();
    c->deadline = c->since + (uint64_t)seconds * 1000000000u;
    c->state = DIAG__HTTP_WINDOW;
    __atomic_add_fetch(&diag__rt->server->windows, 1, __ATOMIC_RELEASE);
}

/* The window's end: the profile of what changed since its first
   snapshot; after a diag_reset, of what happened since the reset. */
static void diag__http_window_close(diag__http_conn *c)
{
    diag__snapshot end;
    diag__buf body = { NULL, 0, 0, 0 };
    if (diag__snapshot_read(&end, 0) != 0) {
        diag__snapshot_free(&c->base);
        diag__http_fail(c, 500);
        return;
    }
    if (end.reset_at == c->base.reset_at)
        diag__pprof(&body, &end, &c->base, 1, c->base_time, diag__clock_ns() - c->since);
    else
        diag__pprof(&body, &end, NULL, 1, diag__realtime_ns() - end.elapsed_ns, end.elapsed_ns);
    diag__snapshot_free(&end);
    diag__snapshot_free(&c->base);
    if (body.failed) diag__http_fail(c, 500);
    else diag__http_answer(c, 200, DIAG__SERVE_PPROF, body.data, body.len);
    DIAG_FREE(body.data);
}

/* A complete head's target: path, then maybe '?' and the query. */
static void diag__http_route(diag__http_conn *c, const char *target, size_t len)
{
    const char *query = (const char *)memchr(target, '?', len);
    size_t path = query ? (size_t)(query - target) : len, qn = query ? len - path - 1 : 0;
    int metric, serve = diag__http_find(target, path, &metric);
    if (serve < 0) diag__http_fail(c, 404);
    else if (serve == DIAG__SERVE_PPROF) diag__http_window_open(c, query ? query + 1 : "", qn);
    else diag__http_serve_now(c, serve, metric, query ? query + 1 : "", qn);
}

/* ---- the connections ----------------------------------------------------- */

/* Closes c's descriptor (its slot in fds cleared first: see
   diag__http_state) and frees what it holds but itself. */
static void diag__http_close(diag__http_conn *c)
{
    __atomic_store_n(&diag__rt->server->fds[c->slot], -1, __ATOMIC_RELAXED);
    close(c->fd);
    DIAG_FREE(c->out.data);
    memset(&c->out, 0, sizeof c->out);
    diag__snapshot_free(&c->base);
    c->state = DIAG__HTTP_CLOSED;
}

/* Reads what came of the head; once it is complete, the answer. */
static void diag__http_read(diag__http_conn *c)
{
    diag__http_request rq;
    ssize_t n = recv(c->fd, c->head + c->got, sizeof c->head - c->got, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) { /* the client left, or closed before its head ended */
        diag__http_close(c);
        return;
    }
    c->got += (size_t)n;
    diag__http_parse(&rq, c->head, c->got, c->local);
    if (rq.status == 0) return;
    c->head_only = rq.head_only;
    if (rq.status != 200) diag__http_fail(c, rq.status);
    else diag__http_route(c, rq.target, rq.target_len);
}

/* Sends what the client takes of the answer; then shuts the sending side
   and lingers: closing with bytes unread would reset the connection, and
   the client could lose the answer (a 431 sent before its head ended). */
static void diag__http_write(diag__http_conn *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent, DIAG__NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n <= 0) {
            diag__http_close(c);
            return;
        }
        c->sent += (size_t)n;
        c->deadline = diag__clock_ns() + DIAG__HTTP_WRITE_NS;
    }
    DIAG_FREE(c->out.data);
    memset(&c->out, 0, sizeof c->out);
    shutdown(c->fd, SHUT_WR);
    c->state = DIAG__HTTP_LINGER;
    c->deadline = diag__clock_ns() + DIAG__HTTP_LINGER_NS;
}

/* After the answer: reads and drops what the client still sends (64 KiB
   at most), until it closes or DIAG__HTTP_LINGER_NS. */
static void diag__http_linger(diag__http_conn *c)
{
    char bytes[4096];
    ssize_t n = recv(c->fd, bytes, sizeof bytes, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n > 0) c->drained += (size_t)n;
    if (n <= 0 || c->drained > 65536) diag__http_close(c);
}

/* One connection's turn: what its socket has for it, then its deadline. */
static void diag__http_turn(diag__http_conn *c, short revents)
{
    if (revents && c->state == DIAG__HTTP_READING) diag__http_read(c);
    else if (revents && c->state == DIAG__HTTP_LINGER) diag__http_linger(c);
    else if (revents && c->state == DIAG__HTTP_WINDOW) diag__http_close(c); /* an error or hang-up: it left */
    if (c->state == DIAG__HTTP_WINDOW && diag__clock_ns() >= c->deadline) diag__http_window_close(c);
    if (c->state == DIAG__HTTP_WRITING && (revents || c->sent == 0)) diag__http_write(c);
    if (c->state != DIAG__HTTP_CLOSED && diag__clock_ns() >= c->deadline) diag__http_close(c);
}

/* The address fd's client reached, as a Host header names it. */
static void diag__http_local(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    socklen_t len = sizeof ss;
    char text[INET6_ADDRSTRLEN];
    out[0] = '\0';
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        memcpy(&v4, &ss, sizeof v4);
        if (inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text)) snprintf(out, cap, "%s", text);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(&v6, &ss, sizeof v6);
        if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) { /* an IPv4 client of a dual-stack socket */
            if (inet_ntop(AF_INET, v6.sin6_addr.s6_addr + 12, text, sizeof text)) snprintf(out, cap, "%s", text);
        } else if (inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text)) {
            snprintf(out, cap, "[%s]", text);
        }
    }
}

/* Room for one more connection: the oldest one still reading its head,
   or one lingering, is closed. 0 when every one is busy with an answer. */
static int diag__http_make_room(struct diag__http_state *h)
{
    diag__http_conn *oldest = NULL;
    unsigned i;
    for (i = 0; i < h->nconns; i++) {
        diag__http_conn *c = h->conns[i];
        if (c->state == DIAG__HTTP_LINGER || (c->state == DIAG__HTTP_READING && (!oldest || c->since < oldest->since)))
            oldest = c;
        if (c->state == DIAG__HTTP_LINGER) break;
    }
    if (oldest == NULL) return 0;
    diag__http_close(oldest);
    for (i = 0; h->conns[i] != oldest; i++) {
    }
    DIAG_FREE(oldest);
    h->conns[i] = h->conns[--h->nconns];
    return 1;
}

/* A new connection fd: its table, and a slot in fds. */
static void diag__http_adopt(struct diag__http_state *h, int fd)
{
    diag__http_conn *c;
    unsigned slot = 1;
    if (h->nconns == DIAG__HTTP_CONNS && !diag__http_make_room(h)) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if (send(fd, busy, sizeof busy - 1, DIAG__NOSIGNAL) < 0) {
            /* gone already */
        }
        close(fd);
        return;
    }
    c = (diag__http_conn *)diag__alloc_zero(sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    while (__atomic_load_n(&h->fds[slot], __ATOMIC_RELAXED) >= 0) slot++; /* a free one: nconns < DIAG__HTTP_CONNS */
    c->fd = fd;
    c->slot = slot;
    c->since = diag__clock_ns();
    c->deadline = c->since + DIAG__HTTP_READ_NS;
    diag__http_local(fd, c->local, sizeof c->local);
    __atomic_store_n(&h->fds[slot], fd, __ATOMIC_RELAXED);
    h->conns[h->nconns++] = c;
}

/* Takes the connections waiting, 16 at most at a time. Out of
   descriptors, it waits 100 ms before it tries again (the listening
   socket stays readable meanwhile: polling it would spin). */
static void diag__http_accept(struct diag__http_state *h)
{
    int i;
    for (i = 0; i < 16; i++) {
#if defined(__linux__)
        int fd = accept4(h->fds[0], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
        int fd = accept(h->fds[0], NULL, NULL);
        if (fd >= 0 && (fcntl(fd, F_SETFL, O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)) {
            close(fd);
            continue;
        }
#endif
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                h->accept_at = diag__clock_ns() + 100000000u;
            return;
        }
        diag__http_adopt(h, fd);
    }
}

/* The snapshot thread's loop, with its pipe at p[-1]: the descriptors to
   poll into p (room for 1 + DIAG__HTTP_CONNS), how many. */
static nfds_t diag__http_pollfds(struct pollfd *p)
{
    struct diag__http_state *h = diag__rt->server;
    unsigned i;
    if (h == NULL) return 0;
    if (h->accept_at && diag__clock_ns() >= h->accept_at) h->accept_at = 0;
    p[0].fd = h->accept_at ? -1 : h->fds[0];
    p[0].events = POLLIN;
    for (i = 0; i < h->nconns; i++) {
        int state = h->conns[i]->state;
        p[1 + i].fd = h->conns[i]->fd;
        p[1 + i].events = (short)(state == DIAG__HTTP_WRITING ? POLLOUT : state == DIAG__HTTP_WINDOW ? 0 : POLLIN);
    }
    return 1 + h->nconns;
}

/* The poll timeout in ms (-1: none), given the snapshot thread's own:
   sooner if a connection's deadline, or accepting again, comes first. */
static int diag__http_timeout(int timeout)
{
    struct diag__http_state *h = diag__rt->server;
    unsigned i;
    if (h == NULL) return timeout;
    for (i = 0; i <= h->nconns; i++) {
        uint64_t at = i < h->nconns ? h->conns[i]->deadline : h->accept_at;
        int ms = at ? diag__ms_until(at) : -1;
        if (ms >= 0 && (timeout < 0 || ms < timeout)) timeout = ms;
    }
    return timeout;
}

/* After poll: each connection's turn, then the new ones. p and n are
   diag__http_pollfds's, with their revents. */
static void diag__http_serve(const struct pollfd *p, nfds_t n)
{
    struct diag__http_state *h = diag__rt->server;
    unsigned i, kept = 0;
    if (n == 0) return;
    for (i = 0; i + 1 < n; i++) diag__http_turn(h->conns[i], p[1 + i].revents);
    for (i = 0; i < h->nconns; i++) {
        if (h->conns[i]->state != DIAG__HTTP_CLOSED) h->conns[kept++] = h->conns[i];
        else DIAG_FREE(h->conns[i]);
    }
    h->nconns = kept;
    if (p[0].fd >= 0 && (p[0].revents & POLLIN)) diag__http_accept(h);
}

/* DIAGNOSE_HTTP's address is on this machine only. */
static int diag__http_loopback(const diag__address *a)
{
    static const unsigned char one[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };
    static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (a->family == AF_INET) return a->ip[0] == 127;
    return memcmp(a->ip, one, 16) == 0 || (memcmp(a->ip, mapped, 12) == 0 && a->ip[12] == 127);
}

/* The listening socket of DIAGNOSE_HTTP, or -1 after a line on stderr;
   *port: the port bound (the one chosen, for port 0). */
static int diag__http_listen(const diag__address *a, unsigned *port)
{
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    struct sockaddr_storage bound;
    socklen_t len = sizeof bound;
    int fd = socket(a->family, SOCK_STREAM, 0), one = 1, saved;
    memset(&v4, 0, sizeof v4);
    memset(&v6, 0, sizeof v6);
    v4.sin_family = AF_INET;
    v4.sin_port = htons((uint16_t)a->port);
    memcpy(&v4.sin_addr, a->ip, 4);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons((uint16_t)a->port);
    memcpy(&v6.sin6_addr, a->ip, 16);
    if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 && fcntl(fd, F_SETFL, O_NONBLOCK) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
        bind(fd, a->family == AF_INET ? (struct sockaddr *)&v4 : (struct sockaddr *)&v6,
             a->family == AF_INET ? sizeof v4 : sizeof v6) == 0 &&
        listen(fd, 128) == 0 && getsockname(fd, (struct sockaddr *)&bound, &len) == 0) {
        memcpy(&v6, &bound, sizeof v6); /* sin_port and sin6_port are at one offset */
        *port = ntohs(v6.sin6_port);
        return fd;
    }
    saved = errno;
    if (fd >= 0) close(fd);
    diag__warn("diagnose.h: DIAGNOSE_HTTP=%s:%u: cannot listen: %s; no HTTP server\n", a->host, a->port,
               strerror(saved));
    return -1;
}

/* Start-up, before the snapshot thread starts: the server of
   DIAGNOSE_HTTP, and its line on stderr (unless DIAGNOSE_QUIET, but
   always when the address is not loopback). */
static void diag__http_start(void)
{
    const diag__address *a = &diag__rt->http;
    struct diag__http_state *h;
    unsigned i;
    if (a->family == 0) return;
    h = (struct diag__http_state *)diag__alloc_zero(sizeof *h);
    if (h == NULL) {
        diag__warn("diagnose.h: out of memory at start-up; no HTTP server\n");
        return;
    }
    for (i = 0; i <= DIAG__HTTP_CONNS; i++) h->fds[i] = -1;
    h->fds[0] = diag__http_listen(a, &h->port);
    if (h->fds[0] < 0) {
        DIAG_FREE(h);
        return;
    }
    diag__rt->server = h;
    if (!diag__http_loopback(a))
        diag__warn("diagnose.h: serving the profile at http://%s:%u/ to other machines too: DIAGNOSE_HTTP names an "
                   "address that is not loopback\n", a->host, h->port);
    else if (!diag__rt->quiet)
        diag__warn("diagnose.h: serving the profile at http://%s:%u/\n", a->host, h->port);
}

/* In a fork child, which has no snapshot thread: the server's descriptors
   are closed, so that the parent's connections end when the parent closes
   them. What else the thread held may have been half changed at the
   fork: it is left as it is, unread. */
static void diag__http_forked(void)
{
    struct diag__http_state *h = diag__rt->server;
    unsigned i;
    if (h == NULL) return;
    for (i = 0; i <= DIAG__HTTP_CONNS; i++) {
        int fd = __atomic_load_n(&h->fds[i], __ATOMIC_RELAXED);
        if (fd >= 0) close(fd);
        h->fds[i] = -1;
    }
    h->nconns = 0;
}

/* >>snapshots: the snapshot thread (numbered snapshots, slow-poll traces) ---- */

/* DIAGNOSE_INTERVAL, DIAGNOSE_SIGNAL and slow-poll traces start one thread:
   the handler only writes a byte to its pipe, the thread does the dump, so
   no lock or allocation runs in a handler. Snapshots: PREFIX.N.*, N = 1, 2 ... */
struct diag__snapshot_thread {
    pthread_t thread;
    int running;          /* the thread exists in this process */
    int pipe[2];          /* [1] written by the handler, read by the thread */
    int stop;             /* atomic: the thread should end */
    unsigned next;        /* number of the last snapshot written */
    int handling;         /* our handler is installed; the program's was old_action */
    int program_blocked;  /* the thread that started the runtime had blocked DIAGNOSE_SIGNAL itself */
    struct sigaction old_action;
    const struct diag__copy_info *owner; /* whose functions the thread and handler run */
    int finished;         /* atomic: the thread has ended (it can then be joined at once) */
};
/* One per runtime: copies share the thread and the snapshot numbers. */

/* One byte to the snapshot thread, async-signal-safe; -1: no pipe, or full. */
static int diag__snapshot_thread_poke(char byte)
{
    int fd = __atomic_load_n(&diag__rt->snapshot_thread->pipe[1], __ATOMIC_RELAXED);
    return fd >= 0 && write(fd, &byte, 1) == 1 ? 0 : -1;
}

static void diag__snapshot_thread_signal(int signo)
{
    int saved = errno;
    (void)signo;
    diag__snapshot_thread_poke('d'); /* pipe full: a snapshot is already requested */
    errno = saved;
}

/* A writer: snapshot next + 1 at DIAGNOSE_OUT (prefix unused), failures said; -1 only if no prefix can be made. */
static int diag__snapshot_thread_write(diag__snapshot *snap, const char *prefix, int by_signal)
{
    char resolved[4096], numbered[4200], failed[4300];
    unsigned n = diag__rt->snapshot_thread->next + 1;
    (void)prefix;
    if (diag__resolve_prefix(NULL, resolved, sizeof resolved) != 0) return -1;
    snprintf(numbered, sizeof numbered, "%s.%u", resolved, n);
    if (diag__write_all(numbered, snap, failed, sizeof failed) != 0) {
        diag__warn("diagnose.h: cannot write %s: %s\n", failed, strerror(errno));
    } else {
        diag__rt->snapshot_thread->next = n; /* numbers stay consecutive: a failed one is retried */
        if (by_signal && !diag__rt->quiet) diag__warn("diagnose.h: wrote snapshot %s.*.folded\n", numbered);
    }
    return 0;
}

/* Writes snapshot number next + 1; a failure is reported on stderr. */
static void diag__snapshot_thread_snapshot(int by_signal)
{
    if (diag__snapshot_write(0, diag__snapshot_thread_write, NULL, by_signal) != 0)
        diag__warn("diagnose.h: snapshot %u not written: %s\n", diag__rt->snapshot_thread->next + 1, strerror(errno));
}

/* On the polling thread, after a slow poll: one byte to the snapshot
   thread, unless it already has the request (see DIAG__SLOW_*). */
static void diag__trace_slow(void)
{
    int outermost = diag__tls == NULL || diag__tls->depth == 0;
    int want = outermost ? DIAG__SLOW_ASKED : DIAG__SLOW_NESTED;
    int state = __atomic_load_n(&diag__rt->trace->slow_state, __ATOMIC_RELAXED);
    if (!diag__trace_slow_wanted() || state >= want ||
        !__atomic_compare_exchange_n(&diag__rt->trace->slow_state, &state, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        return;
    if (diag__snapshot_thread_poke(outermost ? 't' : 'w') != 0) /* lost: the next slow poll asks again */
        __atomic_store_n(&diag__rt->trace->slow_state, state, __ATOMIC_RELEASE);
}

static void diag__snapshot_thread_slow_write(void)
{
    char prefix[4096], numbered[4200];
    snprintf(numbered, sizeof numbered, "(prefix)");
    if (diag__resolve_prefix(NULL, prefix, sizeof prefix) == 0) {
        char failed[4300];
        snprintf(numbered, sizeof numbered, "%s.slow.%u", prefix, diag__rt->trace->slow_written + 1);
        if (diag__trace_write(numbered, diag__ns_per_tick(), failed, sizeof failed) == 0) {
            diag__rt->trace->slow_written++;
            if (!diag__rt->quiet) diag__warn("diagnose.h: slow poll; wrote %s\n", failed);
            return;
        }
    }
    diag__warn("diagnose.h: cannot write %s.trace.json: %s\n", numbered, strerror(errno));
}

/* On the snapshot thread, each time it wakes; asked: 2 for a 't', 1 for a
   'w', else 0. Writes PREFIX.slow.N.trace.json when the outermost slow
   poll ended or DIAG__TRACE_NEST_NS after a nested one. */
static void diag__snapshot_thread_slow(int asked)
{
    uint64_t now = diag__clock_ns();
    if (diag__rt->trace->rearm_at) {
        if (now < diag__rt->trace->rearm_at) return;
        diag__rt->trace->rearm_at = 0;
        __atomic_store_n(&diag__rt->trace->slow_state, DIAG__SLOW_IDLE, __ATOMIC_RELEASE);
    }
    if (asked == 1 && diag__rt->trace->write_at == 0) diag__rt->trace->write_at = now + DIAG__TRACE_NEST_NS;
    if (asked != 2 && (diag__rt->trace->write_at == 0 || now < diag__rt->trace->write_at)) return;
    diag__rt->trace->write_at = 0;
    __atomic_store_n(&diag__rt->trace->slow_state, DIAG__SLOW_ASKED, __ATOMIC_RELEASE); /* no asking meanwhile */
    if (diag__rt->trace->slow_written == DIAG__TRACE_SLOW_MAX) {
        diag__warn("diagnose.h: %u slow-poll traces written; no more\n", DIAG__TRACE_SLOW_MAX);
        diag__rt->trace->slow_written++; /* said once; the state stays ASKED: polls stop asking */
        return;
    }
    if (diag__rt->trace->slow_written > DIAG__TRACE_SLOW_MAX) return;
    diag__rt->trace->rearm_at = now + DIAG__TRACE_SLOW_GAP_NS;
    diag__snapshot_thread_slow_write();
}

/* The snapshot thread's poll timeout: until the timer's next tick (-1
   without a timer; ticks keep their schedule whatever signals do), or
   sooner when a slow-poll trace is due or requests are taken again. */
static int diag__snapshot_thread_timeout(uint64_t next_at)
{
    uint64_t at = diag__rt->trace->write_at ? diag__rt->trace->write_at : diag__rt->trace->rearm_at;
    int timeout = diag__rt->interval_ns ? diag__ms_until(next_at) : -1, ms;
    if (at == 0) return timeout;
    ms = diag__ms_until(at);
    return timeout < 0 || ms < timeout ? ms : timeout;
}

/* Reads all the pipe holds; returns 1 if a snapshot was requested. *slow:
   2 if a slow poll asked with 't', else 1 if with 'w' (see DIAG__SLOW_*). */
static int diag__snapshot_thread_drain(int fd, int *slow)
{
    char bytes[64];
    ssize_t got;
    int requested = 0;
    while ((got = read(fd, bytes, sizeof bytes)) > 0) {
        ssize_t i;
        for (i = 0; i < got; i++) {
            if (bytes[i] == 't') *slow = 2;
            else if (bytes[i] == 'w') *slow = *slow ? *slow : 1;
            else requested = 1;
        }
    }
    return requested;
}

/* Blocks (SIG_BLOCK) or unblocks DIAGNOSE_SIGNAL on the calling thread;
   returns 1 if it was blocked before. */
static int diag__signal_mask(int how)
{
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, diag__rt->signo);
    return pthread_sigmask(how, &one, &old) == 0 && sigismember(&old, diag__rt->signo) == 1;
}

static void *diag__snapshot_thread_main(void *arg)
{
    uint64_t next_at = diag__clock_ns() + diag__rt->interval_ns;
    struct pollfd p[2 + DIAG__HTTP_CONNS]; /* the pipe, then the HTTP server's (see >>http) */
    (void)arg;
    if (diag__rt->signo) diag__signal_mask(SIG_UNBLOCK); /* the one thread that takes it */
    p[0].fd = diag__rt->snapshot_thread->pipe[0];
    p[0].events = POLLIN;
    while (!__atomic_load_n(&diag__rt->snapshot_thread->stop, __ATOMIC_ACQUIRE)) {
        nfds_t served = diag__http_pollfds(p + 1);
        int n = poll(p, 1 + served, diag__http_timeout(diag__snapshot_thread_timeout(next_at)));
        int requested = 0, slow = 0;
        if (n < 0 && errno != EINTR) break;
        if (n > 0 && p[0].revents) requested = diag__snapshot_thread_drain(p[0].fd, &slow); /* a burst: one snapshot */
        if (__atomic_load_n(&diag__rt->snapshot_thread->stop, __ATOMIC_ACQUIRE)) break;
        diag__http_serve(p + 1, served);
        diag__snapshot_thread_slow(slow);
        if (requested) diag__snapshot_thread_snapshot(1);
        if (diag__rt->interval_ns && diag__clock_ns() >= next_at) {
            diag__snapshot_thread_snapshot(0);
            while (next_at <= diag__clock_ns()) next_at += diag__rt->interval_ns; /* skip missed ticks */
        }
    }
    __atomic_store_n(&diag__rt->snapshot_thread->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Starts the thread on `by`'s diag__snapshot_thread_main and points the
   signal at `by`'s handler, first: the thread takes the signal as it
   starts. The copy whose code they run must stay loaded. No thread: the
   program's handler is put back. */
static void diag__snapshot_thread_run(const struct diag__copy_info *by)
{
    struct diag__snapshot_thread *st = diag__rt->snapshot_thread;
    sigset_t all, old;
    if (diag__rt->signo) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = by->snapshot_thread_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(diag__rt->signo, &sa, st->handling ? NULL : &st->old_action);
        st->handling = 1;
    }
    sigfillset(&all); /* the thread takes none of the program's signals (its main unblocks DIAGNOSE_SIGNAL) */
    pthread_sigmask(SIG_BLOCK, &all, &old);
    __atomic_store_n(&st->stop, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&st->finished, 0, __ATOMIC_RELAXED);
    st->running = pthread_create(&st->thread, NULL, by->snapshot_thread_main, NULL) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    st->owner = by;
    if (!st->running && st->handling) {
        sigaction(diag__rt->signo, &st->old_action, NULL);
        st->handling = 0;
    }
}

/* By the copy that made the runtime (created), when a variable asks for the
   thread; or by a copy joining a runtime whose copies had all left: the
   thread and handler they stopped come back, on this copy's functions.
   DIAGNOSE_SIGNAL is blocked on the starting thread (at load, before main,
   for a program's copy), so the threads it creates inherit the mask and only
   the snapshot thread takes the signal: no sleep or wait of the program's
   ends early with EINTR. */
static void diag__snapshot_thread_start(int created)
{
    struct diag__snapshot_thread *st = diag__rt->snapshot_thread;
    int wanted = diag__rt->interval_ns != 0 || diag__rt->signo != 0 || diag__trace_slow_wanted() || diag__rt->server != NULL, had = 0;
    if (created && wanted && pipe(st->pipe) == 0) {
        int i;
        for (i = 0; i < 2; i++) { /* never block the handler; never leak into exec */
            fcntl(st->pipe[i], F_SETFL, O_NONBLOCK);
            fcntl(st->pipe[i], F_SETFD, FD_CLOEXEC);
        }
    }
    if (st->running || st->pipe[0] < 0) return;
    if (diag__rt->signo) had = diag__signal_mask(SIG_BLOCK);
    if (created) st->program_blocked = had;
    diag__snapshot_thread_run(diag__copy_self());
    if (diag__rt->signo && !st->running && !had) diag__signal_mask(SIG_UNBLOCK);
}

/* The thread finishes the snapshot it may be writing and ends; the pipe
   stays open for late signals. It is waited for until `deadline`
   (CLOCK_REALTIME ns; 0: not at all): at exit a snapshot can wait on a
   lock that another thread, or the interrupted exiting one, holds. */
static void diag__snapshot_thread_stop(uint64_t deadline)
{
    if (!diag__rt->snapshot_thread->running) return;
    __atomic_store_n(&diag__rt->snapshot_thread->stop, 1, __ATOMIC_RELEASE);
    diag__snapshot_thread_poke('s'); /* pipe full: the thread wakes up anyway */
    diag__rt->snapshot_thread->running = 0;
    while (!__atomic_load_n(&diag__rt->snapshot_thread->finished, __ATOMIC_ACQUIRE)) {
        struct timespec ms = { 0, 1000000 };
        if (diag__realtime_ns() >= deadline) return;
        nanosleep(&ms, NULL);
    }
    pthread_join(diag__rt->snapshot_thread->thread, NULL);
}

/* This copy leaves (see "copies"): the thread and handler move to the copy
   `to`, or, when none stays, stop and the program's handler is put back,
   unless this copy is in the executable (never unloaded: as at exit). */
static void diag__snapshot_thread_hand_over(const struct diag__copy_info *to, int in_executable)
{
    if (diag__rt->snapshot_thread->owner != diag__copy_self()) return;
    /* handed over: this copy's code may go; at exit: bounded */
    diag__snapshot_thread_stop(to != NULL || diag__exit_deadline == 0 ? UINT64_MAX : diag__exit_deadline);
    diag__rt->snapshot_thread->owner = NULL;
    if (to != NULL) {
        diag__snapshot_thread_run(to);
    } else if (diag__rt->snapshot_thread->handling && !in_executable) {
        sigaction(diag__rt->signo, &diag__rt->snapshot_thread->old_action, NULL);
        diag__rt->snapshot_thread->handling = 0;
    }
}

/* >>copies: one runtime for every copy of the header in the process ---------- */

/* A program and its libraries can each hold a copy of this implementation,
   with statics of its own and symbols kept apart (hidden visibility,
   RTLD_LOCAL). They meet in a mapping named "diagnose.h" (a memfd mapped
   MAP_PRIVATE: fork copies it, exec drops it), found in /proc/self/maps:
   a table of runtimes by key (diag__abi_key). Copies that agree on all they
   share use one runtime; every runtime but the first writes under prefixes
   tagged with its key (diag__rt->tag). Without /proc or memfd: its own.
   Later layouts keep the offsets of runtimes[] and threads, read by all. */

#ifndef DIAG__ABI
#define DIAG__ABI 5 /* raise whenever a structure the copies share changes, or what one copy expects of another */
#endif
#define DIAG__REGISTRY_NAME "diagnose.h"
#define DIAG__REGISTRY_MAGIC 0x7972747369676564ull /* "degistry", read as bytes backwards */
#define DIAG__REGISTRY_SIZE 8192u
#define DIAG__REGISTRY_RUNTIMES 32

/* Layout 2 dropped layout 1's merging of files across runtimes; its fields
   (a count and table of prefixes after runtimes[], the runtimes' "has
   copies" flags) stay, unused, for a copy of layout 1 in the process. */
typedef struct diag__registry {
    uint64_t magic;  /* DIAG__REGISTRY_MAGIC, stored last (release) */
    uint64_t stamp;  /* CLOCK_MONOTONIC ns at creation: of two, the older serves */
    uint32_t layout; /* 2 */
    uint32_t lock;   /* spin lock over the rest */
    uint32_t nruntimes, unused;
    uint64_t threads; /* atomic: thread numbers handed out, by every runtime */
    struct { uint64_t abi; void *runtime; uint64_t unused; } runtimes[DIAG__REGISTRY_RUNTIMES];
} diag__registry;
typedef char diag__registry_fits[sizeof(diag__registry) <= DIAG__REGISTRY_SIZE ? 1 : -1];

static void diag__tls_clear(void) { diag__tls = NULL; }

static diag__copy_info diag__self = { NULL, diag__thread_exit, diag__tls_clear, diag__snapshot_thread_main,
                                     diag__snapshot_thread_signal, 0 };
static diag__registry *diag__registry_at; /* this copy's view; NULL: none found or made */

static const struct diag__copy_info *diag__copy_self(void) { return &diag__self; }

#define DIAG__TEXT(x) #x
#define DIAG__EXPANDED(x) DIAG__TEXT(x)

static uint64_t diag__fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* Copies share a runtime only when this key is equal: the same DIAG__ABI,
   sizes of what they share (DIAG_MAX_DEPTH, DIAG_PATH_TABLE_SIZE, the
   structures) and allocator (one copy frees what another allocated). */
static uint64_t diag__abi_key(void)
{
    static const char allocator[] = DIAG__EXPANDED(DIAG_MALLOC(n) DIAG_REALLOC(p, n) DIAG_FREE(p));
    const uint64_t sizes[] = { DIAG__ABI, DIAG_MAX_DEPTH, DIAG_PATH_TABLE_SIZE, sizeof(diag__runtime),
                               sizeof(diag__thread), sizeof(diag__slot), sizeof(diag_span), sizeof(diag_fiber),
                               sizeof(diag__run), sizeof(diag__copy_info),
                               sizeof(struct diag__snapshot_thread), sizeof(struct diag__trace_state),
                               sizeof(struct diag__at_state), sizeof(struct diag__http_state),
                               sizeof(diag__ring), sizeof(diag__path) };
    return diag__fnv(diag__fnv(0xCBF29CE484222325ull, sizes, sizeof sizes), allocator, sizeof allocator);
}

#if defined(__linux__) && defined(MFD_CLOEXEC)
/* The address of each registry in /proc/self/maps (cap at most); how many. */
static unsigned diag__registry_list(diag__registry **out, unsigned cap)
{
    static const char name[] = " /memfd:" DIAG__REGISTRY_NAME " (deleted)\n";
    char line[512];
    size_t name_len = sizeof name - 1;
    unsigned found = 0;
    int whole = 1; /* line starts a line of the file: a longer one comes in pieces, and is not ours */
    FILE *maps = fopen("/proc/self/maps", "re");
    if (maps == NULL) return 0;
    while (found < cap && fgets(line, sizeof line, maps) != NULL) {
        size_t len = strlen(line);
        int starts = whole;
        char *dash, *perms;
        unsigned long long lo, hi;
        whole = len > 0 && line[len - 1] == '\n';
        if (!starts || len <= name_len || memcmp(line + len - name_len, name, name_len) != 0) continue;
        lo = strtoull(line, &dash, 16);
        hi = strtoull(dash + 1, &perms, 16);
        if (*dash == '-' && hi - lo >= DIAG__REGISTRY_SIZE && strncmp(perms, " rw", 3) == 0)
            /* NOLINTNEXTLINE(performance-no-int-to-ptr): an address /proc/self/maps gave */
            out[found++] = (diag__registry *)(uintptr_t)lo;
    }
    fclose(maps);
    return found;
}

/* The registry all copies use: the oldest listed (two copies starting at once may each make one; both pick it). */
static diag__registry *diag__registry_oldest(void)
{
    diag__registry *at[8], *best = NULL;
    unsigned n = diag__registry_list(at, 8), i;
    for (i = 0; i < n; i++) {
        int spins = 0;
        /* made a moment ago by another thread: its header is written next */
        while (__atomic_load_n(&at[i]->magic, __ATOMIC_ACQUIRE) != DIAG__REGISTRY_MAGIC && spins++ < 10000)
            sched_yield();
        if (at[i]->magic != DIAG__REGISTRY_MAGIC || at[i]->layout < 1) continue;
        if (best == NULL || at[i]->stamp < best->stamp || (at[i]->stamp == best->stamp && at[i] < best))
            best = at[i];
    }
    return best;
}

static diag__registry *diag__registry_find(void)
{
    diag__registry *found = diag__registry_oldest(), *mine;
    int fd;
    void *p;
    if (found != NULL) return found;
    fd = memfd_create(DIAG__REGISTRY_NAME, MFD_CLOEXEC);
    if (fd < 0) return NULL;
    p = ftruncate(fd, DIAG__REGISTRY_SIZE) == 0
            ? mmap(NULL, DIAG__REGISTRY_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
            : MAP_FAILED;
    close(fd);
    if (p == MAP_FAILED) return NULL;
    mine = (diag__registry *)p;
    mine->stamp = diag__clock_ns();
    mine->layout = 2;
    __atomic_store_n(&mine->magic, DIAG__REGISTRY_MAGIC, __ATOMIC_RELEASE);
    found = diag__registry_oldest();
    if (found != mine) munmap(p, DIAG__REGISTRY_SIZE);
    return found;
}
#else
static diag__registry *diag__registry_find(void) { return NULL; }
#endif

/* A thread's number in trace files, distinct across the process's runtimes: their traces open together. */
static uint64_t diag__thread_number(void)
{
    if (diag__registry_at) return __atomic_add_fetch(&diag__registry_at->threads, 1, __ATOMIC_RELAXED);
    return ++diag__rt->trace->next_tid;
}

static void diag__registry_lock(diag__registry *r)
{
    while (__atomic_exchange_n(&r->lock, 1, __ATOMIC_ACQUIRE)) sched_yield();
}

static void diag__registry_unlock(diag__registry *r) { __atomic_store_n(&r->lock, 0, __ATOMIC_RELEASE); }

#if defined(__linux__)
typedef struct diag__object {
    uintptr_t lo[16], hi[16]; /* its PT_LOAD segments */
    unsigned segments, index; /* index: 0 for the executable */
    int found;
    const char *name; /* its file, as the loader has it */
} diag__object;

static int diag__object_visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    diag__object *o = (diag__object *)arg;
    uintptr_t me = (uintptr_t)&diag__self;
    int i;
    (void)size;
    o->segments = 0;
    for (i = 0; i < info->dlpi_phnum && o->segments < 16; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = (uintptr_t)info->dlpi_addr + (uintptr_t)ph->p_vaddr;
        if (ph->p_type != PT_LOAD) continue;
        o->lo[o->segments] = lo;
        o->hi[o->segments++] = lo + (uintptr_t)ph->p_memsz;
        if (me >= lo && me < lo + (uintptr_t)ph->p_memsz) o->found = 1;
    }
    o->name = info->dlpi_name;
    if (o->found) return 1;
    o->index++;
    return 0;
}

/* The loaded object (executable or library) that holds this copy. */
static int diag__object_of_self(diag__object *o)
{
    memset(o, 0, sizeof *o);
    dl_iterate_phdr(diag__object_visit, o);
    return o->found;
}

static int diag__object_holds(const diag__object *o, const void *p)
{
    unsigned i;
    for (i = 0; i < o->segments; i++)
        if ((uintptr_t)p >= o->lo[i] && (uintptr_t)p < o->hi[i]) return 1;
    return 0;
}

/* Sets diag__self.in_executable; returns the name of this copy's library, or "the program". */
static const char *diag__locate_self(void)
{
    diag__object o;
    const char *slash;
    diag__self.in_executable = diag__object_of_self(&o) && o.index == 0;
    if (!o.found || o.index == 0 || o.name == NULL || o.name[0] == '\0') return "the program";
    slash = strrchr(o.name, '/');
    return slash ? slash + 1 : o.name;
}

/* Under the lock, as this copy's library goes away: paths named by strings
   in it get copies of their names. A name is also a key (index, caches),
   and a copy matches no span's name: a library loaded later at the same
   address is never taken for this one. */
static void diag__keep_names(void)
{
    diag__object o;
    uint32_t p;
    if (diag__self.in_executable || !diag__object_of_self(&o)) return;
    for (p = 1; p < diag__rt->npaths; p++) {
        diag__path *path = diag__path_at(p);
        char *copy;
        if (!diag__object_holds(&o, path->name)) continue;
        copy = diag__copy(path->name); /* out of memory: no name ("[unnamed]") rather than a dangling one */
        __atomic_store_n(&path->name, copy, __ATOMIC_RELAXED);
    }
}
#define DIAG__LINUX 1
#else
#define DIAG__LINUX 0
static const char *diag__locate_self(void) { return "the program"; }
static void diag__keep_names(void) {}
#endif

/* Under the lock. Makes `to`'s diag__thread_exit the destructor of the key
   that finds a thread's table (NULL: no key). A destructor cannot change,
   so the key is made anew: threads attached before stay in the live list,
   counted by dumps but not merged at exit; the caller's table moves over. */
static void diag__key_move(const struct diag__copy_info *to)
{
    diag__thread *mine = diag__rt->key_owner ? (diag__thread *)pthread_getspecific(diag__rt->key) : NULL;
    if (diag__rt->key_owner) pthread_key_delete(diag__rt->key);
    diag__rt->key_owner = NULL;
    if (to == NULL || pthread_key_create(&diag__rt->key, to->thread_exit) != 0) return;
    diag__rt->key_owner = to;
    if (mine != NULL) pthread_setspecific(diag__rt->key, mine);
}

/* Under the lock: this copy is one of the runtime's copies now. */
static void diag__copy_enter(int *rejoined)
{
    *rejoined = diag__rt->copies == NULL && diag__rt->npaths > 0; /* all copies had left */
    if (*rejoined) diag__rt->exit_done = 0;
    diag__self.next = diag__rt->copies;
    diag__rt->copies = &diag__self;
    if (diag__rt->fork_owner == NULL) diag__rt->fork_owner = &diag__self;
    /* the key's destructor lives best where it is never unloaded */
    if (diag__rt->key_owner == NULL || (diag__self.in_executable && !diag__rt->key_owner->in_executable))
        diag__key_move(&diag__self);
}

/* Finds the runtime of this copy's key in r, or makes it and lists it
   there (a full list: a runtime of its own); sets diag__rt. A runtime made
   when r lists another already gets a tag. -1 when out of memory. */
static int diag__join_registry(diag__registry *r, int *created)
{
    uint64_t abi = diag__abi_key();
    uint32_t i;
    diag__registry_lock(r);
    for (i = 0; i < r->nruntimes; i++)
        if (r->runtimes[i].abi == abi) diag__rt = (diag__runtime *)r->runtimes[i].runtime;
    if (diag__rt == &diag__local) {
        if (diag__runtime_new() != 0) {
            diag__registry_unlock(r);
            return -1;
        }
        *created = 1;
        if (r->nruntimes > 0) snprintf(diag__rt->tag, sizeof diag__rt->tag, ".abi-%08lx", (unsigned long)(abi >> 32));
        if (r->nruntimes < DIAG__REGISTRY_RUNTIMES) {
            r->runtimes[r->nruntimes].abi = abi;
            r->runtimes[r->nruntimes++].runtime = diag__rt;
        }
    }
    diag__registry_unlock(r);
    return 0;
}

/* Finds this copy's runtime in the registry, or makes it; sets diag__rt. NULL: no memory. */
static diag__runtime *diag__join(int *created, int *rejoined)
{
    diag__registry *r = diag__registry_find();
    const char *object = diag__locate_self();
    diag__registry_at = r;
    *created = 0;
    if (r != NULL ? diag__join_registry(r, created) != 0 : diag__runtime_new() != 0) return NULL;
    if (r == NULL) *created = 1;
    if (*created && diag__rt->tag[0] && !diag__rt->quiet)
        diag__warn("diagnose.h: this copy (in %s) was built with other settings or another version than the "
                   "process's first copy; its profile goes to %s%s.*\n", object,
                   diag__rt->out ? diag__rt->out : "diagnose", diag__rt->tag);
    /* a library's copy is seldom alone (elsewhere than Linux, no copy knows where it is) */
    if (r == NULL && DIAG__LINUX && !diag__self.in_executable && !diag__rt->quiet)
        diag__warn("diagnose.h: this copy (in %s) cannot meet the process's other copies (no /proc/self/maps or "
                   "no memfd_create): it keeps a runtime of its own, and the copy that writes %s.* last replaces "
                   "the others' files\n", object, diag__rt->out ? diag__rt->out : "diagnose");
    pthread_mutex_lock(&diag__rt->lock);
    diag__copy_enter(rejoined);
    pthread_mutex_unlock(&diag__rt->lock);
    return diag__rt;
}

/* >>fork: the child of fork starts a profile of its own ---------------------- */

/* The child of fork() has no snapshot thread; it takes no snapshots, and its
   handler must not wake the parent's thread through the shared pipe. Its
   thread takes DIAGNOSE_SIGNAL again (a no-op), so that a program it execs
   does not start with the signal blocked. */
static void diag__snapshot_thread_forked(void)
{
    int fd = diag__rt->snapshot_thread->pipe[1];
    diag__rt->snapshot_thread->running = 0;
    diag__rt->snapshot_thread->owner = NULL;
    if (diag__rt->snapshot_thread->handling && !diag__rt->snapshot_thread->program_blocked)
        diag__signal_mask(SIG_UNBLOCK);
    if (fd < 0) return;
    __atomic_store_n(&diag__rt->snapshot_thread->pipe[1], -1, __ATOMIC_RELAXED);
    close(fd);
    close(diag__rt->snapshot_thread->pipe[0]);
    diag__rt->snapshot_thread->pipe[0] = -1;
}

/* Every copy registers these; the runtime's fork_owner's take both locks, in
   the order dumps do: the child finds them held by its one thread, no dump half done. */
static void diag__fork_prepare(void)
{
    if (diag__rt->fork_owner != &diag__self) return;
    pthread_mutex_lock(&diag__rt->dump_lock);
    pthread_mutex_lock(&diag__rt->lock);
    if (diag__rt->fork_owner != &diag__self) { /* it changed hands meanwhile */
        pthread_mutex_unlock(&diag__rt->lock);
        pthread_mutex_unlock(&diag__rt->dump_lock);
        return;
    }
    diag__rt->fork_locker = &diag__self;
}

static void diag__fork_parent(void)
{
    if (diag__rt->fork_locker != &diag__self) return;
    diag__rt->fork_locker = NULL;
    pthread_mutex_unlock(&diag__rt->lock);
    pthread_mutex_unlock(&diag__rt->dump_lock);
}

/* The child of fork() starts with empty tables: the parent's counts are the
   parent's to write. The other threads are gone, their polls never end: no
   stack but this thread's runs (their runs stay open, as the spans say). */
static void diag__fork_child(void)
{
    diag__thread *t;
    if (diag__registry_at != NULL) diag__registry_at->lock = 0; /* maybe held by a thread the child does not have */
    if (diag__rt->fork_locker != &diag__self) return;
    diag__rt->fork_locker = NULL;
    pthread_mutex_unlock(&diag__rt->lock); /* taken by diag__fork_prepare, on this thread */
    pthread_mutex_unlock(&diag__rt->dump_lock);
    diag__rt->exit_waiting = 0;
    diag__rt->forked = 1;
    diag__rt->exit_done = 0;
    diag__reset_locked();
    for (t = diag__rt->threads; t != NULL; t = t->next)
        if (t != diag__tls) DIAG__STORE(t->depth, 0);
    diag__snapshot_thread_forked();
    diag__http_forked();
}

/* >>exit: the last copy out writes the files and the table ------------------- */

/* exit() from a signal handler inside diagnose.h (the lock may be this
   thread's, malloc half way): no dump; one line, no lock, no allocation. */
static void diag__exit_interrupted(void)
{
    static const char line[] =
        "diagnose.h: exit() interrupted diagnose.h on the same thread (from a signal handler?); no profile written\n";
    diag__snapshot_thread_stop(0);
    diag__stderr_write(line, sizeof line - 1);
}

/* The lines after the table: polls folded or not measured, and polls that
   never returned: on this thread at exit (exit() inside a poll, or a poll
   left by longjmp without diag_drop), or on threads that ended. */
static void diag__report_limits(const diag__snapshot *snap)
{
    const diag__thread *t = diag__tls;
    uint64_t ended = __atomic_load_n(&diag__rt->open_at_thread_end, __ATOMIC_RELAXED);
    if (snap->folded)
        diag__warn("diagnose.h: %llu runs or polls deeper than %d frames were folded into their deepest frame\n",
                (unsigned long long)snap->folded, DIAG_MAX_DEPTH);
    if (snap->unmeasured)
        diag__warn("diagnose.h: %llu polls were not measured: a thread could not allocate its table\n",
                (unsigned long long)snap->unmeasured);
    if (t != NULL && t != diag__rt->no_table && t->depth > 0)
        diag__warn("diagnose.h: %u poll%s had not returned at exit on the exiting thread (exit inside a poll, "
                   "or a longjmp out of it without diag_drop)\n", t->depth, t->depth == 1 ? "" : "s");
    if (ended)
        diag__warn("diagnose.h: %llu poll%s had not returned when their thread ended (a longjmp out of them "
                   "without diag_drop?)\n", (unsigned long long)ended, ended == 1 ? "" : "s");
}

/* The exit's files, at DIAGNOSE_OUT else in $TMPDIR, each failure said; prefix gets where they went. */
static void diag__exit_files(diag__snapshot *snap, char *prefix, size_t cap)
{
    char failed[4200] = "";
    if (diag__resolve_prefix(NULL, prefix, cap) != 0 || diag__write_all(prefix, snap, failed, sizeof failed) != 0) {
        const char *dir = diag__getenv("TMPDIR");
        char fallback[4096];
        int reason = errno;
        snprintf(fallback, sizeof fallback, "%s/diagnose.%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(),
                 diag__rt->tag);
        if (diag__write_all(fallback, snap, prefix, cap) == 0) {
            diag__warn("diagnose.h: cannot write %s: %s; wrote %s.*.folded instead\n", failed, strerror(reason),
                    fallback);
            snprintf(prefix, cap, "%s", fallback);
        } else {
            diag__warn("diagnose.h: cannot write %s: %s; no profile written\n", failed, strerror(reason));
        }
    }
}

/* A writer: the exit's files (prefix unused), then its lines on stderr. */
static int diag__exit_write(diag__snapshot *snap, const char *prefix, int arg)
{
    char written[4096], shown[8192];
    (void)prefix;
    (void)arg;
    diag__exit_files(snap, written, sizeof written);
    shown[diag__escape(written, strlen(written), shown, sizeof shown - 1)] = '\0'; /* the table's lines: escaped as diag__warn's */
    if (!diag__rt->quiet) diag__print_table_to_stderr(snap, shown);
    diag__report_limits(snap);
    return 0;
}

static void diag__exit_handler(void)
{
    int saved_errno = errno;
    if (diag__mode != 1 || __atomic_exchange_n(&diag__rt->exit_done, 1, __ATOMIC_ACQ_REL)) return;
    if (diag__inside()) {
        diag__exit_interrupted();
        errno = saved_errno;
        return;
    }
    if (diag__exit_deadline == 0) diag__exit_deadline = diag__realtime_ns() + DIAG__EXIT_WAIT_NS;
    diag__snapshot_thread_stop(diag__exit_deadline); /* its last snapshot is done before the final files */
    __atomic_store_n(&diag__rt->exit_waiting, 1, __ATOMIC_RELEASE);
    if (diag__snapshot_write(1, diag__exit_write, NULL, 0) != 0)
        diag__warn("diagnose.h: %s at exit; no profile written\n",
                   errno == ETIMEDOUT ? "another thread held diagnose.h's lock for 1 s" : "out of memory");
    diag__exit_deadline = 0;
    errno = saved_errno;
}

/* The atexit handler: this copy leaves the process, at exit or at the
   unload of its library (dlclose runs its atexit handlers). The last copy
   out writes the files and the table; an earlier one hands what points
   into its code (key destructor, snapshot thread, signal handler) to one
   that stays and, unless it is in the executable, writes the files now:
   the process's profile so far, which the exit writes again. */
static void diag__leave(void)
{
    diag__copy_info **link;
    const diag__copy_info *stays;
    int saved_errno = errno;
    if (diag__mode != 1) return;
    if (diag__inside()) { /* exit() from a handler: this thread may hold the lock */
        diag__exit_handler();
        return;
    }
    if (diag__self.in_executable) diag__exit_deadline = diag__realtime_ns() + DIAG__EXIT_WAIT_NS; /* only at exit */
    if (diag__lock_or_give_up(&diag__rt->lock) != 0) {
        diag__warn("diagnose.h: another thread held diagnose.h's lock for 1 s at exit; no profile written\n");
        diag__exit_deadline = 0;
        errno = saved_errno;
        return;
    }
    for (link = &diag__rt->copies; *link != NULL; link = &(*link)->next)
        if (*link == &diag__self) {
            *link = diag__self.next;
            break;
        }
    stays = diag__rt->copies;
    if (diag__rt->key_owner == &diag__self || stays == NULL) diag__key_move(stays);
    if (diag__rt->fork_owner == &diag__self) diag__rt->fork_owner = stays;
    diag__keep_names();
    pthread_mutex_unlock(&diag__rt->lock);
    diag__snapshot_thread_hand_over(stays, diag__self.in_executable);
    if (stays == NULL) diag__exit_handler();
    else if (!diag__self.in_executable && diag__snapshot_write(0, diag__write_or_warn, NULL, 0) != 0)
        diag__warn("diagnose.h: profile not written at the unload of a library: %s\n", strerror(errno));
    diag__exit_deadline = 0;
    errno = saved_errno;
}

/* >>start: start-up, at the first poll or at load ---------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define DIAG__LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DIAG__LSAN 1
#endif
#endif
#ifdef DIAG__LSAN
/* The runtime is never freed; once every copy's library is unloaded, only
   the registry's mapping, which LeakSanitizer does not read, points at it. */
void __lsan_ignore_object(const void *p) __attribute__((weak));
#endif

/* A new runtime, made by the first copy that starts (see "copies"); sets
   diag__rt. -1 without memory (diag__rt: this copy's zeroed one again). */
static int diag__runtime_new(void)
{
    diag__rt = (diag__runtime *)diag__alloc_zero(sizeof *diag__rt);
    if (diag__rt == NULL) {
        diag__rt = &diag__local;
        return -1;
    }
#ifdef DIAG__LSAN
    if (__lsan_ignore_object) __lsan_ignore_object(diag__rt);
#endif
    pthread_mutex_init(&diag__rt->lock, NULL);
    pthread_mutex_init(&diag__rt->dump_lock, NULL);
    diag__settings_read();
    diag__use_tsc = diag__tsc_is_invariant();
    diag__rt->use_tsc = diag__use_tsc;
    diag__clock_pair(&diag__rt->tsc0, &diag__rt->mono0);
    diag__rt->reset_at = diag__rt->tsc0;
    diag__rt->no_table = (diag__thread *)diag__alloc_zero(sizeof *diag__rt->no_table);
    diag__rt->snapshot_thread = (struct diag__snapshot_thread *)diag__alloc_zero(sizeof *diag__rt->snapshot_thread);
    diag__rt->trace = (struct diag__trace_state *)diag__alloc_zero(sizeof *diag__rt->trace);
    diag__rt->at = (struct diag__at_state *)diag__alloc_zero(sizeof *diag__rt->at);
    if (diag__rt->no_table == NULL || diag__rt->snapshot_thread == NULL ||
        diag__rt->trace == NULL || diag__rt->at == NULL || diag__reserve_path() != 0) {
        DIAG_FREE(diag__rt->no_table);
        DIAG_FREE(diag__rt->paths[0]);
        DIAG_FREE(diag__rt->snapshot_thread);
        DIAG_FREE(diag__rt->trace);
        DIAG_FREE(diag__rt->at);
        DIAG_FREE(diag__rt);
        diag__rt = &diag__local;
        return -1;
    }
    pthread_mutex_init(&diag__rt->at->lock, NULL);
    diag__rt->snapshot_thread->pipe[0] = diag__rt->snapshot_thread->pipe[1] = -1;
    diag__key_move(diag__copy_self()); /* no key: threads are then counted, not merged at exit */
    diag__add_path(NULL, DIAG__ROOT, 0, 0);
    diag__add_path("[overflow]", DIAG__ROOT, 1, 0);
    diag__rt->no_table->depth = DIAG_MAX_DEPTH;
    diag__slow_start();
    diag__rt->slow_ticks = diag__slow_ticks;
    diag__rt->trace->n = diag__rt->trace_n;
    return 0;
}

static void diag__start_once(void)
{
    int created = 0, rejoined = 0;
    if (!diag__setting_bool("DIAGNOSE", 1)) { /* off: read first, before any runtime */
        diag__mode = 2;
        return;
    }
    if (diag__join(&created, &rejoined) == NULL) {
        diag__warn("diagnose.h: out of memory at start-up; profiling is off\n");
        diag__mode = 2;
        return;
    }
    diag__use_tsc = diag__rt->use_tsc;
    diag__slow_ticks = DIAG__LOAD(diag__rt->slow_ticks);
    pthread_atfork(diag__fork_prepare, diag__fork_parent, diag__fork_child);
    atexit(diag__leave);
    __atomic_store_n(&diag__mode, 1, __ATOMIC_RELEASE);
    if (created) diag__http_start();
    if (created || rejoined) diag__snapshot_thread_start(created);
}

int diag__start(void)
{
    diag__inside_enter();
    pthread_once(&diag__once, diag__start_once);
    diag__inside_leave();
    return diag__mode == 1;
}

__attribute__((constructor)) static void diag__constructor(void) { diag__start(); }

/* >>api: the public entry points --------------------------------------------- */

void diag_span_cancel(diag_span *s)
{
    diag__thread *t;
    diag__slot *slot;
    uint64_t now;
    if (s == NULL) return;
    DIAG__STORE(s->woke_at, 0);
    if (s->path == 0) return;
    t = diag__tls ? diag__tls : diag__attach();
    if (t == diag__rt->no_table) {
        s->path = 0;
        diag__run_close(s);
        return;
    }
    if (t->depth) diag__drop_unwind(t, s);
    slot = diag__slot_at(t, s->path);
    now = diag__now();
    diag__run_end(slot, s, now > s->run_start ? now - s->run_start : 0, 1);
}

void diag_fiber_switch(diag_fiber *to)
{
    diag__thread *t = diag__tls;
    diag_fiber *from;
    uint64_t now = 0;
    if ((t == NULL && to == NULL) || !diag__on()) return;
    if (t == NULL) t = diag__attach(); /* so that the coroutine's spans find to */
    if (t == diag__rt->no_table) return;
    from = t->fiber;
    if ((from != NULL && t->depth > t->fiber_base) || (to != NULL && to->depth > 0)) now = diag__now();
    if (from != NULL) diag__fiber_save(t, from, now);
    t->fiber = to;
    t->fiber_base = t->depth;
    t->fiber_in = 0;
    if (to != NULL && to->depth > 0) diag__fiber_restore(t, to, now);
}

/* Ends the coroutine's open spans as diag_span_cancel would, innermost
   first: each poll ends now, and each run is a drop. */
void diag_fiber_drop(diag_fiber *f)
{
    diag__thread *t = diag__tls;
    diag_fiber *was;
    if (f == NULL || diag__mode != 1 || (f->depth == 0 && (t == NULL || t->fiber != f))) return;
    if (t == NULL) t = diag__attach();
    was = t->fiber;
    diag_fiber_switch(f);
    while (t->fiber == f && t->depth > t->fiber_base) diag_span_cancel(t->stack[t->depth - 1].span);
    diag_fiber_switch(was);
}

int diag_reset(void)
{
    int rc;
    if (!diag__on()) return 0;
    diag__inside_enter();
    pthread_mutex_lock(&diag__rt->lock);
    rc = diag__reset_locked();
    pthread_mutex_unlock(&diag__rt->lock);
    diag__inside_leave();
    if (rc != 0) errno = ENOMEM;
    return rc;
}

int diag_dump(const char *prefix) { return diag__dump_with(prefix, DIAG__FOLDED_FILES); }

int diag_write_svg(const char *prefix) { return diag__dump_with(prefix, DIAG__SVG_FILES); }

diag_span *diag_span_at(const void *task, const char *name)
{
    diag__at_span *a = NULL;
    if (task == NULL || !diag__on()) return &diag__at_unmeasured;
    diag__at_lock();
    if (!diag__rt->at->forks_handled) /* a fork while a thread holds the lock must not inherit it locked */
        diag__rt->at->forks_handled = pthread_atfork(diag__at_lock, diag__at_unlock, diag__at_unlock) == 0;
    if (diag__rt->at->cap) a = diag__rt->at->slots[diag__at_find(task)];
    if (a == NULL && diag__at_room() && (a = diag__at_new()) != NULL) {
        diag_span_init(&a->span, name);
        a->span.flags = DIAG__SPAN_AT;
        a->task = task;
        diag__rt->at->slots[diag__at_find(task)] = a;
        diag__rt->at->count++;
    }
    diag__at_unlock();
    return a ? &a->span : &diag__at_unmeasured;
}

/* The span's run ended: it leaves the table for the free list (unless another task took its place). */
void diag__at_release(diag_span *s)
{
    diag__at_span *a = (diag__at_span *)s;
    uint32_t i;
    diag__at_lock();
    i = diag__at_find(a->task);
    if (diag__rt->at->slots[i] == a) {
        diag__at_remove(i);
        a->next_free = diag__rt->at->free;
        diag__rt->at->free = a;
    }
    diag__at_unlock();
}

void diag_drop_at(const void *task)
{
    diag__at_span *a = NULL;
    if (task == NULL || diag__mode != 1) return;
    diag__at_lock();
    if (diag__rt->at->cap) a = diag__rt->at->slots[diag__at_find(task)];
    diag__at_unlock();
    if (a == NULL) return;
    diag_span_cancel(&a->span);
    diag__at_release(&a->span);
}

#ifdef __cplusplus
}
#endif
#endif /* DIAGNOSE_IMPLEMENTATION */

/*
MIT License

Copyright (c) 2026 the diagnose.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
*/
