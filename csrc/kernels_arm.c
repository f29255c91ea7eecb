/*
 * kernels_arm.c - ARM conv kernels (kernels.h), chosen at compile time:
 *   aarch64 NEON          (__ARM_NEON on __aarch64__): SMULL/SADALP on int8
 *   ARMv7E-M / ARMv7-A DSP (__ARM_FEATURE_DSP): SMLAD, two 16 x 16 MACs per instruction
 *
 * Both fold nothing that changes a sum: products and partial sums are exact int32 (conv.c's
 * bounds), so the results are the portable kernel's bit for bit.
 */
#include "kernels.h"

#if defined(W2S_HAVE_NEON)
#include <arm_neon.h>
#include <string.h>

/* int8 rows padded with the input zero point zp = -input_offset on each side, so a padding tap
 * adds zp * w + off * w = 0 and every kernel row is 3 * C_in contiguous values; the offset is
 * folded out: sum (x + off) * w = sum x * w + off * sum w. x * w fits int16 (SMULL), SADALP adds
 * pairs into int32 lanes. Weights of eight channels are zero-filled to a multiple of 16. The
 * padded rows (R bytes each: a kernel row reads at most 3 C_in + 15 from its start) and the weights
 * are in kernel scratch (neon_layout). */
static size_t neon_layout(int32_t f_len, int32_t c_in, void *scratch, int8_t **xp, int8_t **wv) {
    const int32_t R = (f_len + 2) * c_in + 16, KP = (3 * c_in + 15) / 16 * 16;
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    *xp = (int8_t *)w2s_carve_take(&k, (size_t)(3 * R));
    *wv = (int8_t *)w2s_carve_take(&k, (size_t)(8 * 3 * KP));
    return w2s_carve_bytes(&k);
}

size_t w2s_neon_scratch_bytes(const w2s_config *c) { /* int8 layers: C_in = channels, <= n_mels wide */
    int8_t *xp, *wv;
    return neon_layout(c->n_mels, c->channels, NULL, &xp, &wv);
}

void w2s_conv3x3_row_s8_neon(const w2s_conv_layer *l, int32_t f_len, int32_t c_in, int32_t c_out,
                             const int8_t *const rows[3], int8_t *out, void *scratch) {
    int8_t *xp, *wv;
    int32_t wsum[8 * 3];
    const int32_t off = l->input_offset, K = 3 * c_in, KP = (K + 15) / 16 * 16;
    const int32_t R = (f_len + 2) * c_in + 16;
    int32_t ky, g, f, j, v, i;
    if (off < -127) { /* zp = 128 is no int8 (the format allows it; no calibration makes it) */
        w2s_conv3x3_row_s8_portable(l, f_len, c_in, c_out, rows, out);
        return;
    }
    neon_layout(f_len, c_in, scratch, &xp, &wv);
    for (ky = 0; ky < 3; ky++) {
        int8_t *d = xp + ky * R;
        if (!rows[ky]) continue;
        memset(d, -off, (size_t)c_in);
        memcpy(d + c_in, rows[ky], (size_t)(f_len * c_in));
        memset(d + (f_len + 1) * c_in, -off, (size_t)(R - (f_len + 1) * c_in));
    }
    for (g = 0; g < c_out; g += 8) {
        const int32_t n = c_out - g < 8 ? c_out - g : 8;
        for (j = 0; j < n; j++) {
            for (ky = 0; ky < 3; ky++) {
                int8_t *d = wv + (j * 3 + ky) * KP;
                const int8_t *s = l->w + (size_t)((g + j) * 3 + ky) * (size_t)K;
                int32_t sum = 0;
                for (i = 0; i < K; i++) sum += d[i] = s[i];
                for (; i < KP; i++) d[i] = 0;
                wsum[j * 3 + ky] = sum;
            }
        }
        for (f = 0; f < f_len; f++) {
            for (j = 0; j < n; j++) {
                int32_t acc = l->bias[g + j];
                for (ky = 0; ky < 3; ky++) {
                    const int8_t *x = xp + ky * R + f * c_in, *w = wv + (j * 3 + ky) * KP;
                    int32x4_t s = vdupq_n_s32(0);
                    if (!rows[ky]) continue;
                    for (v = 0; v < KP; v += 16) {
                        const int8x16_t xv = vld1q_s8(x + v), wq = vld1q_s8(w + v);
                        s = vpadalq_s16(s, vmull_s8(vget_low_s8(xv), vget_low_s8(wq)));
                        s = vpadalq_s16(s, vmull_high_s8(xv, wq));
                    }
                    acc += vaddvq_s32(s) + off * wsum[j * 3 + ky];
                }
                out[f * c_out + g + j] = w2s_conv_finish(l, acc, g + j);
            }
        }
    }
}

