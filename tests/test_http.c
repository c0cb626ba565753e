/* DIAGNOSE_HTTP and DIAGNOSE_PPROF: this process serves its own profile
   (DIAGNOSE_HTTP=0: a free port on 127.0.0.1) and the tests ask it over
   loopback. The files at their names are byte for byte what a dump writes;
   the page holds the table, the pending runs and a flame graph as served;
   a pprof window holds exactly the polls made inside it; PREFIX.pb.gz
   holds exactly the folded files' values; the refusals (405, 403, 404,
   431, 400) and the limits (idle clients, 200 connections, exit) hold;
   the settings are read as docs/environment.md says. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#ifndef DIAGNOSE_DISABLE /* these tests need the recording build */
#include "task.h"
#include "gunzip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

static char dir[256];
static const char *exit_marker; /* set by a child just before exit(): see exit_timer */
static uint64_t exit_called;

/* Registered before diagnose.h's exit handler, so it runs after it: how
   long the library's exit took, into exit_marker. */
static void exit_timer(void)
{
    FILE *f = exit_marker ? fopen(exit_marker, "w") : NULL;
    if (f == NULL) return;
    fprintf(f, "%llu\n", (unsigned long long)(tt_now_ns() - exit_called));
    fclose(f);
}

TT_BEFORE_START(serve_on_a_free_port)
{
    setenv("DIAGNOSE_HTTP", "0", 0);
    setenv("DIAGNOSE_PPROF", "1", 0);
    setenv("DIAGNOSE_STUCK_S", "0.05", 0);
    tt_quiet_exit_dump();
    atexit(exit_timer);
}

/* ---- a client ---------------------------------------------------------- */

static unsigned server_port(void) { return diag__rt->server ? diag__rt->server->port : 0; }

static int dial_port(unsigned port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(void) { return dial_port(server_port()); }

static int send_all(int fd, const char *data, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        data += k;
        n -= (size_t)k;
    }
    return 0;
}

/* What fd receives until the server closes it (or resets it), 20 s at
   most; NUL-terminated, *len bytes. */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *data = (char *)malloc(cap + 1);
    uint64_t until = tt_now_ns() + 20000 * MS;
    while (tt_now_ns() < until) {
        struct pollfd p;
        ssize_t got;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, 200) <= 0) continue;
        got = recv(fd, data + n, cap - n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        n += (size_t)got;
        if (n == cap) data = (char *)realloc(data, (cap *= 2) + 1);
    }
    data[n] = '\0';
    *len = n;
    return data;
}

typedef struct answer {
    int status;
    char *text;       /* the whole answer */
    size_t len;
    const char *body; /* after the head */
    size_t body_len;
} answer;

static answer answer_of(char *text, size_t len)
{
    answer a;
    const char *end = strstr(text, "\r\n\r\n");
    a.text = text;
    a.len = len;
    a.status = 0;
    if (sscanf(text, "HTTP/1.1 %d ", &a.status) != 1) a.status = 0;
    a.body = end ? end + 4 : text + len;
    a.body_len = len - (size_t)(a.body - text);
    return a;
}

/* The answer to a request sent as these bytes. */
static answer ask(const char *request, size_t n)
{
    size_t len = 0;
    int fd = dial();
    char *text;
    if (fd < 0 || send_all(fd, request, n) != 0) {
        if (fd >= 0) close(fd);
        return answer_of((char *)calloc(1, 1), 0);
    }
    text = read_all(fd, &len);
    close(fd);
    return answer_of(text, len);
}

static answer get(const char *path)
{
    char request[600];
    snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nUser-Agent: test\r\n\r\n", path,
             server_port());
    return ask(request, strlen(request));
}

static int status_of(const char *request)
{
    answer a = ask(request, strlen(request));
    free(a.text);
    return a.status;
}

/* The value of a header of the answer, up to its CR LF, in out. */
static const char *header(const answer *a, const char *name, char *out, size_t cap)
{
    char key[100];
    const char *at, *end;
    snprintf(key, sizeof key, "\r\n%s: ", name);
    at = strstr(a->text, key);
    if (at == NULL || at > a->body) return NULL;
    at += strlen(key);
    end = strstr(at, "\r\n");
    snprintf(out, cap, "%.*s", (int)(end - at), at);
    return out;
}

/* The body as a string (bodies here hold no NUL but pprof's). */
static char *body_text(const answer *a)
{
    char *s = (char *)malloc(a->body_len + 1);
    memcpy(s, a->body, a->body_len);
    s[a->body_len] = '\0';
    return s;
}

/* ---- pprof: profile.proto, read back (gzip: gunzip.h) ------------------------ */

typedef struct pb_in { const unsigned char *p, *end; int bad; } pb_in;

static uint64_t pb_varint(pb_in *in)
{
    uint64_t v = 0;
    int shift = 0;
    while (in->p < in->end && shift < 64) {
        unsigned char c = *in->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
        shift += 7;
    }
    in->bad = 1;
    return 0;
}

/* The next field: its number; a varint in *v or the bytes in *sub. */
static unsigned pb_next(pb_in *in, uint64_t *v, pb_in *sub)
{
    uint64_t key = pb_varint(in);
    if ((key & 7) == 0) *v = pb_varint(in);
    else if ((key & 7) == 2) {
        uint64_t n = pb_varint(in);
        if (n > (uint64_t)(in->end - in->p)) in->bad = 1;
        else {
            sub->p = in->p;
            sub->end = in->p + n;
            sub->bad = 0;
            in->p += n;
        }
    } else in->bad = 1;
    return (unsigned)(key >> 3);
}

