/* Exit paths: exit() from another thread, return from main, diag_dump then
   exit (the files show the final state), killed by a signal and _exit
   (nothing written). Each case is this program run again as a child. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/time.h>

struct counter { diag_future base; int n, ready_at; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    struct counter *c = (struct counter *)self;
    (void)cx;
    return ++c->n == c->ready_at ? DIAG_READY : DIAG_PENDING;
}

static void poll_named(const char *name, int n)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0, 1000000 };
    DIAGNOSE_AS(&c.base, name);
    while (n-- > 0) diag_poll(&c.base, NULL);
    diag_drop(&c.base);
}

/* ---- children ---- */

static int background_polled;

static void *background(void *arg)
{
    (void)arg;
    for (;;) {
        poll_named("background", 100);
        __atomic_store_n(&background_polled, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *exiting(void *arg)
{
    (void)arg;
    while (!__atomic_load_n(&background_polled, __ATOMIC_ACQUIRE)) sched_yield();
    poll_named("exiting_thread", 4);
    exit(3);
    return NULL;
}

static int child_exit_from_thread(void)
{
    pthread_t bg, ex;
    pthread_create(&bg, NULL, background, NULL);
    tt_sleep_ns(2000000);
    pthread_create(&ex, NULL, exiting, NULL);
    pthread_join(ex, NULL); /* never returns: the other thread exits */
    return 0;
}

static int return_from_main(void)
{
    poll_named("returned", 6);
    return 5;
}

static int child_dump_then_exit(void)
{
    char *polls;
    int ok;
    poll_named("dumped", 2);
    ok = diag_dump(NULL) == 0;
    polls = tt_read("out.polls.folded");
    ok = ok && polls && strcmp(polls, "dumped 2\n") == 0;
    free(polls);
    poll_named("dumped", 3);
    return ok ? 0 : 1;
}

static int child_killed(void)
{
    poll_named("killed", 4);
    raise(SIGTERM);
    return 0;
}

static int child_sigkill(void)
{
    poll_named("killed", 4);
    raise(SIGKILL);
    return 0;
}

static int child_underscore_exit(void)
{
    poll_named("underscore", 4);
    _exit(4);
}

/* Dumps in a loop until SIGALRM (default action: terminate) ends it at some
   point, often while a file is being written. */
static int child_killed_while_dumping(void)
{
    static char names[400][24];
    struct itimerval t;
    int i;
    for (i = 0; i < 400; i++) {
        snprintf(names[i], sizeof names[i], "path_%03d", i);
        poll_named(names[i], 1);
    }
    memset(&t, 0, sizeof t);
    t.it_value.tv_usec = 30000;
    setitimer(ITIMER_REAL, &t, NULL);
    for (;;) diag_dump(NULL);
    return 0;
}

static const tt_child children[] = {
    { "exit_from_thread", child_exit_from_thread },
    { "dump_then_exit", child_dump_then_exit },
    { "killed", child_killed },
    { "sigkill", child_sigkill },
    { "underscore_exit", child_underscore_exit },
    { "killed_while_dumping", child_killed_while_dumping },
};

/* ---- checks ---- */

static const char *const env[] = { "DIAGNOSE_OUT=out", "DIAGNOSE_QUIET=1", "DIAGNOSE=", NULL };

/* Names in dir other than stderr.txt, as one string "a b c" (static). */
static const char *entries(const char *dir)
{
    static char list[4096];
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t len = 0;
    list[0] = '\0';
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, "stderr.txt") == 0)
            continue;
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? " " : "", e->d_name);
        if (len >= sizeof list) break;
    }
    if (d) closedir(d);
    return list;
}

static void test_exit_from_another_thread(void)
{
    const char *dir = tt_tempdir();
    char *polls, *err;
    CHECK_EQ(tt_spawn(dir, "exit_from_thread", env), 3);
    polls = tt_readf("%s/out.polls.folded", dir);
    CHECK(tt_folded_ok(polls));
    CHECK_EQ(tt_value(polls, "exiting_thread"), 4);
    CHECK(tt_value(polls, "background") >= 100);
    err = tt_readf("%s/stderr.txt", dir);
    CHECK_STR(err, "");
    free(polls);
    free(err);
}

static void test_return_from_main(void)
{
    const char *dir = tt_tempdir();
    char *polls;
    CHECK_EQ(tt_spawn(dir, "return_from_main", env), 5);
    polls = tt_readf("%s/out.polls.folded", dir);
    CHECK_STR(polls, "returned 6\n");
    free(polls);
}

static void test_dump_then_exit_shows_final_state(void)
{
    const char *dir = tt_tempdir();
    char *polls;
    CHECK_EQ(tt_spawn(dir, "dump_then_exit", env), 0); /* 1: the dump was wrong */
    polls = tt_readf("%s/out.polls.folded", dir);
    CHECK_STR(polls, "dumped 5\n");
    free(polls);
}

static void test_killed_writes_nothing(void)
{
    const char *dir = tt_tempdir();
    CHECK_EQ(tt_spawn(dir, "killed", env), 128 + SIGTERM);
    CHECK_STR(entries(dir), "");
    dir = tt_tempdir();
    CHECK_EQ(tt_spawn(dir, "sigkill", env), 128 + SIGKILL);
    CHECK_STR(entries(dir), "");
}

static void test_underscore_exit_writes_nothing(void)
{
    const char *dir = tt_tempdir();
    CHECK_EQ(tt_spawn(dir, "underscore_exit", env), 4);
    CHECK_STR(entries(dir), "");
}

/* Whenever the kill lands, each output file that exists is whole: 400
   well-formed lines. (A kill during a write can leave that write's
   temporary file, out.*.folded.tmp.PID; never a partial output file.) */
static void test_killed_while_dumping_leaves_whole_files(void)
{
    int round, whole = 0, checked = 0;
    for (round = 0; round < 3; round++) {
        const char *dir = tt_tempdir();
        static const char *const metrics[] = { "polls", "busy", "wall" };
        int m;
        CHECK_EQ(tt_spawn(dir, "killed_while_dumping", env), 128 + SIGALRM);
        for (m = 0; m < 3; m++) {
            char *text = tt_readf("%s/out.%s.folded", dir, metrics[m]);
            if (text == NULL) continue;
            checked++;
            whole += tt_folded_ok(text) && tt_lines(text) == 400;
            free(text);
        }
    }
    CHECK(checked > 0);
    CHECK_EQ(whole, checked);
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(int argc, char **argv)
{
    /* return from main is only itself in main */
    if (argc == 3 && strcmp(argv[1], "--child") == 0 && strcmp(argv[2], "return_from_main") == 0)
        return return_from_main();
    TEST_CHILDREN(argc, argv, children);
    RUN(test_exit_from_another_thread);
    RUN(test_return_from_main);
    RUN(test_dump_then_exit_shows_final_state);
    RUN(test_killed_writes_nothing);
    RUN(test_underscore_exit_writes_nothing);
    RUN(test_killed_while_dumping_leaves_whole_files);
    return test_summary();
}
