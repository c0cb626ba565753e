/* The program of tests/test_copies.sh. It holds its own copy of diagnose.h
   (unless built with DIAGNOSE_DISABLE) and runs libraries that hold theirs:
     copies_prog linked               prog's future calls the linked library (-DLINKED)
     copies_prog two A.so B.so        A's work inside prog's future, B's outside
     copies_prog unload A.so [FILE]   a thread works in A, which is dlclosed while
                                      the thread lives; prints the polls file then
                                      (FILE, a glob pattern; diagnose.polls.folded)
     copies_prog reload A.so          A loaded, worked in and unloaded twice
     copies_prog handover A.so B.so   a thread works in A, which is dlclosed while
                                      the thread lives; then SIGUSR2 (DIAGNOSE_SIGNAL)
                                      asks for a snapshot; B works                */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <dlfcn.h>
#include <glob.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef REFUSE_MEMFD
/* As a sandbox that refuses memfd_create: with -rdynamic, the executable's
   definition is the one every library's call finds. */
#include <errno.h>
int memfd_create(const char *name, unsigned flags)
{
    (void)name, (void)flags;
    errno = EPERM;
    return -1;
}
#endif

typedef void (*work_fn)(int n);

struct outer {
    diag_future base;
    work_fn work;
    int n;
};

static diag_status outer_poll(diag_future *self, void *cx)
{
    struct outer *o = (struct outer *)self;
    (void)cx;
    if (o->work) o->work(o->n);
    return DIAG_READY;
}

/* One poll of a future named "prog", which runs work(n) inside it. */
static void in_prog(work_fn work, int n)
{
    struct outer o = { DIAG_FUTURE_INIT(outer_poll), NULL, 0 };
    o.work = work;
    o.n = n;
    diag_poll(DIAGNOSE_AS(&o.base, "prog"), NULL);
}

static void *open_library(const char *path, work_fn *work)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        exit(2);
    }
    *(void **)work = dlsym(h, "copies_work");
    if (*work == NULL) exit(2);
    return h;
}

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stage; /* 1: the thread worked; 2: the library is gone */

static void wait_for(int s)
{
    pthread_mutex_lock(&mutex);
    while (stage < s) pthread_cond_wait(&cond, &mutex);
    pthread_mutex_unlock(&mutex);
}

static void set_stage(int s)
{
    pthread_mutex_lock(&mutex);
    stage = s;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&mutex);
}

static void *worker(void *arg)
{
    work_fn work = *(work_fn *)arg;
    work(3);
    set_stage(1);
    wait_for(2); /* then the thread ends, after its library was unloaded */
    return NULL;
}

/* Prints the one file that matches pattern. */
static void print_file(const char *pattern)
{
    char line[256];
    glob_t g;
    FILE *f = NULL;
    if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc == 1) f = fopen(g.gl_pathv[0], "r");
    if (f == NULL) printf("no single %s\n", pattern);
    while (f != NULL && fgets(line, sizeof line, f)) printf("at unload: %s", line);
    if (f != NULL) fclose(f);
    globfree(&g);
}

/* Waits up to 10 s for path to exist; returns whether it does. */
static int wait_for_file(const char *path)
{
    struct stat st;
    struct timespec ten_ms = { 0, 10000000 };
    int i;
    for (i = 0; i < 1000; i++) {
        if (stat(path, &st) == 0) return 1;
        nanosleep(&ten_ms, NULL);
    }
    return 0;
}

#ifdef LINKED
void copies_work(int n);
#endif

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    work_fn a, b;
    void *ha, *hb;
    if (strcmp(mode, "linked") == 0) {
#ifdef LINKED
        in_prog(copies_work, 3);
        return 0;
#endif
    } else if (strcmp(mode, "two") == 0 && argc == 4) {
        ha = open_library(argv[2], &a);
        hb = open_library(argv[3], &b);
        in_prog(a, 2);
        b(4);
        (void)ha, (void)hb;
        return 0;
    } else if (strcmp(mode, "unload") == 0 && (argc == 3 || argc == 4)) {
        pthread_t thread;
        ha = open_library(argv[2], &a);
        if (pthread_create(&thread, NULL, worker, &a) != 0) return 2;
        wait_for(1);
        dlclose(ha);
        print_file(argc == 4 ? argv[3] : "diagnose.polls.folded");
        fflush(stdout);
        set_stage(2);
        pthread_join(thread, NULL);
        in_prog(NULL, 0);
        return 0;
    } else if (strcmp(mode, "reload") == 0 && argc == 3) {
        int i;
        for (i = 0; i < 2; i++) {
            ha = open_library(argv[2], &a);
            in_prog(a, 3);
            dlclose(ha);
        }
        return 0;
    } else if (strcmp(mode, "handover") == 0 && argc == 4) {
        pthread_t thread;
        ha = open_library(argv[2], &a);
        hb = open_library(argv[3], &b);
        if (pthread_create(&thread, NULL, worker, &a) != 0) return 2;
        wait_for(1);
        dlclose(ha);
        kill(getpid(), SIGUSR2); /* to the process: raise would aim at this thread, which blocks it */
        printf("snapshot %s\n", wait_for_file("diagnose.1.polls.folded") ? "written" : "missing");
        set_stage(2);
        pthread_join(thread, NULL);
        b(4);
        (void)hb;
        return 0;
    }
    fprintf(stderr, "usage: copies_prog linked | two A.so B.so | unload A.so [FILE] | reload A.so | handover A.so B.so\n");
    return 2;
}
