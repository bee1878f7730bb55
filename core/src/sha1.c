/* SHA-1 (FIPS 180-4), only to name scripts for EVALSHA: Redis identifies a cached script
 * by the SHA1 of its exact text, so computing it here keeps the name and the bytes sent
 * by EVAL in agreement by construction. Not used for anything security-related. */
#include <stdint.h>
#include <string.h>

#include "script.h"

typedef struct sha1_ctx {
    uint32_t h[5];
    unsigned char block[64];
    size_t used;
    uint64_t total;
} sha1_ctx;

static uint32_t rol(uint32_t x, unsigned n) { return (x << n) | (x >> (32u - n)); }

static void sha1_block(sha1_ctx *c, const unsigned char *p)
{
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    unsigned i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) { f = (b & cc) | (~b & d); k = 0x5A827999u; }
        else if (i < 40) { f = b ^ cc ^ d; k = 0x6ED9EBA1u; }
        else if (i < 60) { f = (b & cc) | (b & d) | (cc & d); k = 0x8F1BBCDCu; }
        else { f = b ^ cc ^ d; k = 0xCA62C1D6u; }
        t = rol(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = rol(b, 30); b = a; a = t;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}

static void sha1_update(sha1_ctx *c, const unsigned char *p, size_t len)
{
    c->total += len;
    while (len > 0) {
        size_t n = 64 - c->used;
        if (n > len)
            n = len;
        memcpy(c->block + c->used, p, n);
        c->used += n;
        p += n;
        len -= n;
        if (c->used == 64) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

void rp_sha1__hex(const void *data, size_t len, char out[41])
{
    static const char hex[] = "0123456789abcdef";
    sha1_ctx c = { { 0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u },
                   { 0 }, 0, 0 };
    unsigned char pad[72] = { 0x80 };
    unsigned char digest[20];
    uint64_t bits;
    size_t padlen;
    unsigned i;

    sha1_update(&c, data, len);
    bits = c.total * 8u;
    padlen = (c.used < 56) ? 56 - c.used : 120 - c.used;
    for (i = 0; i < 8; i++)
        pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(&c, pad, padlen + 8);
    for (i = 0; i < 20; i++)
        digest[i] = (unsigned char)(c.h[i / 4] >> (24 - 8 * (i % 4)));
    for (i = 0; i < 20; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[40] = '\0';
}
