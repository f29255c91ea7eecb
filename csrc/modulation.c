/*
 * modulation.c - how much a clip's level rises and falls over time, for the speech decision.
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
