/* The DIAGNOSE_* variables: every spelling that is accepted, the one
   stderr line for a value that is not (exact text), and where the files go
   when the program changes directory. Each case starts this program again
   as a child (tt_spawn) in a fresh directory with its own environment. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <signal.h>

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */

#define MS 1000000ull

struct task {
    diag_future base;
    int pending, n;
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    (void)cx;
    return t->n++ < t->pending ? DIAG_PENDING : DIAG_READY;
}

/* Two paths: "one" polled 3 times to READY, "two" once. */
static void work(void)
{
    static struct task one = { DIAG_FUTURE_INIT(task_poll), 2, 0 }, two = { DIAG_FUTURE_INIT(task_poll), 0, 0 };
    diag_future *f = DIAGNOSE_AS(&one.base, "one");
    while (diag_poll(f, NULL) == DIAG_PENDING) {
    }
    diag_poll(DIAGNOSE_AS(&two.base, "two"), NULL);
}

static int child_work(void)
{
    work();
    return 0;
}

/* Sends itself the signal named in SEND_SIGNAL and waits for snapshot 1:
   without a handler for it, the signal ends the child. */
static int child_signal(void)
{
    const char *send = getenv("SEND_SIGNAL");
    int k;
    work();
    if (send == NULL || kill(getpid(), atoi(send)) != 0) return 2;
    for (k = 0; k < 500 && !tt_exists("snap.1.polls.folded"); k++) tt_sleep_ns(10 * MS);
    return tt_exists("snap.1.polls.folded") ? 0 : 3;
}

/* Changes directory (into "moved", which the test made), as a daemon does,
   then dumps with an explicit relative prefix and with the setting, and
   exits: the setting's files land where the program started. */
static int child_chdir(void)
{
    work();
    setenv("DIAGNOSE_OUT", "changed-too-late", 1); /* read at start-up: no effect */
    if (chdir("moved") != 0) return 2;
    if (diag_dump("explicit") != 0) return 3; /* relative to the directory of the call */
    if (diag_dump(NULL) != 0) return 4;
    return 0;
}

/* The working directory is removed under the program: still the start-up
   directory's path for the setting. */
static int child_cwd_removed(void)
{
    work();
    if (chdir("moved") != 0 || rmdir("../moved") != 0) return 2;
    return 0;
}

static const tt_child children[] = {
    { "work", child_work },
    { "signal", child_signal },
    { "chdir", child_chdir },
    { "cwd_removed", child_cwd_removed },
};

/* ---- helpers --------------------------------------------------------------- */

static char dir[256];

/* Runs child `name` in a fresh directory with env (and DIAGNOSE_OUT=out,
   DIAGNOSE_QUIET=1 unless env says otherwise); returns its stderr. */
static char *run(const char *name, const char *const *env, int *status)
{
    const char *full[16];
    int n = 0;
    char *text;
    full[n++] = "DIAGNOSE_OUT=out";
    full[n++] = "DIAGNOSE_QUIET=1";
    full[n++] = "DIAGNOSE=";
    for (; *env && n < 15; env++) full[n++] = *env;
    full[n] = NULL;
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    *status = tt_spawn(dir, name, full);
    text = tt_readf("%s/stderr.txt", dir);
    return text ? text : (char *)calloc(1, 1);
}

/* The child's stderr is exactly `want` (one line, or "" for none) and it
   exited 0. */
static void check_stderr(const char *setting, const char *want)
{
    const char *env[] = { setting, NULL };
    int status;
    char *err = run("work", env, &status);
    CHECK_EQ(status, 0);
    CHECK_STR(err, want);
    free(err);
}

static char *read_out(const char *metric)
{
    return tt_readf("%s/out.%s.folded", dir, metric);
}

static int starts_with(const char *text, const char *start)
{
    int ok = strncmp(text, start, strlen(start)) == 0;
    if (!ok) printf("  text begins:\n%.300s\n", text);
    return ok;
}

#define BOOL_ACCEPTED "accepted: 0/1, off/on, no/yes, false/true (any case)"

/* ---- tests ------------------------------------------------------------------ */