#define PB_MAX 256
typedef struct sample {
    uint64_t locs[64], values[3], label_key[4], label_num[4];
    size_t nlocs, nvalues, nlabels;
} sample;
typedef struct profile {
    char *strings[PB_MAX];
    size_t nstrings, nsamples, ntypes;
    sample samples[PB_MAX];
    uint64_t types[3][2], loc_function[PB_MAX], function_name[PB_MAX], function_system[PB_MAX];
    uint64_t time_ns, duration_ns, period, default_type, mappings;
    int ok;
} profile;

/* A packed field (or one value) into v, at most cap. */
static size_t pb_values(pb_in *sub, uint64_t *v, size_t n, size_t cap, uint64_t one, int packed)
{
    if (!packed) {
        if (n < cap) v[n++] = one;
        return n;
    }
    while (sub->p < sub->end && n < cap) v[n++] = pb_varint(sub);
    return n;
}

static void pb_sample(profile *pr, pb_in *in)
{
    sample *s = &pr->samples[pr->nsamples++];
    memset(s, 0, sizeof *s);
    while (in->p < in->end && !in->bad) {
        uint64_t v = 0;
        pb_in sub = { NULL, NULL, 0 };
        unsigned f = pb_next(in, &v, &sub);
        if (f == 1) s->nlocs = pb_values(&sub, s->locs, s->nlocs, 64, v, sub.p != NULL);
        else if (f == 2) s->nvalues = pb_values(&sub, s->values, s->nvalues, 3, v, sub.p != NULL);
        else if (f == 3 && s->nlabels < 4) { /* a label: key, num (the strings come later) */
            uint64_t x = 0;
            pb_in none;
            while (sub.p < sub.end && !sub.bad) {
                unsigned g = pb_next(&sub, &x, &none);
                if (g == 1) s->label_key[s->nlabels] = x;
                else if (g == 3) s->label_num[s->nlabels] = x;
            }
            s->nlabels++;
        }
    }
}

/* Location or Function: (id, what) into the table by id. */
static void pb_pair(pb_in *in, uint64_t *table, unsigned id_field, unsigned want, uint64_t *also, unsigned also_field)
{
    uint64_t id = 0, value = 0, other = 0, v = 0;
    while (in->p < in->end && !in->bad) {
        pb_in sub = { NULL, NULL, 0 };
        unsigned f = pb_next(in, &v, &sub);
        if (f == id_field) id = v;
        else if (f == want && sub.p == NULL) value = v;
        else if (f == want) { /* Location.line: a Line message, its function_id */
            pb_in none;
            while (sub.p < sub.end && !sub.bad)
                if (pb_next(&sub, &v, &none) == 1) value = v;
        } else if (also && f == also_field) other = v;
    }
    if (id < PB_MAX) {
        table[id] = value;
        if (also) also[id] = other;
    }
}

/* The profile of an answer's body or of a .pb.gz file. */
static void profile_read(profile *pr, const unsigned char *gz, size_t n)
{
    size_t len = 0, i;
    unsigned char *raw = gunzip(gz, n, &len);
    pb_in in;
    memset(pr, 0, sizeof *pr);
    if (raw == NULL) return;
    in.p = raw;
    in.end = raw + len;
    in.bad = 0;
    while (in.p < in.end && !in.bad) {
        uint64_t v = 0;
        pb_in sub = { NULL, NULL, 0 };
        unsigned f = pb_next(&in, &v, &sub);
        if (f == 1 && pr->ntypes < 3) {
            uint64_t x = 0;
            while (sub.p < sub.end && !sub.bad) {
                pb_in none;
                unsigned g = pb_next(&sub, &x, &none);
                pr->types[pr->ntypes][g == 2] = x;
            }
            pr->ntypes++;
        } else if (f == 2 && pr->nsamples < PB_MAX) pb_sample(pr, &sub);
        else if (f == 3) pr->mappings++;
        else if (f == 4) pb_pair(&sub, pr->loc_function, 1, 4, NULL, 0);
        else if (f == 5) pb_pair(&sub, pr->function_name, 1, 2, pr->function_system, 3);
        else if (f == 6 && pr->nstrings < PB_MAX) {
            char *s = (char *)malloc((size_t)(sub.end - sub.p) + 1);
            memcpy(s, sub.p, (size_t)(sub.end - sub.p));
            s[sub.end - sub.p] = '\0';
            pr->strings[pr->nstrings++] = s;
        } else if (f == 9) pr->time_ns = v;
        else if (f == 10) pr->duration_ns = v;
        else if (f == 12) pr->period = v;
        else if (f == 14) pr->default_type = v;
    }
    pr->ok = !in.bad && pr->nstrings > 7 && pr->ntypes == 3;
    for (i = 0; i < pr->nsamples && pr->ok; i++) pr->ok = pr->samples[i].nvalues == 3;
    free(raw);
}

static void profile_free(profile *pr)
{
    size_t i;
    for (i = 0; i < pr->nstrings; i++) free(pr->strings[i]);
}

static const char *pb_string(const profile *pr, uint64_t i) { return i < pr->nstrings ? pr->strings[i] : "?"; }

