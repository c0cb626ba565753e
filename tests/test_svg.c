/* The built-in flame graph: diag_write_svg and DIAGNOSE_SVG=1. Every frame
   of a known profile must be drawn once, as wide as the folded lines
   beneath it, with its value and share in its title and escaped names. */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

#define FRAME_PX 1180.0 /* DIAG__SVG_WIDTH minus the padding on both sides */

#ifndef DIAGNOSE_DISABLE /* the tests read the writer's internals */

/* ---- reading the SVG back ---- */

typedef struct frame {
    unsigned long long x, v;
    unsigned depth;
    double px, width;
    char title[256], label[256], name[256], stack[1024];
} frame;

/* The text between open and close after *at, unescaped; advances *at. */
static void between(const char **at, const char *open, const char *close, char *out, size_t cap, int unescape)
{
    const char *s = strstr(*at, open), *e;
    size_t n = 0;
    out[0] = '\0';
    if (s == NULL) return;
    s += strlen(open);
    e = strstr(s, close);
    if (e == NULL) return;
    while (s < e && n + 1 < cap) {
        static const char *const ent[][2] = { { "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" }, { "&quot;", "\"" } };
        size_t k, used = 0;
        for (k = 0; unescape && *s == '&' && k < 4; k++)
            if (strncmp(s, ent[k][0], strlen(ent[k][0])) == 0) {
                out[n++] = ent[k][1][0];
                used = strlen(ent[k][0]);
            }
        if (used == 0) out[n++] = *s, used = 1;
        s += used;
    }
    out[n] = '\0';
    *at = e + strlen(close);
}

/* Parses every <g class="f"> of svg into frames; the stack of a frame is
   rebuilt from the frame one level down that contains it. */
static size_t parse_frames(const char *svg, frame *out, size_t cap)
{
    const char *at = svg;
    size_t n = 0, i, j;
    unsigned d;
    while (n < cap && (at = strstr(at, "<g class=\"f\"")) != NULL) {
        frame *f = &out[n++];
        const char *box;
        memset(f, 0, sizeof *f);
        if (sscanf(at, "<g class=\"f\" data-x=\"%llu\" data-v=\"%llu\" data-d=\"%u\">", &f->x, &f->v, &f->depth) != 3)
            printf("  bad frame: %.80s\n", at);
        between(&at, "<title>", "</title>", f->title, sizeof f->title, 1);
        box = strstr(at, "<svg x=\"");
        if (box == NULL || sscanf(box, "<svg x=\"%lf\" y=\"%*u\" width=\"%lf\"", &f->px, &f->width) != 2)
            printf("  bad box after %s\n", f->title);
        between(&at, "<text x=\"3\" y=\"11\">", "</text>", f->label, sizeof f->label, 1);
        snprintf(f->name, sizeof f->name, "%.*s", (int)strcspn(f->title, " ") - 1, f->title);
    }
    for (d = 0; d < 64; d++) /* parents first, level by level */
        for (i = 0; i < n; i++) {
            frame *f = &out[i], *p = NULL;
            if (f->depth != d) continue;
            for (j = 0; j < n && d > 0; j++)
                if (out[j].depth == d - 1 && out[j].x <= f->x && out[j].x + out[j].v >= f->x + f->v) p = &out[j];
            if (p) snprintf(f->stack, sizeof f->stack, "%.700s;%.200s", p->stack, f->name);
            else snprintf(f->stack, sizeof f->stack, "%s", f->name);
        }
    return n;
}

static const frame *find(const frame *frames, size_t n, const char *stack)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(frames[i].stack, stack) == 0) return &frames[i];
    return NULL;
}

