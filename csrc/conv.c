/*
 * conv.c - conv3x3 (stride 1, zero padding 1) + requantize + clamp, one output row at a time,
 * and the choice of kernel set (w2s_isa).
 *
 * Layout [T][F][C], weights (C_out, 3, 3, C_in). TFLM's ConvPerChannel arithmetic: padding taps
 * are skipped, which equals padding with the input zero point (real 0).
 *   acc = bias[co] + sum (x + input_offset) * w            int32
 *   out = clamp(requantize(acc, mult[co], shift[co]) + output_offset, act_min, act_max)
 * Bounds: int8 layers: 9 * 64 channels * 256 * 128 < 2^25; layer 1 (int16 log-mel, one channel):
 * 9 * 2^16 * 128 < 2^27; |bias| <= 2^30 (checked at load); so acc stays inside int32, and so
 * does every partial sum in any order: the kernels of every set give the same acc exactly.
 *
 * The portable int8 kernel folds the input offset out of the inner loop:
 *   sum (x + off) * w = sum x * w + off * sum w
 * with the weight sums of each (c_out, ky, kx) taken once per row, walks the taps of one kernel
 * row as one contiguous run of (kx1 - kx0) * C_in values ([F][C] layout), and computes interior
 * columns in blocks of 2 channels x 2 columns (four accumulators share every load).
 */
#include "kernels.h"

/* ---- kernel sets -------------------------------------------------------------------------------- */

static int32_t isa_best(void) {
#if defined(W2S_HAVE_X86)
    if (w2s_x86_has_avx512()) return W2S_ISA_AVX512;
    if (w2s_x86_has_avx2()) return W2S_ISA_AVX2;
    if (w2s_x86_has_sse41()) return W2S_ISA_SSE41;
    return W2S_ISA_PORTABLE;
#elif defined(W2S_HAVE_NEON)
    return W2S_ISA_NEON;
#elif defined(W2S_HAVE_DSP)
    return W2S_ISA_DSP;
#else
    return W2S_ISA_PORTABLE;
#endif
}

int32_t w2s_isa_resolve(int32_t isa) {
    switch (isa) {
    case W2S_ISA_AUTO: return isa_best();
    case W2S_ISA_PORTABLE: return W2S_ISA_PORTABLE;
#if defined(W2S_HAVE_X86)
    case W2S_ISA_SSE41: return w2s_x86_has_sse41() ? W2S_ISA_SSE41 : 0;
    case W2S_ISA_AVX2: return w2s_x86_has_avx2() ? W2S_ISA_AVX2 : 0;
    case W2S_ISA_AVX512: return w2s_x86_has_avx512() ? W2S_ISA_AVX512 : 0;
#endif
#if defined(W2S_HAVE_NEON)
    case W2S_ISA_NEON: return W2S_ISA_NEON;
#endif
#if defined(W2S_HAVE_DSP)
    case W2S_ISA_DSP: return W2S_ISA_DSP;
#endif
    default: return 0;
    }
}

const char *w2s_isa_name(int32_t isa) {
    switch (isa) {
    case W2S_ISA_AUTO: return "auto";
    case W2S_ISA_PORTABLE: return "portable";
    case W2S_ISA_SSE41: return "sse4.1";
    case W2S_ISA_AVX2: return "avx2";
    case W2S_ISA_AVX512: return "avx512vnni";
    case W2S_ISA_NEON: return "neon";
    case W2S_ISA_DSP: return "dsp";
    default: return "?";
    }
}

/* ---- kernel scratch ------------------------------------------------------------------------------ */

/* One scratch region serves every kernel of a forward pass: the stages run one after another
 * (front end, conv layers, max-pool, vox pooling), so its size is the largest need of any. */
size_t w2s_kernel_scratch_bytes(const w2s_config *c, int32_t what) {
#if defined(W2S_KERNEL_SCRATCH)
    size_t n = 0;
    (void)what;
#if defined(W2S_HAVE_X86)
    n = w2s_x86_scratch_bytes(c, what == W2S_SCRATCH_CLIP);
    if (what == W2S_SCRATCH_CLIP) n = w2s_max_size(n, w2s_logmel_kernel_scratch_bytes(c));
#endif
#if defined(W2S_HAVE_NEON)
    n = w2s_max_size(n, w2s_neon_scratch_bytes(c));
#endif
#if defined(W2S_POOL_SIMD)
    n = w2s_max_size(n, w2s_maxpool_scratch_bytes(c));
#endif
    return n;
#else
    (void)c;
    (void)what;
    return 0;
#endif
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

void w2s_conv3x3_row_s16(const w2s_conv_layer *l, int32_t isa, int32_t f, int32_t c_out,
                         const int16_t *const rows[3], int8_t *out, void *scratch) {
    switch (w2s_isa_resolve(isa)) {
#if defined(W2S_HAVE_X86)
    case W2S_ISA_AVX512: w2s_conv3x3_row_s16_avx512(l, f, c_out, rows, out, scratch); return;
    case W2S_ISA_AVX2: w2s_conv3x3_row_s16_avx2(l, f, c_out, rows, out); return;
#endif
    default: (void)scratch; w2s_conv3x3_row_s16_portable(l, f, c_out, rows, out); return;
    }
}

void w2s_conv3x3_row_s8(const w2s_conv_layer *l, int32_t isa, int32_t f, int32_t c_in,
                        int32_t c_out, const int8_t *const rows[3], int8_t *out, void *scratch) {
    switch (w2s_isa_resolve(isa)) {
#if defined(W2S_HAVE_X86)
    case W2S_ISA_AVX512: w2s_conv3x3_row_s8_avx512(l, f, c_in, c_out, rows, out, scratch); return;
    case W2S_ISA_AVX2: w2s_conv3x3_row_s8_avx2(l, f, c_in, c_out, rows, out, scratch); return;
    case W2S_ISA_SSE41: w2s_conv3x3_row_s8_sse41(l, f, c_in, c_out, rows, out, scratch); return;
#endif
#if defined(W2S_HAVE_NEON)
    case W2S_ISA_NEON: w2s_conv3x3_row_s8_neon(l, f, c_in, c_out, rows, out, scratch); return;
#endif
#if defined(W2S_HAVE_DSP)
    case W2S_ISA_DSP: w2s_conv3x3_row_s8_dsp(l, f, c_in, c_out, rows, out); return;
#endif
    default: (void)scratch; w2s_conv3x3_row_s8_portable(l, f, c_in, c_out, rows, out); return;
    }
}

void w2s_conv3x3_layer_s16(const w2s_conv_layer *l, int32_t isa, int32_t t_len, int32_t f, int32_t c_out,
                           const int16_t *src, int8_t *dst, void *scratch) {
    int32_t t;
#if defined(W2S_HAVE_X86)
    if (w2s_isa_resolve(isa) == W2S_ISA_AVX512) {
        w2s_conv3x3_layer_s16_avx512(l, t_len, f, c_out, src, dst, scratch);
        return;
    }
#endif
    for (t = 0; t < t_len; t++) {
        const int16_t *rows[3];
        rows[0] = t > 0 ? src + (size_t)(t - 1) * (size_t)f : NULL;
        rows[1] = src + (size_t)t * (size_t)f;
        rows[2] = t + 1 < t_len ? src + (size_t)(t + 1) * (size_t)f : NULL;
        w2s_conv3x3_row_s16(l, isa, f, c_out, rows, dst + (size_t)t * (size_t)(f * c_out), scratch);
    }
}

void w2s_conv3x3_layer_s8(const w2s_conv_layer *l, int32_t isa, int32_t t_len, int32_t f, int32_t c_in,
                          int32_t c_out, const int8_t *src, int8_t *dst, void *scratch) {
    const size_t in = (size_t)(f * c_in), o = (size_t)(f * c_out);
    int32_t t;
#if defined(W2S_HAVE_X86)
    if (w2s_isa_resolve(isa) == W2S_ISA_AVX512) {
        w2s_conv3x3_layer_s8_avx512(l, t_len, f, c_in, c_out, src, dst, scratch);
        return;
    }
#endif
    for (t = 0; t < t_len; t++) {
        const int8_t *rows[3];
        rows[0] = t > 0 ? src + (size_t)(t - 1) * in : NULL;
        rows[1] = src + (size_t)t * in;
        rows[2] = t + 1 < t_len ? src + (size_t)(t + 1) * in : NULL;
        w2s_conv3x3_row_s8(l, isa, f, c_in, c_out, rows, dst + (size_t)t * o, scratch);
    }
}

/* ---- portable kernels ------------------------------------------------------------------------------ */

#if defined(W2S_HAVE_DSP)
#define BLOCKED 0
#else
#define BLOCKED 1
#endif

void w2s_conv3x3_row_s16_portable(const w2s_conv_layer *l, int32_t f_len, int32_t c_out,
                                  const int16_t *const rows[3], int8_t *out) {
    int32_t f, co, ky, kx;
    for (f = 0; f < f_len; f++) {
        const int32_t kx0 = f == 0 ? 1 : 0, kx1 = f == f_len - 1 ? 2 : 3;
        for (co = 0; co < c_out; co++) {
            const int8_t *wk = l->w + co * 9;
            int32_t acc = l->bias[co];
            for (ky = 0; ky < 3; ky++) {
                const int16_t *x = rows[ky];
                if (!x) continue;
                for (kx = kx0; kx < kx1; kx++)
                    acc += ((int32_t)x[f + kx - 1] + l->input_offset) * wk[ky * 3 + kx];
            }
            out[f * c_out + co] = w2s_conv_finish(l, acc, co);
        }
    }
}

void w2s_conv_weight_sums(const w2s_conv_layer *l, int32_t c_in, int32_t c_out, int32_t *wsum) {
    int32_t i, k;
    for (i = 0; i < c_out * 9; i++) {
        const int8_t *wk = l->w + (size_t)i * (size_t)c_in;
        int32_t s = 0;
        for (k = 0; k < c_in; k++) s += wk[k];
        wsum[i] = s;
    }
}

void w2s_conv3x3_row_s8_portable(const w2s_conv_layer *l, int32_t f_len, int32_t c_in,
                                 int32_t c_out, const int8_t *const rows[3], int8_t *out) {
    const int32_t K = 3 * c_in, off = l->input_offset;
    int32_t wsum[W2S_MAX_CHANNELS * 9]; /* sum over c_in of w[co][ky][kx]: |.| <= 64 * 128 */
    int32_t f, co, ky, kx, i;
    w2s_conv_weight_sums(l, c_in, c_out, wsum);
    /* interior columns f, f + 1 (all 3 C_in taps of each kernel row) and channels co, c1 in
     * 2 x 2 blocks: each loaded input value serves two channels, each weight two columns. Not in
     * DSP builds, whose conv is kernels_arm.c's: there this kernel stays small (Cortex-M .text) */
    for (f = 1; BLOCKED && f + 2 < f_len; f += 2) {
        for (co = 0; co < c_out; co += 2) {
            const int32_t c1 = co + 1 < c_out ? co + 1 : co; /* an odd last channel pairs with itself */
            int32_t a00 = l->bias[co], a01 = a00, a10 = l->bias[c1], a11 = a10;
            for (ky = 0; ky < 3; ky++) {
                const int8_t *x = rows[ky], *w0, *w1;
                const int32_t *s0 = wsum + (co * 3 + ky) * 3, *s1 = wsum + (c1 * 3 + ky) * 3;
                int32_t o0, o1;
                if (!x) continue;
                x += (f - 1) * c_in;
                w0 = l->w + (size_t)((co * 3 + ky) * K);
                w1 = l->w + (size_t)((c1 * 3 + ky) * K);
                for (i = 0; i < K; i++) {
                    const int32_t xa = x[i], xb = x[i + c_in], p = w0[i], q = w1[i];
                    a00 += xa * p;
                    a01 += xb * p;
                    a10 += xa * q;
                    a11 += xb * q;
                }
                o0 = off * (s0[0] + s0[1] + s0[2]);
                o1 = off * (s1[0] + s1[1] + s1[2]);
                a00 += o0;
                a01 += o0;
                a10 += o1;
                a11 += o1;
            }
            out[f * c_out + co] = w2s_conv_finish(l, a00, co);
            out[(f + 1) * c_out + co] = w2s_conv_finish(l, a01, co);
            if (c1 != co) {
                out[f * c_out + c1] = w2s_conv_finish(l, a10, c1);
                out[(f + 1) * c_out + c1] = w2s_conv_finish(l, a11, c1);
            }
        }
    }
    /* the edge columns (padding taps skipped), and the last interior column if left over */
    for (f = 0; f < f_len; f++) {
        const int32_t kx0 = f == 0 ? 1 : 0, kx1 = f == f_len - 1 ? 2 : 3;
        const int32_t n = (kx1 - kx0) * c_in; /* taps of one kernel row inside the map */
        if (BLOCKED && f >= 1 && f <= f_len - 2 && (f % 2 == 0 || f + 2 < f_len)) continue; /* done above */
        for (co = 0; co < c_out; co++) {
            int32_t acc = l->bias[co];
            for (ky = 0; ky < 3; ky++) {
                const int8_t *x, *wk;
                const int32_t *ws = wsum + (co * 3 + ky) * 3;
                int32_t s = 0;
                if (!rows[ky]) continue;
                x = rows[ky] + (f + kx0 - 1) * c_in;
                wk = l->w + (size_t)((co * 3 + ky) * K + kx0 * c_in);
                for (i = 0; i < n; i++) s += x[i] * wk[i];
                for (kx = kx0; kx < kx1; kx++) s += off * ws[kx];
                acc += s;
            }
            out[f * c_out + co] = w2s_conv_finish(l, acc, co);
        }
    }
}
