/* rng.c — the two random generators: numpy-compatible MT19937 and the session's xoshiro256**. */
#include "internal.h"

#include <math.h>

/* MT19937, M. Matsumoto and T. Nishimura (1998), as numpy's legacy RandomState uses it. */
void onyx_mt_seed(onyx_mt19937 *mt, uint32_t seed)
{
    mt->key[0] = seed;
    for (int i = 1; i < 624; i++) {
        uint32_t prev = mt->key[i - 1];
        mt->key[i] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)i;
    }
    mt->pos = 624;
}

static void mt_generate(onyx_mt19937 *mt)
{
    static const uint32_t mag01[2] = {0x0u, 0x9908b0dfu};
    int i;
    for (i = 0; i < 624 - 397; i++) {
        uint32_t y = (mt->key[i] & 0x80000000u) | (mt->key[i + 1] & 0x7fffffffu);
        mt->key[i] = mt->key[i + 397] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; i < 623; i++) {
        uint32_t y = (mt->key[i] & 0x80000000u) | (mt->key[i + 1] & 0x7fffffffu);
        mt->key[i] = mt->key[i + 397 - 624] ^ (y >> 1) ^ mag01[y & 1u];
    }
    uint32_t y = (mt->key[623] & 0x80000000u) | (mt->key[0] & 0x7fffffffu);
    mt->key[623] = mt->key[396] ^ (y >> 1) ^ mag01[y & 1u];
    mt->pos = 0;
}

uint32_t onyx_mt_u32(onyx_mt19937 *mt)
{
    if (mt->pos >= 624)
        mt_generate(mt);
    uint32_t y = mt->key[mt->pos++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

double onyx_mt_double(onyx_mt19937 *mt)
{
    uint32_t a = onyx_mt_u32(mt) >> 5;
    uint32_t b = onyx_mt_u32(mt) >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

/* xoshiro256** 1.0, D. Blackman and S. Vigna (2018); seeded with splitmix64. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void onyx_rng_seed(onyx_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t onyx_rng_u64(onyx_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double onyx_rng_double(onyx_rng *r)
{
    return (double)(onyx_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

void onyx_rng_keep(onyx_rng *r, double p, uint8_t *keep, int64_t n)
{
    /* u = (x >> 11) * 2^-53 is exact, so u >= p  <=>  (x >> 11) >= ceil(p * 2^53) */
    const uint64_t t = (uint64_t)ceil(p * 9007199254740992.0);
    uint64_t s0 = r->s[0];
    uint64_t s1 = r->s[1];
    uint64_t s2 = r->s[2];
    uint64_t s3 = r->s[3];
    for (int64_t i = 0; i < n; i++) { /* onyx_rng_u64 */
        uint64_t x = rotl(s1 * 5, 7) * 9;
        uint64_t u = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= u;
        s3 = rotl(s3, 45);
        keep[i] = (x >> 11) >= t;
    }
    r->s[0] = s0;
    r->s[1] = s1;
    r->s[2] = s2;
    r->s[3] = s3;
}

float onyx_rng_float(onyx_rng *r)
{
    return (float)(onyx_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}
