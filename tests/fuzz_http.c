/* Fuzz loop for DIAGNOSE_HTTP's request parser and router: seeded random
   request heads (pieces of real requests, mutated bytes, heads past
   8 KiB), each read by diag__http_parse at several lengths as it would
   arrive. Checked: only the statuses the parser may answer; a status once
   decided never changes as more bytes come; 431 only past 8 KiB; a head
   routed (200) has a target starting with '/'. A quarter of the routed ones
   go through diag__http_route, whose answer is one of 200, 400, 404 (200
   only for the paths it serves), and every 200th input is sent to the
   server itself, which must answer as the parser said and stay up.
   Usage: fuzz_http [INPUTS [SEED]] (default 20000 inputs, seed 1). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

static uint64_t rng_state;
static uint32_t rnd(void) /* xorshift64*: the same inputs for the same seed */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

#define PICK(list) (list)[rnd() % (sizeof(list) / sizeof((list)[0]))]

static const char *const methods[] = { "GET", "GET", "HEAD", "POST", "PUT", "get", "G\x01T", "", "OPTIONS", "\x16\x03" };
static const char *const targets[] = {
    "/", "/polls.folded", "/busy.folded?x=1", "/wall.svg", "/pending.txt", "/pending.folded", "/sched.folded",
    "/trace.json", "/debug/pprof/profile?seconds=1", "/debug/pprof/profile?seconds=0",
    "/debug/pprof/profile?seconds=abc", "/debug/pprof/profile?seconds=301", "/?metric=wall&refresh=0",
    "/?metric=nope", "/?refresh=99999", "/../etc/passwd", "/%2e%2e/", "//", "*", "http://x/", "/polls.folded/",
    "/\xff\xfe", "",
};
static const char *const versions[] = { "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x", "http/1.1", "" };
static const char *const headers[] = { "Host: localhost", "Host: [::1]:80", "Host: evil.example", "host:127.0.0.1",
                                       "Host:", "X: y", "no colon", " folded: x", "Content-Length: 5",
                                       "Host: 127.0.0.1:8080", "A: \x01", "\xc3\xa9: x", "Accept: */*" };
static const char *const ends[] = { "\r\n", "\r\n", "\n", "\r" };

#define INPUT_MAX 12000

static void put(char *buf, size_t *n, const char *s)
{
    size_t k = strlen(s);
    if (*n + k >= INPUT_MAX) k = INPUT_MAX - 1 - *n;
    memcpy(buf + *n, s, k);
    *n += k;
}

/* A request head made of real pieces, then maybe mutated. */
static size_t random_head(char *buf)
{
    size_t n = 0, i, k = rnd() % 5;
    int clean = rnd() % 2; /* half of them well formed up to the mutations */
    const char *end = clean ? "\r\n" : PICK(ends);
    put(buf, &n, clean ? (rnd() % 4 ? "GET" : "HEAD") : PICK(methods));
    put(buf, &n, rnd() % 16 ? " " : "  ");
    put(buf, &n, PICK(targets));
    put(buf, &n, " ");
    put(buf, &n, clean ? "HTTP/1.1" : PICK(versions));
    put(buf, &n, end);
    for (i = 0; i < k; i++) {
        put(buf, &n, clean && i == 0 ? "Host: localhost" : PICK(headers));
        put(buf, &n, rnd() % 8 ? end : PICK(ends));
    }
    if (rnd() % 10 == 0) { /* a long header: near or past 8 KiB */
        size_t fill = 7000 + rnd() % 3000;
        put(buf, &n, "X-Fill: ");
        while (fill-- > 0 && n < INPUT_MAX - 8) buf[n++] = 'a';
        put(buf, &n, end);
    }
    if (rnd() % 4) put(buf, &n, end); /* the blank line that ends a head */
    for (i = rnd() % 3 == 0 ? rnd() % 6 : 0; i > 0 && n > 0; i--) { /* mutations */
        size_t at = rnd() % n;
        if (rnd() % 2) buf[at] = (char)rnd();
        else n = at;
    }
    return n;
}

static int known_status(int s) { return s == 0 || s == 200 || s == 400 || s == 403 || s == 405 || s == 431; }

/* One input, read at growing lengths as it could arrive; returns the
   final status, -1 if a check failed. */