/* Sum of the folded lines at or beneath stack: the frame's inclusive value. */
static unsigned long long beneath(const char *folded, const char *stack)
{
    unsigned long long sum = 0;
    size_t n = strlen(stack);
    const char *line;
    for (line = folded; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (strncmp(line, stack, n) == 0 && (line[n] == ' ' || line[n] == ';'))
            sum += strtoull(strchr(line, ' ') + 1, NULL, 10);
    return sum;
}

/* The number the picture gives of the frames it did not draw; -1: none given. */
static long left_out(const char *svg)
{
    const char *at = strstr(svg, "<text id=\"left-out\" ");
    long n;
    char word[16];
    if (at == NULL || sscanf(strchr(at, '>') + 1, "%ld frame%15[s ]narrower than 0.1 px not drawn</text>", &n, word) != 2)
        return -1;
    return n;
}

/* Every frame is as wide as the lines beneath it, positioned at its offset,
   every stack prefix wider than 0.1 px has exactly one frame, and the
   picture counts the others. */
static void check_against_folded(const char *svg, const char *folded)
{
    static frame frames[512];
    size_t n = parse_frames(svg, frames, 512), i, prefixes = 0, narrow = 0;
    unsigned long long total = 0;
    static char seen[512][256];
    const char *line;
    for (line = folded; *line; line = strchr(line, '\n') + 1) total += strtoull(strchr(line, ' ') + 1, NULL, 10);
    CHECK(n > 0);
    for (i = 0; i < n; i++) {
        const frame *f = &frames[i];
        CHECK_EQ(f->v, beneath(folded, f->stack));
        CHECK_RANGE(f->width, f->v * FRAME_PX / total - 0.006, f->v * FRAME_PX / total + 0.006);
        CHECK_RANGE(f->px, 10 + f->x * FRAME_PX / total - 0.006, 10 + f->x * FRAME_PX / total + 0.006);
        CHECK_STR(f->label, f->name);
    }
    for (line = folded; *line; line = strchr(line, '\n') + 1) { /* every prefix of every line */
        size_t len = (size_t)(strchr(line, ' ') - line), k, end;
        for (end = 1; end <= len; end++) {
            char stack[256];
            int dup = 0;
            if (end < len && line[end] != ';') continue;
            snprintf(stack, sizeof stack, "%.*s", (int)end, line);
            for (k = 0; k < prefixes; k++) dup |= strcmp(seen[k], stack) == 0;
            if (dup || prefixes >= 512) continue;
            snprintf(seen[prefixes++], sizeof seen[0], "%s", stack);
            if (beneath(folded, stack) * FRAME_PX / total >= 0.1) {
                if (find(frames, n, stack) == NULL) printf("  no frame for %s\n", stack);
                CHECK(find(frames, n, stack) != NULL);
            } else {
                narrow++;
            }
        }
    }
    CHECK_EQ(n + narrow, prefixes);
    CHECK_EQ(left_out(svg), (long)narrow);
}

/* ---- a profile given as rows, so every value is known exactly ---- */

static diag__row make_row(const char *stack, uint64_t busy)
{
    diag__row r;
    memset(&r, 0, sizeof r);
    r.stack = stack;
    r.busy = busy;
    r.polls = 1;
    return r;
}

static int compare_stacks(const void *a, const void *b)
{
    return strcmp(((const diag__row *)a)->stack, ((const diag__row *)b)->stack);
}

static char *svg_of_rows(diag__row *rows, size_t n, int metric)
{
    diag__snapshot snap;
    diag__buf b = { NULL, 0, 0, 0 };
    memset(&snap, 0, sizeof snap);
    snap.rows = rows;
    snap.count = n;
    qsort(rows, n, sizeof *rows, compare_stacks); /* as the snapshot has them */
    diag__svg_write(&b, &snap, metric);
    return b.failed ? NULL : b.data;
}

/* Total 10 ms; "main;a-x" sorts bytewise between "main;a" and "main;a;b",
   which must not split the frame "a"; "main;tiny" is 1 ns, 0.0001 px. */
static void test_known_profile(void)
{
    static const struct { const char *stack, *title; unsigned long long x, v; unsigned depth; } want[] = {
        { "idle", "idle: 4.00ms (40.00%)", 0, 4000000, 0 },
        { "main", "main: 6.00ms (60.00%)", 4000000, 6000000, 0 },
        { "main;<q&r>", "<q&r>: 1.00ms (10.00%)", 4999999, 1000000, 1 },
        { "main;a", "a: 3.50ms (35.00%)", 5999999, 3500000, 1 },
        { "main;a;b", "b: 1.50ms (15.00%)", 7999999, 1500000, 2 },
        { "main;a-x", "a-x: 500us (5.00%)", 9499999, 500000, 1 },
    };
    diag__row rows[7];
    static frame frames[16];
    char *svg;
    size_t n, i;
    rows[0] = make_row("main", 999999);
    rows[1] = make_row("main;a", 2000000);
    rows[2] = make_row("main;a-x", 500000);
    rows[3] = make_row("main;a;b", 1500000);
    rows[4] = make_row("main;<q&r>", 1000000);
    rows[5] = make_row("idle", 4000000);
    rows[6] = make_row("main;tiny", 1);
    svg = svg_of_rows(rows, 7, DIAG__BUSY);
    CHECK(svg != NULL);
    if (svg == NULL) return;
    n = parse_frames(svg, frames, 16);
    CHECK_EQ(n, 6); /* tiny is left out */
    for (i = 0; i < sizeof want / sizeof want[0]; i++) {
        const frame *f = find(frames, n, want[i].stack);
        CHECK(f != NULL);
        if (f == NULL) {
            printf("  missing frame %s\n", want[i].stack);
            continue;
        }
        CHECK_STR(f->title, want[i].title);
        CHECK_EQ(f->x, want[i].x);
        CHECK_EQ(f->v, want[i].v);
        CHECK_EQ(f->depth, want[i].depth);
        /* 1180 px for 10 ms: 0.118 px per us, printed to 0.01 px */
        CHECK_RANGE(f->width, want[i].v * 1.18e-4 - 0.005, want[i].v * 1.18e-4 + 0.005);
    }
    CHECK(find(frames, n, "main;tiny") == NULL);
    CHECK(strstr(svg, "<text id=\"left-out\" x=\"1190\" y=\"101\" text-anchor=\"end\">1 frame narrower than 0.1 px "
                      "not drawn</text>\n") != NULL); /* right of the bottom line: 36 + 3 * 16 + 26 - 9, as the hover line */
    CHECK(strstr(svg, "<title>&lt;q&amp;r&gt;: 1.00ms (10.00%)</title>") != NULL);
    CHECK(strstr(svg, ">&lt;q&amp;r&gt;</text>") != NULL);
    CHECK(strstr(svg, "<q&") == NULL);
    CHECK(strstr(svg, "data-total=\"10000000\"") != NULL);
    CHECK(strstr(svg, ">diagnose.h: busy time, total 10.0ms</text>") != NULL);
    /* three levels, roots at the bottom: y = 36 + (3 - 1 - depth) * 16 */
    CHECK(strstr(svg, "<svg x=\"10.00\" y=\"68\" width=\"472.00\" height=\"15\">") != NULL); /* idle */
    CHECK(strstr(svg, "y=\"36\" width=\"177.00\"") != NULL);                                   /* main;a;b */
    check_against_folded(svg, "idle 4000000\nmain 999999\nmain;<q&r> 1000000\nmain;a 2000000\n"
                              "main;a-x 500000\nmain;a;b 1500000\nmain;tiny 1\n");
    free(svg);
}

/* The same name gets the same color in every picture of a metric. */
static void test_colors_follow_names(void)
{
    diag__row rows[3];
    char *one, *two;
    const char *a, *b;
    char color_a[32], color_b[32];
    rows[0] = make_row("x;shared", 5);
    rows[1] = make_row("y", 5);
    one = svg_of_rows(rows, 2, DIAG__BUSY);
    rows[0] = make_row("z", 7);
    rows[1] = make_row("z;w;shared", 3);
    rows[2] = make_row("q", 1);
    two = svg_of_rows(rows, 3, DIAG__BUSY);
    CHECK(one && two);
    if (!one || !two) return;
    a = strstr(one, ">shared</text>");
    b = strstr(two, ">shared</text>");
    CHECK(a && b);
    if (!a || !b) return;
    while (strncmp(a, "fill=\"", 6) != 0) a--;
    while (strncmp(b, "fill=\"", 6) != 0) b--;
    snprintf(color_a, sizeof color_a, "%.*s", (int)strcspn(a, "/"), a);
    snprintf(color_b, sizeof color_b, "%.*s", (int)strcspn(b, "/"), b);
    CHECK_STR(color_a, color_b);
    CHECK(strncmp(color_a, "fill=\"rgb(", 10) == 0);
    free(one);
    free(two);
}

static void test_empty_profile(void)
{
    diag__row row = make_row("idle", 0);
    char *svg = svg_of_rows(&row, 1, DIAG__BUSY);
    CHECK(svg != NULL);
    if (svg == NULL) return;
    CHECK(strstr(svg, "<g class=\"f\"") == NULL);
    CHECK(strstr(svg, ">Nothing was measured.</text>") != NULL);
    CHECK_EQ(left_out(svg), -1); /* no frames, none left out */
    CHECK(strncmp(svg, "<?xml", 5) == 0);
    CHECK(strcmp(svg + strlen(svg) - 7, "</svg>\n") == 0);
    free(svg);
}

/* ---- real futures: diag_write_svg and DIAGNOSE_SVG=1 ---- */

struct leaf { diag_future base; int n, polls; };
struct parent { diag_future base; struct leaf leaf; int n; };

static diag_status leaf_poll(diag_future *self, void *cx)
{
    struct leaf *l = (struct leaf *)self;
    (void)cx;
    return ++l->n == l->polls ? DIAG_READY : DIAG_PENDING;
}

/* Each poll polls its leaf twice; the leaf is READY after 6 polls and the
   parent after 4: server 4 polls, server;req<&> 6, server;log 2. */
static diag_status parent_poll(diag_future *self, void *cx)
{
    struct parent *p = (struct parent *)self;
    if (p->leaf.n < p->leaf.polls) diag_poll(&p->leaf.base, cx);
    if (p->leaf.n < p->leaf.polls) diag_poll(&p->leaf.base, cx);
    if (++p->n == 4) {
        struct leaf log = { DIAG_FUTURE_INIT(leaf_poll), 0, 2 };
        while (diag_poll(DIAGNOSE_AS(&log.base, "log"), cx) == DIAG_PENDING) {
        }
        return DIAG_READY;
    }
    return DIAG_PENDING;
}

static void run_server(void)
{
    struct parent p;
    memset(&p, 0, sizeof p);
    p.base.poll = parent_poll;
    p.leaf.base.poll = leaf_poll;
    p.leaf.polls = 6;
    DIAGNOSE_AS(&p.leaf.base, "req<&>");
    while (diag_poll(DIAGNOSE_AS(&p.base, "server"), NULL) == DIAG_PENDING) tt_spin_ns(20000);
}

/* The folded text and the SVG of one metric from one snapshot: two
   snapshots can differ by a nanosecond of rounding as the clock is
   calibrated again at each. */
static void check_snapshot_metric(int metric)
{
    diag__snapshot snap;
    diag__buf folded = { NULL, 0, 0, 0 }, svg = { NULL, 0, 0, 0 };
    CHECK_EQ(diag__snapshot_take(&snap), 0);
    diag__buf_put(&folded, "", 0);
    diag__folded(&folded, &snap, metric);
    diag__svg_write(&svg, &snap, metric);
    CHECK(!folded.failed && !svg.failed);
    if (!folded.failed && !svg.failed) check_against_folded(svg.data, folded.data);
    free(folded.data);
    free(svg.data);
    diag__snapshot_free(&snap);
}

static void test_write_svg_files(void)
{
    static frame frames[64];
    const char *dir = tt_tempdir();
    char prefix[300];
    char *polls, *busy, *wall;
    const frame *f;
    size_t n;
    snprintf(prefix, sizeof prefix, "%s/out", dir);
    run_server();
    CHECK_EQ(diag_write_svg(prefix), 0);
    polls = tt_readf("%s.polls.svg", prefix);
    busy = tt_readf("%s.busy.svg", prefix);
    wall = tt_readf("%s.wall.svg", prefix);
    CHECK(polls && busy && wall);
    CHECK(!tt_exists(strcat(prefix, ".sched.svg"))); /* no wakes, no sched */
    if (!polls || !busy || !wall) return;
    n = parse_frames(polls, frames, 64);
    CHECK_EQ(n, 3);
    f = find(frames, n, "server");
    CHECK(f && strcmp(f->title, "server: 12 polls (100.00%)") == 0);
    f = find(frames, n, "server;req<&>");
    CHECK(f && strcmp(f->title, "req<&>: 6 polls (50.00%)") == 0);
    f = find(frames, n, "server;log");
    CHECK(f && strcmp(f->title, "log: 2 polls (16.67%)") == 0);
    CHECK(strstr(polls, ">diagnose.h: polls, total 12 polls</text>") != NULL);
    check_against_folded(polls, "server 4\nserver;log 2\nserver;req<&> 6\n");
    /* a poll that does nothing can be under 0.1 px of the busy picture */
    CHECK_RANGE(parse_frames(busy, frames, 64), 1, 3);
    CHECK(strstr(busy, ">diagnose.h: busy time, total ") != NULL);
    CHECK(strstr(wall, ">diagnose.h: wall time, total ") != NULL);
    check_snapshot_metric(DIAG__BUSY);
    check_snapshot_metric(DIAG__WALL);
    free(polls);
    free(busy);
    free(wall);
}

static int child_server(void)
{
    run_server();
    return 0;
}

static void test_svg_at_exit(void)
{
    static const char *const with[] = { "DIAGNOSE_SVG=1", "DIAGNOSE_OUT=svg", NULL };
    static const char *const without[] = { "DIAGNOSE_SVG=", "DIAGNOSE_OUT=plain", NULL };
    static frame frames[64];
    const char *dir = tt_tempdir();
    char *svg;
    CHECK_EQ(tt_spawn(dir, "server", with), 0);
    CHECK_EQ(tt_spawn(dir, "server", without), 0);
    svg = tt_readf("%s/svg.polls.svg", dir);
    CHECK(svg != NULL);
    if (svg) {
        size_t n = parse_frames(svg, frames, 64);
        const frame *f = find(frames, n, "server;req<&>");
        CHECK_EQ(n, 3);
        CHECK(f && strcmp(f->title, "req<&>: 6 polls (50.00%)") == 0);
    }
    free(svg);
    svg = tt_readf("%s/svg.busy.svg", dir);
    CHECK(svg != NULL && strstr(svg, "</svg>\n") != NULL);
    free(svg);
    svg = tt_readf("%s/plain.polls.folded", dir);
    CHECK(svg != NULL); /* the run without the option wrote its profile... */
    free(svg);
    svg = tt_readf("%s/plain.polls.svg", dir);
    CHECK(svg == NULL); /* ...but no picture */
    free(svg);
}

#endif

int main(int argc, char **argv)
{
#ifdef DIAGNOSE_DISABLE
    (void)argc, (void)argv;
    return diag_write_svg("never-written");
#else
    static const tt_child children[] = { { "server", child_server } };
    TEST_CHILDREN(argc, argv, children);
    setenv("DIAGNOSE_QUIET", "1", 1);
    RUN(test_known_profile);
    RUN(test_colors_follow_names);
    RUN(test_empty_profile);
    RUN(test_write_svg_files);
    RUN(test_svg_at_exit);
    return test_summary();
#endif
}
