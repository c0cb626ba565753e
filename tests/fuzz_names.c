/* Fuzz loop for the name sanitiser and the folded writer: seeded random
   names (any bytes, UTF-8 valid and not, up to 10 kB), checked one by one
   through diag__sanitize, then as paths of nested futures through a dump
   whose every line must match the pinned grammar and be valid UTF-8.
   Usage: fuzz_names [INPUTS [SEED]] (default 20000 inputs, seed 1). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"

static uint64_t rng_state;
static uint32_t rnd(void) /* xorshift64*: the same inputs for the same seed */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* A random name: pieces of ASCII, separators, valid and broken UTF-8. */
static char *random_name(void)
{
    static const char *const pieces[] = { "a", "Z", "9", ";", " ", "\t", "\n", "\r", "\x01", "\x7f", "&", "*",
                                          "(", ")", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x94\xa5", "\xc3", "\xff",
                                          "\xed\xa0\x80", "\xc0\xaf", "\xe2\x80\xa8", "\xc2\xa0", "\xef\xbb\xbf", "..." };
    size_t len = rnd() % 16 == 0 ? 10240 : rnd() % 300, n = 0;
    char *s = (char *)malloc(len + 5);
    while (n < len) {
        const char *p = pieces[rnd() % (sizeof pieces / sizeof pieces[0])];
        size_t k = strlen(p);
        if (rnd() % 4 == 0) { s[n++] = (char)(rnd() % 256 ? rnd() % 256 : 1); continue; }
        memcpy(s + n, p, k);
        n += k;
    }
    s[n] = '\0';
    return s;
}

static int frame_ok(const char *out, size_t len)
{
    size_t i;
    if (len == 0 || len > DIAG__NAME_MAX || strlen(out) != len) return 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c <= ' ' || c == ';' || c == 0x7f) return 0;
    }
    return tt_utf8_valid((const unsigned char *)out, len);
}

struct node { diag_future base; struct node *child; };
static diag_status node_poll(diag_future *self, void *cx)
{
    struct node *n = (struct node *)self;
    if (n->child) diag_poll(&n->child->base, cx);
    return DIAG_READY;
}

TT_BEFORE_START(exit_dump_elsewhere) { tt_quiet_exit_dump(); }

int main(int argc, char **argv)
{
    long inputs = argc > 1 ? atol(argv[1]) : 20000, i;
    char out[DIAG__NAME_MAX + 1], again[DIAG__NAME_MAX + 1], prefix[300];
    int bad = 0, dumps = 0;
    rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(argc > 2 ? atol(argv[2]) : 1);
    snprintf(prefix, sizeof prefix, "%s/fuzz", tt_tempdir());
    printf("[ RUN  ] fuzz_names (%ld inputs)\n", inputs);
    for (i = 0; i < inputs && bad < 5; i++) {
        char *name = random_name();
        int derived = (int)(rnd() % 2);
        size_t len = diag__sanitize(name, derived, out);
        /* a sanitized frame is safe, and sanitizing it again keeps it
           (when it was not cut: a cut name is cut again) */
        if (!frame_ok(out, len) ||
            (len <= DIAG__NAME_MAX - 3 && (diag__sanitize(out, 0, again) != len || strcmp(out, again) != 0))) {
            printf("  bad frame for input %ld: '%s'\n", i, out);
            bad++;
        }
        if (i % 500 == 0) { /* the folded writer, with a chain of such names */
            struct node nodes[4];
            int k, depth = 1 + (int)(rnd() % 4);
            char *text;
            for (k = 0; k < depth; k++) {
                nodes[k].base.poll = node_poll;
                memset(&nodes[k].base.span, 0, sizeof nodes[k].base.span);
                nodes[k].child = k + 1 < depth ? &nodes[k + 1] : NULL;
                DIAGNOSE_AS(&nodes[k].base, k == 0 ? name : random_name()); /* names live on: paths keep them */
            }
            diag_poll(&nodes[0].base, NULL);
            if (diag_dump(prefix) != 0 || (text = tt_readf("%s.polls.folded", prefix)) == NULL) {
                printf("  dump failed\n");
                bad++;
                continue;
            }
            if (!tt_folded_ok(text)) bad++;
            free(text);
            dumps++;
            continue; /* name is kept: a path points to it */
        }
        free(name);
    }
    printf("  %ld names sanitized, %d dumps checked\n", i, dumps);
    if (bad) printf("[ FAIL ] fuzz_names\n");
    else printf("[   OK ] fuzz_names\n");
    printf("%d passed, %d failed\n", bad ? 0 : 1, bad ? 1 : 0);
    return bad ? 1 : 0;
}