/* The numeric label `key` of sample s; -1 without one. */
static long long label_of(const profile *pr, const sample *s, const char *key)
{
    size_t i;
    for (i = 0; i < s->nlabels; i++)
        if (strcmp(pb_string(pr, s->label_key[i]), key) == 0) return (long long)s->label_num[i];
    return -1;
}

/* Sample s's stack, outermost first (locations are leaf first). */
static void sample_stack(const profile *pr, const sample *s, char *out, size_t cap)
{
    size_t i, len = 0;
    out[0] = '\0';
    for (i = s->nlocs; i-- > 0;) {
        uint64_t loc = s->locs[i] < PB_MAX ? s->locs[i] : 0;
        len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ";" : "",
                                pb_string(pr, pr->function_name[pr->loc_function[loc]]));
    }
}

/* The sample of stack, or NULL. */
static const sample *sample_of(const profile *pr, const char *stack)
{
    char s[2048];
    size_t i;
    for (i = 0; i < pr->nsamples; i++) {
        sample_stack(pr, &pr->samples[i], s, sizeof s);
        if (strcmp(s, stack) == 0) return &pr->samples[i];
    }
    return NULL;
}

static int compare_lines(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The profile's values of sample type k as a folded file: sorted lines. */
static char *profile_folded(const profile *pr, int k)
{
    char *lines[PB_MAX], *text = (char *)malloc(PB_MAX * 2100 + 1);
    size_t i, len = 0;
    for (i = 0; i < pr->nsamples; i++) {
        char stack[2048];
        lines[i] = (char *)malloc(2100);
        sample_stack(pr, &pr->samples[i], stack, sizeof stack);
        snprintf(lines[i], 2100, "%s %llu\n", stack, (unsigned long long)pr->samples[i].values[k]);
    }
    qsort(lines, pr->nsamples, sizeof lines[0], compare_lines);
    text[0] = '\0';
    for (i = 0; i < pr->nsamples; i++) {
        memcpy(text + len, lines[i], strlen(lines[i]) + 1);
        len += strlen(lines[i]);
        free(lines[i]);
    }
    return text;
}


/* ---- the files at their names ------------------------------------------ */

/* Lines with the same stacks, values apart by the clock's calibration at
   most (each snapshot measures the tick rate anew: well under 1e-3). */
static int folded_close(const char *a, const char *b)
{
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n'), *sa = strrchr(a, ' '), *sb;
        double x, y;
        if (ea == NULL || eb == NULL) return 0;
        for (sa = ea; *sa != ' '; sa--) {
        }
        for (sb = eb; *sb != ' '; sb--) {
        }
        if (sa - a != sb - b || memcmp(a, b, (size_t)(sa - a)) != 0) return 0;
        x = strtod(sa + 1, NULL);
        y = strtod(sb + 1, NULL);
        if (x - y > x / 1000 + 1 || y - x > x / 1000 + 1) return 0;
        a = ea + 1;
        b = eb + 1;
    }
    return *a == *b;
}

static void test_files_at_their_names(void)
{
    struct task inner = task_make(1, 0), outer = task_make(2, 20000), open = task_make(5, 0);
    static const char *const metrics[] = { "polls", "busy", "wall" };
    char prefix[300], type[100], path[64], *file, *text;
    answer a;
    int i;
    diag_reset();
    outer.child = DIAGNOSE_AS(&inner.base, "inner");
    for (i = 0; i < 6; i++) diag_poll(DIAGNOSE_AS(&outer.base, "files"), NULL);
    diag_poll(DIAGNOSE_AS(&open.base, "files.open"), NULL); /* one run left open */
    a = get("/pending.folded");
    CHECK_STR(a.body, "files.open 1\n");
    free(a.text);
    a = get("/pending.txt");
    CHECK(strncmp(a.body, "files.open: 1 open, oldest ", 27) == 0 && tt_lines(a.body) == 1);
    free(a.text);
    diag_span_cancel(&open.base.span); /* no run open: the files' walls stay as they are */
    snprintf(prefix, sizeof prefix, "%s/files", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "/%s.folded", metrics[i]);
        a = get(path);
        file = tt_readf("%s.%s.folded", prefix, metrics[i]);
        text = body_text(&a);
        CHECK_EQ(a.status, 200);
        CHECK_STR(header(&a, "Content-Type", type, sizeof type), "text/plain; charset=utf-8");
        if (i == 0) CHECK_STR(text, file); /* counts: byte for byte */
        else CHECK(file && tt_lines(file) == 3 && folded_close(text, file));
        free(file), free(text), free(a.text);
    }
    a = get("/polls.folded");
    CHECK_STR(a.body, "files 6\nfiles.open 1\nfiles;inner 4\n"); /* 2 runs of files, 2 polls of inner each */
    free(a.text);
    CHECK(!tt_exists(strcat(prefix, ".pending.txt"))); /* the dump wrote none: the page is empty */
    a = get("/pending.txt");
    CHECK(a.status == 200 && a.body_len == 0);
    free(a.text);
    a = get("/pending.folded");
    CHECK(a.status == 200 && a.body_len == 0);
    free(a.text);
}

/* sched only once a wake was recorded in the window: what a dump would
   not write is 404 (the trace: see child_trace). */