/* DIAGNOSE: every "off" spelling records nothing; "on" ones record. */
static void test_diagnose_spellings(void)
{
    static const char *const off[] = { "DIAGNOSE=0", "DIAGNOSE=off", "DIAGNOSE=OFF", "DIAGNOSE=no",
                                       "DIAGNOSE=False" };
    static const char *const on[] = { "DIAGNOSE=1", "DIAGNOSE=on", "DIAGNOSE=Yes", "DIAGNOSE=TRUE" };
    size_t i;
    for (i = 0; i < sizeof off / sizeof off[0]; i++) {
        const char *env[] = { off[i], NULL };
        int status;
        char *err = run("work", env, &status), *polls;
        CHECK_EQ(status, 0);
        CHECK_STR(err, "");
        polls = read_out("polls");
        tt_check(polls == NULL, __FILE__, __LINE__, "%s wrote files", off[i]);
        free(polls);
        free(err);
    }
    for (i = 0; i < sizeof on / sizeof on[0]; i++) {
        const char *env[] = { on[i], NULL };
        int status;
        char *err = run("work", env, &status), *polls = read_out("polls");
        CHECK_EQ(status, 0);
        CHECK_STR(err, "");
        CHECK_STR(polls, "one 3\ntwo 1\n");
        free(polls);
        free(err);
    }
}

/* A yes/no not understood: the line, then the default (DIAGNOSE: on, so it
   records). */
static void test_bool_not_understood(void)
{
    const char *env[] = { "DIAGNOSE=maybe", NULL };
    int status;
    char *err = run("work", env, &status), *polls = read_out("polls");
    CHECK_EQ(status, 0);
    CHECK_STR(err, "diagnose.h: DIAGNOSE='maybe' is not understood; " BOOL_ACCEPTED "; using 1\n");
    CHECK_STR(polls, "one 3\ntwo 1\n");
    free(polls);
    free(err);
    check_stderr("DIAGNOSE_SVG=2", "diagnose.h: DIAGNOSE_SVG='2' is not understood; " BOOL_ACCEPTED "; using 0\n");
}

/* DIAGNOSE_QUIET=yes / true: no table. DIAGNOSE_QUIET=no: the table. */
static void test_quiet_spellings(void)
{
    const char *yes[] = { "DIAGNOSE_QUIET=yes", "DIAGNOSE_QUIET=true", "DIAGNOSE_QUIET=ON" };
    const char *no[] = { "DIAGNOSE_QUIET=no", NULL }, *loud[] = { "DIAGNOSE_QUIET=loud", NULL };
    size_t i;
    int status;
    char *err;
    for (i = 0; i < sizeof yes / sizeof yes[0]; i++) check_stderr(yes[i], "");
    err = run("work", no, &status);
    CHECK_EQ(status, 0);
    CHECK(starts_with(err, "diagnose.h: 2 paths, 1 thread, clock "));
    CHECK(strstr(err, "  one\n") != NULL);
    free(err);
    err = run("work", loud, &status);
    CHECK(starts_with(err, "diagnose.h: DIAGNOSE_QUIET='loud' is not understood; " BOOL_ACCEPTED "; using 0\n"
                           "diagnose.h: 2 paths, 1 thread, clock "));
    free(err);
}

/* DIAGNOSE_SVG=yes / true / 1: the SVGs next to the folded files. */
static void test_svg_spellings(void)
{
    const char *values[] = { "DIAGNOSE_SVG=yes", "DIAGNOSE_SVG=true", "DIAGNOSE_SVG=1" };
    size_t i;
    for (i = 0; i < sizeof values / sizeof values[0]; i++) {
        const char *env[] = { values[i], NULL };
        int status;
        char *err = run("work", env, &status), *svg;
        CHECK_STR(err, "");
        svg = tt_readf("%s/out.busy.svg", dir);
        tt_check(svg != NULL && strstr(svg, "<svg") != NULL, __FILE__, __LINE__, "%s: no out.busy.svg", values[i]);
        free(svg);
        free(err);
    }
}

#define PATHS_ACCEPTED "accepted: a whole number from 1 to 1048574; using 1048574\n"

/* DIAGNOSE_MAX_PATHS: 0, negative, not a number or too large: the line and
   the default cap (both paths measured); 1: one path and [overflow]. */