#elif defined(W2S_HAVE_DSP)
#include <arm_acle.h>
#include <string.h>

static inline uint32_t ror8(uint32_t v) { return (v >> 8) | (v << 24); } /* SXTB16's ROR #8 */

static inline uint32_t load32(const int8_t *p) { /* LDR: unaligned loads are fine on v7E-M, v7-A */
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* *a0 += sum u[i] w0[i], *a1 += sum u[i] w1[i] for i < n, u = x + 128 (0..255): four taps of two
 * output channels per step. x ^ 0x80 per byte is x + 128 as an unsigned byte; UXTB16 widens bytes
 * 0,2 (and, rotated, 1,3) to halfwords, SXTB16 the weights likewise, SMLAD adds two products. The
 * input halfwords are shared by both channels. */
static void dot2(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t *a0, int32_t *a1) {
    int32_t s0 = *a0, s1 = *a1;
    for (; n >= 4; n -= 4, x += 4, w0 += 4, w1 += 4) {
        const uint32_t xv = load32(x) ^ 0x80808080u, p = load32(w0), q = load32(w1);
        const int16x2_t xa = (int16x2_t)__uxtb16((uint8x4_t)xv), xb = (int16x2_t)__uxtb16((uint8x4_t)ror8(xv));
        s0 = __smlad(xa, __sxtb16((int8x4_t)p), s0);
        s0 = __smlad(xb, __sxtb16((int8x4_t)ror8(p)), s0);
        s1 = __smlad(xa, __sxtb16((int8x4_t)q), s1);
        s1 = __smlad(xb, __sxtb16((int8x4_t)ror8(q)), s1);
    }
    for (; n > 0; n--) {
        const int32_t u = (int32_t)*x++ + 128;
        s0 += u * *w0++;
        s1 += u * *w1++;
    }
    *a0 = s0;
    *a1 = s1;
}

/* dot2 for two output columns at once (xa, xb: their tap runs, one column apart): each unpacked
 * input word serves two channels and each unpacked weight word two columns. a[0..3]: (channel 0,
 * column a), (0, b), (1, a), (1, b). */
static void dot22(const int8_t *xa, const int8_t *xb, const int8_t *w0, const int8_t *w1, int32_t n,
                  int32_t *a) {
    int32_t s00 = a[0], s01 = a[1], s10 = a[2], s11 = a[3];
    for (; n >= 4; n -= 4, xa += 4, xb += 4, w0 += 4, w1 += 4) {
        const uint32_t u = load32(xa) ^ 0x80808080u, v = load32(xb) ^ 0x80808080u;
        const uint32_t p = load32(w0), q = load32(w1);
        const int16x2_t ua = (int16x2_t)__uxtb16((uint8x4_t)u), ub = (int16x2_t)__uxtb16((uint8x4_t)ror8(u));
        const int16x2_t va = (int16x2_t)__uxtb16((uint8x4_t)v), vb = (int16x2_t)__uxtb16((uint8x4_t)ror8(v));
        const int16x2_t pa = __sxtb16((int8x4_t)p), pb = __sxtb16((int8x4_t)ror8(p));
        const int16x2_t qa = __sxtb16((int8x4_t)q), qb = __sxtb16((int8x4_t)ror8(q));
        s00 = __smlad(ub, pb, __smlad(ua, pa, s00));
        s01 = __smlad(vb, pb, __smlad(va, pa, s01));
        s10 = __smlad(ub, qb, __smlad(ua, qa, s10));
        s11 = __smlad(vb, qb, __smlad(va, qa, s11));
    }
    for (; n > 0; n--) {
        const int32_t x0 = (int32_t)*xa++ + 128, x1 = (int32_t)*xb++ + 128, p = *w0++, q = *w1++;
        s00 += x0 * p;
        s01 += x1 * p;
        s10 += x0 * q;
        s11 += x1 * q;
    }
    a[0] = s00;
    a[1] = s01;
    a[2] = s10;
    a[3] = s11;
}

/* The taps of kernel row ky inside the map are (kx1 - kx0) * C_in contiguous values of the input
 * row and of the weights ([F][C] layout): dot products in place, no copies. The offset is folded:
 * sum (x + off) w = sum (x + 128) w + (off - 128) sum w, with the weight sums of each
 * (c_out, ky, kx) taken once per row (|.| <= 64 * 128). Two output channels at a time. */
void w2s_conv3x3_row_s8_dsp(const w2s_conv_layer *l, int32_t f_len, int32_t c_in, int32_t c_out,
                            const int8_t *const rows[3], int8_t *out) {
    const int32_t K = 3 * c_in, corr = l->input_offset - 128;
    int32_t wsum[W2S_MAX_CHANNELS * 9];
    int32_t f, co, ky, kx;
    w2s_conv_weight_sums(l, c_in, c_out, wsum);
    for (f = 1; f + 2 < f_len; f += 2) { /* interior columns f, f + 1: all 3 C_in taps, 2 x 2 blocks */
        for (co = 0; co < c_out; co += 2) {
            const int32_t c1 = co + 1 < c_out ? co + 1 : co;
            int32_t a[4];
            a[0] = a[1] = l->bias[co];
            a[2] = a[3] = l->bias[c1];
            for (ky = 0; ky < 3; ky++) {
                const int8_t *x;
                int32_t s0, s1;
                if (!rows[ky]) continue; /* a padding row (NULL): no pointer arithmetic on it */
                x = rows[ky] + (f - 1) * c_in;
                dot22(x, x + c_in, l->w + (size_t)((co * 3 + ky) * K), l->w + (size_t)((c1 * 3 + ky) * K), K, a);
                s0 = corr * (wsum[(co * 3 + ky) * 3] + wsum[(co * 3 + ky) * 3 + 1] + wsum[(co * 3 + ky) * 3 + 2]);
                s1 = corr * (wsum[(c1 * 3 + ky) * 3] + wsum[(c1 * 3 + ky) * 3 + 1] + wsum[(c1 * 3 + ky) * 3 + 2]);
                a[0] += s0;
                a[1] += s0;
                a[2] += s1;
                a[3] += s1;
            }
            out[f * c_out + co] = w2s_conv_finish(l, a[0], co);
            out[(f + 1) * c_out + co] = w2s_conv_finish(l, a[1], co);
            if (c1 != co) {
                out[f * c_out + c1] = w2s_conv_finish(l, a[2], c1);
                out[(f + 1) * c_out + c1] = w2s_conv_finish(l, a[3], c1);
            }
        }
    }
    for (f = 0; f < f_len; f++) { /* the edge columns, and the last interior one if left over */
        const int32_t kx0 = f == 0 ? 1 : 0, kx1 = f == f_len - 1 ? 2 : 3;
        const int32_t n = (kx1 - kx0) * c_in;
        if (f >= 1 && f <= f_len - 2 && (f % 2 == 0 || f + 2 < f_len)) continue; /* done in pairs above */
        for (co = 0; co < c_out; co += 2) {
            const int32_t c1 = co + 1 < c_out ? co + 1 : co; /* an odd last channel pairs with itself */
            int32_t a0 = l->bias[co], a1 = l->bias[c1];
            for (ky = 0; ky < 3; ky++) {
                const size_t o0 = (size_t)((co * 3 + ky) * K + kx0 * c_in), o1 = (size_t)((c1 * 3 + ky) * K + kx0 * c_in);
                if (!rows[ky]) continue;
                dot2(rows[ky] + (f + kx0 - 1) * c_in, l->w + o0, l->w + o1, n, &a0, &a1);
                for (kx = kx0; kx < kx1; kx++) {
                    a0 += corr * wsum[(co * 3 + ky) * 3 + kx];
                    a1 += corr * wsum[(c1 * 3 + ky) * 3 + kx];
                }
            }
            out[f * c_out + co] = w2s_conv_finish(l, a0, co);
            if (c1 != co) out[f * c_out + c1] = w2s_conv_finish(l, a1, c1);
        }
    }
}

#else
typedef int w2s_kernels_arm_unused; /* ISO C: no empty translation unit */
#endif
