/*
 * kernels.h - the inner loops of each instruction set, beside the portable C ones.
 *
 * Not part of the public API. conv.c picks a set per call from w2s_weights.isa (w2s_isa_resolve):
 * on x86 at run time from the CPU (kernels_x86.c is compiled for any x86-64; its functions carry
 * __attribute__((target)) and run only where the CPU has the instructions), on ARM at compile time
 * (kernels_arm.c: NEON on aarch64, the DSP extension's SMLAD on ARMv7E-M and ARMv7-A).
 * Every set computes the portable results bit for bit: all sums are exact int32 (the bounds of
 * conv.c), only their order changes, and the requantization is w2s_requantize's rule.
 * Define W2S_NO_SIMD to build the portable loops only.
 *
 * Scratch: the buffers of the x86 and NEON kernels (padded rows, rearranged or widened weights, the
 * DFT matrix, the SSE2/NEON max-pool rows) are carved from the caller's kernel scratch, sized for the
 * model's shape by w2s_kernel_scratch_bytes (conv.c): each kernel's layout function both sizes and
 * places its pieces (w2s_carve: a NULL scratch sizes only), so the two cannot drift. Every engine
 * function then needs at most a few KB of stack on every kernel set (tests/test_stack.py: <= 8 KB
 * by -fstack-usage). The DSP and portable kernels need no scratch (their buffers are < 3 KB of
 * stack; the Cortex-M firmware measures it).
 */
#ifndef W2S_KERNELS_H
#define W2S_KERNELS_H

#include "requant.h"
#include "w2s_internal.h"

#if !defined(W2S_NO_SIMD) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define W2S_HAVE_X86 1 /* gcc and clang: target attributes and __builtin_cpu_supports */
#endif
#if !defined(W2S_NO_SIMD) && defined(__aarch64__) && defined(__ARM_NEON)
#define W2S_HAVE_NEON 1
#endif
#if !defined(W2S_NO_SIMD) && !defined(__aarch64__) && defined(__ARM_FEATURE_DSP) && \
    defined(__ARM_FEATURE_SIMD32)
#define W2S_HAVE_DSP 1
#endif
/* max-pool rows with SSE2 (every x86-64) or NEON (pool.c) */
#if !defined(W2S_NO_SIMD) && (defined(__SSE2__) || (defined(__aarch64__) && defined(__ARM_NEON)))
#define W2S_POOL_SIMD 1
#endif
/* some kernel of this build takes kernel scratch (else w2s_kernel_scratch_bytes is 0) */
#if defined(W2S_HAVE_X86) || defined(W2S_HAVE_NEON) || defined(W2S_POOL_SIMD)
#define W2S_KERNEL_SCRATCH 1
#endif

#if defined(W2S_KERNEL_SCRATCH)
/* Pieces of kernel scratch, each 64-byte aligned (the AVX-512 kernels keep __m512i arrays there),
 * placed by offset from the first 64-byte boundary of the scratch. A NULL scratch places nothing:
 * the same calls then only size. */
typedef struct {
    uint8_t *base; /* 64-byte aligned, or NULL */
    size_t   off;  /* bytes from base taken so far */
} w2s_carve;

static inline void w2s_carve_init(w2s_carve *k, void *scratch) {
    k->base = scratch ? (uint8_t *)scratch + ((64u - ((uintptr_t)scratch & 63u)) & 63u) : NULL;
    k->off = 0;
}

static inline void *w2s_carve_take(w2s_carve *k, size_t bytes) {
    const size_t at = (k->off + 63u) & ~(size_t)63u;
    k->off = at + bytes;
    return k->base ? k->base + at : NULL;
}

/* bytes of scratch the pieces need from any address (63 for the alignment of the first) */
static inline size_t w2s_carve_bytes(const w2s_carve *k) { return k->off + 63u; }

static inline size_t w2s_max_size(size_t a, size_t b) { return a > b ? a : b; }
#endif

/* requantize + output offset + clamp: the epilogue of every conv kernel. The sum is exact (a
 * saturated requantize plus the offset can pass INT32_MAX); SIMD kernels that add in 32 bits clamp
 * to [act_min - offset, act_max - offset] first and add the offset after, which is the same. */
static inline int8_t w2s_conv_finish(const w2s_conv_layer *l, int32_t acc, int32_t co) {
    int64_t v = (int64_t)w2s_requantize(acc, l->mult[co], l->shift[co]) + l->output_offset;
    if (v < l->act_min) v = l->act_min;
    if (v > l->act_max) v = l->act_max;
    return (int8_t)v;
}

