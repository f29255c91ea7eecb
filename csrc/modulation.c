/*
 * modulation.c - how much a clip's level rises and falls over time, and how steady its spectrum
 * is, for the speech decision.
 *
 * One talker's level follows syllables and pauses; babble of many talkers, noise, hum and steady
 * music stay level. The conv stack sees 30 ms at a time and vox pooling averages over time, so
 * nothing else in the model measures this (docs/uncertainty.md, twenty-first round).
 *
 *   m_t  = max_j logmel[t][j]                the loudest mel band of frame t, dB Q_DB
 *   v_k  = div_round(sum of m_t, mod_block)  the mean of block k (mod_block frames), dB Q_DB;
 *                                              a last partial block is left out
 *   mu   = div_round(S1, N)                  S1 = sum v_k, S2 = sum v_k^2, N complete blocks
 *   Q    = S2 - 2 mu S1 + N mu^2             = sum (v_k - mu)^2, exact
 *   mod  = isqrt(div_round(Q, N))            dB Q_DB (isqrt: the floor); 0 with fewer than 2 blocks
 *
 * Bounds: |m_t|, |v_k|, |mu| < 2^15; over at most W2S_MAX_FRAMES frames |S1| < 2^35 and S2,
 * |mu S1|, N mu^2 < 2^50: int64. |v_k - mu| < 2^16, so Q / N < 2^32 fits the unsigned 32-bit
 * square root.
 */
#include <string.h>

#include "requant.h"
#include "w2s_internal.h"

void w2s_modulation_init(w2s_modulation *m) {
    m->sum = m->sum_sq = 0;
    m->block = m->in_block = m->blocks = 0;
}

void w2s_modulation_push(w2s_modulation *m, const int16_t *logmel, int32_t n_mels, int32_t mod_block) {
    int32_t j, top = logmel[0];
    for (j = 1; j < n_mels; j++)
        if (logmel[j] > top) top = logmel[j];
    m->block += top;
    if (++m->in_block == mod_block) {
        const int32_t v = (int32_t)w2s_div_round(m->block, mod_block);
        m->sum += v;
        m->sum_sq += (int64_t)v * v;
        m->blocks++;
        m->block = m->in_block = 0;
    }
}

int32_t w2s_modulation_db(const w2s_modulation *m) {
    const int64_t n = m->blocks;
    int64_t mu;
    uint32_t v, r = 0, bit = (uint32_t)1 << 30;
    if (n < 2) return 0;
    mu = w2s_div_round(m->sum, n);
    v = (uint32_t)w2s_div_round(m->sum_sq - 2 * mu * m->sum + n * mu * mu, n);
    while (bit) { /* floor(sqrt(v)), one bit at a time */
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return (int32_t)r;
}

/*
 * Steadiness: a held tone, a note of a melody, a beep or a synthesiser's blip keeps the shape of
 * its spectrum from one 32 ms block to the next; speech moves its formants every syllable. The
 * speech output, which pools over time, mistakes some melodies and effects for speech
 * (docs/uncertainty.md, thirty-first round); this measure does not. Per block of B = steady_block
 * frames and F = n_mels bands:
 *
 *   S[j]  = sum of logmel[t][j] over the block                      dB Q_DB times B
 *   loud  = max_j S[j] >= steady_level * B                          the loudest band's mean, exactly
 *   d[j]  = div_round(F S[j] - sum_j S[j], F B 2^(Q_DB-1))         band minus the bands' mean, dB Q1
 *   pair  = this block and the one before, both loud
 *   same  = dot(d, d_last) > 0 and dot^2 2^12 >= steady_cos2 |d|^2 |d_last|^2
 *   share = div_round(same pairs 2^15, pairs), 0 without pairs; a last partial block is left out
 *
 * Bounds: |S[j]| < 2^21 (B <= 64), so |F S[j] - sum S| < 2^29 (F <= 128) and the divisor <= 2^20:
 * int32. |d[j]| <= 2^9 (a band within 2^8 dB of the mean), so |d|^2 and |dot| <= 2^25 in int32;
 * dot^2 <= |d|^2 |d_last|^2 <= 2^50 (Cauchy-Schwarz), so both sides of the test stay below 2^62
 * with steady_cos2 <= 2^12.
 */
static size_t sum_bytes(const w2s_config *c) { return ((size_t)c->n_mels * sizeof(int32_t) + 7u) & ~(size_t)7u; }

size_t w2s_steady_bytes(const w2s_config *c) {
    if (!(c->flags & W2S_FLAG_STEADY)) return 0;
    return sum_bytes(c) + (((size_t)c->n_mels * sizeof(int16_t) + 7u) & ~(size_t)7u);
}

void w2s_steady_bind(const w2s_config *c, void *mem, w2s_steady *s) {
    s->sum = (int32_t *)mem;
    s->shape = (int16_t *)(void *)((uint8_t *)mem + sum_bytes(c));
}

void w2s_steady_init(const w2s_config *c, void *mem, w2s_steady *s) {
    w2s_steady_bind(c, mem, s);
    s->in_block = s->pairs = s->steady = 0;
    s->last_loud = -1;
    memset(mem, 0, w2s_steady_bytes(c));
}

void w2s_steady_push(w2s_steady *s, const w2s_weights *w, const int16_t *logmel, int32_t n_mels) {
    const int32_t unit = n_mels * w->steady_block * (1 << (W2S_Q_DB - 1));
    int32_t j, top, total = 0, dot = 0, n_now = 0, n_last = 0, loud;
    for (j = 0; j < n_mels; j++) s->sum[j] += logmel[j];
    if (++s->in_block < w->steady_block) return;
    top = s->sum[0];
    for (j = 0; j < n_mels; j++) {
        if (s->sum[j] > top) top = s->sum[j];
        total += s->sum[j];
    }
    loud = top >= w->steady_level * w->steady_block;
    for (j = 0; j < n_mels; j++) {
        const int32_t d = w2s_div_round32(n_mels * s->sum[j] - total, unit);
        dot += d * s->shape[j];
        n_now += d * d;
        n_last += s->shape[j] * s->shape[j];
        s->shape[j] = (int16_t)d;
        s->sum[j] = 0;
    }
    if (loud && s->last_loud == 1) {
        s->pairs++;
        if (dot > 0 && (int64_t)dot * dot * W2S_STEADY_COS2_ONE >= (int64_t)w->steady_cos2 * n_now * n_last)
            s->steady++;
    }
    s->last_loud = loud;
    s->in_block = 0;
}

int32_t w2s_steady_share(const w2s_steady *s) { /* div_round of a count >= 0: no sign to handle */
    const uint64_t n = (uint64_t)s->pairs;
    return n ? (int32_t)(((uint64_t)s->steady * W2S_STEADY_ONE + n / 2) / n) : 0;
}
