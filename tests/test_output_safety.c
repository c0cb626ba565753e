/* Output safety: whole files only (temporary name + rename), symlinks at the
   output path replaced and never followed, DIAGNOSE_OUT ignored in set-uid
   programs, and one clear stderr line (exit code unchanged) when the files
   cannot be written: missing or unwritable directory, full disk, file size
   limit; at exit the profile then goes to $TMPDIR. test: c-only (spawns
   itself, mounts, changes users: once is enough) */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>

struct counter { diag_future base; int n; };

static diag_status counter_poll(diag_future *self, void *cx)
{
    (void)self;
    (void)cx;
    return DIAG_PENDING;
}

static void poll_named(const char *name, int n)
{
    struct counter c = { DIAG_FUTURE_INIT(counter_poll), 0 };
    DIAGNOSE_AS(&c.base, name);
    while (n-- > 0) diag_poll(&c.base, NULL);
    diag_drop(&c.base);
}

#define MANY 300
static char many_names[MANY][24];

static void poll_many(void)
{
    int i;
    for (i = 0; i < MANY; i++) {
        snprintf(many_names[i], sizeof many_names[i], "name_%03d", i);
        poll_named(many_names[i], 1);
    }
}

/* ---- children ---- */

static int child_polls_seven(void)
{
    poll_named("seven", 7);
    return 7; /* the exit code the profiler must not change */
}

/* Drops root (when root) so directory permissions apply, then polls. */
static int child_unprivileged(void)
{
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 99;
    return child_polls_seven();
}

/* A file size limit makes every write fail with EFBIG (SIGXFSZ ignored, as
   a program that sets such a limit does). */
static int child_file_size_limit(void)
{
    struct rlimit r = { 256, 256 }; /* room for the stderr line, not for a profile */
    signal(SIGXFSZ, SIG_IGN);
    poll_many();
    if (setrlimit(RLIMIT_FSIZE, &r) != 0) return 98;
    return 7;
}

static const tt_child children[] = {
    { "polls_seven", child_polls_seven },
    { "unprivileged", child_unprivileged },
    { "file_size_limit", child_file_size_limit },
};

/* ---- helpers ---- */

static char *prefix_in(const char *dir, const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static int count_lines(const char *text) { return text ? (int)tt_lines(text) : -1; }

/* ---- tests ---- */

struct reader_arg { const char *path; int stop, reads, whole, bad; };

static void *reader(void *p)
{
    struct reader_arg *a = (struct reader_arg *)p;
    while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
        char *text = tt_read(a->path);
        if (text == NULL) continue; /* not there yet */
        a->reads++;
        if (tt_folded_ok(text) && count_lines(text) == MANY) a->whole++;
        else a->bad++;
        free(text);
    }
    return NULL;
}

/* A reader that reads the file while it is rewritten again and again sees
   only whole files, and each dump is a new file (renamed into place). */