static int check_parse(const char *buf, size_t n)
{
    diag__http_request rq;
    size_t cuts[10], i;
    int decided = 0;
    for (i = 0; i < 9; i++) cuts[i] = n ? rnd() % (n + 1) : 0;
    cuts[9] = n;
    for (i = 1; i < 10; i++) { /* in order */
        size_t j = i, c = cuts[i];
        while (j > 0 && cuts[j - 1] > c) cuts[j] = cuts[j - 1], j--;
        cuts[j] = c;
    }
    for (i = 0; i < 10; i++) {
        diag__http_parse(&rq, buf, cuts[i], "127.0.0.1");
        if (!known_status(rq.status) || (decided && rq.status != decided) ||
            (rq.status == 431) != (cuts[i] > DIAG__HTTP_HEAD_MAX && rq.status == 431) ||
            (rq.status == 0 && cuts[i] > DIAG__HTTP_HEAD_MAX)) {
            printf("  status %d at %lu of %lu bytes (decided %d)\n", rq.status, (unsigned long)cuts[i],
                   (unsigned long)n, decided);
            return -1;
        }
        if (rq.status == 200 && (rq.target == NULL || rq.target_len == 0 || rq.target[0] != '/' ||
                                 rq.target < buf || rq.target + rq.target_len > buf + cuts[i])) {
            printf("  a routed head with no target\n");
            return -1;
        }
        if (rq.status) decided = rq.status;
    }
    return decided;
}

/* The router's answer for the target of a routed head (no socket). */
static int check_route(const char *buf, size_t n)
{
    diag__http_request rq;
    diag__http_conn *c = (diag__http_conn *)calloc(1, sizeof *c);
    const char *q;
    size_t path;
    int status = 0, served, metric;
    diag__http_parse(&rq, buf, n, "127.0.0.1");
    q = (const char *)memchr(rq.target, '?', rq.target_len);
    path = q ? (size_t)(q - rq.target) : rq.target_len;
    served = diag__http_find(rq.target, path, &metric) >= 0;
    diag__http_route(c, rq.target, rq.target_len);
    if (c->state == DIAG__HTTP_WINDOW) status = 200; /* a pprof window opened: answered later */
    else if (c->out.data == NULL || sscanf(c->out.data, "HTTP/1.1 %d ", &status) != 1) status = -1;
    diag__snapshot_free(&c->base);
    free(c->out.data);
    free(c);
    if ((status != 200 && status != 400 && status != 404) || (status == 200 && !served) || (status == 404 && served &&
                                                                                            strncmp(rq.target, "/sched", 6) &&
                                                                                            strncmp(rq.target, "/trace", 6))) {
        printf("  route answered %d for a %s path\n", status, served ? "served" : "unknown");
        return -1;
    }
    return 0;
}

/* The server's status for these bytes (0: it closed without one). */
static int over_the_wire(const char *buf, size_t n)
{
    struct sockaddr_in a;
    char answer[64] = "";
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
    size_t got = 0;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)diag__rt->server->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || send(fd, buf, n, MSG_NOSIGNAL) != (ssize_t)n) {
        close(fd);
        return -1;
    }
    while (got < sizeof answer - 1) {
        struct pollfd p;
        ssize_t k;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, 10000) <= 0) break;
        k = recv(fd, answer + got, sizeof answer - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
    }
    answer[got] = '\0';
    close(fd);
    if (sscanf(answer, "HTTP/1.1 %d ", &status) != 1) status = 0;
    return status;
}

TT_BEFORE_START(serve)
{
    setenv("DIAGNOSE_HTTP", "0", 0);
    tt_quiet_exit_dump();
}

int main(int argc, char **argv)
{
    long inputs = argc > 1 ? atol(argv[1]) : 20000, i;
    char *buf = (char *)malloc(INPUT_MAX);
    int bad = 0, routed = 0, sent = 0;
    rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(argc > 2 ? atol(argv[2]) : 1);
    printf("[ RUN  ] fuzz_http (%ld inputs)\n", inputs);
    if (diag__rt->server == NULL) {
        printf("  no server (DIAGNOSE_HTTP=0)\n");
        bad++;
    }
    for (i = 0; i < inputs && bad < 5 && !bad; i++) {
        size_t n = random_head(buf);
        int status = check_parse(buf, n);
        if (status < 0) {
            printf("  input %ld: '%.*s'\n", i, (int)(n < 200 ? n : 200), buf);
            bad++;
            continue;
        }
        if (status == 200 && i % 4 == 0) {
            bad += check_route(buf, n) != 0;
            routed++;
        }
        if (i % 200 == 0 && status != 0 && status != 200) { /* the server says the same, and stays up */
            int got = over_the_wire(buf, n);
            sent++;
            if (got != status) {
                printf("  the server answered %d, the parser %d\n", got, status);
                bad++;
            }
        }
    }
    if (over_the_wire("GET /polls.folded HTTP/1.1\r\n\r\n", 31) != 200) {
        printf("  the server no longer answers\n");
        bad++;
    }
    printf("  %ld heads parsed, %d routed, %d sent to the server\n", i, routed, sent);
    printf(bad ? "[ FAIL ] fuzz_http\n" : "[   OK ] fuzz_http\n");
    printf("%d passed, %d failed\n", bad ? 0 : 1, bad ? 1 : 0);
    free(buf);
    return bad ? 1 : 0;
}
