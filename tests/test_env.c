/* The environment and the exit-time write. Each test starts this program
   again as a child (tt_spawn) in a fresh directory with its own
   environment, then looks at what the child left there: its folded files
   and its stderr (stderr.txt). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <dirent.h>

/* ---- the children ---------------------------------------------------------- */

struct task {
    diag_future base;
    int pending, n, polls;
};

static diag_status task_poll(diag_future *self, void *cx)
{
    struct task *t = (struct task *)self;
    (void)cx;
    t->polls++;
    return t->n++ < t->pending ? DIAG_PENDING : DIAG_READY;
}

static struct task task_make(int pending)
{
    struct task t;
    diag_future init = DIAG_FUTURE_INIT(task_poll);
    memset(&t, 0, sizeof t);
    t.base = init;
    t.pending = pending;
    return t;
}

/* The workload of every child: envwork polled 3 times to READY, envdrop
   polled once and dropped. Returns 0 when the polls really happened. */
static int work(void)
{
    struct task t = task_make(2), d = task_make(5);
    diag_future *f = DIAGNOSE_AS(&t.base, "envwork");
    while (diag_poll(f, NULL) == DIAG_PENDING) {
    }
    CHECK_EQ(diag_poll(DIAGNOSE_AS(&d.base, "envdrop"), NULL), DIAG_PENDING);
    diag_drop(&d.base);
    return t.polls == 3 && d.polls == 1 ? 0 : 1;
}

/* Also says which pid to look for: %p is the child's own. */
static int child_pid(void)
{
    FILE *f = fopen("pid.txt", "w");
    if (f == NULL) return 2;
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    return work();
}

/* DIAGNOSE=0: futures are still polled, diag_dump writes nothing and
   returns 0. */
static int child_off(void)
{
    if (work() != 0) return 1;
    if (diag_dump("explicit") != 0) return 2;
    if (diag_dump(NULL) != 0) return 3;
    return 0;
}

/* exit() with a run still open, 5 ms after it started: written, with the
   open run's wall counted up to the exit. Exit status 7 must stay 7. */
static void leave(int status) { exit(status); }
static int child_exit_pending(void)
{
    static struct task t;
    t = task_make(5);
    diag_poll(DIAGNOSE_AS(&t.base, "envwork"), NULL);
    tt_sleep_ns(5000000);
    leave(7);
    return 1;
}

/* An explicit dump first, then more polls: the exit write is the last. */
static int child_dump_then_exit(void)
{
    struct task t = task_make(0);
    diag_future *f = DIAGNOSE_AS(&t.base, "envwork");
    diag_poll(f, NULL);
    if (diag_dump(NULL) != 0) return 1;
    diag_poll(f, NULL);
    diag_poll(f, NULL);
    return 0;
}

static const tt_child children[] = {
    { "work", work },
    { "pid", child_pid },
    { "off", child_off },
    { "exit_pending", child_exit_pending },
    { "dump_then_exit", child_dump_then_exit },
};

/* ---- helpers ------------------------------------------------------------- */

static char dir[256];

/* A fresh directory for the next child. */
static const char *fresh(void)
{
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    return dir;
}

/* The names in d, sorted, one per line (static buffer). */
static const char *listing(const char *d)
{
    static char out[4096];
    char names[32][256];
    int n = 0, i, j;
    DIR *dp = opendir(d);
    struct dirent *e;
    out[0] = '\0';
    if (dp == NULL) return out;
    while ((e = readdir(dp)) != NULL && n < 32) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(dp);
    for (i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char tmp[256];
            memcpy(tmp, names[j], sizeof tmp);
            memcpy(names[j], names[j - 1], sizeof tmp);
            memcpy(names[j - 1], tmp, sizeof tmp);
        }
    for (i = 0; i < n; i++) {
        strncat(out, names[i], sizeof out - strlen(out) - 2);
        strcat(out, "\n");
    }
    return out;
}

/* The child's stderr; never NULL. Caller frees. */
static char *child_stderr(void)
{
    char *text = tt_readf("%s/stderr.txt", dir);
    return text ? text : (char *)calloc(1, 1);
}

/* Checks the three files of prefix (relative to dir) hold the workload. */
static void check_work_files(const char *prefix)
{
    char *polls = tt_readf("%s/%s.polls.folded", dir, prefix);
    char *busy = tt_readf("%s/%s.busy.folded", dir, prefix);
    char *wall = tt_readf("%s/%s.wall.folded", dir, prefix);
    CHECK_STR(polls, "envdrop 1\nenvwork 3\n");
    CHECK(tt_folded_ok(busy) && tt_lines(busy) == 2 && tt_value(busy, "envwork") >= 0);
    CHECK(tt_folded_ok(wall) && tt_lines(wall) == 2 && tt_value(wall, "envwork") >= 0);
    free(polls);
    free(busy);
    free(wall);
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (; (text = strstr(text, needle)) != NULL; text++) n++;
    return n;
}