static void test_reader_never_sees_half_a_file(void)
{
    const char *dir = tt_tempdir();
    char *prefix = prefix_in(dir, "live");
    char path[600];
    struct reader_arg a;
    pthread_t th;
    struct stat st;
    ino_t first = 0;
    int i, new_inodes = 0;
    poll_many();
    snprintf(path, sizeof path, "%s.polls.folded", prefix);
    memset(&a, 0, sizeof a);
    a.path = path;
    pthread_create(&th, NULL, reader, &a);
    for (i = 0; i < 200; i++) {
        CHECK_EQ(diag_dump(prefix), 0);
        if (stat(path, &st) == 0) {
            if (i > 0 && st.st_ino != first) new_inodes++;
            first = st.st_ino;
        }
    }
    __atomic_store_n(&a.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    printf("  %d reads while writing, %d whole\n", a.reads, a.whole);
    CHECK(a.reads > 0);
    CHECK_EQ(a.bad, 0);
    CHECK(new_inodes > 0);
}

/* A symlink at the output path is replaced by the file; its target is not
   written. The same for a symlink planted at the temporary name. */
static void test_symlink_is_replaced_not_followed(void)
{
    const char *dir = tt_tempdir();
    char victim[400], link_path[600], tmp_link[700], other[400];
    char *prefix = prefix_in(dir, "sym");
    char *text;
    struct stat st;
    FILE *f;
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    f = fopen(victim, "w");
    fputs("keep\n", f);
    fclose(f);
    f = fopen(other, "w");
    fputs("keep too\n", f);
    fclose(f);
    poll_named("symlinked", 2);
    snprintf(link_path, sizeof link_path, "%s.polls.folded", prefix);
    snprintf(tmp_link, sizeof tmp_link, "%s.busy.folded.tmp.%ld", prefix, (long)getpid());
    CHECK_EQ(symlink(victim, link_path), 0);
    CHECK_EQ(symlink(other, tmp_link), 0);
    CHECK_EQ(diag_dump(prefix), 0);
    CHECK(lstat(link_path, &st) == 0 && S_ISREG(st.st_mode));
    text = tt_read(link_path);
    CHECK_EQ(tt_value(text, "symlinked"), 2);
    free(text);
    text = tt_read(victim);
    CHECK_STR(text, "keep\n");
    free(text);
    text = tt_read(other);
    CHECK_STR(text, "keep too\n");
    free(text);
    CHECK(!tt_exists(tmp_link));
}

/* diag_dump reports failure to its caller (-1, errno) and prints nothing. */
static void test_dump_to_missing_directory(void)
{
    const char *dir = tt_tempdir();
    char *prefix = prefix_in(dir, "no/such/dir/x");
    int rc, saved;
    poll_named("missing", 1);
    errno = 0;
    rc = diag_dump(prefix);
    saved = errno;
    CHECK_EQ(rc, -1);
    CHECK_EQ(saved, ENOENT);
}

/* stderr of a child must be exactly one line naming the path and reason,
   and saying where the profile went. */
static void check_one_line(const char *dir, const char *path, const char *reason, const char *where)
{
    char want[2048];
    char *err = tt_readf("%s/stderr.txt", dir);
    if (where) snprintf(want, sizeof want, "diagnose.h: cannot write %s: %s; wrote %s.*.folded instead\n", path, reason, where);
    else snprintf(want, sizeof want, "diagnose.h: cannot write %s: %s; no profile written\n", path, reason);
    CHECK_STR(err, want);
    free(err);
}

/* Child of the exit tests: DIAGNOSE_OUT=out_prefix, TMPDIR=tmpdir. */
static int spawn_exit(const char *dir, const char *child, const char *out_prefix, const char *tmpdir)
{
    char out_env[600], tmp_env[600];
    const char *env[] = { out_env, tmp_env, "DIAGNOSE_QUIET=1", "DIAGNOSE=", NULL };
    snprintf(out_env, sizeof out_env, "DIAGNOSE_OUT=%s", out_prefix);
    snprintf(tmp_env, sizeof tmp_env, "TMPDIR=%s", tmpdir);
    return tt_spawn(dir, child, env);
}

static long child_pid_from_stderr(const char *dir)
{
    char *err = tt_readf("%s/stderr.txt", dir);
    const char *p = err ? strstr(err, "/diagnose.") : NULL;
    long pid = p ? strtol(p + 10, NULL, 10) : -1;
    free(err);
    return pid;
}

/* At exit, a missing directory sends the profile to $TMPDIR, says so in
   one line, and keeps the exit code. */
static void test_exit_missing_directory_falls_back_to_tmpdir(void)
{
    const char *dir = tt_tempdir();
    char tmpdir[400], path[600], *polls;
    long pid;
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    mkdir(tmpdir, 0777);
    CHECK_EQ(spawn_exit(dir, "polls_seven", "missing/out", tmpdir), 7);
    pid = child_pid_from_stderr(dir);
    snprintf(path, sizeof path, "%s/diagnose.%ld", tmpdir, pid);
    check_one_line(dir, "missing/out.polls.folded", strerror(ENOENT), path);
    polls = tt_readf("%s.polls.folded", path);
    CHECK_STR(polls, "seven 7\n");
    free(polls);
}

/* Both the directory and $TMPDIR missing: one line, nothing written. */
static void test_exit_nowhere_to_write(void)
{
    const char *dir = tt_tempdir();
    CHECK_EQ(spawn_exit(dir, "polls_seven", "missing/out", "/nonexistent-diagnose-dir"), 7);
    check_one_line(dir, "missing/out.polls.folded", strerror(ENOENT), NULL);
}

/* An unwritable directory (as a user without the right to write there). */
static void test_exit_unwritable_directory(void)
{
    const char *dir = tt_tempdir();
    char ro[400], tmpdir[400], path[600], *polls;
    long pid;
    snprintf(ro, sizeof ro, "%s/ro", dir);
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    mkdir(ro, 0555);
    mkdir(tmpdir, 0777);
    chmod(ro, 0555);
    chmod(tmpdir, 0777);
    chmod(dir, 0777); /* stderr.txt is created before the child drops root */
    CHECK_EQ(spawn_exit(dir, "unprivileged", "ro/out", tmpdir), 7);
    pid = child_pid_from_stderr(dir);
    snprintf(path, sizeof path, "%s/diagnose.%ld", tmpdir, pid);
    check_one_line(dir, "ro/out.polls.folded", strerror(EACCES), path);
    polls = tt_readf("%s.polls.folded", path);
    CHECK_STR(polls, "seven 7\n");
    free(polls);
    CHECK(!tt_exists(prefix_in(ro, "out.polls.folded")));
}

/* A file size limit: every write fails (EFBIG) in the middle of a file;
   one line, exit code kept, and no file (whole, partial or temporary) left
   in either directory. */
static void test_exit_write_error_leaves_nothing(void)
{
    const char *dir = tt_tempdir();
    char tmpdir[400], out[400];
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    snprintf(out, sizeof out, "%s/o", dir);
    mkdir(tmpdir, 0777);
    mkdir(out, 0777);
    CHECK_EQ(spawn_exit(dir, "file_size_limit", "o/out", tmpdir), 7);
    check_one_line(dir, "o/out.polls.folded", strerror(EFBIG), NULL);
    CHECK_EQ(rmdir(tmpdir), 0); /* empty */
    CHECK_EQ(rmdir(out), 0);
}

/* A really full disk: a small tmpfs filled up (needs the right to mount). */
static void test_exit_full_disk(void)
{
    const char *dir = tt_tempdir();
    char mnt[400], tmpdir[400], fill[500], path[600], *polls;
    char block[4096];
    long pid;
    FILE *f;
    snprintf(mnt, sizeof mnt, "%s/full", dir);
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    mkdir(mnt, 0777);
    mkdir(tmpdir, 0777);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        printf("  skipped the full-disk case: cannot mount a tmpfs (%s); the file size limit case covers the write error\n",
               strerror(errno));
        return;
    }
    snprintf(fill, sizeof fill, "%s/fill", mnt);
    f = fopen(fill, "w");
    memset(block, 'x', sizeof block);
    while (f && fwrite(block, 1, sizeof block, f) == sizeof block) {
    }
    if (f) fclose(f);
    CHECK_EQ(spawn_exit(dir, "polls_seven", "full/out", tmpdir), 7);
    pid = child_pid_from_stderr(dir);
    snprintf(path, sizeof path, "%s/diagnose.%ld", tmpdir, pid);
    check_one_line(dir, "full/out.polls.folded", strerror(ENOSPC), path);
    polls = tt_readf("%s.polls.folded", path);
    CHECK_STR(polls, "seven 7\n");
    free(polls);
    {
        char leftover[600];
        snprintf(leftover, sizeof leftover, "%s/out.polls.folded.tmp.%ld", mnt, pid);
        CHECK(!tt_exists(leftover)); /* the failed write cleaned up after itself */
    }
    unlink(fill);
    CHECK_EQ(umount(mnt), 0);
}

