/* spans.c - the span API, for async code that is not shaped as diag_future.

   A callback-driven job system: each job copies a file in chunks. It asks a
   "disk" (a worker thread that takes DISK_NS per chunk) for the next chunk;
   the disk posts a completion event to the dispatcher's queue; the
   dispatcher calls the job's callback, which compresses the chunk and asks
   for the next one. Nothing here is a future: a job is a struct and a
   callback. The four span calls go where a poll-based runtime would have
   its events:
     an event is posted for a job      diag_span_wake   (any thread: here the disk's)
     the dispatcher runs the callback  diag_span_begin, then diag_span_end
                                       with DIAG_READY once the job is done
     a job is abandoned                diag_span_cancel (counted as a drop)
     a step inside a callback          its own span, begun and ended inside:
                                       its path nests, copy;compress
   The time from a wake to the callback is the job's scheduling delay,
   written to PREFIX.sched.folded.

   Counts are exact: 4 jobs of 5 chunks; job 2's client goes away after 2
   chunks, so it is cancelled. A full job is called once to start and once
   per chunk: 6 polls; job 2 is called 3 times. copy: 3*6 + 3 = 21 polls,
   1 drop; copy;compress: 3*5 + 2 = 17 polls.

   Run: make build/examples/spans && build/examples/spans */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#define JOBS 4
#define CHUNKS 5
#define CANCELLED_JOB 2 /* its client goes away after CANCEL_AFTER chunks */
#define CANCEL_AFTER 2
#define DISK_NS 300000L     /* the disk's time per chunk */
#define COMPRESS_NS 50000L  /* CPU time to compress a chunk */

static void spin_ns(long ns) /* stands for the CPU work of compressing */
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) < ns);
}

struct job {
    int id, requested, copied, cancelled;
    diag_span span;     /* the job: one run from its start to its last chunk */
    diag_span compress; /* one step of a callback: a one-poll run each time */
};

/* ---- a queue of jobs, guarded by one lock: the dispatcher's and the disk's ---- */

struct queue {
    struct job *items[64]; /* a job has at most one event or request queued */
    unsigned head, tail;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static struct queue events, disk_requests;
static int disk_stop;

static void push(struct queue *q, struct job *job) /* with the lock held */
{
    q->items[q->tail++ % 64] = job;
    pthread_cond_broadcast(&changed);
}

static struct job *pop(struct queue *q) /* with the lock held; NULL if empty */
{
    return q->head == q->tail ? NULL : q->items[q->head++ % 64];
}

/* Posting an event makes the job runnable: that is its wake. */
static void post(struct job *job)
{
    diag_span_wake(&job->span);
    pthread_mutex_lock(&lock);
    push(&events, job);
    pthread_mutex_unlock(&lock);
}

/* ---- the disk: serves one chunk request at a time, then posts its completion ---- */

static void *disk(void *arg)
{
    struct timespec latency = { 0, DISK_NS };
    (void)arg;
    for (;;) {
        struct job *job;
        pthread_mutex_lock(&lock);
        while ((job = pop(&disk_requests)) == NULL && !disk_stop) pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
        if (job == NULL) return NULL;
        nanosleep(&latency, NULL);
        post(job);
    }
}

/* ---- a job's callback: called once to start, then once per copied chunk ---- */

static void request_chunk(struct job *job)
{
    job->requested++;
    pthread_mutex_lock(&lock);
    push(&disk_requests, job);
    pthread_mutex_unlock(&lock);
}

/* Returns 1 when the job is done. */
static int job_callback(struct job *job)
{
    if (job->requested > 0) { /* a chunk arrived */
        diag_span_begin(&job->compress);
        spin_ns(COMPRESS_NS);
        diag_span_end(&job->compress, DIAG_READY);
        job->copied++;
    }
    if (job->copied == CHUNKS) return 1;
    request_chunk(job);
    return 0;
}

/* The dispatcher: each callback call is one poll of the job's span.
   Returns 1 when the job is over: finished or cancelled. */
static int dispatch(struct job *job)
{
    int done;
    if (job->cancelled) return 0; /* a late completion for an abandoned job */
    diag_span_begin(&job->span);
    done = job_callback(job);
    diag_span_end(&job->span, done ? DIAG_READY : DIAG_PENDING);
    if (done) {
        printf("job %d: %d chunks copied\n", job->id, job->copied);
        return 1;
    }
    if (job->id == CANCELLED_JOB && job->copied == CANCEL_AFTER) {
        job->cancelled = 1; /* its chunk in flight is ignored when it comes */
        diag_span_cancel(&job->span);
        printf("job %d: cancelled after %d chunks\n", job->id, job->copied);
        return 1;
    }
    return 0;
}

int main(void)
{
    static const diag_span copy_span = DIAG_SPAN_INIT("copy"), compress_span = DIAG_SPAN_INIT("compress");
    static struct job jobs[JOBS];
    pthread_t disk_thread;
    int i, open = JOBS;
    for (i = 0; i < JOBS; i++) {
        jobs[i].id = i;
        jobs[i].span = copy_span;
        jobs[i].compress = compress_span;
        post(&jobs[i]); /* the start event */
    }
    if (pthread_create(&disk_thread, NULL, disk, NULL) != 0) return 1;
    while (open > 0) {
        struct job *job;
        pthread_mutex_lock(&lock);
        while ((job = pop(&events)) == NULL) pthread_cond_wait(&changed, &lock);
        pthread_mutex_unlock(&lock);
        open -= dispatch(job);
    }
    pthread_mutex_lock(&lock);
    disk_stop = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
    pthread_join(disk_thread, NULL);
    return 0;
}
