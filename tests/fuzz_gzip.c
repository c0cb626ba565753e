/* Fuzz loop for the gzip writer of PREFIX.pb.gz and /debug/pprof/profile
   (diag__gzip: deflate with the fixed codes, no zlib): seeded random data
   of the shapes a profile has (runs of one byte, repeats near and 32 KiB
   away, varints, frame names again and again, noise), from empty to past
   64 KiB, each compressed and read back by tests/gunzip.h, a reader
   written apart from the writer: the same bytes, CRC-32 and size.
   Usage: fuzz_gzip [INPUTS [SEED]] (default 20000 inputs, seed 1). */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"
#include "test.h"
#include "gunzip.h"

static uint64_t rng_state;
static uint32_t rnd(void) /* xorshift64*: the same inputs for the same seed */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

/* n bytes made of pieces of one of five shapes. */
static void random_data(unsigned char *d, size_t n)
{
    static const char *const names[] = { "server", "conn", "read", "write", "main;concat", "\x0a\x04", "" };
    size_t i = 0;
    while (i < n) {
        size_t k = 1 + rnd() % 300, j;
        unsigned shape = rnd() % 5;
        if (k > n - i) k = n - i;
        for (j = 0; j < k; j++, i++) {
            if (shape == 0) d[i] = (unsigned char)(j == 0 ? rnd() : d[i - 1]);               /* a run */
            else if (shape == 1 && i >= 300) d[i] = d[i - 1 - rnd() % 3 * 97];              /* near repeats */
            else if (shape == 2 && i >= 32768) d[i] = d[i - 32768 + (rnd() % 64 == 0)];     /* 32 KiB back */
            else if (shape == 3) d[i] = (unsigned char)names[rnd() % 7][0];
            else d[i] = (unsigned char)rnd();                                                /* noise */
        }
    }
}

int main(int argc, char **argv)
{
    long inputs = argc > 1 ? atol(argv[1]) : 20000, i;
    unsigned char *data = (unsigned char *)malloc(200000);
    size_t in_total = 0, out_total = 0;
    int bad = 0;
    rng_state = 0x9E3779B97F4A7C15ull ^ (uint64_t)(argc > 2 ? atol(argv[2]) : 1);
    printf("[ RUN  ] fuzz_gzip (%ld inputs)\n", inputs);
    for (i = 0; i < inputs && bad < 5; i++) {
        size_t n = i == 0 ? 0 : rnd() % 200 == 0 ? 66000 + rnd() % 100000 : rnd() % 3000, got = 0;
        diag__buf b = { NULL, 0, 0, 0 };
        unsigned char *back;
        random_data(data, n);
        diag__buf_put(&b, "", 0);
        diag__gzip(&b, (const char *)data, n);
        back = b.failed ? NULL : gunzip((const unsigned char *)b.data, b.len, &got);
        if (back == NULL || got != n || memcmp(back, data, n) != 0) {
            printf("  input %ld (%lu bytes): %s\n", i, (unsigned long)n, back ? "other bytes back" : "not read back");
            bad++;
        }
        in_total += n;
        out_total += b.len;
        free(back);
        free(b.data);
    }
    printf("  %ld inputs, %lu bytes in, %lu out\n", i, (unsigned long)in_total, (unsigned long)out_total);
    printf(bad ? "[ FAIL ] fuzz_gzip\n" : "[   OK ] fuzz_gzip\n");
    printf("%d passed, %d failed\n", bad ? 0 : 1, bad ? 1 : 0);
    free(data);
    return bad ? 1 : 0;
}