/* DIAGNOSE_OUT is ignored by a set-uid program: a copy of this program
   owned by another user with the set-uid bit, run by root (real uid root,
   effective uid nobody: AT_SECURE), writes to the default prefix. Without
   root, a set-gid copy with a supplementary group does the same. */
static void test_setuid_ignores_diagnose_out(void)
{
    const char *dir = tt_tempdir();
    char copy[400], cmd[1200], *polls;
    const char *saved = tt_argv0;
    const char *env[] = { "DIAGNOSE_OUT=from-env", "DIAGNOSE=", NULL };
    int mode, rc;
    if (getenv("TT_EXEC") != NULL && *getenv("TT_EXEC") != '\0') {
        printf("  skipped: a set-uid program run through TT_EXEC is not set-uid\n");
        return;
    }
    snprintf(copy, sizeof copy, "%s/setuid-copy", dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", tt_argv0, copy);
    chmod(dir, 0777);
    if (system(cmd) != 0) {
        CHECK(0);
        return;
    }
    if (geteuid() == 0) {
        if (chown(copy, 65534, 65534) != 0) CHECK(0);
        mode = 04755;
    } else {
        gid_t groups[64];
        int n = getgroups(64, groups), i, found = 0;
        for (i = 0; i < n && !found; i++)
            if (groups[i] != getegid()) found = chown(copy, (uid_t)-1, groups[i]) == 0;
        if (!found) {
            printf("  skipped: not root and no second group to make a set-gid program with\n");
            return;
        }
        mode = 02755;
    }
    CHECK_EQ(chmod(copy, (mode_t)mode), 0);
    tt_argv0 = copy;
    rc = tt_spawn(dir, "polls_seven", env);
    tt_argv0 = saved;
#if defined(__SANITIZE_ADDRESS__)
    rc = rc == 1 ? 7 : rc; /* LeakSanitizer fails at exit in a set-uid process */
#endif
    CHECK_EQ(rc, 7);
    polls = tt_readf("%s/diagnose.polls.folded", dir);
    if (polls == NULL) {
        char *err = tt_readf("%s/stderr.txt", dir);
        printf("  no default-prefix file; child stderr: %s\n", err ? err : "(none)");
        free(err);
    }
    CHECK_STR(polls, "seven 7\n");
    CHECK(!tt_exists(prefix_in(dir, "from-env.polls.folded")));
    free(polls);
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    RUN(test_reader_never_sees_half_a_file);
    RUN(test_symlink_is_replaced_not_followed);
    RUN(test_dump_to_missing_directory);
    RUN(test_exit_missing_directory_falls_back_to_tmpdir);
    RUN(test_exit_nowhere_to_write);
    RUN(test_exit_unwritable_directory);
    RUN(test_exit_write_error_leaves_nothing);
    RUN(test_exit_full_disk);
    RUN(test_setuid_ignores_diagnose_out);
    return test_summary();
}