static void test_max_paths(void)
{
    const char *env[] = { "DIAGNOSE_MAX_PATHS=1", NULL };
    int status;
    char *err, *polls;
    check_stderr("DIAGNOSE_MAX_PATHS=0", "diagnose.h: DIAGNOSE_MAX_PATHS='0' is below the minimum; " PATHS_ACCEPTED);
    polls = read_out("polls");
    CHECK_STR(polls, "one 3\ntwo 1\n");
    free(polls);
    check_stderr("DIAGNOSE_MAX_PATHS=-5", "diagnose.h: DIAGNOSE_MAX_PATHS='-5' is negative; " PATHS_ACCEPTED);
    check_stderr("DIAGNOSE_MAX_PATHS=abc", "diagnose.h: DIAGNOSE_MAX_PATHS='abc' is not a whole number; " PATHS_ACCEPTED);
    check_stderr("DIAGNOSE_MAX_PATHS=12x", "diagnose.h: DIAGNOSE_MAX_PATHS='12x' is not a whole number; " PATHS_ACCEPTED);
    check_stderr("DIAGNOSE_MAX_PATHS= 7", "diagnose.h: DIAGNOSE_MAX_PATHS=' 7' is not a whole number; " PATHS_ACCEPTED);
    check_stderr("DIAGNOSE_MAX_PATHS=1048575",
                 "diagnose.h: DIAGNOSE_MAX_PATHS='1048575' is above the maximum; " PATHS_ACCEPTED);
    check_stderr("DIAGNOSE_MAX_PATHS=99999999999999999999999",
                 "diagnose.h: DIAGNOSE_MAX_PATHS='99999999999999999999999' is above the maximum; " PATHS_ACCEPTED);
    check_stderr("DIAGNOSE_MAX_PATHS=1048574", "");
    err = run("work", env, &status);
    polls = read_out("polls");
    CHECK_STR(err, "");
    CHECK_STR(polls, "[overflow] 1\none 3\n");
    free(polls);
    free(err);
}

/* DIAGNOSE_SLOW_NS: negative (once read as 2^64 - 5) or not a number: the
   line and the default, 1 ms. */
static void test_slow_ns(void)
{
    check_stderr("DIAGNOSE_SLOW_NS=-5", "diagnose.h: DIAGNOSE_SLOW_NS='-5' is negative; accepted: a whole number, 0 or "
                                        "more; using 1000000\n");
    check_stderr("DIAGNOSE_SLOW_NS=abc", "diagnose.h: DIAGNOSE_SLOW_NS='abc' is not a whole number; accepted: a whole "
                                         "number, 0 or more; using 1000000\n");
    check_stderr("DIAGNOSE_SLOW_NS=0", "");
    check_stderr("DIAGNOSE_SLOW_NS=250000", "");
}

#define SECONDS_ACCEPTED "accepted: seconds from 0.001 to 86400, decimals allowed; ignored\n"

/* DIAGNOSE_INTERVAL: the minimum is named as the problem, not the number. */
static void test_interval(void)
{
    check_stderr("DIAGNOSE_INTERVAL=0.0001", "diagnose.h: DIAGNOSE_INTERVAL='0.0001' is below the minimum; " SECONDS_ACCEPTED);
    check_stderr("DIAGNOSE_INTERVAL=0", "diagnose.h: DIAGNOSE_INTERVAL='0' is below the minimum; " SECONDS_ACCEPTED);
    check_stderr("DIAGNOSE_INTERVAL=-2", "diagnose.h: DIAGNOSE_INTERVAL='-2' is negative; " SECONDS_ACCEPTED);
    check_stderr("DIAGNOSE_INTERVAL=90000", "diagnose.h: DIAGNOSE_INTERVAL='90000' is above the maximum; " SECONDS_ACCEPTED);
    check_stderr("DIAGNOSE_INTERVAL=1e3", "diagnose.h: DIAGNOSE_INTERVAL='1e3' is not a number of seconds; " SECONDS_ACCEPTED);
    check_stderr("DIAGNOSE_INTERVAL=.", "diagnose.h: DIAGNOSE_INTERVAL='.' is not a number of seconds; " SECONDS_ACCEPTED);
    check_stderr("DIAGNOSE_INTERVAL=3600", "");
    check_stderr("DIAGNOSE_INTERVAL=0.001", "");
    check_stderr("DIAGNOSE_INTERVAL=.5", "");
}

#define SIGNAL_ACCEPTED                                                                                       \
    "accepted: a name with or without SIG, any case (USR1, usr2, SIGHUP, ...) or a number from 1 to 64, not " \
    "KILL, STOP, SEGV, BUS, ILL, FPE, ABRT, TRAP or SYS; ignored\n"

/* DIAGNOSE_SIGNAL: names in any case, with or without SIG, and numbers, each
   really requesting a snapshot; KILL, STOP and unknown names refused. */
