/* gunzip.h - reads back the gzip members diagnose.h writes (PREFIX.pb.gz,
   /debug/pprof/profile): RFC 1952's header and trailer, and RFC 1951's
   blocks as diagnose.h makes them, stored or of the fixed codes (no
   dynamic codes). Written apart from the writer, to check it. Include
   after test.h. */
#ifndef DIAG_TEST_GUNZIP_H
#define DIAG_TEST_GUNZIP_H

#include <stdio.h>
#include <stdlib.h>

TT_FN uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    int k;
    while (n--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

TT_FN uint32_t le32(const unsigned char *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* RFC 1951's blocks as the writer makes them: stored, or fixed codes. */
typedef struct bits_in { const unsigned char *p; size_t n, at; int bad; } bits_in;

TT_FN unsigned bits(bits_in *in, unsigned n) /* the next n bits, first bit lowest */
{
    unsigned v = 0, i;
    for (i = 0; i < n; i++, in->at++) {
        if (in->at / 8 >= in->n) return in->bad = 1, 0;
        v |= (unsigned)((in->p[in->at / 8] >> (in->at % 8)) & 1) << i;
    }
    return v;
}

TT_FN unsigned code_bits(bits_in *in, unsigned n) /* a Huffman code's n bits, top bit first */
{
    unsigned v = 0, i;
    for (i = 0; i < n; i++) v = v << 1 | bits(in, 1);
    return v;
}

/* A value from its table (base0, extra from code `first` on, every step). */
TT_FN unsigned table_value(bits_in *in, unsigned code, unsigned base0, unsigned first, unsigned step)
{
    unsigned i, base = base0, extra = 0;
    for (i = 0; i <= code; i++) {
        extra = i < first ? 0 : (i - first) / step + 1;
        if (i < code) base += 1u << extra;
    }
    return base + bits(in, extra);
}

TT_FN size_t inflate_fixed(bits_in *in, unsigned char *out, size_t len, size_t cap)
{
    for (;;) {
        unsigned c = code_bits(in, 7), sym, length, dist;
        if (c <= 0x17) sym = 256 + c;
        else if ((c = c << 1 | bits(in, 1)) >= 0x30 && c <= 0xbf) sym = c - 0x30;
        else if (c >= 0xc0 && c <= 0xc7) sym = 280 + c - 0xc0;
        else sym = 144 + ((c << 1 | bits(in, 1)) - 0x190);
        if (in->bad || sym == 256) return len;
        if (sym < 256) {
            if (len < cap) out[len++] = (unsigned char)sym;
            continue;
        }
        length = sym == 285 ? 258 : table_value(in, sym - 257, 3, 8, 4);
        dist = table_value(in, code_bits(in, 5), 1, 4, 2);
        if (dist > len || len + length > cap) return in->bad = 1, len;
        for (; length > 0; length--, len++) out[len] = out[len - dist];
    }
}

/* The member's data, checked: header, blocks, CRC-32 and size. */
TT_FN unsigned char *gunzip(const unsigned char *gz, size_t n, size_t *out_len)
{
    size_t cap = n >= 18 ? le32(gz + n - 4) + (size_t)1 : 1, len = 0; /* the size the trailer says */
    unsigned char *out = (unsigned char *)malloc(cap);
    bits_in in;
    int last = 0;
    in.p = gz + 10;
    in.n = n > 18 ? n - 18 : 0;
    in.at = 0;
    in.bad = n < 18 || gz[0] != 0x1f || gz[1] != 0x8b || gz[2] != 8 || gz[3] != 0;
    while (!last && !in.bad) {
        unsigned type;
        last = (int)bits(&in, 1);
        type = bits(&in, 2);
        if (type == 1) {
            len = inflate_fixed(&in, out, len, cap);
        } else if (type == 0) {
            size_t k, at = (in.at + 7) / 8, block = at + 4 <= in.n ? (size_t)(in.p[at] | in.p[at + 1] << 8) : 0;
            if (at + 4 + block > in.n || len + block > cap) in.bad = 1;
            for (k = 0; k < block && !in.bad; k++) out[len++] = in.p[at + 4 + k];
            in.at = (at + 4 + block) * 8;
        } else in.bad = 1;
    }
    if (in.bad || (in.at + 7) / 8 != in.n || le32(gz + n - 8) != crc32_of(out, len) || le32(gz + n - 4) != len) {
        printf("  not a gzip member as written\n");
        free(out);
        return NULL;
    }
    *out_len = len;
    return out;
}

#endif