/* vox.c's exp2 table: 2^6 + 1 entries, linear interpolation on the other fraction bits */
#define W2S_EXP_LUT_BITS 6
#define W2S_EXP_FRAC_BITS (W2S_Q_LOG - W2S_EXP_LUT_BITS)

/* Arguments as w2s_conv3x3_row_s16 / _s8 without isa. */
void w2s_conv3x3_row_s16_portable(const w2s_conv_layer *l, int32_t f, int32_t c_out,
                                  const int16_t *const rows[3], int8_t *out);
/* Sum over c_in of each weight w[co][ky][kx] (c_out * 9 sums, |.| <= 64 * 128): the kernels fold
 * the input offset as sum (x + off) w = sum (x + 128) w + (off - 128) sum w. */
void w2s_conv_weight_sums(const w2s_conv_layer *l, int32_t c_in, int32_t c_out, int32_t *wsum);

void w2s_conv3x3_row_s8_portable(const w2s_conv_layer *l, int32_t f, int32_t c_in, int32_t c_out,
                                 const int8_t *const rows[3], int8_t *out);

#ifdef W2S_HAVE_X86
/* Kernel scratch of the x86 conv, max-pool and vox kernels for a model (the max over the sets;
 * clip: also the whole-layer and whole-map kernels, not only the row kernels a stream calls). The
 * kernels below that take `scratch` need at least this much (w2s_kernel_scratch_bytes). */
size_t w2s_x86_scratch_bytes(const w2s_config *c, int clip);
int  w2s_x86_has_sse41(void);
int  w2s_x86_has_avx2(void);
int  w2s_x86_has_avx512(void);
void w2s_conv3x3_row_s16_avx512(const w2s_conv_layer *l, int32_t f, int32_t c_out,
                                const int16_t *const rows[3], int8_t *out, void *scratch);
void w2s_conv3x3_layer_s16_avx512(const w2s_conv_layer *l, int32_t t, int32_t f, int32_t c_out,
                                  const int16_t *src, int8_t *dst, void *scratch);
/* w2s_conv_finish of n columns of c_out accumulators, as the AVX-512 conv kernels do it */
void w2s_conv_finish_avx512(const w2s_conv_layer *l, int32_t c_out, const int32_t *acc, int32_t n, int8_t *out);
void w2s_conv3x3_row_s8_avx512(const w2s_conv_layer *l, int32_t f, int32_t c_in, int32_t c_out,
                               const int8_t *const rows[3], int8_t *out, void *scratch);
/* w2s_conv3x3_layer_s8: the weights rearranged once per layer, each input row padded once */
void w2s_conv3x3_layer_s8_avx512(const w2s_conv_layer *l, int32_t t, int32_t f, int32_t c_in,
                                 int32_t c_out, const int8_t *src, int8_t *dst, void *scratch);
void w2s_conv3x3_row_s16_avx2(const w2s_conv_layer *l, int32_t f, int32_t c_out,
                              const int16_t *const rows[3], int8_t *out);
void w2s_conv3x3_row_s8_avx2(const w2s_conv_layer *l, int32_t f, int32_t c_in, int32_t c_out,
                             const int8_t *const rows[3], int8_t *out, void *scratch);
void w2s_conv3x3_row_s8_sse41(const w2s_conv_layer *l, int32_t f, int32_t c_in, int32_t c_out,
                              const int8_t *const rows[3], int8_t *out, void *scratch);
/* w2s_maxpool_row_s8 with rows[1] present (pool.c's whole-map path): 64-byte vertical max */
void w2s_maxpool_row_s8_avx512(int32_t f_in, int32_t c, const int8_t *const rows[3], int8_t *out, void *scratch);
/* w2s_vox_push_rows_s8 (vox.c), channels in the lanes */
void w2s_vox_push_rows_avx512(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                              const int8_t *rows, int32_t n_rows, size_t stride, void *scratch);
void w2s_vox_push_rows_avx2(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                            const int8_t *rows, int32_t n_rows, size_t stride, void *scratch);
#endif

#ifdef W2S_POOL_SIMD
size_t w2s_maxpool_scratch_bytes(const w2s_config *c); /* pool.c's SSE2/NEON row (kernel scratch) */
#endif

