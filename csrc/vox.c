/*
 * vox.c - vox attention pooling over time and the Gram matrix.
 *
 * Float model, per channel c and mel bin f:  P = sum_t lin(x)_t * softmax_t(sof(x))_t,  G = P P^T.
 *
 * The softmax is computed online, one frame at a time, so a stream never needs its past frames.
 * Scores become log2 units (z, Q_LOG) by one requantization. Each (c, f) keeps an integer
 * reference r = ceil(max z so far); a frame adds weight e = 2^(z - r) in Q_EXP to `sum` and
 * e * value to `acc`. When r grows by k, both sums are divided by 2^k (rounding shift): a power of
 * two, so no multiply and no second table. P = acc / sum, rounded.
 * Values use int16 weights (accumulator < 2^30: |bias| <= 2^29, 64 channels) and are shifted by
 * value_shift so that |value| < 2^22 (checked per channel at load). Scores use int8 weights.
 * Bounds: |value| < 2^22, e <= 2^20, frames <= 2^20, so
 * |acc| < 2^62 and sum < 2^40; sum >= 2^19 once a frame is in (the newest maximum has e > 1/2).
 */
#include <string.h>

#include "kernels.h"

#define EXP_FRAC_BITS W2S_EXP_FRAC_BITS /* W2S_EXP_LUT_SIZE = 2^6 + 1 entries */

/* 2^(-n / 2^Q_LOG) in Q_EXP for n >= 0: table of 2^(-i/64) plus linear interpolation. */
static int64_t exp2_neg(const uint32_t *lut, int64_t n) {
    const int64_t k = n >> W2S_Q_LOG;
    const int32_t r = (int32_t)(n & ((1 << W2S_Q_LOG) - 1));
    const int32_t idx = r >> EXP_FRAC_BITS, fr = r & ((1 << EXP_FRAC_BITS) - 1);
    const int64_t a = lut[idx], b = lut[idx + 1]; /* a >= b (checked at load) */
    const int64_t v = a - (((a - b) * fr + (1 << (EXP_FRAC_BITS - 1))) >> EXP_FRAC_BITS);
    const int64_t s = (W2S_Q_EXP_LUT - W2S_Q_EXP) + k;
    return s >= 63 ? 0 : (v + ((int64_t)1 << (s - 1))) >> s;
}

size_t w2s_vox_state_bytes(const w2s_config *c) {
    const size_t cells = (size_t)c->channels * (size_t)((c->n_mels + 1) / 2);
    return cells * (2 * sizeof(int64_t) + sizeof(int32_t));
}

void w2s_vox_bind(const w2s_config *c, void *mem, w2s_vox_state *s) {
    const size_t cells = (size_t)c->channels * (size_t)((c->n_mels + 1) / 2);
    s->sum = (int64_t *)mem; /* 8-byte arrays first keep them aligned */
    s->acc = s->sum + cells;
    s->ref = (int32_t *)(s->acc + cells);
}

void w2s_vox_init(const w2s_config *c, void *mem, w2s_vox_state *s) {
    w2s_vox_bind(c, mem, s);
    memset(mem, 0, w2s_vox_state_bytes(c)); /* all three arrays */
    s->n = 0;
}

void w2s_vox_push_s8(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                     const int8_t *row, void *scratch) {
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2, off = w->vox_input_offset;
    int32_t f, ch, ci;
#if defined(W2S_HAVE_X86)
    const int32_t isa = w2s_isa_resolve(w->isa);
    if (isa == W2S_ISA_AVX512 || isa == W2S_ISA_AVX2) {
        (isa == W2S_ISA_AVX512 ? w2s_vox_push_rows_avx512 : w2s_vox_push_rows_avx2)(c, w, s, row, 1, 0, scratch);
        return;
    }
#else
    (void)scratch;
#endif
    for (f = 0; f < F2; f++) {
        const int8_t *x = row + f * C;
        for (ch = 0; ch < C; ch++) {
            const int16_t *wl = w->lin_w + ch * C;
            const int8_t *ws = w->sof_w + ch * C;
            const int32_t i = ch * F2 + f;
            int32_t value = w->lin_b[ch], score = w->sof_b[ch], z, r;
            int64_t e;
            for (ci = 0; ci < C; ci++) {
                const int32_t xi = (int32_t)x[ci] + off;
                value += xi * wl[ci];
                score += xi * ws[ci];
            }
            value = (int32_t)w2s_rshift_round(value, w->value_shift);
            z = w2s_requantize(score, w->sof_mult[ch], w->sof_shift[ch]);
            r = (int32_t)-w2s_asr64(-(int64_t)z, W2S_Q_LOG); /* ceil(z / 2^Q_LOG) */
            if (s->n == 0) {
                s->ref[i] = r;
            } else if (r > s->ref[i]) {
                const int32_t k = r - s->ref[i];
                s->sum[i] = w2s_rshift_round(s->sum[i], k);
                s->acc[i] = w2s_rshift_round(s->acc[i], k);
                s->ref[i] = r;
            }
            e = exp2_neg(w->exp_lut, (int64_t)s->ref[i] * (1 << W2S_Q_LOG) - z);
            s->sum[i] += e;
            s->acc[i] += e * value;
        }
    }
    s->n++;
}

/* Frames in order; the cells are independent, so a kernel may take them in any order of cells
 * (kernels_x86.c: one mel bin and sixteen (AVX-512) or eight (AVX2) channels at a time, through
 * all the frames). */
void w2s_vox_push_rows_s8(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                          const int8_t *rows, int32_t n_rows, size_t stride, void *scratch) {
    int32_t t;
#if defined(W2S_HAVE_X86)
    const int32_t isa = w2s_isa_resolve(w->isa);
    if (isa == W2S_ISA_AVX512 || isa == W2S_ISA_AVX2) {
        (isa == W2S_ISA_AVX512 ? w2s_vox_push_rows_avx512 : w2s_vox_push_rows_avx2)(c, w, s, rows, n_rows, stride,
                                                                                    scratch);
        return;
    }
#endif
    for (t = 0; t < n_rows; t++) w2s_vox_push_s8(c, w, s, rows + (size_t)t * stride, scratch);
}

void w2s_vox_finish(const w2s_config *c, const w2s_weights *w, const w2s_vox_state *s,
                    int16_t *pooled, int16_t *gram) {
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2;
    int32_t ch, c2, f;
    for (ch = 0; ch < C; ch++) {
        for (f = 0; f < F2; f++) {
            const int32_t i = ch * F2 + f;
            const int32_t p = w2s_sat32(w2s_div_round(s->acc[i], s->sum[i]));
            pooled[i] = w2s_sat16(w2s_requantize(p, w->pool_mult[ch], w->pool_shift[ch]));
        }
    }
    /* G = P P^T over mel bins: |sum| <= 64 * 2^30 */
    for (ch = 0; ch < C; ch++) {
        for (c2 = 0; c2 < C; c2++) {
            int64_t g = 0;
            for (f = 0; f < F2; f++) g += (int64_t)pooled[ch * F2 + f] * pooled[c2 * F2 + f];
            gram[ch * C + c2] = w2s_sat16(w2s_rshift_round(g, w->gram_shift));
        }
    }
}