static void test_sched_once_woken(void)
{
    struct task t = task_make(0, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "woken");
    answer a;
    diag_reset();
    diag_poll(f, NULL);
    CHECK_EQ(status_of("GET /sched.folded HTTP/1.1\r\n\r\n"), 404);
    CHECK_EQ(status_of("GET /sched.svg HTTP/1.1\r\n\r\n"), 404);
    CHECK_EQ(status_of("GET /trace.json HTTP/1.1\r\n\r\n"), 404); /* no DIAGNOSE_TRACE here */
    diag_wake(f);
    diag_poll(f, NULL);
    a = get("/sched.folded");
    CHECK_EQ(a.status, 200);
    CHECK(strncmp(a.body, "woken ", 6) == 0 && tt_lines(a.body) == 1);
    free(a.text);
}

/* ---- the SVGs and the page ------------------------------------------------ */

static void test_svg_and_page(void)
{
    struct task t = task_make(0, 0), stuck = task_make(1000, 0);
    char type[100];
    answer a;
    int i;
    diag_reset();
    for (i = 0; i < 4; i++) diag_poll(DIAGNOSE_AS(&t.base, "page<&>"), NULL);
    diag_poll(DIAGNOSE_AS(&stuck.base, "page.stuck"), NULL);
    tt_sleep_ns(60 * MS); /* DIAGNOSE_STUCK_S=0.05 */
    a = get("/polls.svg");
    CHECK_EQ(a.status, 200);
    CHECK_STR(header(&a, "Content-Type", type, sizeof type), "image/svg+xml");
    CHECK(strncmp(a.body, "<?xml", 5) == 0 && strstr(a.body, "<title>page&lt;&amp;&gt;: 4 polls (80.00%)</title>"));
    free(a.text);
    a = get("/?refresh=3");
    CHECK_EQ(a.status, 200);
    CHECK_STR(header(&a, "Content-Type", type, sizeof type), "text/html; charset=utf-8");
    CHECK(strstr(a.body, "<meta http-equiv=\"refresh\" content=\"3\">") != NULL);
    /* the table as served, the stuck run, the flame graph of busy time */
    CHECK(strstr(a.body, "<pre id=\"table\">") && strstr(a.body, "  page&lt;&amp;&gt;\n"));
    CHECK(strstr(a.body, "<span class=\"stuck\">page.stuck: 1 open, oldest ") != NULL);
    CHECK(strstr(a.body, "diagnose.h: busy time, total ") && strstr(a.body, "<g class=\"f\""));
    /* nothing from the network */
    CHECK(!strstr(a.body, "src=") && !strstr(a.body, "<link") && !strstr(a.body, "url(") && !strstr(a.body, "@import"));
    free(a.text);
    a = get("/?metric=polls&refresh=0");
    CHECK(a.status == 200 && strstr(a.body, "diagnose.h: polls, total 5 polls") && !strstr(a.body, "http-equiv"));
    free(a.text);
    CHECK_EQ(status_of("GET /?metric=cpu HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET /?refresh=-1 HTTP/1.1\r\n\r\n"), 400);
    diag_span_cancel(&stuck.base.span);
}

/* ---- pprof ---------------------------------------------------------------- */

/* Sends a window's request; returns once the server took its first
   snapshot (the count of windows opened went up). */
static int window_open(const char *query)
{
    char request[300];
    uint64_t before = __atomic_load_n(&diag__rt->server->windows, __ATOMIC_ACQUIRE), until = tt_now_ns() + 10000 * MS;
    int fd = dial();
    snprintf(request, sizeof request, "GET /debug/pprof/profile%s HTTP/1.1\r\nHost: localhost\r\n\r\n", query);
    if (fd < 0 || send_all(fd, request, strlen(request)) != 0) return -1;
    while (__atomic_load_n(&diag__rt->server->windows, __ATOMIC_ACQUIRE) == before && tt_now_ns() < until)
        tt_sleep_ns(MS);
    return fd;
}

static answer window_close(int fd)
{
    size_t len = 0;
    char *text = read_all(fd, &len);
    close(fd);
    return answer_of(text, len);
}

/* Only what happened in the window: 2 polls of a path also polled before
   it, 5 of a new one; a path polled only before it is not there. */
static void test_pprof_window(void)
{
    struct task a = task_make(0, 0), b = task_make(0, 0), old = task_make(0, 0);
    uint64_t t0 = diag__realtime_ns(), t1;
    const sample *sa, *sb;
    char type[100];
    profile pr;
    answer w;
    int fd, i;
    diag_reset();
    for (i = 0; i < 3; i++) diag_poll(DIAGNOSE_AS(&a.base, "window.a"), NULL);
    diag_poll(DIAGNOSE_AS(&old.base, "window.old"), NULL);
    fd = window_open("?seconds=1");
    for (i = 0; i < 2; i++) diag_poll(&a.base, NULL);
    for (i = 0; i < 5; i++) diag_poll(DIAGNOSE_AS(&b.base, "window.b"), NULL);
    w = window_close(fd);
    t1 = diag__realtime_ns();
    CHECK_EQ(w.status, 200);
    CHECK_STR(header(&w, "Content-Type", type, sizeof type), "application/octet-stream");
    profile_read(&pr, (const unsigned char *)w.body, w.body_len);
    CHECK(pr.ok);
    CHECK_STR(pb_string(&pr, pr.types[0][0]), "polls");
    CHECK_STR(pb_string(&pr, pr.types[0][1]), "count");
    CHECK_STR(pb_string(&pr, pr.types[1][0]), "busy");
    CHECK_STR(pb_string(&pr, pr.types[2][1]), "nanoseconds");
    CHECK_STR(pb_string(&pr, pr.default_type), "busy");
    CHECK_EQ(pr.nsamples, 2);
    sa = sample_of(&pr, "window.a");
    sb = sample_of(&pr, "window.b");
    CHECK(sa && sa->values[0] == 2 && label_of(&pr, sa, "runs") == 2);
    CHECK(sb && sb->values[0] == 5 && label_of(&pr, sb, "runs") == 5);
    CHECK(sample_of(&pr, "window.old") == NULL);
    CHECK_RANGE(pr.time_ns, t0, t1);
    CHECK_RANGE(pr.duration_ns, 1000 * MS, t1 - t0); /* the window's first snapshot to its last */
    profile_free(&pr);
    free(w.text);
}

