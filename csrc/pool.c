/*
 * pool.c - max-pool 3x3, stride 2, padding 1 (= F.max_pool2d(x, 3, 2, 1)) on int8 [T][F][C].
 * Padding never wins, as PyTorch pads with -inf. Scale and zero point pass through unchanged.
 *
 * Max is exact in any order. Portable: each output column starts as a copy of its first tap and
 * takes the elementwise max of the others, channels innermost. With SSE2 (every x86-64) or NEON
 * (aarch64): the vertical max of the rows over the whole row in 16-byte vectors, then each output
 * column as the max of three columns of that, through two row buffers in kernel scratch
 * (w2s_maxpool_scratch_bytes).
 * The AVX-512 set has its own row kernel (kernels_x86.c), chosen per map by w2s_maxpool_s8.
 */
#include <string.h>

#include "kernels.h"

#if defined(W2S_POOL_SIMD)
#if defined(__SSE2__)
#include <emmintrin.h>
typedef __m128i v16;
#define V_LD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define V_ST(p, v) _mm_storeu_si128((__m128i *)(void *)(p), v)
/* signed byte max from SSE2's unsigned one: flip the sign bits around it */
#define V_MAX(a, b) _mm_xor_si128(_mm_max_epu8(_mm_xor_si128(a, _mm_set1_epi8((char)0x80)), \
                                               _mm_xor_si128(b, _mm_set1_epi8((char)0x80))), \
                                  _mm_set1_epi8((char)0x80))
#else
#include <arm_neon.h>
typedef int8x16_t v16;
#define V_LD(p) vld1q_s8(p)
#define V_ST(p, v) vst1q_s8(p, v)
#define V_MAX(a, b) vmaxq_s8(a, b)
#endif
#endif

#if defined(W2S_POOL_SIMD)
/* v: the vertical max (the vectors below read up to 16 bytes past it); o: the output row (the
 * last vector of a column may store 15 bytes past it) */
static size_t pool_layout(int32_t f_in, int32_t c, void *scratch, int8_t **v, int8_t **o) {
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    *v = (int8_t *)w2s_carve_take(&k, (size_t)(f_in * c) + 16);
    *o = (int8_t *)w2s_carve_take(&k, (size_t)((f_in + 1) / 2 * c) + 16);
    return w2s_carve_bytes(&k);
}

size_t w2s_maxpool_scratch_bytes(const w2s_config *c) {
    int8_t *v, *o;
    return pool_layout(c->n_mels, c->channels, NULL, &v, &o); /* the pool's input is n_mels wide */
}
#endif

void w2s_maxpool_row_s8(int32_t f_in, int32_t c, const int8_t *const rows[3], int8_t *out, void *scratch) {
    const int32_t f_out = (f_in + 1) / 2;
    int32_t fo, ky, fi, ch;
#if defined(W2S_POOL_SIMD)
    if (f_in >= 2) {
        int8_t *v, *o;
        const int32_t n = f_in * c;
        int32_t i, first = 1;
        pool_layout(f_in, c, scratch, &v, &o);
        for (ky = 0; ky < 3; ky++) { /* v = max of the rows present (row t always is) */
            const int8_t *x = rows[ky];
            if (!x) continue;
            if (first) {
                memcpy(v, x, (size_t)n);
                first = 0;
                continue;
            }
            for (i = 0; i + 16 <= n; i += 16) V_ST(v + i, V_MAX(V_LD(v + i), V_LD(x + i)));
            for (; i < n; i++) v[i] = x[i] > v[i] ? x[i] : v[i];
        }
        memset(v + n, 0, 16); /* read past the row by the vectors below, never kept */
        for (fo = 0; fo < f_out; fo++) {
            const int8_t *mid = v + 2 * fo * c;
            const int8_t *left = fo > 0 ? mid - c : mid;                 /* column -1 is padding */
            const int8_t *right = 2 * fo + 1 < f_in ? mid + c : mid;     /* so is column f_in */
            for (ch = 0; ch < c; ch += 16) V_ST(o + fo * c + ch, V_MAX(V_MAX(V_LD(left + ch), V_LD(mid + ch)), V_LD(right + ch)));
        }
        memcpy(out, o, (size_t)(f_out * c));
        return;
    }
#else
    (void)scratch;
#endif
    for (fo = 0; fo < f_out; fo++) {
        const int32_t f0 = fo > 0 ? 2 * fo - 1 : 0, f1 = 2 * fo + 1 < f_in ? 2 * fo + 1 : f_in - 1;
        int8_t *o = out + fo * c;
        int first = 1; /* every window has at least one real tap: row t, column 2 fo */
        for (ky = 0; ky < 3; ky++) {
            if (!rows[ky]) continue;
            for (fi = f0; fi <= f1; fi++) {
                const int8_t *x = rows[ky] + fi * c;
                if (first) {
                    memcpy(o, x, (size_t)c);
                    first = 0;
                    continue;
                }
                for (ch = 0; ch < c; ch++) o[ch] = x[ch] > o[ch] ? x[ch] : o[ch];
            }
        }
    }
}

void w2s_maxpool_s8(int32_t isa, int32_t t, int32_t f_in, int32_t c, const int8_t *src, int8_t *dst,
                    void *scratch) {
    const size_t row = (size_t)(f_in * c), row_out = (size_t)((f_in + 1) / 2 * c);
    int32_t to;
#if defined(W2S_HAVE_X86)
    const int avx512 = w2s_isa_resolve(isa) == W2S_ISA_AVX512;
#else
    (void)isa;
#endif
    for (to = 0; to < (t + 1) / 2; to++) {
        const int8_t *rows[3];
        rows[0] = to > 0 ? src + (size_t)(2 * to - 1) * row : NULL;
        rows[1] = src + (size_t)(2 * to) * row;
        rows[2] = 2 * to + 1 < t ? src + (size_t)(2 * to + 1) * row : NULL;
#if defined(W2S_HAVE_X86)
        if (avx512) {
            w2s_maxpool_row_s8_avx512(f_in, c, rows, dst + (size_t)to * row_out, scratch);
            continue;
        }
#endif
        w2s_maxpool_row_s8(f_in, c, rows, dst + (size_t)to * row_out, scratch);
    }
}