/* The token of `row` in the column where `header` has `column`. */
static long long column_value(const char *header, const char *row, const char *column)
{
    char h[512], r[512], *hs, *rs, *ht, *rt;
    snprintf(h, sizeof h, "%s", header);
    snprintf(r, sizeof r, "%s", row);
    ht = strtok_r(h, " \n", &hs);
    rt = strtok_r(r, " \n", &rs);
    while (ht && rt) {
        if (strcmp(ht, column) == 0) return strtoll(rt, NULL, 10);
        ht = strtok_r(NULL, " \n", &hs);
        rt = strtok_r(NULL, " \n", &rs);
    }
    return -1;
}

/* The whole line of text that contains needle (static buffer), or "". */
static const char *line_with(const char *text, const char *needle)
{
    static char line[512];
    const char *at = strstr(text, needle), *start, *end;
    line[0] = '\0';
    if (at == NULL) return line;
    for (start = at; start > text && start[-1] != '\n'; start--) {
    }
    end = strchr(at, '\n');
    if (end == NULL) end = at + strlen(at);
    snprintf(line, sizeof line, "%.*s", (int)(end - start), start);
    return line;
}

/* ---- tests ---------------------------------------------------------------- */

/* No DIAGNOSE_OUT: diagnose.*.folded in the working directory, written
   once at exit (via exit(), which is how a child returns here), and the
   table on stderr: its header names the columns and envwork's row says 3
   polls, envdrop's row 1 drop. */
static void test_default_prefix_and_table(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=", "DIAGNOSE_QUIET=", NULL };
    char *err;
    const char *header;
    char head[512];
    CHECK_EQ(tt_spawn(fresh(), "work", env), 0);
    CHECK_STR(listing(dir), "diagnose.busy.folded\ndiagnose.polls.folded\ndiagnose.wall.folded\nstderr.txt\n");
    check_work_files("diagnose");
    err = child_stderr();
    /* one table: the exit handler ran once */
    CHECK_EQ(count(err, "  envwork\n"), 1);
    CHECK_EQ(count(err, "  envdrop\n"), 1);
    header = line_with(err, "drops");
    snprintf(head, sizeof head, "%s", header);
    CHECK(strstr(head, "polls") && strstr(head, "busy") && strstr(head, "wall") && strstr(head, "mean") &&
          strstr(head, "max") && strstr(head, "path"));
    CHECK_EQ(column_value(head, line_with(err, "  envwork"), "polls"), 3);
    CHECK_EQ(column_value(head, line_with(err, "  envwork"), "drops"), 0);
    CHECK_EQ(column_value(head, line_with(err, "  envdrop"), "polls"), 1);
    CHECK_EQ(column_value(head, line_with(err, "  envdrop"), "drops"), 1);
    /* readable at 80 columns */
    CHECK(strlen(head) <= 80);
    free(err);
}

/* Returning from main writes the files too (main runs work() and returns
   for "--child return", see main). */
static void test_return_from_main_writes(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=", "DIAGNOSE_QUIET=1", NULL };
    char *err;
    CHECK_EQ(tt_spawn(fresh(), "return", env), 0);
    CHECK_STR(listing(dir), "diagnose.busy.folded\ndiagnose.polls.folded\ndiagnose.wall.folded\nstderr.txt\n");
    check_work_files("diagnose");
    err = child_stderr();
    CHECK_STR(err, ""); /* quiet: no table */
    free(err);
}

/* DIAGNOSE=0: no file at all, not even from diag_dump, and nothing on
   stderr; the futures still ran (the child checks and exits 0). */
static void test_diagnose_0_writes_nothing(void)
{
    const char *env[] = { "DIAGNOSE=0", "DIAGNOSE_OUT=", "DIAGNOSE_QUIET=", NULL };
    const char *env_out[] = { "DIAGNOSE=0", "DIAGNOSE_OUT=named", "DIAGNOSE_QUIET=", NULL };
    char *err;
    CHECK_EQ(tt_spawn(fresh(), "off", env), 0);
    CHECK_STR(listing(dir), "stderr.txt\n");
    err = child_stderr();
    CHECK_STR(err, "");
    free(err);
    CHECK_EQ(tt_spawn(fresh(), "off", env_out), 0);
    CHECK_STR(listing(dir), "stderr.txt\n");
}