/* A diag_reset inside the window: the window holds what followed it. */
static void test_pprof_window_across_reset(void)
{
    struct task a = task_make(0, 0);
    const sample *s;
    uint64_t before_reset, answered;
    profile pr;
    answer w;
    int fd, i;
    fd = window_open("?seconds=1");
    for (i = 0; i < 3; i++) diag_poll(DIAGNOSE_AS(&a.base, "reset.a"), NULL);
    before_reset = tt_now_ns();
    diag_reset();
    for (i = 0; i < 2; i++) diag_poll(&a.base, NULL);
    w = window_close(fd);
    answered = tt_now_ns();
    profile_read(&pr, (const unsigned char *)w.body, w.body_len);
    s = sample_of(&pr, "reset.a");
    CHECK(pr.ok && pr.nsamples == 1 && s && s->values[0] == 2);
    CHECK(pr.duration_ns <= HI(answered - before_reset)); /* from the reset on */
    profile_free(&pr);
    free(w.text);
}

static void test_pprof_seconds(void)
{
    CHECK_EQ(status_of("GET /debug/pprof/profile?seconds=0 HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET /debug/pprof/profile?seconds=301 HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET /debug/pprof/profile?seconds=1x HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(status_of("GET /debug/pprof/profile?seconds= HTTP/1.1\r\n\r\n"), 400);
}

/* DIAGNOSE_PPROF=1: the dump's PREFIX.pb.gz holds per path the values of
   its folded files, byte for byte once written as folded lines. */
static void test_pprof_file_equals_folded(void)
{
    struct task inner = task_make(2, 10000), outer = task_make(1, 0), open = task_make(9, 0);
    static const char *const metrics[] = { "polls", "busy", "wall" };
    char prefix[300], *gz;
    size_t len = 0;
    profile pr;
    int i;
    FILE *f;
    diag_reset();
    outer.child = DIAGNOSE_AS(&inner.base, "pb.inner");
    for (i = 0; i < 9; i++) diag_poll(DIAGNOSE_AS(&outer.base, "pb.outer"), NULL);
    diag_poll(DIAGNOSE_AS(&open.base, "pb.open"), NULL);
    snprintf(prefix, sizeof prefix, "%s/pb", dir);
    CHECK_EQ(diag_dump(prefix), 0);
    gz = tt_readf("%s.pb.gz", prefix);
    f = fopen(strcat(prefix, ".pb.gz"), "rb"); /* its length: it holds NULs */
    if (f && fseek(f, 0, SEEK_END) == 0) len = (size_t)ftell(f);
    if (f) fclose(f);
    prefix[strlen(prefix) - 6] = '\0';
    profile_read(&pr, (const unsigned char *)gz, len);
    CHECK(pr.ok && pr.nsamples == 3 && pr.mappings == 1);
    for (i = 0; i < 3; i++) {
        char *want = tt_readf("%s.%s.folded", prefix, metrics[i]), *got = profile_folded(&pr, i);
        CHECK_STR(got, want);
        free(want);
        free(got);
    }
    CHECK(sample_of(&pr, "pb.open") && label_of(&pr, sample_of(&pr, "pb.open"), "open") == 1);
    CHECK(sample_of(&pr, "pb.outer;pb.inner") && label_of(&pr, sample_of(&pr, "pb.outer;pb.inner"), "runs") == 3);
    diag_span_cancel(&open.base.span);
    profile_free(&pr);
    free(gz);
}

/* ---- refusals ------------------------------------------------------------- */

static void test_only_get_and_head(void)
{
    answer a = ask("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 38);
    char allow[100];
    size_t get_len;
    CHECK_EQ(a.status, 405);
    CHECK_STR(header(&a, "Allow", allow, sizeof allow), "GET, HEAD");
    free(a.text);
    CHECK_EQ(status_of("DELETE /polls.folded HTTP/1.1\r\n\r\n"), 405);
    CHECK_EQ(status_of("OPTIONS / HTTP/1.1\r\n\r\n"), 405);
    a = get("/polls.folded");
    get_len = a.body_len;
    free(a.text);
    a = ask("HEAD /polls.folded HTTP/1.1\r\n\r\n", 31);
    CHECK_EQ(a.status, 200);
    CHECK_EQ(strtoul(header(&a, "Content-Length", allow, sizeof allow), NULL, 10), get_len);
    CHECK_EQ(a.body_len, 0);
    free(a.text);
}

/* DNS rebinding: a page elsewhere whose script reaches this port under
   another name sends that name as Host. */
static void test_host_is_this_server(void)
{
    static const char *const refused[] = { "evil.example", "evil.example:80", "127.0.0.1.evil.example",
                                           "localhost.evil.example", "[::2]", "localhost:80x", "", "[::1",
                                           "0.0.0.0", "0.0.0.0:80", "[::]" };
    static const char *const accepted[] = { "localhost", "LocalHost:1234", "127.0.0.1", "127.0.0.1:80", "[::1]",
                                            "[::1]:9", " localhost " };
    char request[300];
    size_t i;
    for (i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(request, sizeof request, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", refused[i]);
        CHECK_EQ(status_of(request), 403);
    }
    for (i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        snprintf(request, sizeof request, "GET /polls.folded HTTP/1.1\r\nHost:%s\r\n\r\n", accepted[i]);
        CHECK_EQ(status_of(request), 200);
    }
    CHECK_EQ(status_of("GET /polls.folded HTTP/1.0\r\n\r\n"), 200); /* no Host at all */
    CHECK_EQ(status_of("GET / HTTP/1.1\r\nHost: localhost\r\nhost: evil.example\r\n\r\n"), 400);
}

static void test_unknown_paths(void)
{
    static const char *const paths[] = { "/etc/passwd", "/../polls.folded", "/polls.folded/", "//polls.folded",
                                         "/POLLS.folded", "/%70olls.folded", "/diagnose.polls.folded",
                                         "/debug/pprof/", "/debug/pprof/heap", "/index.html", "/polls.folded%00",
                                         "/polls.txt", "/pending", "/polls.folded.svg", "/trace.json/" };
    char request[300];
    size_t i;
    for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        snprintf(request, sizeof request, "GET %s HTTP/1.1\r\n\r\n", paths[i]);
        CHECK_EQ(status_of(request), 404);
    }
    CHECK_EQ(status_of("GET /polls.folded?x=1&y HTTP/1.1\r\n\r\n"), 200);
}

/* A head over 8 KiB: 431, and the server closes the connection (ask
   returns at its close); 8 KiB exactly is read. */
static void test_head_too_large(void)
{
    char *request = (char *)malloc(9000);
    size_t n;
    uint64_t t0;
    answer a;
    strcpy(request, "GET /polls.folded HTTP/1.1\r\nX-Fill: ");
    n = strlen(request);
    memset(request + n, 'a', 8192 - n - 4);
    memcpy(request + 8192 - 4, "\r\n\r\n", 4);
    a = ask(request, 8192);
    CHECK_EQ(a.status, 200);
    free(a.text);
    memset(request + n, 'a', 9000 - n);
    t0 = tt_now_ns();
    a = ask(request, 9000);
    CHECK_EQ(a.status, 431);
    CHECK(tt_now_ns() - t0 < 5000 * MS); /* closed by the server, not by the idle limit */
    free(a.text);
    free(request);
}

static void test_garbage(void)
{
    static const char *const bad[] = { "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "hello world\r\n\r\n",
                                       "GET /\r\n\r\n", "GET / HTTP/2.0\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n",
                                       "GET / HTTP/1.1\r\nno colon here\r\n\r\n", "GET http://x/ HTTP/1.1\r\n\r\n",
                                       "GET / HTTP/1.1\r\n folded: header\r\n\r\n", "G\x01T / HTTP/1.1\r\n\r\n",
                                       "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_EQ(status_of(bad[i]), 400);
    {
        static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
        answer a = ask(nul, sizeof nul - 1);
        CHECK_EQ(a.status, 400);
        free(a.text);
    }
}

/* ---- limits --------------------------------------------------------------- */

/* A silent client and one that sends a byte every 100 ms are both closed
   after a few seconds (the head must end within DIAG__HTTP_READ_NS). */
static void test_idle_clients_closed(void)
{
    int silent = dial(), slow = dial(), open[2] = { 1, 1 };
    uint64_t t0 = tt_now_ns();
    while ((open[0] || open[1]) && tt_now_ns() - t0 < 20000 * MS) {
        struct pollfd p[2];
        int i;
        p[0].fd = silent;
        p[1].fd = slow;
        p[0].events = p[1].events = POLLIN;
        if (open[1] && send(slow, "X", 1, MSG_NOSIGNAL) != 1) open[1] = 0;
        if (poll(p, 2, 100) <= 0) continue;
        for (i = 0; i < 2; i++) {
            char byte;
            if (open[i] && p[i].revents && recv(p[i].fd, &byte, 1, MSG_DONTWAIT) <= 0) open[i] = 0;
        }
    }
    CHECK(!open[0] && !open[1]);
    CHECK_RANGE(tt_now_ns() - t0, 4000 * MS, 15000 * MS); /* 5 s: "a few seconds" */
    close(silent);
    close(slow);
}

struct crowd {
    int fds[200];
    uint64_t answered_ns; /* the real request's time */
    int status, answered, release; /* atomic: answered, release */
};

/* Opens 200 idle connections, asks one real question, and holds the 200
   open until released. */
static void *crowd_main(void *arg)
{
    struct crowd *c = (struct crowd *)arg;
    uint64_t t0;
    answer a;
    int i;
    for (i = 0; i < 200; i++) c->fds[i] = dial();
    t0 = tt_now_ns();
    a = get("/polls.folded");
    c->answered_ns = tt_now_ns() - t0;
    c->status = a.status;
    free(a.text);
    __atomic_store_n(&c->answered, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&c->release, __ATOMIC_ACQUIRE)) tt_sleep_ns(MS);
    for (i = 0; i < 200; i++) close(c->fds[i]);
    return NULL;
}

/* ns of the fastest batch of 2000 polls in `ns` of polling, at least 5
   batches (the fastest: the poll's own cost, not what else the machine
   ran then); with `wait`, from now until *wait is set and ns more. */
static uint64_t poll_batch_ns(diag_future *f, uint64_t ns, const int *wait)
{
    uint64_t best = UINT64_MAX, end = tt_now_ns() + ns;
    int b, i;
    for (b = 0; b < 5 || tt_now_ns() < end; b++) {
        uint64_t t0 = tt_now_ns(), dt;
        for (i = 0; i < 2000; i++) diag_poll(f, NULL);
        dt = tt_now_ns() - t0;
        if (dt < best) best = dt;
        if (wait && !__atomic_load_n(wait, __ATOMIC_ACQUIRE)) end = tt_now_ns() + ns;
    }
    return best;
}

/* 200 idle connections: a real request is answered within 10 s, and the
   program's polls meanwhile cost at most half again what they cost before
   and after. */
static void test_200_idle_connections(void)
{
    struct task t = task_make(1000000000, 0);
    diag_future *f = DIAGNOSE_AS(&t.base, "crowd.poll");
    struct crowd c;
    pthread_t thread;
    uint64_t alone, crowded, after;
    memset(&c, 0, sizeof c);
    diag_poll(f, NULL);
    free(get("/polls.folded").text); /* a snapshot has read the path's counters before any measure */
    alone = poll_batch_ns(f, 200 * MS, NULL);
    pthread_create(&thread, NULL, crowd_main, &c);
    crowded = poll_batch_ns(f, 300 * MS, &c.answered);
    __atomic_store_n(&c.release, 1, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
    after = poll_batch_ns(f, 200 * MS, NULL);
    if (after < alone) alone = after;
    printf("  200 idle connections: answered in %.1f ms; 2000 polls %.1f us alone, %.1f us meanwhile\n",
           (double)c.answered_ns / 1e6, (double)alone / 1e3, (double)crowded / 1e3);
    CHECK_EQ(c.status, 200);
    CHECK(c.answered_ns < 10000 * MS);
    CHECK(crowded <= alone + alone / 2);
    diag_span_cancel(&f->span);
}

struct asker { const char *path; int ok; };

static void *asker_main(void *arg)
{
    struct asker *k = (struct asker *)arg;
    int i;
    for (i = 0; i < 20; i++) {
        answer a = get(k->path);
        k->ok += a.status == 200;
        free(a.text);
    }
    return NULL;
}

static void *poller_main(void *arg)
{
    struct task t = task_make(2, 0);
    int i;
    (void)arg;
    for (i = 0; i < 30000; i++) diag_poll(DIAGNOSE_AS(&t.base, "concurrent.poller"), NULL);
    return NULL;
}

/* Requests from four threads while two threads poll (and ThreadSanitizer
   watches, in make check): every answer is 200. */
static void test_concurrent_requests(void)
{
    struct asker k[4] = { { "/", 0 }, { "/busy.svg", 0 }, { "/polls.folded", 0 }, { "/pending.txt", 0 } };
    pthread_t askers[4], pollers[2];
    int i;
    for (i = 0; i < 2; i++) pthread_create(&pollers[i], NULL, poller_main, NULL);
    for (i = 0; i < 4; i++) pthread_create(&askers[i], NULL, asker_main, &k[i]);
    for (i = 0; i < 4; i++) pthread_join(askers[i], NULL);
    for (i = 0; i < 2; i++) pthread_join(pollers[i], NULL);
    for (i = 0; i < 4; i++) CHECK_EQ(k[i].ok, 20);
}

/* A forked child has no server (no snapshot thread, its copies of the
   sockets closed); the parent's goes on. */
static void test_fork(void)
{
    int status = -1;
    pid_t pid = fork();
    if (pid == 0) _exit(diag__rt->server->fds[0] == -1 && diag__rt->server->nconns == 0 ? 0 : 1);
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(status_of("GET /polls.folded HTTP/1.1\r\n\r\n"), 200);
}

/* ---- children: start-up and exit ------------------------------------------ */

/* Exits with connections open: one idle, one in a pprof window, one whose
   answer is not read. exit_timer says how long the library's exit took. */
static int child_exit_with_connections(void)
{
    int idle = dial(), window = window_open("?seconds=30"), unread = dial();
    send_all(unread, "GET / HTTP/1.1\r\n\r\n", 18);
    tt_sleep_ns(100 * MS);
    exit_marker = "exit-ns.txt";
    exit_called = tt_now_ns();
    exit(idle >= 0 && window >= 0 && unread >= 0 ? 0 : 3);
}

static void test_exit_not_delayed(void)
{
    const char *d = tt_tempdir();
    char *ns;
    CHECK_EQ(tt_spawn(d, "exit_with_connections", NULL), 0);
    ns = tt_readf("%s/exit-ns.txt", d);
    CHECK(ns != NULL);
    if (ns) CHECK(strtoull(ns, NULL, 10) < 1000 * MS);
    free(ns);
}

/* The bound address and port of the server (text), or "none". */
static int child_report(void)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[INET6_ADDRSTRLEN] = "?";
    FILE *f = fopen("server.txt", "w");
    if (diag__rt->server == NULL) fprintf(f, "none %d\n", diag__rt->snapshot_thread->running);
    else if (getsockname(diag__rt->server->fds[0], (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof text);
        else inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof text);
        fprintf(f, "%s %d %d\n", text, status_of("GET /polls.folded HTTP/1.1\r\nHost: localhost\r\n\r\n"),
                status_of("GET /polls.folded HTTP/1.1\r\nHost: 0.0.0.0\r\n\r\n"));
    }
    fclose(f);
    return 0;
}

/* The child's server.txt and stderr for this DIAGNOSE_HTTP ("": unset);
   a want_stderr without a newline is the start of the stderr wanted. */
static void served(const char *value, const char *quiet, const char *want, const char *want_stderr)
{
    char http[100], q[40], *got, *err;
    const char *env[3] = { http, q, NULL }, *d = tt_tempdir();
    snprintf(http, sizeof http, "DIAGNOSE_HTTP=%s", value);
    snprintf(q, sizeof q, "DIAGNOSE_QUIET=%s", quiet);
    CHECK_EQ(tt_spawn(d, "report", env), 0);
    got = tt_readf("%s/server.txt", d);
    err = tt_readf("%s/stderr.txt", d);
    CHECK_STR(got, want);
    if (strchr(want_stderr, '\n') == NULL) CHECK(err && strncmp(err, want_stderr, strlen(want_stderr)) == 0);
    else CHECK_STR(err, want_stderr);
    free(got);
    free(err);
}

static void test_settings(void)
{
    static const char *const bad[] = { "bogus", "localhost:", "70000", "::1:80", "[::1", "host.example:80",
                                       "127.0.0.1:-1", "1.2.3:80", ":80" };
    char line[400];
    size_t i;
    served("", "1", "none 0\n", ""); /* unset: no socket, no thread */
    served("0", "1", "127.0.0.1 200 403\n", "");
    served("localhost:0", "1", "127.0.0.1 200 403\n", "");
    served("0", "0", "127.0.0.1 200 403\n", "diagnose.h: serving the profile at http://127.0.0.1:");
    served("0.0.0.0:0", "1", "0.0.0.0 200 403\n", "diagnose.h: serving the profile at http://0.0.0.0:");
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(line, sizeof line,
                 "diagnose.h: DIAGNOSE_HTTP='%s' is not [host:]port; accepted: a port from 0 to 65535 (0: any free "
                 "one), or host:port with host an IPv4 address, localhost or an IPv6 address in brackets; ignored\n",
                 bad[i]);
        served(bad[i], "1", "none 0\n", line);
    }
    snprintf(line, sizeof line, "127.0.0.1:%u", server_port()); /* this process has it */
    served(line, "1", "none 0\n", "diagnose.h: DIAGNOSE_HTTP=127.0.0.1:");
}

/* DIAGNOSE_TRACE: /trace.json is what the dump writes as PREFIX.trace.json. */
static int child_trace(void)
{
    struct task t = task_make(0, 0);
    answer a;
    int i, ok;
    for (i = 0; i < 3; i++) diag_poll(DIAGNOSE_AS(&t.base, "traced"), NULL);
    a = get("/trace.json");
    ok = a.status == 200 && strstr(a.text, "Content-Type: application/json\r\n") &&
         strncmp(a.body, "{\"traceEvents\": [\n", 18) == 0 && strstr(a.body, "\"name\": \"traced\"");
    free(a.text);
    return ok ? 0 : 1;
}

static void test_trace(void)
{
    static const char *const env[] = { "DIAGNOSE_TRACE=100", NULL };
    CHECK_EQ(tt_spawn(tt_tempdir(), "trace", env), 0);
}

static const tt_child children[] = {
    { "exit_with_connections", child_exit_with_connections },
    { "report", child_report },
    { "trace", child_trace },
};

int main(int argc, char **argv)
{
    TEST_CHILDREN(argc, argv, children);
    snprintf(dir, sizeof dir, "%s", tt_tempdir());
    if (server_port() == 0) {
        printf("[ FAIL ] no server on 127.0.0.1 (DIAGNOSE_HTTP=0)\n");
        return 1;
    }
    RUN(test_files_at_their_names);
    RUN(test_sched_once_woken);
    RUN(test_svg_and_page);
    RUN(test_pprof_window);
    RUN(test_pprof_window_across_reset);
    RUN(test_pprof_seconds);
    RUN(test_pprof_file_equals_folded);
    RUN(test_only_get_and_head);
    RUN(test_host_is_this_server);
    RUN(test_unknown_paths);
    RUN(test_head_too_large);
    RUN(test_garbage);
    RUN(test_idle_clients_closed);
    RUN(test_200_idle_connections);
    RUN(test_concurrent_requests);
    RUN(test_fork);
    RUN(test_exit_not_delayed);
    RUN(test_settings);
    RUN(test_trace);
    return test_summary();
}

#else
int main(void) { return 0; }
#endif /* DIAGNOSE_DISABLE */
