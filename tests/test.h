/* test.h - the small test harness of diagnose.h's tests.

   A test file defines its tests as plain functions and runs them from main:

       static void test_counts(void) { CHECK_EQ(polls, 3); }
       int main(int argc, char **argv) {
           TEST_CHILDREN(argc, argv, children);   // optional: re-exec targets
           RUN(test_counts);
           return test_summary();
       }

   Output is [ RUN ] / [ OK ] / [ FAIL ] lines and a closing "N passed, N
   failed" line; tests/run.sh adds the lines of every program up.
   Helpers here read folded files, check the pinned line grammar, read the
   profile now (tt_row_of, tt_table_text) and start this same program
   again as a child with its own environment, which is how environment
   variables read at start-up are tested. */
#ifndef DIAG_TEST_H
#define DIAG_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, setenv, clock_gettime under -std=c99 */
#endif

#include <errno.h>
#include <ftw.h>
#include <regex.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TT_FN static __attribute__((unused))

static int tt_failed_now, tt_passed, tt_failed;

#define CHECK(cond) tt_check((cond) != 0, __FILE__, __LINE__, "%s", #cond)
#define CHECK_EQ(a, b)                                                                        \
    do {                                                                                      \
        unsigned long long tt_a_ = (unsigned long long)(a), tt_b_ = (unsigned long long)(b); \
        tt_check(tt_a_ == tt_b_, __FILE__, __LINE__, "%s == %s (%llu != %llu)", #a, #b, tt_a_, tt_b_); \
    } while (0)
/* lo <= v <= hi, for times: say why the bounds are what they are. */
#define CHECK_RANGE(v, lo, hi)                                                                          \
    do {                                                                                                \
        double tt_v_ = (double)(v), tt_lo_ = (double)(lo), tt_hi_ = (double)(hi);                      \
        tt_check(tt_v_ >= tt_lo_ && tt_v_ <= tt_hi_, __FILE__, __LINE__, "%s = %.0f not in [%.0f, %.0f]", \
                 #v, tt_v_, tt_lo_, tt_hi_);                                                            \
    } while (0)
#define CHECK_STR(a, b)                                                                                   \
    do {                                                                                                  \
        const char *tt_a_ = (a), *tt_b_ = (b);                                                            \
        tt_check(tt_a_ && tt_b_ && strcmp(tt_a_, tt_b_) == 0, __FILE__, __LINE__, "%s == %s\n--- got:\n%s\n--- want:\n%s", \
                 #a, #b, tt_a_ ? tt_a_ : "(null)", tt_b_ ? tt_b_ : "(null)");                                          \
    } while (0)

TT_FN void tt_check(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    if (ok) return;
    tt_failed_now = 1;
    fprintf(stdout, "  %s:%d: check failed: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

#define RUN(fn) tt_run(#fn, fn)
TT_FN void tt_run(const char *name, void (*fn)(void))
{
    printf("[ RUN  ] %s\n", name);
    fflush(stdout);
    tt_failed_now = 0;
    fn();
    if (tt_failed_now) tt_failed++, printf("[ FAIL ] %s\n", name);
    else tt_passed++, printf("[   OK ] %s\n", name);
    fflush(stdout);
}

TT_FN int tt_summary(void)
{
    printf("%d passed, %d failed\n", tt_passed, tt_failed);
    return tt_failed ? 1 : 0;
}
#define test_summary tt_summary

/* ---- children: this program again, with an environment of its own ---- */

typedef struct tt_child { const char *name; int (*fn)(void); } tt_child;
static const char *tt_argv0;

/* In main, first: runs the child named by "--child NAME" and exits. */
#define TEST_CHILDREN(argc, argv, table) tt_children((argc), (argv), (table), sizeof(table) / sizeof((table)[0]))
TT_FN void tt_children(int argc, char **argv, const tt_child *table, size_t n)
{
    size_t i;
    tt_argv0 = argv[0];
    if (argc < 3 || strcmp(argv[1], "--child") != 0) return;
    for (i = 0; i < n; i++)
        if (strcmp(table[i].name, argv[2]) == 0) exit(table[i].fn());
    fprintf(stderr, "no child named %s\n", argv[2]);
    exit(127);
}

/* Runs child `name` with extra environment entries (NULL-terminated list of
   "K=V"; "K=" sets K empty, which diagnose.h reads as unset; "K" unsets K) in directory dir, stderr to dir/stderr.txt.
   Returns the exit status, 128+signal if killed, -1 if it could not run.
   With TT_EXEC set (qemu-aarch64, say), the child runs under that program. */
TT_FN int tt_spawn(const char *dir, const char *name, const char *const *env)
{
    pid_t pid;
    int status;
    fflush(NULL);
    pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char path[4096];
        char *runner = getenv("TT_EXEC"); /* e.g. qemu-aarch64: the program runs under it */
        char *argv[5];
        if (runner != NULL && *runner == '\0') runner = NULL;
        if (tt_argv0[0] == '/') snprintf(path, sizeof path, "%s", tt_argv0);
        else if (getcwd(path, sizeof path) != NULL) {
            size_t len = strlen(path);
            snprintf(path + len, sizeof path - len, "/%s", tt_argv0);
        }
        for (; env && *env; env++) {
            const char *eq = strchr(*env, '=');
            char key[256];
            size_t klen = eq ? (size_t)(eq - *env) : strlen(*env);
            if (klen >= sizeof key) klen = sizeof key - 1;
            memcpy(key, *env, klen);
            key[klen] = '\0';
            if (eq) setenv(key, eq + 1, 1);
            else unsetenv(key);
        }
        if (chdir(dir) != 0) _exit(126);
        if (!freopen("stderr.txt", "w", stderr)) _exit(126);
        argv[0] = runner;
        argv[1] = path;
        argv[2] = (char *)"--child";
        argv[3] = (char *)name;
        argv[4] = NULL;
        if (runner != NULL) execvp(runner, argv);
        else execv(path, argv + 1);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0) return -1;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

/* ---- files ---- */

static char tt_dirs[64][256];
static int tt_ndirs;
static pid_t tt_dirs_owner;

static int tt_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st, (void)type, (void)ftw;
    remove(path);
    return 0;
}

/* At exit of the process that made them (not of its forked children):
   removes the directories tt_tempdir made, unless TT_KEEP=1. */
static void tt_remove_dirs(void)
{
    const char *keep = getenv("TT_KEEP");
    int i;
    if (getpid() != tt_dirs_owner || (keep && strcmp(keep, "1") == 0)) return;
    for (i = 0; i < tt_ndirs; i++) nftw(tt_dirs[i], tt_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Registered before diagnose.h's constructor registers its exit handler,
   so it runs after it: the dump at exit still finds its directory. */
__attribute__((constructor(101))) static void tt_remove_dirs_at_exit(void) { atexit(tt_remove_dirs); }

/* A fresh empty directory under TMPDIR or /tmp, removed at exit; static
   storage, overwritten by the next call. */
TT_FN const char *tt_tempdir(void)
{
    static char dir[256];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/diagnose-test-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    if (tt_ndirs == 0 || tt_dirs_owner != getpid()) {
        tt_ndirs = 0;
        tt_dirs_owner = getpid();
    }
    if (tt_ndirs < 64) memcpy(tt_dirs[tt_ndirs++], dir, sizeof dir);
    return dir;
}

/* diagnose.h reads its settings once, as it starts before main (its
   constructor). A test program makes its own in a constructor that runs
   before that one: TT_BEFORE_START(name) { setenv(...); }. setenv without
   overwriting keeps what tt_spawn gave a child. */
#define TT_BEFORE_START(name) __attribute__((constructor(102))) static void name(void)

/* No summary table at the exit of a test program, unless it was given one. */
TT_BEFORE_START(tt_quiet_by_default) { setenv("DIAGNOSE_QUIET", "1", 0); }

/* The program's own dump at exit goes, without a table, into a fresh
   temporary directory: tests that do not look at it keep stderr clean and
   write nothing into the working directory. Call it in TT_BEFORE_START. */
TT_FN void tt_quiet_exit_dump(void)
{
    static char out[300];
    if (getenv("DIAGNOSE_OUT") == NULL) {
        snprintf(out, sizeof out, "%s/at-exit", tt_tempdir());
        setenv("DIAGNOSE_OUT", out, 0);
    }
    setenv("DIAGNOSE_QUIET", "1", 0);
}

/* The whole file, NUL-terminated, or NULL (errno set). Caller frees. */
TT_FN char *tt_read(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long size;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = (char *)malloc((size_t)size + 1);
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) size = 0;
    if (data) data[size] = '\0';
    fclose(f);
    return data;
}

TT_FN char *tt_readf(const char *fmt, ...)
{
    char path[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    return tt_read(path);
}

TT_FN int tt_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* The value on the line of folded text whose stack is exactly `stack`,
   or -1 if there is no such line. */
TT_FN long long tt_value(const char *folded, const char *stack)
{
    size_t n = strlen(stack);
    const char *line = folded;
    while (line && *line) {
        if (strncmp(line, stack, n) == 0 && line[n] == ' ') return strtoll(line + n + 1, NULL, 10);
        line = strchr(line, '\n');
        if (line) line++;
    }
    return -1;
}

TT_FN size_t tt_lines(const char *folded)
{
    size_t n = 0;
    for (; folded && *folded; folded++) n += *folded == '\n';
    return n;
}

TT_FN int tt_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i], n, cp, k;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07;
        else return 0;
        for (k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Every line matches the pinned grammar ^[^ ;]+(;[^ ;]+)* [0-9]+$, the text
   ends with a newline, is valid UTF-8, and lines are sorted bytewise and
   unique. Prints the first bad line. */
TT_FN int tt_folded_ok(const char *folded)
{
    regex_t re;
    const char *line = folded, *prev = NULL;
    size_t prev_len = 0;
    int ok = 1;
    if (folded == NULL) return 0;
    if (!tt_utf8_valid((const unsigned char *)folded, strlen(folded))) {
        printf("  folded text is not valid UTF-8\n");
        return 0;
    }
    if (*folded && folded[strlen(folded) - 1] != '\n') {
        printf("  folded text does not end with a newline\n");
        return 0;
    }
    regcomp(&re, "^[^ ;]+(;[^ ;]+)* [0-9]+$", REG_EXTENDED | REG_NOSUB);
    while (ok && *line) {
        const char *end = strchr(line, '\n');
        size_t len = (size_t)(end - line);
        char *copy = (char *)malloc(len + 1);
        memcpy(copy, line, len);
        copy[len] = '\0';
        if (regexec(&re, copy, 0, NULL, 0) != 0 || memchr(copy, '\t', len) || memchr(copy, '\r', len)) {
            printf("  bad folded line: '%s'\n", copy);
            ok = 0;
        } else if (prev) {
            size_t m = prev_len < len ? prev_len : len;
            int c = memcmp(prev, line, m);
            if (c > 0 || (c == 0 && prev_len >= len)) {
                printf("  folded lines out of order or repeated at: '%s'\n", copy);
                ok = 0;
            }
        }
        free(copy);
        prev = line;
        prev_len = len;
        line = end + 1;
    }
    regfree(&re);
    return ok;
}

/* ---- the profile now: a snapshot's rows and table ---- */

#if defined(DIAGNOSE_H)
/* Dumps to a temporary directory's "out" prefix and returns
   out.<metric>.folded (freed by the caller), or NULL if the dump failed. */
TT_FN char *tt_dumped(const char *metric)
{
    static char prefix[300];
    if (prefix[0] == '\0') snprintf(prefix, sizeof prefix, "%s/out", tt_tempdir());
    if (diag_dump(prefix) != 0) return NULL;
    return tt_readf("%s.%s.folded", prefix, metric);
}

/* tt_dumped, checked: the dump worked and its lines keep the grammar. */
TT_FN char *tt_dumped_ok(const char *metric)
{
    char *text = tt_dumped(metric);
    CHECK(text != NULL);
    CHECK(tt_folded_ok(text));
    return text;
}
#endif

/* These read the implementation's internals: test.h included after
   diagnose.h with DIAGNOSE_IMPLEMENTATION. There tt_row is its diag__row;
   compiled out (DIAGNOSE_DISABLE), a stand-in with the fields tests read,
   and tt_row_of always the zero row; elsewhere, none of them. */
#if defined(DIAG__IMPLEMENTED)
typedef diag__row tt_row;

/* The merged row of `stack` in a fresh snapshot, copied: its stack is
   `stack` itself and its hist NULL (the snapshot is freed), or a zero row
   (stack NULL) if no row has that stack. */
TT_FN tt_row tt_row_of(const char *stack)
{
    diag__snapshot snap;
    tt_row r;
    size_t i;
    memset(&r, 0, sizeof r);
    if (diag__snapshot_take(&snap) != 0) return r;
    for (i = 0; i < snap.count; i++)
        if (strcmp(snap.rows[i].stack, stack) == 0) {
            r = snap.rows[i];
            r.stack = stack;
            r.hist = NULL;
        }
    diag__snapshot_free(&snap);
    return r;
}

/* The summary table of a fresh snapshot as printed at exit, with prefix
   "P", or NULL. Caller frees. */
TT_FN char *tt_table_text(void)
{
    diag__snapshot snap;
    FILE *f = tmpfile();
    char *text;
    long size;
    if (f == NULL || diag__snapshot_take(&snap) != 0) return NULL;
    diag__print_table(f, &snap, "P");
    diag__snapshot_free(&snap);
    size = ftell(f);
    rewind(f);
    text = (char *)calloc((size_t)size + 1, 1);
    if (fread(text, 1, (size_t)size, f) != (size_t)size) text[0] = '\0';
    fclose(f);
    return text;
}
#elif defined(DIAGNOSE_DISABLE)
typedef struct tt_row {
    const char *stack;
    uint64_t polls, done, drops, pending, busy, wall;
} tt_row;

/* Nothing is recorded: always the zero row. */
TT_FN tt_row tt_row_of(const char *stack)
{
    tt_row r;
    memset(&r, 0, sizeof r);
    (void)stack;
    return r;
}
#endif

/* ---- time ---- */

TT_FN uint64_t tt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Burns CPU for ns nanoseconds of monotonic time. */
TT_FN void tt_spin_ns(uint64_t ns)
{
    uint64_t end = tt_now_ns() + ns;
    while (tt_now_ns() < end) {
    }
}

TT_FN void tt_sleep_ns(uint64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#endif