/* DIAGNOSE_QUIET=1: the files, no table. */
static void test_quiet_keeps_files(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=q", "DIAGNOSE_QUIET=1", NULL };
    char *err;
    CHECK_EQ(tt_spawn(fresh(), "work", env), 0);
    CHECK_STR(listing(dir), "q.busy.folded\nq.polls.folded\nq.wall.folded\nstderr.txt\n");
    check_work_files("q");
    err = child_stderr();
    CHECK_STR(err, "");
    free(err);
}

/* DIAGNOSE_OUT with %p: the child's own pid in the file names. */
static void test_out_with_pid(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=sub/prof.%p.x", "DIAGNOSE_QUIET=1", NULL };
    char *pid_text, want[512], prefix[64], sub[300];
    long pid = 0;
    fresh();
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK_EQ(mkdir(sub, 0700), 0);
    CHECK_EQ(tt_spawn(dir, "pid", env), 0);
    pid_text = tt_readf("%s/pid.txt", dir);
    CHECK(pid_text != NULL);
    if (pid_text) pid = strtol(pid_text, NULL, 10);
    CHECK(pid > 1 && pid != (long)getpid());
    snprintf(want, sizeof want, "prof.%ld.x.busy.folded\nprof.%ld.x.polls.folded\nprof.%ld.x.wall.folded\n", pid, pid,
             pid);
    CHECK_STR(listing(sub), want);
    snprintf(prefix, sizeof prefix, "sub/prof.%ld.x", pid);
    check_work_files(prefix);
    free(pid_text);
}

/* exit() from a nested function with a run open: the files are written
   once, the open run's wall counts up to the exit (it slept 5 ms), and the
   exit status is the program's. */
static void test_exit_with_open_run(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=e", "DIAGNOSE_QUIET=", NULL };
    char *polls, *wall, *err;
    CHECK_EQ(tt_spawn(fresh(), "exit_pending", env), 7);
    polls = tt_readf("%s/e.polls.folded", dir);
    wall = tt_readf("%s/e.wall.folded", dir);
    CHECK_STR(polls, "envwork 1\n");
    CHECK(tt_folded_ok(wall));
    /* slept 5 ms inside the run; 2% + 50 us for the clock's calibration */
    CHECK_RANGE(tt_value(wall, "envwork"), 5000000 * 0.98 - 50000, 60e9);
    err = child_stderr();
    CHECK_EQ(count(err, "  envwork\n"), 1);
    free(polls);
    free(wall);
    free(err);
}

/* A diag_dump during the run, then two more polls: the exit write comes
   after and has all three. */
static void test_exit_write_after_dump(void)
{
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=d", "DIAGNOSE_QUIET=1", NULL };
    char *polls;
    CHECK_EQ(tt_spawn(fresh(), "dump_then_exit", env), 0);
    polls = tt_readf("%s/d.polls.folded", dir);
    CHECK_STR(polls, "envwork 3\n");
    free(polls);
}

/* An unwritable DIAGNOSE_OUT at exit: one line on stderr says so, the
   files go to $TMPDIR/diagnose.PID, and the exit status stays. */
static void test_unwritable_out_falls_back(void)
{
    char tmp[300], tmpdir_env[320], pidfile[300];
    const char *env[] = { "DIAGNOSE=", "DIAGNOSE_OUT=missing/x", "DIAGNOSE_QUIET=1", tmpdir_env, NULL };
    char *err, *pid_text, *polls;
    long pid = 0;
    fresh();
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    CHECK_EQ(mkdir(tmp, 0700), 0);
    snprintf(tmpdir_env, sizeof tmpdir_env, "TMPDIR=%s", tmp);
    CHECK_EQ(tt_spawn(dir, "pid", env), 0);
    snprintf(pidfile, sizeof pidfile, "%s/pid.txt", dir);
    pid_text = tt_read(pidfile);
    if (pid_text) pid = strtol(pid_text, NULL, 10);
    polls = tt_readf("%s/diagnose.%ld.polls.folded", tmp, pid);
    CHECK_STR(polls, "envdrop 1\nenvwork 3\n");
    err = child_stderr();
    CHECK_EQ(tt_lines(err), 1);
    CHECK(strstr(err, "missing/x.polls.folded") != NULL);
    free(err);
    free(pid_text);
    free(polls);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0 && strcmp(argv[2], "return") == 0) return work();
    TEST_CHILDREN(argc, argv, children);
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_default_prefix_and_table);
    RUN(test_return_from_main_writes);
    RUN(test_diagnose_0_writes_nothing);
    RUN(test_quiet_keeps_files);
    RUN(test_out_with_pid);
    RUN(test_exit_with_open_run);
    RUN(test_exit_write_after_dump);
    RUN(test_unwritable_out_falls_back);
    return test_summary();
}
