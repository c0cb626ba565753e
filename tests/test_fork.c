/* fork(): the child starts with empty tables, writes its own files only when
   it exits normally (its pid appended when the prefix has no %p), counts
   nothing twice, and leaves the parent's files alone. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <signal.h>

struct counter { diag_future base; int n, ready_at; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    (void)cx;
    return ++c->n == c->ready_at ? DIAG_READY : DIAG_PENDING;
}

static void poll_n(struct counter *c, int n)
{
    while (n-- > 0) diag_poll(&c->base, NULL);
}

static char dir[256], out[300];

/* Forks; the child runs body and leaves through exit(code) (or _exit when
   use_exit is 0). Returns the child's pid after it ended, its status in *st. */
static pid_t fork_child(void (*body)(void), int code, int use_exit, int *st)
{
    pid_t pid;
    fflush(NULL); /* or the child would print our buffered lines again */
    pid = fork();
    if (pid == 0) {
        body();
        if (use_exit) exit(code);
        _exit(code);
    }
    waitpid(pid, st, 0);
    return pid;
}

static struct counter parent_fut = { DIAG_FUTURE_INIT(counter_poll), 0, 1000 };
static struct counter child_fut = { DIAG_FUTURE_INIT(counter_poll), 0, 1000 };

static void child_polls_three(void) { poll_n(&child_fut, 3); }

static void child_dumps_itself(void)
{
    char prefix[400];
    char *polls;
    int ok;
    poll_n(&child_fut, 3);
    snprintf(prefix, sizeof prefix, "%s/child-dump", dir);
    /* An explicit dump in the child holds only the child's polls. The
       parent's future is in an open run: like after diag_reset, it counts
       from the fork on (wall), with no poll, so its line, if any, is 0. */
    ok = diag_dump(prefix) == 0;
    /* the prefix has no %p: in a forked child the pid is appended */
    polls = tt_readf("%s.%ld.polls.folded", prefix, (long)getpid());
    ok = ok && tt_folded_ok(polls) && tt_value(polls, "child") == 3 && tt_value(polls, "parent") <= 0;
    if (!ok) printf("  the child's dump: %s\n", polls ? polls : "(none)");
    free(polls);
    fflush(stdout);
    _exit(ok ? 0 : 1);
}

static void test_child_starts_empty_and_writes_own_files(void)
{
    char before[400], *p1, *p2, *child;
    int st;
    pid_t pid;
    DIAGNOSE_AS(&parent_fut.base, "parent");
    DIAGNOSE_AS(&child_fut.base, "child");
    poll_n(&parent_fut, 5);
    snprintf(before, sizeof before, "%s/parent", dir);
    CHECK_EQ(diag_dump(before), 0);
    p1 = tt_readf("%s.polls.folded", before);
    CHECK_STR(p1, "parent 5\n");

    pid = fork_child(child_dumps_itself, 0, 0, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    (void)pid;

    pid = fork_child(child_polls_three, 4, 1, &st);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 4); /* the exit code is the program's */
    /* DIAGNOSE_OUT has no %p: the child's files carry its pid */
    child = tt_readf("%s.%ld.polls.folded", out, (long)pid);
    CHECK(tt_folded_ok(child) && tt_value(child, "child") == 3 && tt_value(child, "parent") <= 0);
    free(child);
    child = tt_readf("%s.%ld.wall.folded", out, (long)pid);
    CHECK(tt_folded_ok(child) && tt_value(child, "child") > 0);
    free(child);
    CHECK(!tt_exists("out.polls.folded")); /* the parent's exit-time name is untouched */

    /* the parent's file is as it was, and the parent did not get the
       child's polls: nothing is counted twice */
    p2 = tt_readf("%s.polls.folded", before);
    CHECK_STR(p2, p1);
    free(p2);
    poll_n(&parent_fut, 2);
    CHECK_EQ(diag_dump(before), 0);
    p2 = tt_readf("%s.polls.folded", before);
    CHECK_STR(p2, "parent 7\n");
    free(p1);
    free(p2);
}

static void test_child_with_underscore_exit_writes_nothing(void)
{
    int st;
    char path[400];
    pid_t pid = fork_child(child_polls_three, 6, 0, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 6);
    snprintf(path, sizeof path, "%s.%ld.polls.folded", out, (long)pid);
    CHECK(!tt_exists(path));
}

static void child_killed(void)
{
    poll_n(&child_fut, 3);
    kill(getpid(), SIGTERM);
}

static void test_child_killed_writes_nothing(void)
{
    int st;
    char path[400];
    pid_t pid = fork_child(child_killed, 0, 1, &st);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    snprintf(path, sizeof path, "%s.%ld.polls.folded", out, (long)pid);
    CHECK(!tt_exists(path));
}

static void child_sets_pid_prefix(void)
{
    char prefix[400];
    snprintf(prefix, sizeof prefix, "%s/pp.%%p", dir);
    poll_n(&child_fut, 2);
    if (diag_dump(prefix) != 0) _exit(3);
}

static void test_pid_prefix_is_not_appended_twice(void)
{
    int st;
    char *polls;
    pid_t pid = fork_child(child_sets_pid_prefix, 0, 1, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    polls = tt_readf("%s/pp.%ld.polls.folded", dir, (long)pid);
    CHECK(tt_folded_ok(polls) && tt_value(polls, "child") == 2 && tt_value(polls, "parent") <= 0);
    free(polls);
}

/* A run open in the parent at the fork (a future polled PENDING) is finished
   in the child: the child counts only its own poll. */
static struct counter open_fut = { DIAG_FUTURE_INIT(counter_poll), 0, 3 };
static void child_finishes_open_run(void) { poll_n(&open_fut, 1); }

static void test_run_open_across_fork(void)
{
    int st;
    char *polls;
    pid_t pid;
    DIAGNOSE_AS(&open_fut.base, "open_at_fork");
    poll_n(&open_fut, 2);
    pid = fork_child(child_finishes_open_run, 0, 1, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    polls = tt_readf("%s.%ld.polls.folded", out, (long)pid);
    CHECK_EQ(tt_value(polls, "open_at_fork"), 1);
    CHECK(tt_value(polls, "parent") <= 0);
    free(polls);
}

/* The prefix is read when diagnose.h starts: set before. */
TT_BEFORE_START(out_in_temporary_directory)
{
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    snprintf(out, sizeof out, "%s/out", dir);
    setenv("DIAGNOSE_OUT", out, 1);
}

int main(void)
{
    RUN(test_child_starts_empty_and_writes_own_files);
    RUN(test_child_with_underscore_exit_writes_nothing);
    RUN(test_child_killed_writes_nothing);
    RUN(test_pid_prefix_is_not_appended_twice);
    RUN(test_run_open_across_fork);
    return test_summary();
}
