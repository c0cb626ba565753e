/* How the program ends does not change because it is profiled:
   - stderr a pipe that nobody reads any more (prog 2>&1 | head): the
     table at exit, a warning while running and a signal snapshot's line
     raise no SIGPIPE; the exit code stays, the files are whole, and a
     program that handles or ignores SIGPIPE keeps its setting;
   - a SIGTERM handler that calls exit(0) while its thread is inside
     diagnose.h (dumping, resetting, creating paths): the exit never hangs
     or crashes, and says in one line when it skipped its dump;
   - DIAGNOSE_SIGNAL=11: refused as SEGV is, so a segfault inside a poll
     ends the program by SIGSEGV.
   Each case is this program run again as a child. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>

struct counter { diag_future base; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    (void)self, (void)cx;
    return DIAG_PENDING;
}

static void poll_named(const char *name, int n)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll) };
    DIAGNOSE_AS(&c.base, name);
    while (n-- > 0) diag_poll(&c.base, NULL);
    diag_drop(&c.base);
}

/* ---- stderr a broken pipe ---- */

/* From here on stderr is a pipe whose reading end is closed. */
static int break_stderr(void)
{
    int fds[2];
    if (pipe(fds) != 0 || dup2(fds[1], 2) < 0) return -1;
    close(fds[0]);
    close(fds[1]);
    return 0;
}

static int sigpipe_blocked(void)
{
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, SIGPIPE);
}

static int child_table_to_broken_pipe(void)
{
    poll_named("work", 5);
    if (break_stderr() != 0) return 2;
    return 0; /* the table at exit meets EPIPE */
}

static volatile sig_atomic_t sigpipes;
static void count_sigpipe(int signo) { (void)signo, sigpipes++; }

/* The program's own handler sees its own SIGPIPEs, never the library's. */
static int child_own_sigpipe_handler(void)
{
    struct sigaction sa, now;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = count_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);
    poll_named("work", 5);
    if (break_stderr() != 0) return 2;
    diag_poll(NULL, NULL); /* a warning on stderr, while running */
    if (sigpipes != 0) return 3;
    if (sigpipe_blocked()) return 4;
    sigaction(SIGPIPE, NULL, &now);
    if (now.sa_handler != count_sigpipe) return 5;
    if (write(2, "x", 1) != -1 || errno != EPIPE || sigpipes != 1) return 6; /* its own still arrives */
    return 0;
}

static int child_ignores_sigpipe(void)
{
    struct sigaction now;
    signal(SIGPIPE, SIG_IGN);
    poll_named("work", 5);
    if (break_stderr() != 0) return 2;
    diag_poll(NULL, NULL);
    sigaction(SIGPIPE, NULL, &now);
    return now.sa_handler == SIG_IGN && !sigpipe_blocked() ? 0 : 3;
}

/* DIAGNOSE_SIGNAL=USR2: the snapshot's line goes to the broken pipe. */
static int child_snapshot_to_broken_pipe(void)
{
    int i;
    poll_named("work", 5);
    if (break_stderr() != 0) return 2;
    kill(getpid(), SIGUSR2);
    for (i = 0; i < 5000 && !tt_exists("out.1.polls.folded"); i++) tt_sleep_ns(1000000);
    tt_sleep_ns(20000000); /* the line after the files */
    poll_named("work", 1);
    return tt_exists("out.1.polls.folded") ? 0 : 3;
}

static void check_pipe_child(const char *name, const char *const *env, int snapshot)
{
    const char *dir = tt_tempdir();
    char *text;
    CHECK_EQ(tt_spawn(dir, name, env), 0);
    text = tt_readf("%s/out.polls.folded", dir);
    CHECK_STR(text, snapshot ? "work 6\n" : "work 5\n");
    free(text);
    if (snapshot) {
        text = tt_readf("%s/out.1.polls.folded", dir);
        CHECK_STR(text, "work 5\n");
        free(text);
    }
    text = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(text, ""); /* all of it went to the pipe */
    free(text);
}

static void test_table_to_a_broken_pipe(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=", "DIAGNOSE=", NULL };
    check_pipe_child("table_to_broken_pipe", env, 0);
}

static void test_program_keeps_its_sigpipe_setting(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=", "DIAGNOSE=", NULL };
    check_pipe_child("own_sigpipe_handler", env, 0);
    check_pipe_child("ignores_sigpipe", env, 0);
}

static void test_signal_snapshot_to_a_broken_pipe(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=", "DIAGNOSE=", "DIAGNOSE_SIGNAL=USR2",
                                       NULL };
    check_pipe_child("snapshot_to_broken_pipe", env, 1);
}

/* ---- exit(0) from a SIGTERM handler ---- */

static void exit_zero(int signo)
{
    (void)signo;
    exit(0);
}

static char names[4096][16];

static void name_paths(void)
{
    int i;
    for (i = 0; i < 4096; i++) snprintf(names[i], sizeof names[i], "p%d", i);
}

/* The main thread works inside diagnose.h in a loop; another thread
   sends it SIGTERM after `delay` us, whose handler calls exit(0). */
static pthread_t main_thread;
static long delay_us;

static void *terminator(void *arg)
{
    (void)arg;
    tt_sleep_ns((uint64_t)delay_us * 1000u);
    pthread_kill(main_thread, SIGTERM);
    return NULL;
}

static void *dump_forever(void *arg)
{
    (void)arg;
    for (;;) diag_dump(NULL);
    return NULL;
}

static void start_terminator(int second_dumper)
{
    pthread_t t;
    sigset_t term;
    const char *d = getenv("TEST_DELAY_US");
    delay_us = d ? atol(d) : 1000;
    name_paths();
    poll_named("before", 3);
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    main_thread = pthread_self();
    pthread_sigmask(SIG_BLOCK, &term, NULL); /* the threads started here never take it */
    pthread_create(&t, NULL, terminator, NULL);
    pthread_detach(t);
    if (second_dumper) pthread_create(&t, NULL, dump_forever, NULL);
    signal(SIGTERM, exit_zero);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL);
}

static int child_term_while_dumping(void)
{
    int i;
    for (i = 0; i < 300; i++) poll_named(names[i], 1);
    start_terminator(1);
    for (;;) diag_dump(NULL);
    return 0;
}

static int child_term_while_resetting(void)
{
    int i;
    for (i = 0; i < 300; i++) poll_named(names[i], 1);
    start_terminator(0);
    for (;;) diag_reset();
    return 0;
}

/* Every poll pair makes a new path: (parent, name) never seen before. */
static int child_term_while_creating_paths(void)
{
    unsigned i;
    start_terminator(0);
    for (i = 0;; i++) {
        struct counter outer = { DIAG_FUTURE_INIT(counter_poll) }, inner = { DIAG_FUTURE_INIT(counter_poll) };
        DIAGNOSE_AS(&outer.base, names[i % 4096]);
        DIAGNOSE_AS(&inner.base, names[(i / 4096 + i) % 4096]);
        diag_span_begin(&outer.base.span);
        diag_poll(&inner.base, NULL);
        diag_span_end(&outer.base.span, DIAG_READY);
        diag_drop(&inner.base);
    }
    return 0;
}

/* Runs the child; kills it after 20 s. Returns its status as tt_spawn. */
static int spawn_with_timeout(const char *dir, const char *name, const char *const *env)
{
    pid_t pid;
    int status = 0;
    uint64_t end = tt_now_ns() + 20000000000ull;
    fflush(NULL);
    pid = fork();
    if (pid == 0) { /* tt_spawn waits in this extra process, leader of a group to kill */
        setpgid(0, 0);
        _exit(tt_spawn(dir, name, env));
    }
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (tt_now_ns() > end) {
            printf("  %s hung: killed after 20 s\n", name);
            kill(0 - pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        tt_sleep_ns(2000000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char interrupted[] =
    "diagnose.h: exit() interrupted diagnose.h on the same thread (from a signal handler?); no profile written\n";
static const char in_a_poll[] = "diagnose.h: 1 poll had not returned at exit on the exiting thread (exit inside a "
                                "poll, or a longjmp out of it without diag_drop)\n";
static const char in_two_polls[] = "diagnose.h: 2 polls had not returned at exit on the exiting thread (exit inside a "
                                   "poll, or a longjmp out of it without diag_drop)\n";

/* What stderr may hold: nothing, or the line of a skipped dump; and after
   either, when the signal came inside a poll (or two, nested), the line
   that says so. */
static int expected_stderr(const char *err, int *skipped)
{
    size_t n = strlen(interrupted);
    if (err == NULL) return 0;
    *skipped = strncmp(err, interrupted, n) == 0;
    if (*skipped) err += n;
    return strcmp(err, "") == 0 || strcmp(err, in_a_poll) == 0 || strcmp(err, in_two_polls) == 0;
}

/* What a written dump holds. The dumping child and the one creating paths
   never reset: "before" is there, 3 polls. */
static int holds_before(const char *polls) { return tt_value(polls, "before") == 3; }

/* The resetting child's dump holds the window since its last whole reset:
   everything (before 3, p0 to p299 once each) while the first reset has not
   ended, nothing once one has (nothing is polled after it; a signal between
   two resets, outside the library, writes that empty window). Never a part
   of both, which is what a half-done reset would write. */
static int holds_one_window(const char *polls)
{
    char name[16];
    int i;
    if (polls != NULL && *polls == '\0') return 1;
    if (tt_value(polls, "before") != 3 || tt_lines(polls) != 301) return 0;
    for (i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "p%d", i);
        if (tt_value(polls, name) != 1) return 0;
    }
    return 1;
}

static void term_tries(const char *name, int tries, int (*written_ok)(const char *polls), int *skipped)
{
    char tsan[600], asan[600], delay[64];
    const char *tsan_env = getenv("TSAN_OPTIONS"), *asan_env = getenv("ASAN_OPTIONS");
    const char *env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", delay, tsan, asan, NULL };
    int k;
    /* exit() in a handler is not async-signal-safe, which is the point of
       the test: the sanitizers must not stop the child for it, and the
       leak check at exit would wait for the allocator lock that the
       interrupted malloc holds */
    snprintf(tsan, sizeof tsan, "TSAN_OPTIONS=%s%sreport_signal_unsafe=0", tsan_env ? tsan_env : "",
             tsan_env ? ":" : "");
    snprintf(asan, sizeof asan, "ASAN_OPTIONS=%s%sdetect_leaks=0", asan_env ? asan_env : "", asan_env ? ":" : "");
    for (k = 0; k < tries; k++) {
        const char *dir = tt_tempdir();
        char *err, *polls;
        int rc, skip = 0;
        snprintf(delay, sizeof delay, "TEST_DELAY_US=%d", 500 + (k * 7919) % 15000);
        rc = spawn_with_timeout(dir, name, env);
        CHECK_EQ(rc, 0);
        err = tt_readf("%s/stderr.txt", dir);
        CHECK(expected_stderr(err, &skip));
        if (!expected_stderr(err, &skip)) printf("  stderr: %s\n", err ? err : "(none)");
        *skipped += skip;
        polls = tt_readf("%s/out.polls.folded", dir);
        if (polls) CHECK(tt_folded_ok(polls));
        if (!skip) CHECK(written_ok(polls)); /* not skipped: written */
        free(polls);
        free(err);
        if (rc != 0) break;
    }
}

static void test_sigterm_exit_while_dumping(void)
{
    int skipped = 0;
    term_tries("term_while_dumping", 16, holds_before, &skipped);
    printf("  %d of 16 exits skipped their dump\n", skipped);
}

static void test_sigterm_exit_while_resetting(void)
{
    int skipped = 0;
    term_tries("term_while_resetting", 16, holds_one_window, &skipped);
    printf("  %d of 16 exits skipped their dump\n", skipped);
}

static void test_sigterm_exit_while_creating_paths(void)
{
    int skipped = 0;
    term_tries("term_while_creating_paths", 16, holds_before, &skipped);
    printf("  %d of 16 exits skipped their dump\n", skipped);
}

/* ---- a fault inside a poll, with DIAGNOSE_SIGNAL=11 ---- */

/* In the faulting child, before diagnose.h starts: SIGSEGV's default
   action, as in a program built without sanitizers (whose handler reports
   and exits 1), and no core file. */
TT_BEFORE_START(fault_as_without_sanitizers)
{
    if (getenv("TEST_FAULT") == NULL) return;
    signal(SIGSEGV, SIG_DFL);
    prctl(PR_SET_DUMPABLE, 0);
}

static diag_status fault_poll(diag_future *self, void *cx)
{
    void *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)self, (void)cx;
    if (page != MAP_FAILED) *(volatile char *)page = 1; /* a write to a page that allows none */
    return DIAG_READY;
}

static int child_fault_in_poll(void)
{
    struct counter c = { DIAG_FUTURE_INIT(fault_poll) };
    poll_named("before", 2);
    diag_poll(DIAGNOSE_AS(&c.base, "fault"), NULL);
    return 2;
}

/* A handler for SIGSEGV returned to the fault, which faulted again: the
   program looped, writing a snapshot each time, where it would have died. */
static void test_fault_inside_a_poll_ends_the_program(void)
{
    static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_SIGNAL=11", "TEST_FAULT=1", NULL };
    const char *dir = tt_tempdir();
    char path[300], *err;
    CHECK_EQ(spawn_with_timeout(dir, "fault_in_poll", env), 128 + SIGSEGV);
    snprintf(path, sizeof path, "%s/out.1.polls.folded", dir);
    CHECK(!tt_exists(path));
    err = tt_readf("%s/stderr.txt", dir);
    CHECK(err && strncmp(err, "diagnose.h: DIAGNOSE_SIGNAL='11' is a fault signal; ", 52) == 0);
    free(err);
}

static const tt_child children[] = {
    { "table_to_broken_pipe", child_table_to_broken_pipe },
    { "own_sigpipe_handler", child_own_sigpipe_handler },
    { "ignores_sigpipe", child_ignores_sigpipe },
    { "snapshot_to_broken_pipe", child_snapshot_to_broken_pipe },
    { "term_while_dumping", child_term_while_dumping },
    { "term_while_resetting", child_term_while_resetting },
    { "term_while_creating_paths", child_term_while_creating_paths },
    { "fault_in_poll", child_fault_in_poll },
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    tt_quiet_exit_dump();
    RUN(test_table_to_a_broken_pipe);
    RUN(test_program_keeps_its_sigpipe_setting);
    RUN(test_signal_snapshot_to_a_broken_pipe);
    RUN(test_sigterm_exit_while_dumping);
    RUN(test_sigterm_exit_while_resetting);
    RUN(test_sigterm_exit_while_creating_paths);
    RUN(test_fault_inside_a_poll_ends_the_program);
    return test_summary();
}