/* The DFT of a frame as a matrix product (frontend.c, when the cosine table is symmetric):
 * re[k] = sum_{n <= h} a[n] mat_re[k][n], im[k] = sum_{n <= h} b[n] mat_im[k][n], k <= h = N/2,
 * exact int64 sums. The matrix is built once per clip (w2s_logmel_frames_s16) in kernel scratch. */
#if defined(W2S_HAVE_X86)
#define W2S_DFT_SIMD 1
#define W2S_DFT_MAT_MAX_N 64                                        /* larger n_fft: scalar */
#define W2S_DFT_MAT_L(h) (((h) + 1 + 3) / 4 * 4)                       /* row length, padded */
/* the matrix of n_fft = 2h, then one word: whether rows h - k are rows k with signs by the parity of n */
#define W2S_DFT_MAT_WORDS_OF(h) (((h) + 1) * 2 * W2S_DFT_MAT_L(h) + 1)
#define W2S_DFT_MAT_WORDS W2S_DFT_MAT_WORDS_OF(W2S_DFT_MAT_MAX_N / 2) /* the largest */
/* the front end's kernel scratch (frontend.c): the matrix and w2s_logmel8_avx512's buffers */
size_t w2s_logmel_kernel_scratch_bytes(const w2s_config *c);
int  w2s_dft_simd_ok(int32_t isa);
void w2s_dft_matrix(const int32_t *cosine, int32_t n_fft, int64_t *mat);
/* a, b: h + 1 values, zero-padded to W2S_DFT_MAT_L(h); re, im: h + 1 values */
void w2s_dft_simd(const int64_t *mat, int32_t h, const int64_t *a, const int64_t *b, int64_t *re,
                  int64_t *im);
/* lg[i] = w2s_log2_q16(v[i]) for v[i] >= 1 (anything for v[i] = 0), bit for bit */
void w2s_log2_q16_simd(const uint64_t *v, int32_t n, int32_t *lg);
/* The AVX-512 set's versions of a frame's scalar steps, bit for bit (frontend.c holds the plain C):
 * windowing xw[i] = rshift_round((frame[i] * 2^Q_PCM - mean) * window[i], Q_TRIG + Q_PCM - Q_WINDOWED);
 * power[k] = r^2 + i^2 with r, i = rshift_round(re[k] or im[k], Q_TRIG + Q_WINDOWED - Q_PCM),
 * returning the largest; log2 as w2s_log2_q16_simd; the dB step (log floor, requantization,
 * saturation to int16) as frame_s16 */
int      w2s_frame_avx512_ok(int32_t isa);
void     w2s_window_avx512(const int16_t *frame, int32_t mean, const int32_t *window, int32_t n, int32_t *xw);
/* frontend.c's frame for the eight frames from pcm (frame f at pcm + f hop), into out (8, n_mels);
 * needs the DFT matrix of a symmetric table (its last word set), n_fft <= W2S_DFT_MAT_MAX_N and
 * w2s_logmel8_scratch_bytes of scratch */
size_t   w2s_logmel8_scratch_bytes(const w2s_config *c);
void     w2s_logmel8_avx512(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn, const int64_t *mat,
                            const int16_t *pcm, int16_t *out, void *scratch);
uint64_t w2s_power_avx512(const int64_t *re, const int64_t *im, int32_t n, uint64_t *power);
void     w2s_log2_q16_avx512(const uint64_t *v, int32_t n, int32_t *lg);
/* sum of pcm[i] and of pcm[i]^2, i < n (n <= 2^24), as w2s_prenorm_s16 sums them */
void     w2s_sums_s16_avx512(const int16_t *pcm, size_t n, int64_t *sum, uint64_t *sum2);
void     w2s_db_avx512(const uint64_t *m, const int32_t *lg, int32_t n, int32_t offset, int32_t log_floor,
                       int32_t mult, int32_t shift, int16_t *out);
#endif

#ifdef W2S_HAVE_NEON
size_t w2s_neon_scratch_bytes(const w2s_config *c); /* the NEON row kernel's, for a model */
void w2s_conv3x3_row_s8_neon(const w2s_conv_layer *l, int32_t f, int32_t c_in, int32_t c_out,
                             const int8_t *const rows[3], int8_t *out, void *scratch);
#endif

#ifdef W2S_HAVE_DSP
void w2s_conv3x3_row_s8_dsp(const w2s_conv_layer *l, int32_t f, int32_t c_in, int32_t c_out,
                            const int8_t *const rows[3], int8_t *out);
#endif

#endif /* W2S_KERNELS_H */