static void test_signal_spellings(void)
{
    static const struct { const char *setting; int signo; } ok[] = {
        { "DIAGNOSE_SIGNAL=usr2", SIGUSR2 }, { "DIAGNOSE_SIGNAL=SIGUSR1", SIGUSR1 },
        { "DIAGNOSE_SIGNAL=sighup", SIGHUP }, { "DIAGNOSE_SIGNAL=Winch", SIGWINCH },
        { "DIAGNOSE_SIGNAL=12", 12 },
    };
    size_t i;
    for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char send[32];
        const char *env[] = { ok[i].setting, "DIAGNOSE_OUT=snap", send, NULL };
        int status;
        char *err, *polls;
        snprintf(send, sizeof send, "SEND_SIGNAL=%d", ok[i].signo);
        err = run("signal", env, &status);
        tt_check(status == 0, __FILE__, __LINE__, "%s: the child exited %d", ok[i].setting, status);
        CHECK_STR(err, "");
        polls = tt_readf("%s/snap.1.polls.folded", dir);
        CHECK_STR(polls, "one 3\ntwo 1\n");
        free(polls);
        free(err);
    }
    check_stderr("DIAGNOSE_SIGNAL=KILL", "diagnose.h: DIAGNOSE_SIGNAL='KILL' cannot be caught; " SIGNAL_ACCEPTED);
    check_stderr("DIAGNOSE_SIGNAL=sigstop", "diagnose.h: DIAGNOSE_SIGNAL='sigstop' cannot be caught; " SIGNAL_ACCEPTED);
    check_stderr("DIAGNOSE_SIGNAL=9", "diagnose.h: DIAGNOSE_SIGNAL='9' cannot be caught; " SIGNAL_ACCEPTED);
    check_stderr("DIAGNOSE_SIGNAL=USR3", "diagnose.h: DIAGNOSE_SIGNAL='USR3' is not a signal; " SIGNAL_ACCEPTED);
    check_stderr("DIAGNOSE_SIGNAL=65", "diagnose.h: DIAGNOSE_SIGNAL='65' is not a signal; " SIGNAL_ACCEPTED);
    check_stderr("DIAGNOSE_SIGNAL=-10", "diagnose.h: DIAGNOSE_SIGNAL='-10' is not a signal; " SIGNAL_ACCEPTED);
}

/* The signals of a fault, by name and by number alike: a handler would
   return to the fault and be called again forever. */
static void test_fault_signals_refused(void)
{
    static const struct { const char *name; int signo; } faults[] = {
        { "SEGV", SIGSEGV }, { "BUS", SIGBUS }, { "ILL", SIGILL }, { "FPE", SIGFPE },
        { "ABRT", SIGABRT }, { "TRAP", SIGTRAP }, { "SYS", SIGSYS },
    };
    size_t i;
    for (i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        char setting[64], want[512];
        snprintf(setting, sizeof setting, "DIAGNOSE_SIGNAL=SIG%s", faults[i].name);
        snprintf(want, sizeof want, "diagnose.h: DIAGNOSE_SIGNAL='SIG%s' is a fault signal; %s", faults[i].name,
                 SIGNAL_ACCEPTED);
        check_stderr(setting, want);
        snprintf(setting, sizeof setting, "DIAGNOSE_SIGNAL=%d", faults[i].signo);
        snprintf(want, sizeof want, "diagnose.h: DIAGNOSE_SIGNAL='%d' is a fault signal; %s", faults[i].signo,
                 SIGNAL_ACCEPTED);
        check_stderr(setting, want);
    }
}

/* Both settings in seconds take the same range. */
static void test_seconds_ranges_agree(void)
{
    check_stderr("DIAGNOSE_STUCK_S=90000", "diagnose.h: DIAGNOSE_STUCK_S='90000' is above the maximum; accepted: "
                                           "seconds from 0.001 to 86400, decimals allowed; using 10\n");
    check_stderr("DIAGNOSE_STUCK_S=86400", "");
    check_stderr("DIAGNOSE_INTERVAL=86400", "");
}

/* A refused value is quoted, and what a terminal would act on in it is
   escaped: a blank shows, a newline cannot start a forged line. */
static void test_refused_value_quoted_and_escaped(void)
{
    const char *env[] = { "DIAGNOSE_QUIET=yes ", NULL };
    int status;
    char *err = run("work", env, &status);
    CHECK(starts_with(err, "diagnose.h: DIAGNOSE_QUIET='yes ' is not understood; " BOOL_ACCEPTED "; using 0\n"
                           "diagnose.h: 2 paths, 1 thread, clock "));
    free(err);
    check_stderr("DIAGNOSE_SVG=1\nlint: main: forged", "diagnose.h: DIAGNOSE_SVG='1\\nlint: main: forged' is not "
                                                     "understood; " BOOL_ACCEPTED "; using 0\n");
    check_stderr("DIAGNOSE_SLOW_NS=\t\x1b[2J\\\xc2\x9b\xff caf\xc3\xa9",
                 "diagnose.h: DIAGNOSE_SLOW_NS='\\t\\x1b[2J\\\\\\xc2\\x9b\\xff caf\xc3\xa9' is not a whole number; "
                 "accepted: a whole number, 0 or more; using 1000000\n");
}

/* A prefix with a newline (a legal file name): the files are written under
   it, and stderr shows it escaped, in the table's heading too. */
static void test_prefix_escaped_on_stderr(void)
{
    const char *env[] = { "DIAGNOSE_OUT=new\nlint: forged", "DIAGNOSE_QUIET=0", NULL };
    int status;
    char *err = run("work", env, &status), *polls = tt_readf("%s/new\nlint: forged.polls.folded", dir);
    CHECK_EQ(status, 0);
    CHECK_STR(polls, "one 3\ntwo 1\n");
    CHECK(starts_with(err, "diagnose.h: 2 paths, 1 thread, clock "));
    CHECK(strstr(err, "; files new\\nlint: forged.{polls,busy,wall}.folded\n") != NULL);
    CHECK(strstr(err, "\nlint: forged") == NULL);
    free(polls);
    free(err);
}

/* An empty value is the same as none: no line. */
static void test_empty_is_unset(void)
{
    const char *env[] = { "DIAGNOSE_MAX_PATHS=", "DIAGNOSE_SLOW_NS=", "DIAGNOSE_SVG=", "DIAGNOSE_INTERVAL=",
                          "DIAGNOSE_SIGNAL=", NULL };
    int status;
    char *err = run("work", env, &status), *polls = read_out("polls");
    CHECK_EQ(status, 0);
    CHECK_STR(err, "");
    CHECK_STR(polls, "one 3\ntwo 1\n");
    free(polls);
    free(err);
}

/* A program that changes directory: the default prefix and a relative
   DIAGNOSE_OUT land where it started (at exit and for diag_dump(NULL));
   diag_dump("explicit") goes to the directory of the call; setting
   DIAGNOSE_OUT after start-up changes nothing. */
static void test_relative_prefix_is_pinned_at_start(void)
{
    static const char *const settings[] = { "DIAGNOSE_OUT=", "DIAGNOSE_OUT=out" };
    static const char *const prefixes[] = { "diagnose", "out" };
    size_t i;
    for (i = 0; i < 2; i++) {
        const char *env[] = { settings[i], NULL };
        char moved[300], *polls, *err;
        int status;
        snprintf(dir, sizeof dir, "%s", tt_tempdir());
        snprintf(moved, sizeof moved, "%s/moved", dir);
        CHECK_EQ(mkdir(moved, 0700), 0);
        status = tt_spawn(dir, "chdir", env);
        CHECK_EQ(status, 0);
        err = tt_readf("%s/stderr.txt", dir);
        CHECK_STR(err, "");
        free(err);
        polls = tt_readf("%s/%s.polls.folded", dir, prefixes[i]);
        CHECK_STR(polls, "one 3\ntwo 1\n");
        free(polls);
        polls = tt_readf("%s/explicit.polls.folded", moved);
        CHECK_STR(polls, "one 3\ntwo 1\n");
        free(polls);
        polls = tt_readf("%s/%s.polls.folded", moved, prefixes[i]);
        CHECK(polls == NULL);
        free(polls);
        polls = tt_readf("%s/changed-too-late.polls.folded", moved);
        CHECK(polls == NULL);
        free(polls);
    }
}

/* The directory the program moved into is removed: the files still go to
   the start-up directory, with no message. */
static void test_pinned_prefix_when_cwd_is_gone(void)
{
    const char *env[] = { "DIAGNOSE_OUT=", NULL };
    char moved[300], *polls, *err;
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    snprintf(moved, sizeof moved, "%s/moved", dir);
    CHECK_EQ(mkdir(moved, 0700), 0);
    CHECK_EQ(tt_spawn(dir, "cwd_removed", env), 0);
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, "");
    polls = tt_readf("%s/diagnose.polls.folded", dir);
    CHECK_STR(polls, "one 3\ntwo 1\n");
    free(polls);
    free(err);
}

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    RUN(test_diagnose_spellings);
    RUN(test_bool_not_understood);
    RUN(test_quiet_spellings);
    RUN(test_svg_spellings);
    RUN(test_max_paths);
    RUN(test_slow_ns);
    RUN(test_interval);
    RUN(test_signal_spellings);
    RUN(test_fault_signals_refused);
    RUN(test_seconds_ranges_agree);
    RUN(test_refused_value_quoted_and_escaped);
    RUN(test_prefix_escaped_on_stderr);
    RUN(test_empty_is_unset);
    RUN(test_relative_prefix_is_pinned_at_start);
    RUN(test_pinned_prefix_when_cwd_is_gone);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif
