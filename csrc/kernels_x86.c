/*
 * kernels_x86.c - SSE4.1, AVX2 and AVX-512 VNNI kernels, compiled for any x86-64 (kernels.h).
 *
 * Each function carries __attribute__((target(...))), so the file needs no -m flags and the
 * instructions run only where conv.c's dispatch found them (__builtin_cpu_supports).
 *
 * int8 conv row (layer 2 onwards), C_in <= 64, any F. SSE4.1/AVX2: the three input rows are
 * widened once to int16 (x + input_offset, |.| <= 256) with a zero column on each side, so the
 * taps of kernel row ky at output column f are the 3 C_in contiguous values from column f of the
 * padded row, and the padding taps contribute 0 exactly as TFLM's skipped taps; weights widened
 * to int16, zero-filled to whole vectors;
 *   acc[co] = bias[co] + sum_ky sum_v madd(x[ky][v], w[co][ky][v])     (VPMADDWD, int32 lanes)
 * then a horizontal sum of eight channels at once and w2s_requantize in vectors (requant8).
 * AVX-512 VNNI: x + 128 against the int8 weights with VPDPBUSD, output channels in the lanes,
 * four taps broadcast at a time, eight columns per weight load, the offset folded into the bias;
 * whole layers at once (weights rearranged once, each input row padded once; see
 * w2s_conv3x3_layer_s8_avx512). Products (<= 256 * 128) and every partial sum are exact in int32
 * (conv.c's bounds). Vectors are read where they were written long before (padded rows), not
 * from a patch stored just before: that stalls the loads.
 * Also: layer 1 (int16 input, one channel; AVX-512: VPDPWSSD), vox pooling (AVX-512), the DFT as
 * a matrix product and log2 (frontend.c).
 */
#include "kernels.h"

#ifdef W2S_HAVE_X86
#include <immintrin.h>
#include <string.h>

#define W2S_AVX2  __attribute__((target("avx2")))
#define W2S_SSE41 __attribute__((target("sse4.1")))
/* Helpers are forced inline where the compiler optimises; at -O0 forced inlining keeps every inlined
 * copy's vectors in one frame (clang: 540 KB for the conv kernel, beyond a 128 KB thread stack), so
 * there they stay calls and w2s.h's stack figures hold for debug builds too. */
#ifdef __OPTIMIZE__
#define W2S_FORCE_INLINE always_inline,
#else
#define W2S_FORCE_INLINE
#endif
#define W2S_AVX2_INLINE static inline __attribute__((W2S_FORCE_INLINE target("avx2")))
#define W2S_AVX512_ISA "avx2,avx512f,avx512cd,avx512bw,avx512vl,avx512vnni" /* the avx512vnni kernel set */
#define W2S_AVX512 __attribute__((target(W2S_AVX512_ISA)))

int w2s_x86_has_sse41(void) { return __builtin_cpu_supports("sse4.1"); }
int w2s_x86_has_avx2(void) { return __builtin_cpu_supports("avx2"); }
int w2s_x86_has_avx512(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
}

/* dst = [0 x c | x + off (n values) | 0 ...] up to total values; a NULL row is all 0 */
static void pad_row16(const int8_t *x, int32_t n, int32_t c, int32_t off, int16_t *dst,
                      int32_t total) {
    int32_t i;
    for (i = 0; i < c; i++) dst[i] = 0;
    for (i = 0; i < n; i++) dst[c + i] = x ? (int16_t)(x[i] + off) : 0;
    for (i = c + n; i < total; i++) dst[i] = 0;
}

/* Per-channel epilogue parameters, zero-filled past c_out so eight lanes can always be loaded. */
typedef struct {
    int32_t bias[W2S_MAX_CHANNELS + 16], mult[W2S_MAX_CHANNELS + 16];
    int32_t left[W2S_MAX_CHANNELS + 16], right[W2S_MAX_CHANNELS + 16];
} epilogue;

static void epilogue_init(const w2s_conv_layer *l, int32_t c_out, epilogue *e) {
    int32_t co;
    for (co = 0; co < c_out + 16; co++) {
        const int32_t s = co < c_out ? l->shift[co] : 0;
        e->bias[co] = co < c_out ? l->bias[co] : 0;
        e->mult[co] = co < c_out ? l->mult[co] : 0;
        e->left[co] = s > 0 ? s : 0;
        e->right[co] = s > 0 ? 0 : -s;
    }
}

/* ---- AVX2 ------------------------------------------------------------------------------------------ */

/* w2s_requantize on eight lanes (mult >= 0, 0 <= left <= 30, 0 <= right <= 31, as loaded):
 * saturating left shift; srdhm(x, m) = floor((x * m + 2^30) / 2^31) (the C rule's two nudges
 * and truncation combine to this); then rshift_round as in requant.h. */
W2S_AVX2_INLINE __m256i requant8(__m256i acc, __m256i mult, __m256i left, __m256i right) {
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    const __m256i nudge = _mm256_set1_epi64x((int64_t)1 << 30);
    __m256i x = _mm256_sllv_epi32(acc, left);
    const __m256i same = _mm256_cmpeq_epi32(_mm256_srav_epi32(x, left), acc);
    const __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(acc, 31), _mm256_set1_epi32(INT32_MAX));
    __m256i pe, po, v, mask, rem, thr;
    x = _mm256_blendv_epi8(sat, x, same);
    pe = _mm256_add_epi64(_mm256_mul_epi32(x, mult), nudge);
    po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)), nudge);
    v = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    rem = _mm256_and_si256(v, mask);
    thr = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_cmpgt_epi32(zero, v)); /* + (v < 0) */
    return _mm256_sub_epi32(_mm256_srav_epi32(v, right), _mm256_cmpgt_epi32(rem, thr));
}

/* bias + requantize + output offset + clamp of eight channels from g; stores n of them */
W2S_AVX2_INLINE void finish8(const w2s_conv_layer *l, const epilogue *e, int32_t g, int32_t n,
                             __m256i acc, int8_t *out) {
    int32_t r[8], j;
    __m256i v = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(e->bias + g)));
    v = requant8(v, _mm256_loadu_si256((const __m256i *)(e->mult + g)),
                 _mm256_loadu_si256((const __m256i *)(e->left + g)),
                 _mm256_loadu_si256((const __m256i *)(e->right + g)));
    v = _mm256_max_epi32(v, _mm256_set1_epi32(l->act_min - l->output_offset)); /* w2s_conv_finish */
    v = _mm256_min_epi32(v, _mm256_set1_epi32(l->act_max - l->output_offset));
    v = _mm256_add_epi32(v, _mm256_set1_epi32(l->output_offset));
    if (n == 8) { /* values are within int8 already: the saturating packs only narrow */
        const __m256i p16 = _mm256_packs_epi32(v, v); /* r0..3 r0..3 | r4..7 r4..7 (int16) */
        const __m256i p8 = _mm256_packs_epi16(p16, p16);
        const int32_t lo = _mm256_cvtsi256_si32(p8), hi = _mm256_extract_epi32(p8, 4);
        memcpy(out, &lo, 4);
        memcpy(out + 4, &hi, 4);
        return;
    }
    _mm256_storeu_si256((__m256i *)r, v);
    for (j = 0; j < n; j++) out[j] = (int8_t)r[j];
}

/* lane j = sum of the eight lanes of a[j] */
W2S_AVX2_INLINE __m256i hsum8(const __m256i *a) {
    const __m256i s01 = _mm256_hadd_epi32(a[0], a[1]), s23 = _mm256_hadd_epi32(a[2], a[3]);
    const __m256i s45 = _mm256_hadd_epi32(a[4], a[5]), s67 = _mm256_hadd_epi32(a[6], a[7]);
    const __m256i s0 = _mm256_hadd_epi32(s01, s23), s1 = _mm256_hadd_epi32(s45, s67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(s0, s1, 0x20),
                            _mm256_permute2x128_si256(s0, s1, 0x31));
}

#define LD(p) _mm256_loadu_si256((const __m256i *)(p))

/* pad_row16 with the widening in vectors */
W2S_AVX2_INLINE void pad_row16_avx2(const int8_t *x, int32_t n, int32_t c, int32_t off,
                                    int16_t *dst, int32_t total) {
    const __m256i o = _mm256_set1_epi16((int16_t)off);
    int32_t i;
    if (!x) {
        pad_row16(x, n, c, off, dst, total);
        return;
    }
    for (i = 0; i < c; i++) dst[i] = 0;
    for (i = 0; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i + c),
                            _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + i))), o));
    for (; i < n; i++) dst[c + i] = (int16_t)(x[i] + off);
    for (i = c + n; i < total; i++) dst[i] = 0;
}

/* n int8 -> int16 at d, zero-filled up to P (a multiple of 16, >= n); reads only s[0..n) */
W2S_AVX2_INLINE void widen16(const int8_t *s, int32_t n, int32_t P, int16_t *d) {
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(s + i))));
    if (i < n) {
        const int32_t r = n - i; /* 1..15 bytes left */
        __m128i t;
        if (n >= 16) { /* the last 16 bytes of s, moved down by 16 - r, the rest zero: no stall */
            const __m128i k = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            const __m128i idx = _mm_add_epi8(k, _mm_set1_epi8((char)(16 - r)));
            const __m128i keep = _mm_cmpgt_epi8(_mm_set1_epi8((char)r), k);
            t = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(s + n - 16)), _mm_or_si128(idx, _mm_andnot_si128(keep, _mm_set1_epi8((char)0x80))));
        } else {
            int8_t tail[16] = {0};
            memcpy(tail, s + i, (size_t)r);
            t = _mm_loadu_si128((const __m128i *)tail);
        }
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_cvtepi8_epi16(t));
        i += 16;
    }
    for (; i < P; i += 16) _mm256_storeu_si256((__m256i *)(d + i), _mm256_setzero_si256());
}

/* ---- AVX-512 epilogue: sixteen channels at once ---------------------------------------------------- */

#define W2S_AVX512_INLINE static inline __attribute__((W2S_FORCE_INLINE target(W2S_AVX512_ISA)))

/* requant8 on sixteen lanes */
/* requant.h's srdhm on sixteen lanes, floor((x mult + 2^30) / 2^31) (mult >= 0: the one saturating
 * case cannot occur); mult_odd: mult's odd lanes in the low halves */
W2S_AVX512_INLINE __m512i srdhm16(__m512i x, __m512i mult, __m512i mult_odd) {
    const __m512i nudge = _mm512_set1_epi64((int64_t)1 << 30);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(x, mult), nudge);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), mult_odd), nudge);
    return _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 31), _mm512_slli_epi64(po, 1));
}

W2S_AVX512_INLINE __m512i requant16_l(__m512i acc, __m512i mult, __m512i left, __m512i right, int any_left) {
    const __m512i one = _mm512_set1_epi32(1);
    __m512i x = acc, v, mask, thr, q;
    if (any_left) { /* no lane shifts left (shift <= 0, as in most layers): nothing to saturate */
        const __mmask16 same = _mm512_cmpeq_epi32_mask(_mm512_srav_epi32(_mm512_sllv_epi32(acc, left), left), acc);
        x = _mm512_mask_blend_epi32(same, _mm512_xor_si512(_mm512_srai_epi32(acc, 31), _mm512_set1_epi32(INT32_MAX)),
                                    _mm512_sllv_epi32(acc, left));
    }
    v = srdhm16(x, mult, _mm512_srli_epi64(mult, 32));
    mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    thr = _mm512_sub_epi32(_mm512_srli_epi32(mask, 1), _mm512_srai_epi32(v, 31)); /* + (v < 0) */
    q = _mm512_srav_epi32(v, right);
    return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(_mm512_and_si512(v, mask), thr), q, one);
}

W2S_AVX512_INLINE __m512i requant16(__m512i acc, __m512i mult, __m512i left, __m512i right) {
    return requant16_l(acc, mult, left, right, 1);
}

/* A layer's epilogue on sixteen channels, its constants made once per layer (the int8 stores of
 * the output could alias the layer's fields: read in the loop, they would be reloaded).
 *
 * Fast form, for layers without left shifts and with right shifts 1 <= r <= 23 (every layer of
 * the released models; r >= 1 keeps every result inside int32, as the narrowing needs): requantize, add the output offset and clamp in one 64-bit step per half of
 * the lanes. With p = acc * mult, requant.h computes v = floor((p + 2^30) / 2^31) (its srdhm),
 * then rshift_round(v, r) = floor((v + 2^(r-1) - [v < 0]) / 2^r) for r > 0 (ties away from
 * zero), and floor((floor(y) + H) / 2^r) = floor((y + H) / 2^r) for integers H, so
 *   requantize(acc) + offset = floor((p + K - 2^31 [r > 0 and p < -2^30]) / 2^(31 + r)),
 *   K = 2^30 + 2^(30 + r) [r > 0] + offset 2^(31 + r)
 * exactly; |p| < 2^62 and |K| < 2^62 keep the sum inside int64. The clamp to the int8 range is
 * the saturating narrowing; act_min/act_max inside it take a max/min as well. */
typedef struct {
    __m512i mult[W2S_MAX_CHANNELS / 16], left[W2S_MAX_CHANNELS / 16], right[W2S_MAX_CHANNELS / 16];
    __m512i mult_odd[W2S_MAX_CHANNELS / 16]; /* fast form: odd channels' mult in the low halves */
    __m512i k[2][W2S_MAX_CHANNELS / 16], thr[2][W2S_MAX_CHANNELS / 16], sh[2][W2S_MAX_CHANNELS / 16];
    __m512i offset, lo, hi;
    __mmask16 store[W2S_MAX_CHANNELS / 16]; /* the channels of each block that exist */
    int32_t c_out, any_left, fast, clamp_lo, clamp_hi;
} out16;

W2S_AVX512 static void out16_init(const w2s_conv_layer *l, const epilogue *e, int32_t c_out, int32_t any_left,
                                  out16 *o) {
    int32_t cb, i, h;
    o->fast = !any_left;
    for (i = 0; i < c_out; i++) o->fast &= e->right[i] >= 1 && e->right[i] <= 23;
    for (cb = 0; cb < (c_out + 15) / 16; cb++) {
        const int32_t n = c_out - 16 * cb < 16 ? c_out - 16 * cb : 16;
        int64_t k[2][8], thr[2][8], sh[2][8];
        o->mult[cb] = _mm512_loadu_si512(e->mult + 16 * cb);
        o->left[cb] = _mm512_loadu_si512(e->left + 16 * cb);
        o->right[cb] = _mm512_loadu_si512(e->right + 16 * cb);
        o->mult_odd[cb] = _mm512_srli_epi64(o->mult[cb], 32);
        o->store[cb] = (__mmask16)((1u << n) - 1u);
        for (h = 0; h < 2; h++) /* h = 0: even channels, 1: odd */
            for (i = 0; i < 8; i++) {
                /* zero past c_out (epilogue_init); outside the fast form's range the constants
                 * are unused, and offset * 2^(31 + r) could overflow int64 */
                const int32_t r = o->fast ? e->right[16 * cb + 2 * i + h] : 0;
                k[h][i] = ((int64_t)1 << 30) + (r > 0 ? (int64_t)1 << (30 + r) : 0) +
                          (int64_t)l->output_offset * ((int64_t)1 << (31 + r));
                thr[h][i] = r > 0 ? -((int64_t)1 << 30) : INT64_MIN;
                sh[h][i] = 31 + r;
            }
        for (h = 0; h < 2; h++) {
            o->k[h][cb] = _mm512_loadu_si512(k[h]);
            o->thr[h][cb] = _mm512_loadu_si512(thr[h]);
            o->sh[h][cb] = _mm512_loadu_si512(sh[h]);
        }
    }
    o->offset = _mm512_set1_epi32(l->output_offset);
    o->lo = _mm512_set1_epi32(l->act_min);
    o->hi = _mm512_set1_epi32(l->act_max);
    o->clamp_lo = l->act_min > -128;
    o->clamp_hi = l->act_max < 127;
    o->c_out = c_out;
    o->any_left = any_left;
}

/* the fast form's half: floor((p + K - 2^31 [p < thr]) / 2^sh) of the low halves of x */
W2S_AVX512_INLINE __m512i out16_half(__m512i x, __m512i mult, __m512i k, __m512i thr, __m512i sh) {
    const __m512i p = _mm512_mul_epi32(x, mult);
    const __m512i t = _mm512_add_epi64(p, k);
    return _mm512_srav_epi64(_mm512_mask_sub_epi64(t, _mm512_cmplt_epi64_mask(p, thr), t,
                                                   _mm512_set1_epi64((int64_t)1 << 31)), sh);
}

/* One channel block's epilogue constants, copied into a local before a run of stores: read from
 * the layer's out16 through a pointer, each int8 store (which may alias it) would reload them. */
typedef struct {
    __m512i mult, mult_odd, k0, k1, thr0, thr1, sh0, sh1, left, right, offset, lo, hi;
    __mmask16 store;
    int32_t base, c_out, any_left, fast, clamp_lo, clamp_hi; /* base: the block's first channel */
} out16_block;

W2S_AVX512_INLINE out16_block out16_get(const out16 *o, int32_t cb) {
    out16_block c;
    c.mult = o->mult[cb], c.mult_odd = o->mult_odd[cb], c.left = o->left[cb], c.right = o->right[cb];
    c.k0 = o->k[0][cb], c.k1 = o->k[1][cb], c.thr0 = o->thr[0][cb], c.thr1 = o->thr[1][cb];
    c.sh0 = o->sh[0][cb], c.sh1 = o->sh[1][cb], c.offset = o->offset, c.lo = o->lo, c.hi = o->hi;
    c.store = o->store[cb], c.base = 16 * cb, c.c_out = o->c_out, c.any_left = o->any_left;
    c.fast = o->fast, c.clamp_lo = o->clamp_lo, c.clamp_hi = o->clamp_hi;
    return c;
}

/* the fast form's requantization + offset of sixteen accumulators (int32, before the clamp) */
W2S_AVX512_INLINE __m512i out16_fast(const out16_block *c, __m512i acc) {
    const __m512i ev = out16_half(acc, c->mult, c->k0, c->thr0, c->sh0);
    const __m512i od = out16_half(_mm512_srli_epi64(acc, 32), c->mult_odd, c->k1, c->thr1, c->sh1);
    return _mm512_mask_shuffle_epi32(ev, 0xAAAA, od, _MM_PERM_CDAB); /* odd results to the odd lanes */
}

/* out16_put when the fast form applies and neither bound clamps (act_min -128, act_max 127: every
 * released model), for loops that test this once instead of at every store */
W2S_AVX512_INLINE void out16_put_plain(const out16_block *c, __m512i acc, int8_t *dst) {
    _mm_mask_storeu_epi8(dst + c->base, c->store, _mm512_cvtsepi32_epi8(out16_fast(c, acc)));
}

W2S_AVX512_INLINE int out16_plain(const out16 *o) { return o->fast && !o->clamp_lo && !o->clamp_hi; }

/* requantize sixteen accumulators, add the offset, clamp, store the channels that exist at
 * column (dst: the column's first channel) */
W2S_AVX512_INLINE void out16_put(const out16_block *c, __m512i acc, int8_t *dst) {
    __m512i v;
    if (c->fast) {
        v = out16_fast(c, acc);
        if (c->clamp_lo) v = _mm512_max_epi32(v, c->lo);
        if (c->clamp_hi) v = _mm512_min_epi32(v, c->hi);
        _mm_mask_storeu_epi8(dst + c->base, c->store, _mm512_cvtsepi32_epi8(v));
        return;
    }
    v = requant16_l(acc, c->mult, c->left, c->right, c->any_left);
    /* clamp to [act_min - offset, act_max - offset], then add: a saturated v plus the offset
     * would wrap in 32 bits (w2s_conv_finish) */
    v = _mm512_max_epi32(v, _mm512_sub_epi32(c->lo, c->offset));
    v = _mm512_add_epi32(_mm512_min_epi32(v, _mm512_sub_epi32(c->hi, c->offset)), c->offset);
    _mm_mask_storeu_epi8(dst + c->base, c->store, _mm512_cvtepi32_epi8(v));
}

/* The epilogue alone, n columns of c_out accumulators (for check/test_kernels.c: its roundings
 * against w2s_conv_finish on chosen values, ties included, which random layers rarely hit). */
W2S_AVX512 void w2s_conv_finish_avx512(const w2s_conv_layer *l, int32_t c_out, const int32_t *acc, int32_t n,
                                       int8_t *out) {
    epilogue e;
    out16 o;
    int32_t j, cb, co, any_left = 0;
    epilogue_init(l, c_out, &e);
    for (co = 0; co < c_out; co++) any_left |= e.left[co] != 0;
    out16_init(l, &e, c_out, any_left, &o);
    for (j = 0; j < n; j++)
        for (cb = 0; cb < (c_out + 15) / 16; cb++)
        {
            const out16_block c = out16_get(&o, cb);
            out16_put(&c, _mm512_maskz_loadu_epi32(c.store, acc + (size_t)j * (size_t)c_out + c.base),
                      out + (size_t)j * (size_t)c_out);
        }
}

/* The patch of output column f: kernel rows 0, 1, 2 (3 C_in values each, from the padded rows)
 * one after the other: the (ky, kx, c_in) order of the weights. Lanes past 9 C_in hold
 * leftovers (finite) that meet zero weights. */
W2S_AVX2_INLINE void gather_patch(const int16_t *xo, int32_t R, int32_t f, int32_t c_in,
                                  int16_t *patch) {
    const int32_t K = 3 * c_in;
    int32_t ky, i;
    if (K > 32 && K <= 48) { /* three vectors per kernel row, unrolled (C_in 11..16) */
        for (ky = 0; ky < 3; ky++) {
            const int16_t *s = xo + ky * R + f * c_in;
            int16_t *d = patch + ky * K;
            const __m256i v0 = LD(s), v1 = LD(s + 16), v2 = LD(s + 32);
            _mm256_storeu_si256((__m256i *)d, v0);
            _mm256_storeu_si256((__m256i *)(d + 16), v1);
            _mm256_storeu_si256((__m256i *)(d + 32), v2);
        }
        return;
    }
    for (ky = 0; ky < 3; ky++) {
        const int16_t *s = xo + ky * R + f * c_in;
        for (i = 0; i < K; i += 16) _mm256_storeu_si256((__m256i *)(patch + ky * K + i), LD(s + i));
    }
}

/* The row kernel's buffers in kernel scratch: the three padded rows (R int16 each: the patch of
 * the last column reads at most 3 C_in + 15 values from its start, inside R), the widened weights
 * of every channel (C_in 11..16: 3 x 48 int16 per channel, read in place; else P, with the patch,
 * P + 16). */
typedef struct {
    int16_t *xo, *patch, *wv;
} conv_bufs;

static size_t conv_layout(int32_t f_len, int32_t c_in, int32_t c_out, void *scratch, conv_bufs *z) {
    const int32_t K = 3 * c_in, R = (f_len + 2) * c_in + 16, P = (9 * c_in + 15) / 16 * 16;
    const int in_place = K > 32 && K <= 48;
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    z->xo = (int16_t *)w2s_carve_take(&k, (size_t)(3 * R) * sizeof(int16_t));
    z->wv = (int16_t *)w2s_carve_take(&k, (size_t)c_out * (size_t)(in_place ? 144 : P) * sizeof(int16_t));
    z->patch = in_place ? NULL : (int16_t *)w2s_carve_take(&k, (size_t)(P + 16) * sizeof(int16_t));
    return w2s_carve_bytes(&k);
}

/* Pads the rows, clears the patch, widens the weights of every channel to P lanes each. */
W2S_AVX2_INLINE int32_t prepare_rows(const w2s_conv_layer *l, int32_t f_len, int32_t c_in,
                                     int32_t c_out, int32_t P, const int8_t *const rows[3],
                                     const conv_bufs *z, epilogue *e) {
    const int32_t R = (f_len + 2) * c_in + 16, K9 = 9 * c_in;
    int32_t ky, i, co;
    for (ky = 0; ky < 3; ky++) pad_row16_avx2(rows[ky], f_len * c_in, c_in, l->input_offset, z->xo + ky * R, R);
    for (i = 0; i < P + 16; i += 16) _mm256_storeu_si256((__m256i *)(z->patch + i), _mm256_setzero_si256());
    for (co = 0; co < c_out; co++) widen16(l->w + (size_t)co * (size_t)K9, K9, P, z->wv + co * P);
    epilogue_init(l, c_out, e);
    return R;
}

/* Store the n results of column f from channel g as one 8-byte store where the row has room for it:
 * the spill lands on later channels and columns, which are written after (columns go in order).
 * Near the row's end (within 8 bytes: the last column, or the last few when C_out < 8) only n. */
W2S_AVX2_INLINE void store8(const w2s_conv_layer *l, const epilogue *e, int32_t f, int32_t f_len,
                            int32_t c_out, int32_t g, int32_t n, __m256i acc, int8_t *out) {
    const int32_t room = (f_len - f) * c_out - g; /* bytes of the row from this store on */
    finish8(l, e, g, room < 8 ? n : 8, acc, out + f * c_out + g);
}

/* AVX2: acc += madd(x, w), sixteen int16 products summed in pairs into eight int32 lanes. The
 * eight patch vectors of 9 C_in <= 128 (C_in 8..14; 13 in the default model) stay in registers. */
W2S_AVX2 void w2s_conv3x3_row_s8_avx2(const w2s_conv_layer *l, int32_t f_len, int32_t c_in,
                                      int32_t c_out, const int8_t *const rows[3], int8_t *out, void *scratch) {
    conv_bufs z;
    epilogue e;
    const int32_t K = 3 * c_in;
    int32_t P, R, g, f, j, v;
    conv_layout(f_len, c_in, c_out, scratch, &z);
    if (K > 32 && K <= 48) { /* C_in 11..16: each kernel row is three vectors of its padded row,
                              * read in place (a patch written just before would stall loads) */
        int32_t ky, co;
        R = (f_len + 2) * c_in + 16;
        for (ky = 0; ky < 3; ky++) pad_row16_avx2(rows[ky], f_len * c_in, c_in, l->input_offset, z.xo + ky * R, R);
        for (co = 0; co < c_out; co++) /* [co][ky][48] */
            for (ky = 0; ky < 3; ky++) widen16(l->w + (size_t)(co * 3 + ky) * (size_t)K, K, 48, z.wv + (co * 3 + ky) * 48);
        epilogue_init(l, c_out, &e);
        for (f = 0; f < f_len; f++) {
            const int16_t *x = z.xo + f * c_in;
            const __m256i a0 = LD(x), a1 = LD(x + 16), a2 = LD(x + 32);
            const __m256i b0 = LD(x + R), b1 = LD(x + R + 16), b2 = LD(x + R + 32);
            const __m256i c0 = LD(x + 2 * R), c1 = LD(x + 2 * R + 16), c2 = LD(x + 2 * R + 32);
            for (g = 0; g < c_out; g += 8) {
                const int32_t n = c_out - g < 8 ? c_out - g : 8;
                __m256i acc[8];
                for (j = 0; j < 8; j++) {
                    const int16_t *w = z.wv + (g + j) * 144;
                    __m256i s0, s1, s2;
                    if (j >= n) {
                        acc[j] = _mm256_setzero_si256();
                        continue;
                    }
                    s0 = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(a0, LD(w)), _mm256_madd_epi16(a1, LD(w + 16))),
                                          _mm256_madd_epi16(a2, LD(w + 32)));
                    s1 = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(b0, LD(w + 48)), _mm256_madd_epi16(b1, LD(w + 64))),
                                          _mm256_madd_epi16(b2, LD(w + 80)));
                    s2 = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(c0, LD(w + 96)), _mm256_madd_epi16(c1, LD(w + 112))),
                                          _mm256_madd_epi16(c2, LD(w + 128)));
                    acc[j] = _mm256_add_epi32(_mm256_add_epi32(s0, s1), s2);
                }
                store8(l, &e, f, f_len, c_out, g, n, hsum8(acc), out);
            }
        }
        return;
    }
    P = (9 * c_in + 15) / 16 * 16;
    R = prepare_rows(l, f_len, c_in, c_out, P, rows, &z, &e);
    for (f = 0; f < f_len; f++) {
        gather_patch(z.xo, R, f, c_in, z.patch);
        for (g = 0; g < c_out; g += 8) {
            const int32_t n = c_out - g < 8 ? c_out - g : 8;
            __m256i a[8];
            if (P == 128) {
                const __m256i x0 = LD(z.patch), x1 = LD(z.patch + 16), x2 = LD(z.patch + 32), x3 = LD(z.patch + 48);
                const __m256i x4 = LD(z.patch + 64), x5 = LD(z.patch + 80), x6 = LD(z.patch + 96), x7 = LD(z.patch + 112);
                for (j = 0; j < 8; j++) {
                    const int16_t *w = z.wv + (g + j) * 128;
                    __m256i s0, s1, s2, s3;
                    if (j >= n) {
                        a[j] = _mm256_setzero_si256();
                        continue;
                    }
                    s0 = _mm256_add_epi32(_mm256_madd_epi16(x0, LD(w)), _mm256_madd_epi16(x1, LD(w + 16)));
                    s1 = _mm256_add_epi32(_mm256_madd_epi16(x2, LD(w + 32)), _mm256_madd_epi16(x3, LD(w + 48)));
                    s2 = _mm256_add_epi32(_mm256_madd_epi16(x4, LD(w + 64)), _mm256_madd_epi16(x5, LD(w + 80)));
                    s3 = _mm256_add_epi32(_mm256_madd_epi16(x6, LD(w + 96)), _mm256_madd_epi16(x7, LD(w + 112)));
                    a[j] = _mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3));
                }
            } else {
                for (j = 0; j < 8; j++) {
                    const int16_t *w = z.wv + (g + j) * P;
                    __m256i acc = _mm256_setzero_si256();
                    if (j < n)
                        for (v = 0; v < P; v += 16) acc = _mm256_add_epi32(acc, _mm256_madd_epi16(LD(z.patch + v), LD(w + v)));
                    a[j] = acc;
                }
            }
            store8(l, &e, f, f_len, c_out, g, n, hsum8(a), out);
        }
    }
}

/* AVX-512 VNNI: VPDPBUSD multiplies unsigned bytes by signed bytes and adds each group of four
 * products into one int32 lane, without saturation. Output channels are the lanes (sixteen per
 * block): for output column f and kernel row ky, the 3 C_in taps u[k] (k = kx C_in + c_in, from
 * the padded row) go in groups of four, each group broadcast to every lane against the weights
 * wq[ky][group][co][4]: 3 ceil(3 C_in / 4) VPDPBUSD per column and block, no horizontal sums,
 * and the accumulators come out in channel order for the 16-lane epilogue. Tiles of 1, 2 or 4
 * output rows and up to 13, 8 or 6 columns share every weight load (vnni_tile). The input goes
 * in as u = x + 128 (0..255), the offset folded
 * into the bias:
 *   sum (x + off) w = sum u w + (off - 128) sum w
 * where padding taps hold u = 128 - off (then u w + (off - 128) w = 0, as a skipped tap), which
 * needs off >= -127 (the format allows -128: that layer takes the AVX2 kernel). sum w is over all
 * 9 C_in taps of the channel, missing rows (t = -1, T) being all padding; weights past 3 C_in in
 * a kernel row are zero, so what the group reads past them does not count. */
typedef struct {
    int8_t  *w;        /* [block][ky][group][co][4], G groups: in kernel scratch (vnni_layout) */
    epilogue e;        /* bias with the offset folded in */
    int32_t G, any_left; /* any_left: some channel's shift is > 0 */
} vnni_weights;

/* the 64 bytes of weights of channel block cb, kernel row ky, group of taps g */
#define VNNI_W(z, cb, ky, g) ((z)->w + ((size_t)((cb) * 3 + (ky)) * (size_t)(z)->G + (size_t)(g)) * 64u)

/* Kernel scratch of the VNNI conv kernels: the rearranged weights, then `slots` padded input rows
 * of S bytes (R = (f + 2) C_in + 64 rounded up to 64: a tile reads at most 3 C_in + 3 bytes from
 * its first tap, inside R). */
static size_t vnni_layout(int32_t f_len, int32_t c_in, int32_t c_out, int32_t slots, void *scratch,
                          vnni_weights *z, uint8_t **rows) {
    const int32_t S = ((f_len + 2) * c_in + 64 + 63) / 64 * 64;
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    z->G = (3 * c_in + 3) / 4;
    z->w = (int8_t *)w2s_carve_take(&k, (size_t)((c_out + 15) / 16) * 3u * (size_t)z->G * 64u);
    *rows = (uint8_t *)w2s_carve_take(&k, (size_t)slots * (size_t)S);
    return w2s_carve_bytes(&k);
}

/* z->w and z->G set by vnni_layout */
W2S_AVX512 static void vnni_prepare(const w2s_conv_layer *l, int32_t c_in, int32_t c_out, vnni_weights *z) {
    const int32_t K = 3 * c_in, G = z->G, off = l->input_offset;
    int32_t co, ky, g, cb;
    z->any_left = 0;
    memset(z->w, 0, (size_t)((c_out + 15) / 16) * 3u * (size_t)G * 64u);
    epilogue_init(l, c_out, &z->e);
    for (co = 0; co < c_out; co++) {
        z->any_left |= z->e.left[co] != 0;
        for (ky = 0; ky < 3; ky++) { /* four taps at a time: the row calls of a stream redo this */
            const int8_t *s = l->w + (size_t)(co * 3 + ky) * (size_t)K;
            int8_t *d = VNNI_W(z, co / 16, ky, 0) + (co % 16) * 4;
            int32_t k;
            for (g = 0; 4 * g + 4 <= K; g++) memcpy(d + 64 * g, s + 4 * g, 4);
            for (k = 4 * g; k < K; k++) d[64 * g + k % 4] = s[k];
        }
    }
    for (cb = 0; cb < (c_out + 15) / 16; cb++) { /* sum w of each channel: |.| <= 576 * 128 */
        __m512i sum = _mm512_setzero_si512();
        for (ky = 0; ky < 3; ky++)
            for (g = 0; g < G; g++) sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), _mm512_loadu_si512(VNNI_W(z, cb, ky, g)));
        /* |(off - 128) sum| <= 256 * 576 * 128 < 2^25 */
        _mm512_storeu_si512(z->e.bias + 16 * cb, _mm512_add_epi32(_mm512_loadu_si512(z->e.bias + 16 * cb),
                                                                  _mm512_mullo_epi32(_mm512_set1_epi32(off - 128), sum)));
    }
}

/* [upad x C | x + 128 (n values) | upad ...] up to R bytes; x NULL: all upad */
W2S_AVX512_INLINE void vnni_pad_row(const int8_t *x, int32_t n, int32_t c, uint8_t upad, uint8_t *d, int32_t R) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    int32_t i;
    if (!x) {
        memset(d, upad, (size_t)R);
        return;
    }
    memset(d, upad, (size_t)c);
    for (i = 0; i + 64 <= n; i += 64) _mm512_storeu_si512(d + c + i, _mm512_xor_si512(_mm512_loadu_si512(x + i), flip));
    if (i < n) {
        const __mmask64 m = ((__mmask64)1 << (n - i)) - 1;
        _mm512_mask_storeu_epi8(d + c + i, m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, x + i), flip));
    }
    memset(d + c + n, upad, (size_t)(R - c - n));
}

/* GCC 12's partial redundancy elimination turns the tile accumulators below into copies and
 * spills (52 vector moves per 60 VPDPBUSD in the inner loop of four rows x five columns; none
 * without it: the array form of vnni_tile then needs no hand-named copy for that size) */
/* Full unrolling of the tile loops (R and NB are constants there) is for GCC, which builds the
 * extension; clang (the fuzz and sanitizer builds) unrolls on its own, and honouring these
 * pragmas under its instrumentation took minutes per build. */
#if defined(__GNUC__) && !defined(__clang__)
#define W2S_PRAGMA(x) _Pragma(#x)
#define W2S_UNROLL(n) W2S_PRAGMA(GCC unroll n)
#else
#define W2S_UNROLL(n)
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define W2S_NO_TREE_PRE __attribute__((optimize("no-tree-pre")))
#else
#define W2S_NO_TREE_PRE
#endif

W2S_AVX512_INLINE int32_t w2s_load32(const void *p) {
    int32_t q;
    memcpy(&q, p, 4);
    return q;
}

/* R output rows (t .. t + R - 1), NB columns from f, channel block cb: every tap, then the
 * epilogue. xr: the padded input rows t - 1 .. t + R; input row t - 1 + i feeds kernel row k of
 * output row i - k, so each broadcast tap (a memory operand) serves 3R / (R + 2) VPDPBUSD: 1, 1.5
 * and 2 for R = 1, 2, 4. On the cores measured (docs/performance.md) the memory operands, not the
 * multiplies, bound this loop, hence the taller tiles; R NB accumulators stay in registers
 * (R and NB are constants here: the loops unroll and the arrays become registers). */
#define VNB 13 /* at most this many columns per tile (R = 1); R = 2: 8, R = 4: 6 */
W2S_AVX512_INLINE void vnni_tile(const vnni_weights *z, const out16 *o, int32_t cb, const uint8_t *const *xr,
                                 int32_t c_in, int32_t f, const int32_t R, const int32_t NB, const int plain,
                                 int8_t *const *out) {
    const __m512i bias = _mm512_loadu_si512(z->e.bias + 16 * cb);
    __m512i acc[4][VNB];
    int32_t i, j, g, r;
W2S_UNROLL(4)
    for (r = 0; r < R; r++)
W2S_UNROLL(13)
        for (j = 0; j < NB; j++) acc[r][j] = bias;
    for (g = 0; g < z->G; g++) {
        const __m512i w0 = _mm512_loadu_si512(VNNI_W(z, cb, 0, g)), w1 = _mm512_loadu_si512(VNNI_W(z, cb, 1, g));
        const __m512i w2 = _mm512_loadu_si512(VNNI_W(z, cb, 2, g));
W2S_UNROLL(6)
        for (i = 0; i < R + 2; i++) {
            const uint8_t *x = xr[i] + f * c_in + 4 * g;
W2S_UNROLL(13)
            for (j = 0; j < NB; j++) {
                int32_t q;
                __m512i u;
                memcpy(&q, x + j * c_in, 4);
                u = _mm512_set1_epi32(q);
                if (i < R) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], u, w0);
                if (i >= 1 && i <= R) acc[i - 1][j] = _mm512_dpbusd_epi32(acc[i - 1][j], u, w1);
                if (i >= 2) acc[i - 2][j] = _mm512_dpbusd_epi32(acc[i - 2][j], u, w2);
            }
        }
    }
    {
        const out16_block c = out16_get(o, cb);
W2S_UNROLL(4)
        for (r = 0; r < R; r++)
W2S_UNROLL(13)
            for (j = 0; j < NB; j++) (plain ? out16_put_plain : out16_put)(&c, acc[r][j], out[r] + (f + j) * c.c_out);
    }
}

W2S_AVX512 W2S_NO_TREE_PRE __attribute__((noinline)) static void vnni_rows4_13(const vnni_weights *z, const out16 *o, int32_t f_len,
                                                              const uint8_t *const *xr, int8_t *const *out) {
    const int32_t ntile = (f_len + 4) / 5, plain = out16_plain(o);
    int32_t cb, f, b;
    for (cb = 0; cb < (o->c_out + 15) / 16; cb++)
        for (b = 0, f = 0; b < ntile; b++) {
            const int32_t nb = (f_len - f) / (ntile - b) + ((f_len - f) % (ntile - b) != 0);
#define W2S_NB(k)                                                                                        \
    case k:                                                                                              \
        if (plain) vnni_tile(z, o, cb, xr, 13, f, 4, k, 1, out);                                         \
        else vnni_tile(z, o, cb, xr, 13, f, 4, k, 0, out);                                               \
        break;
            switch (nb) { W2S_NB(5) W2S_NB(4) W2S_NB(3) W2S_NB(2) default: W2S_NB(1) }
#undef W2S_NB
            f += nb;
        }
}

/* R output rows (R = 1, 2 or 4) from the padded rows xr (t - 1 .. t + R), in column tiles of
 * equal size: a short last tile would be a few long chains of dependent VPDPBUSD. */
W2S_AVX512_INLINE void vnni_rows(const vnni_weights *z, const out16 *o, int32_t f_len, int32_t c_in,
                                 const uint8_t *const *xr, const int32_t R, int8_t *const *out) {
    const int32_t most = R == 4 ? 6 : (R == 2 ? 8 : VNB), ntile = (f_len + most - 1) / most;
    int32_t cb, f, b;
    if (R == 4 && c_in == 13) { /* the released width as a constant: each tap's address is a row's
                                 * pointer plus a fixed offset, not one register per tap */
        vnni_rows4_13(z, o, f_len, xr, out);
        return;
    }
    for (cb = 0; cb < (o->c_out + 15) / 16; cb++)
        for (b = 0, f = 0; b < ntile; b++) {
            const int32_t nb = (f_len - f) / (ntile - b) + ((f_len - f) % (ntile - b) != 0);
#define W2S_NB(k) case k: vnni_tile(z, o, cb, xr, c_in, f, R, k, 0, out); break;
            if (R == 4) {
                switch (nb) { W2S_NB(6) W2S_NB(5) W2S_NB(4) W2S_NB(3) W2S_NB(2) default: vnni_tile(z, o, cb, xr, c_in, f, R, 1, 0, out); }
            } else if (R == 2) {
                switch (nb) { W2S_NB(8) W2S_NB(7) W2S_NB(6) W2S_NB(5) W2S_NB(4) W2S_NB(3) W2S_NB(2)
                              default: vnni_tile(z, o, cb, xr, c_in, f, R, 1, 0, out); }
            } else {
                switch (nb) { W2S_NB(13) W2S_NB(12) W2S_NB(11) W2S_NB(10) W2S_NB(9) W2S_NB(8) W2S_NB(7)
                              W2S_NB(6) W2S_NB(5) W2S_NB(4) W2S_NB(3) W2S_NB(2)
                              default: vnni_tile(z, o, cb, xr, c_in, f, R, 1, 0, out); }
            }
#undef W2S_NB
            f += nb;
        }
}

W2S_AVX512 W2S_NO_TREE_PRE __attribute__((noinline)) static void vnni_row_kernel(const w2s_conv_layer *l, int32_t f_len, int32_t c_in,
                                                                 int32_t c_out, const int8_t *const rows[3], int8_t *out,
                                                                 void *scratch) {
    vnni_weights z;
    out16 o;
    uint8_t *xu;
    const uint8_t *xr[3];
    const int32_t R = (f_len + 2) * c_in + 64, S = (R + 63) / 64 * 64;
    int8_t *const dst[1] = {out};
    int32_t ky;
    vnni_layout(f_len, c_in, c_out, 3, scratch, &z, &xu);
    vnni_prepare(l, c_in, c_out, &z);
    out16_init(l, &z.e, c_out, z.any_left, &o);
    for (ky = 0; ky < 3; ky++) {
        vnni_pad_row(rows[ky], f_len * c_in, c_in, (uint8_t)(128 - l->input_offset), xu + (size_t)ky * (size_t)S, R);
        xr[ky] = xu + (size_t)ky * (size_t)S;
    }
    vnni_rows(&z, &o, f_len, c_in, xr, 1, dst);
}

W2S_AVX512 void w2s_conv3x3_row_s8_avx512(const w2s_conv_layer *l, int32_t f_len, int32_t c_in,
                                          int32_t c_out, const int8_t *const rows[3], int8_t *out, void *scratch) {
    if (l->input_offset < -127) {
        w2s_conv3x3_row_s8_avx2(l, f_len, c_in, c_out, rows, out, scratch);
        return;
    }
    vnni_row_kernel(l, f_len, c_in, c_out, rows, out, scratch);
}

/* A whole layer: the weights prepared once, each input row padded once into a ring of eight slots,
 * output rows four at a time (two or one for the last rows). */
W2S_AVX512 W2S_NO_TREE_PRE __attribute__((noinline)) static void vnni_layer_kernel(const w2s_conv_layer *l, int32_t T, int32_t f_len,
                                                                   int32_t c_in, int32_t c_out, const int8_t *src,
                                                                   int8_t *dst, void *scratch) {
    enum { slots = 8 }; /* four rows at a time need six */
    vnni_weights z;
    out16 o;
    uint8_t *ring;
    const int32_t R = (f_len + 2) * c_in + 64, n = f_len * c_in, S = (R + 63) / 64 * 64;
    const size_t rowb = (size_t)(f_len * c_out);
    const uint8_t upad = (uint8_t)(128 - l->input_offset);
    int32_t t = 0, padded = 0, r; /* input rows -1 .. padded are in the ring */
#define W2S_SLOT(r) (ring + (size_t)(((r) + slots) & (slots - 1)) * (size_t)S)
    vnni_layout(f_len, c_in, c_out, slots, scratch, &z, &ring);
    vnni_prepare(l, c_in, c_out, &z);
    out16_init(l, &z.e, c_out, z.any_left, &o);
    vnni_pad_row(NULL, n, c_in, upad, W2S_SLOT(-1), R);
    vnni_pad_row(src, n, c_in, upad, W2S_SLOT(0), R);
    while (t < T) {
        const int32_t step = t + 4 <= T ? 4 : (t + 2 <= T ? 2 : 1);
        const uint8_t *xr[6];
        int8_t *out[4];
        for (r = padded + 1; r <= t + step; r++) /* over rows no longer needed */
            vnni_pad_row(r < T ? src + (size_t)r * (size_t)n : NULL, n, c_in, upad, W2S_SLOT(r), R);
        padded = t + step;
        for (r = 0; r < step + 2; r++) xr[r] = W2S_SLOT(t - 1 + r);
        for (r = 0; r < step; r++) out[r] = dst + (size_t)(t + r) * rowb;
        if (step == 4)
            vnni_rows(&z, &o, f_len, c_in, xr, 4, out);
        else if (step == 2)
            vnni_rows(&z, &o, f_len, c_in, xr, 2, out);
        else
            vnni_rows(&z, &o, f_len, c_in, xr, 1, out);
        t += step;
    }
#undef W2S_SLOT
}

W2S_AVX512 void w2s_conv3x3_layer_s8_avx512(const w2s_conv_layer *l, int32_t T, int32_t f_len, int32_t c_in,
                                            int32_t c_out, const int8_t *src, int8_t *dst, void *scratch) {
    int32_t t;
    if (l->input_offset >= -127) {
        vnni_layer_kernel(l, T, f_len, c_in, c_out, src, dst, scratch);
        return;
    }
    for (t = 0; t < T; t++) {
        const int8_t *rows[3];
        rows[0] = t > 0 ? src + (size_t)(t - 1) * (size_t)(f_len * c_in) : NULL;
        rows[1] = src + (size_t)t * (size_t)(f_len * c_in);
        rows[2] = t + 1 < T ? src + (size_t)(t + 1) * (size_t)(f_len * c_in) : NULL;
        w2s_conv3x3_row_s8_avx2(l, f_len, c_in, c_out, rows, dst + (size_t)t * (size_t)(f_len * c_out), scratch);
    }
}

/* ---- max-pool (pool.c) ---------------------------------------------------------------------------- */

/* v: whole vectors up to 16 bytes past the row, in kernel scratch */
static size_t pool512_layout(int32_t f_in, int32_t c, void *scratch, int8_t **v) {
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    *v = (int8_t *)w2s_carve_take(&k, (size_t)(f_in * c + 16 + 63) / 64 * 64);
    return w2s_carve_bytes(&k);
}

/* the vertical max of the three rows in 64-byte vectors into v (zeros past the row), then each
 * output column as the max of three columns of v, stored straight to out (c bytes each) */
W2S_AVX512 void w2s_maxpool_row_s8_avx512(int32_t f_in, int32_t c, const int8_t *const rows[3], int8_t *out,
                                          void *scratch) {
    int8_t *v;
    const int32_t n = f_in * c, f_out = (f_in + 1) / 2;
    int32_t i, fo, ch;
    pool512_layout(f_in, c, scratch, &v);
    for (i = 0; i < n + 16; i += 64) { /* the columns below read up to 15 bytes past the row */
        const __mmask64 k = n - i >= 64 ? ~(__mmask64)0 : n > i ? ((__mmask64)1 << (n - i)) - 1 : 0;
        __m512i m = _mm512_maskz_loadu_epi8(k, rows[1] + i);
        if (rows[0]) m = _mm512_max_epi8(m, _mm512_maskz_loadu_epi8(k, rows[0] + i));
        if (rows[2]) m = _mm512_max_epi8(m, _mm512_maskz_loadu_epi8(k, rows[2] + i));
        _mm512_storeu_si512(v + i, m);
    }
    for (fo = 0; fo < f_out; fo++) {
        const int8_t *mid = v + 2 * fo * c;
        const int8_t *left = fo > 0 ? mid - c : mid, *right = 2 * fo + 1 < f_in ? mid + c : mid; /* padding */
        for (ch = 0; ch < c; ch += 16) {
            const __mmask16 k = (__mmask16)(c - ch >= 16 ? 0xFFFFu : (1u << (c - ch)) - 1u);
            const __m128i x = _mm_max_epi8(_mm_max_epi8(_mm_loadu_si128((const __m128i *)(const void *)(left + ch)),
                                                        _mm_loadu_si128((const __m128i *)(const void *)(mid + ch))),
                                           _mm_loadu_si128((const __m128i *)(const void *)(right + ch)));
            _mm_mask_storeu_epi8(out + fo * c + ch, k, x);
        }
    }
}

/* ---- vox pooling (vox.c) ------------------------------------------------------------------------------ */

/* x / 2^s rounded as w2s_rshift_round, on sixteen int32 lanes, 0 <= s <= 31 (per lane) */
W2S_AVX512_INLINE __m512i rshift_round16(__m512i x, __m512i s) {
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(_mm512_set1_epi32(1), s), _mm512_set1_epi32(1));
    const __m512i thr = _mm512_sub_epi32(_mm512_srli_epi32(mask, 1), _mm512_srai_epi32(x, 31));
    const __m512i q = _mm512_srav_epi32(x, s);
    return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(_mm512_and_si512(x, mask), thr), q, _mm512_set1_epi32(1));
}

/* the same on eight int64 lanes, 0 <= s (s >= 63 gives 0) */
W2S_AVX512_INLINE __m512i rshift_round8x64(__m512i x, __m512i s) {
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i mask = _mm512_sub_epi64(_mm512_sllv_epi64(one, s), one);
    const __m512i thr = _mm512_sub_epi64(_mm512_srli_epi64(mask, 1), _mm512_srai_epi64(x, 63));
    const __m512i q = _mm512_srav_epi64(x, s);
    const __m512i r = _mm512_mask_add_epi64(q, _mm512_cmpgt_epi64_mask(_mm512_and_si512(x, mask), thr), q, one);
    return _mm512_maskz_mov_epi64(_mm512_cmplt_epi64_mask(s, _mm512_set1_epi64(63)), r);
}

/* The constants of one group of sixteen channels (vox.c's cells of one mel bin): the rearranged
 * weights (four input channels per 32-bit lane), the folded biases, the score's requantization
 * and the exp2 table with its differences. */
typedef struct {
    const int8_t (*ws)[64], (*hi)[64];
    const uint8_t (*lo)[64];
    __m512i sb, vb, mult, mult_odd, left, right, vsh, lut[4], dlut[4];
    __mmask16 live;
    int32_t J;
} vox_group;

/* The state of sixteen cells: the reference, and the int64 sums of the even and the odd channels
 * (lanes 2i and 2i + 1 of the int32 vectors), so that no lane is converted to 64 bits. */
typedef struct {
    __m512i ref, sum_e, sum_o, acc_e, acc_o;
} vox_cells;

/* vox.c's push of frames t = 0 .. n_rows - 1 (row t at rows + t * stride, the last one at last)
 * into sixteen cells at byte offset col of each row. released: J = 4 (13 to 16 channels), every
 * score shift a left shift that cannot saturate (checked by the caller), so the requantization
 * is srdhm(score << left) alone. */
W2S_AVX512_INLINE void vox_rows16(const vox_group *k, vox_cells *st, const int8_t *rows, size_t stride,
                                  const int8_t *last, int32_t n_rows, int32_t col, int fresh, const int released) {
    const __m512i flip = _mm512_set1_epi8((char)0x80), low32 = _mm512_set1_epi64(0xFFFFFFFF);
    const __m512i one = _mm512_set1_epi32(1), fmask = _mm512_set1_epi32((1 << W2S_EXP_FRAC_BITS) - 1);
    __m512i ref = st->ref, sum_e = st->sum_e, sum_o = st->sum_o, acc_e = st->acc_e, acc_o = st->acc_o;
    const int32_t J = released ? 4 : k->J; /* a constant in the released copy: the loop unrolls */
    int32_t t, j;
    for (t = 0; t < n_rows; t++) {
        const int8_t *x = (t == n_rows - 1 ? last : rows + (size_t)t * stride) + col;
        __m512i sc = k->sb, vh = _mm512_setzero_si512(), vlo = _mm512_setzero_si512();
        __m512i value, z, zq, r, kk, idx, fr, a, d, v, e, e_o;
W2S_UNROLL(4)
        for (j = 0; j < J; j++) {
            const __m512i xb = _mm512_set1_epi32(w2s_load32(x + 4 * j)), ub = _mm512_xor_si512(xb, flip);
            sc = _mm512_dpbusd_epi32(sc, ub, _mm512_loadu_si512(k->ws[j]));
            vh = _mm512_dpbusd_epi32(vh, ub, _mm512_loadu_si512(k->hi[j]));
            vlo = _mm512_dpbusd_epi32(vlo, _mm512_loadu_si512(k->lo[j]), xb);
        }
        value = rshift_round16(_mm512_add_epi32(_mm512_add_epi32(k->vb, _mm512_slli_epi32(vh, 8)), vlo), k->vsh);
        if (released) /* requant16 with no saturation and no right shift */
            z = srdhm16(_mm512_sllv_epi32(sc, k->left), k->mult, k->mult_odd);
        else
            z = requant16(sc, k->mult, k->left, k->right);
        zq = _mm512_srai_epi32(z, W2S_Q_LOG);
        r = _mm512_mask_add_epi32(zq, _mm512_test_epi32_mask(z, _mm512_set1_epi32((1 << W2S_Q_LOG) - 1)), zq, one); /* ceil(z / 2^16) */
        if (t == 0 && fresh) {
            ref = r;
        } else {
            kk = _mm512_max_epi32(_mm512_sub_epi32(r, ref), _mm512_setzero_si512());
            if (_mm512_test_epi32_mask(kk, kk)) { /* the reference grows: both sums / 2^k, rounded */
                const __m512i k_e = _mm512_and_si512(kk, low32), k_o = _mm512_srli_epi64(kk, 32);
                sum_e = rshift_round8x64(sum_e, k_e);
                sum_o = rshift_round8x64(sum_o, k_o);
                acc_e = rshift_round8x64(acc_e, k_e);
                acc_o = rshift_round8x64(acc_o, k_o);
                ref = _mm512_max_epi32(ref, r);
            }
        }
        /* ref 2^16 - z = K 2^16 + q with K = ref - r, q = (-z) mod 2^16 (z = (r - 1) 2^16 +
         * (2^16 - q) when z has fraction bits) */
        kk = _mm512_sub_epi32(ref, r);
        fr = _mm512_and_si512(_mm512_sub_epi32(_mm512_setzero_si512(), z), _mm512_set1_epi32((1 << W2S_Q_LOG) - 1));
        idx = _mm512_srli_epi32(fr, W2S_EXP_FRAC_BITS);
        fr = _mm512_and_si512(fr, fmask);
        {
            const __mmask16 hi_a = _mm512_cmpgt_epi32_mask(idx, _mm512_set1_epi32(31));
            a = _mm512_mask_blend_epi32(hi_a, _mm512_permutex2var_epi32(k->lut[0], idx, k->lut[1]),
                                        _mm512_permutex2var_epi32(k->lut[2], idx, k->lut[3]));
            d = _mm512_mask_blend_epi32(hi_a, _mm512_permutex2var_epi32(k->dlut[0], idx, k->dlut[1]),
                                        _mm512_permutex2var_epi32(k->dlut[2], idx, k->dlut[3]));
        }
        /* (d fr + 2^9) >> 10 as 2^10 dh fr + dl fr with d = 2^10 dh + dl (0 <= d <= 2^29 by the
         * format's bounds, fr < 2^10): every term < 2^31 */
        v = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_srli_epi32(d, W2S_EXP_FRAC_BITS), fr),
                             _mm512_srli_epi32(_mm512_add_epi32(_mm512_mullo_epi32(_mm512_and_si512(d, fmask), fr),
                                                                _mm512_set1_epi32(1 << (W2S_EXP_FRAC_BITS - 1))),
                                               W2S_EXP_FRAC_BITS));
        v = _mm512_sub_epi32(a, v); /* 0 <= v <= 2^30 */
        {   /* e = (v + 2^(s - 1)) >> s, s = 10 + K: 0 for s >= 32 (as vox.c's for s >= 63) */
            const __m512i sft = _mm512_add_epi32(_mm512_min_epu32(kk, _mm512_set1_epi32(64)),
                                                 _mm512_set1_epi32(W2S_Q_EXP_LUT - W2S_Q_EXP));
            const __m512i half = _mm512_sllv_epi32(one, _mm512_sub_epi32(sft, one));
            e = _mm512_maskz_srlv_epi32(k->live, _mm512_add_epi32(v, half), sft);
        }
        /* sum += e, acc += e value in int64: even lanes from the low halves, odd from the high */
        e_o = _mm512_srli_epi64(e, 32);
        sum_e = _mm512_add_epi64(sum_e, _mm512_and_si512(e, low32));
        sum_o = _mm512_add_epi64(sum_o, e_o);
        acc_e = _mm512_add_epi64(acc_e, _mm512_mul_epi32(e, value));
        acc_o = _mm512_add_epi64(acc_o, _mm512_mul_epi32(e_o, _mm512_srli_epi64(value, 32)));
    }
    st->ref = ref, st->sum_e = sum_e, st->sum_o = sum_o, st->acc_e = acc_e, st->acc_o = acc_o;
}

/* w2s_vox_push_s8 over n_rows rows (row t at rows + t * stride), channels in the lanes: for each
 * mel bin f and group of sixteen channels, the state of its cells stays in registers while the
 * frames go by (cells are independent, so the order of the loops changes nothing; vox_rows16).
 * Sums with VPDPBUSD on bytes: score = sof_b + sum (x + off) ws = sof_b' + sum u ws (u = x + 128,
 * the offset folded into the bias as in the conv kernel); value weights are int16, split
 * w = 256 hi + lo (hi signed, lo in 0..255): sum x w = 256 (sum u hi - 128 sum hi) + sum lo x,
 * every term a VPDPBUSD; the int32 sums wrap, but the true value fits in int32 (|.| < 2^30), so
 * the wrapped sum is exact. Then vox.c's arithmetic lane by lane: z = requantize(score),
 * r = ceil(z / 2^16), the rescale of sum and acc when r passes ref (rounding shifts of int64
 * lanes), e = exp2_neg(ref 2^16 - z) in int32 (the table and its differences by permutes), then
 * sum += e and acc += e value in int64 lanes. Kernel scratch: the rearranged weights and a copy
 * of the last row (vox512_layout). */
typedef struct {
    int8_t  *ws, *hi; /* [block of 16 channels][J groups of 4 inputs][64] each */
    uint8_t *lo;
    int8_t  *last;    /* (F' C + 4): the last row, whole words past it */
} vox512_bufs;

static size_t vox512_layout(int32_t C, int32_t F2, void *scratch, vox512_bufs *b) {
    const size_t weights = (size_t)((C + 15) / 16) * (size_t)((C + 3) / 4) * 64u;
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    b->ws = (int8_t *)w2s_carve_take(&k, weights);
    b->hi = (int8_t *)w2s_carve_take(&k, weights);
    b->lo = (uint8_t *)w2s_carve_take(&k, weights);
    b->last = (int8_t *)w2s_carve_take(&k, (size_t)(F2 * C) + 4);
    return w2s_carve_bytes(&k);
}

W2S_AVX512 void w2s_vox_push_rows_avx512(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                                         const int8_t *rows, int32_t n_rows, size_t stride, void *scratch) {
    int32_t sb[W2S_MAX_CHANNELS + 16], vb[W2S_MAX_CHANNELS + 16], mult[W2S_MAX_CHANNELS + 16];
    int32_t left[W2S_MAX_CHANNELS + 16], right[W2S_MAX_CHANNELS + 16];
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2, off = w->vox_input_offset;
    const int32_t J = (C + 3) / 4;
    const size_t block = (size_t)J * 64u; /* bytes of one block of the weights */
    int32_t dtab[64];
    int32_t ch, ci, f, g, j, i, released = J == 4;
    vox512_bufs z;
    int8_t *ws, *hi, *last;
    uint8_t *lo;
    vox_group k;
    if (n_rows <= 0) return;
    vox512_layout(C, F2, scratch, &z);
    ws = z.ws, hi = z.hi, lo = z.lo, last = z.last;
    memset(ws, 0, (size_t)((C + 15) / 16) * block);
    memset(hi, 0, (size_t)((C + 15) / 16) * block);
    memset(lo, 0, (size_t)((C + 15) / 16) * block);
    for (ch = 0; ch < C + 16; ch++) {
        int32_t sw = 0, sl = 0, sh = 0;
        int64_t bound = 0; /* of |score| before the requantization */
        const int32_t sh_ = ch < C ? w->sof_shift[ch] : 0;
        for (ci = 0; ch < C && ci < C; ci++) {
            const int32_t a = w->sof_w[ch * C + ci], b = w->lin_w[ch * C + ci];
            const int32_t h = (b - (b & 255)) / 256; /* b = 256 h + (b & 255) */
            const size_t at = (size_t)(ch / 16) * block + (size_t)(ci / 4) * 64u + (size_t)((ch % 16) * 4 + ci % 4);
            ws[at] = (int8_t)a;
            hi[at] = (int8_t)h;
            lo[at] = (uint8_t)(b & 255);
            sw += a;
            sl += b;
            sh += h;
            bound += 255 * (int64_t)(a < 0 ? -a : a);
        }
        /* score: sum (x + off) a = sum u a + (off - 128) sum a; value: sum (x + off) b =
         * sum x b + off sum b, sum x b = 256 sum u h - 32768 sum h + sum lo x (mod 2^32) */
        sb[ch] = ch < C ? w->sof_b[ch] + (off - 128) * sw : 0;
        vb[ch] = ch < C ? (int32_t)((uint32_t)w->lin_b[ch] + (uint32_t)(off * sl) - (uint32_t)sh * 32768u) : 0;
        mult[ch] = ch < C ? w->sof_mult[ch] : 0;
        left[ch] = sh_ > 0 ? sh_ : 0;
        right[ch] = sh_ > 0 ? 0 : -sh_;
        bound += sb[ch] < 0 ? -(int64_t)sb[ch] : sb[ch];
        released &= right[ch] == 0 && bound * ((int64_t)1 << left[ch]) <= INT32_MAX; /* no saturation */
    }
    memcpy(last, rows + (size_t)(n_rows - 1) * stride, (size_t)(F2 * C));
    memset(last + F2 * C, 0, 4);
    /* the table and its differences d = lut[i] - lut[i + 1] (0 <= d, checked at load): two
     * lookups of the same index instead of lut[i] and lut[i + 1] */
    for (j = 0; j < 64; j++) dtab[j] = (int32_t)(w->exp_lut[j] - w->exp_lut[j + 1]);
    for (j = 0; j < 4; j++) k.lut[j] = _mm512_loadu_si512(w->exp_lut + 16 * j);
    for (j = 0; j < 4; j++) k.dlut[j] = _mm512_loadu_si512(dtab + 16 * j);
    k.vsh = _mm512_set1_epi32(w->value_shift);
    k.J = J;
    for (g = 0; g < C; g += 16) {
        const int32_t n = C - g < 16 ? C - g : 16;
        k.ws = (const int8_t(*)[64])(ws + (size_t)(g / 16) * block);
        k.hi = (const int8_t(*)[64])(hi + (size_t)(g / 16) * block);
        k.lo = (const uint8_t(*)[64])(lo + (size_t)(g / 16) * block);
        k.sb = _mm512_loadu_si512(sb + g), k.vb = _mm512_loadu_si512(vb + g);
        k.mult = _mm512_loadu_si512(mult + g), k.mult_odd = _mm512_srli_epi64(k.mult, 32);
        k.left = _mm512_loadu_si512(left + g), k.right = _mm512_loadu_si512(right + g);
        k.live = (__mmask16)((1u << n) - 1u);
        for (f = 0; f < F2; f++) {
            int32_t rf[16];
            int64_t se[8], so[8], ae[8], ao[8];
            vox_cells st;
            for (i = 0; i < 16; i++) {
                const int32_t cell = (g + i) * F2 + f;
                rf[i] = i < n ? s->ref[cell] : 0;
                (i % 2 ? so : se)[i / 2] = i < n ? s->sum[cell] : 0;
                (i % 2 ? ao : ae)[i / 2] = i < n ? s->acc[cell] : 0;
            }
            st.ref = _mm512_loadu_si512(rf);
            st.sum_e = _mm512_loadu_si512(se), st.sum_o = _mm512_loadu_si512(so);
            st.acc_e = _mm512_loadu_si512(ae), st.acc_o = _mm512_loadu_si512(ao);
            if (released)
                vox_rows16(&k, &st, rows, stride, last, n_rows, f * C, s->n == 0, 1);
            else
                vox_rows16(&k, &st, rows, stride, last, n_rows, f * C, s->n == 0, 0);
            _mm512_storeu_si512(rf, st.ref);
            _mm512_storeu_si512(se, st.sum_e), _mm512_storeu_si512(so, st.sum_o);
            _mm512_storeu_si512(ae, st.acc_e), _mm512_storeu_si512(ao, st.acc_o);
            for (i = 0; i < n; i++) {
                const int32_t cell = (g + i) * F2 + f;
                s->ref[cell] = rf[i];
                s->sum[cell] = (i % 2 ? so : se)[i / 2];
                s->acc[cell] = (i % 2 ? ao : ae)[i / 2];
            }
        }
    }
    s->n += n_rows;
}

/* Layer 1: one int16 input channel, nine taps. Vectors run over output channels:
 * acc[co] += (x + off) * w[co][tap], int32 lanes (|product| < 2^24). */
W2S_AVX2 void w2s_conv3x3_row_s16_avx2(const w2s_conv_layer *l, int32_t f_len, int32_t c_out,
                                       const int16_t *const rows[3], int8_t *out) {
    int32_t xs[3][W2S_MAX_MELS + 2];
    int32_t wt[9][W2S_MAX_CHANNELS + 8];
    epilogue e;
    int32_t ky, f, co, k, g;
    for (ky = 0; ky < 3; ky++) {
        xs[ky][0] = xs[ky][f_len + 1] = 0;
        for (f = 0; f < f_len; f++) xs[ky][f + 1] = rows[ky] ? (int32_t)rows[ky][f] + l->input_offset : 0;
    }
    for (k = 0; k < 9; k++)
        for (co = 0; co < c_out + 8; co++) wt[k][co] = co < c_out ? l->w[co * 9 + k] : 0;
    epilogue_init(l, c_out, &e);
    for (g = 0; g < c_out; g += 8) {
        const int32_t n = c_out - g < 8 ? c_out - g : 8;
        __m256i w[9];
        for (k = 0; k < 9; k++) w[k] = _mm256_loadu_si256((const __m256i *)(wt[k] + g));
        for (f = 0; f < f_len; f++) {
            __m256i acc = _mm256_setzero_si256();
            for (ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (k = 0; k < 3; k++)
                    acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_set1_epi32(xs[ky][f + k]), w[ky * 3 + k]));
            }
            finish8(l, &e, g, n, acc, out + f * c_out + g);
        }
    }
}

/* w2s_vox_push_rows_avx512 on eight lanes with AVX2 (no VNNI): the sums with VPMADDWD on int16
 * pairs (x + off, |.| <= 256, against int16 weights: |pair sum| < 2^24, exact), the offset not
 * folded; int64 lanes four to a vector; arithmetic 64-bit shifts from logical ones around the
 * sign; the table entries by VPGATHERDD. Kernel scratch: the weights as int16 pairs, a copy of
 * the last row (vox2_layout). */
W2S_AVX2_INLINE __m256i rshift_round4x64(__m256i x, __m256i s) {
    const __m256i one = _mm256_set1_epi64x(1);
    const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
    const __m256i mask = _mm256_sub_epi64(_mm256_sllv_epi64(one, s), one);
    const __m256i thr = _mm256_sub_epi64(_mm256_srli_epi64(mask, 1), sign);
    const __m256i q = _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(x, sign), s), sign);
    const __m256i r = _mm256_sub_epi64(q, _mm256_cmpgt_epi64(_mm256_and_si256(x, mask), thr));
    return _mm256_and_si256(r, _mm256_cmpgt_epi64(_mm256_set1_epi64x(63), s)); /* s >= 63: 0 */
}

typedef struct {
    int32_t *ws, *wl; /* [block of 8 channels][J pairs of inputs][8]: two int16 each */
    int8_t  *last;    /* (F' C + 16): the last row, a whole vector past it */
} vox2_bufs;

static size_t vox2_layout(int32_t C, int32_t F2, void *scratch, vox2_bufs *b) {
    const size_t weights = (size_t)((C + 7) / 8) * (size_t)((C + 1) / 2) * 8u * sizeof(int32_t);
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    b->ws = (int32_t *)w2s_carve_take(&k, weights);
    b->wl = (int32_t *)w2s_carve_take(&k, weights);
    b->last = (int8_t *)w2s_carve_take(&k, (size_t)(F2 * C) + 16);
    return w2s_carve_bytes(&k);
}

W2S_AVX2 void w2s_vox_push_rows_avx2(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                                     const int8_t *rows, int32_t n_rows, size_t stride, void *scratch) {
    int32_t mult[W2S_MAX_CHANNELS + 8], left[W2S_MAX_CHANNELS + 8], right[W2S_MAX_CHANNELS + 8];
    int32_t sb[W2S_MAX_CHANNELS + 8], vb[W2S_MAX_CHANNELS + 8];
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2, J = (C + 1) / 2, n0 = s->n;
    const __m256i off16 = _mm256_set1_epi16((int16_t)w->vox_input_offset);
    int32_t ch, ci, f, g, t, j;
    vox2_bufs z;
    int32_t *ws, *wl;
    int8_t *last;
    if (n_rows <= 0) return;
    vox2_layout(C, F2, scratch, &z);
    ws = z.ws, wl = z.wl, last = z.last;
    memset(ws, 0, (size_t)((C + 7) / 8) * (size_t)J * 32u);
    memset(wl, 0, (size_t)((C + 7) / 8) * (size_t)J * 32u);
    for (ch = 0; ch < C; ch++)
        for (ci = 0; ci < C; ci++) {
            const size_t at = ((size_t)(ch / 8) * (size_t)J + (size_t)(ci / 2)) * 8u + (size_t)(ch % 8);
            int16_t *ps = (int16_t *)(void *)(ws + at), *pl = (int16_t *)(void *)(wl + at);
            ps[ci % 2] = w->sof_w[ch * C + ci];
            pl[ci % 2] = w->lin_w[ch * C + ci];
        }
    for (ch = 0; ch < C + 8; ch++) {
        const int32_t sh = ch < C ? w->sof_shift[ch] : 0;
        sb[ch] = ch < C ? w->sof_b[ch] : 0;
        vb[ch] = ch < C ? w->lin_b[ch] : 0;
        mult[ch] = ch < C ? w->sof_mult[ch] : 0;
        left[ch] = sh > 0 ? sh : 0;
        right[ch] = sh > 0 ? 0 : -sh;
    }
    memcpy(last, rows + (size_t)(n_rows - 1) * stride, (size_t)(F2 * C));
    memset(last + F2 * C, 0, 16);
    for (f = 0; f < F2; f++) {
        for (g = 0; g < C; g += 8) {
            const int32_t n = C - g < 8 ? C - g : 8, cg = g / 8;
            const __m256i vsb = LD(sb + g), vvb = LD(vb + g), vm = LD(mult + g), vl = LD(left + g), vr = LD(right + g);
            const __m256i vsh = _mm256_set1_epi32(w->value_shift);
            const __m256i fmask = _mm256_set1_epi32((1 << W2S_Q_LOG) - 1), one = _mm256_set1_epi32(1);
            int32_t rf[8], i;
            int64_t sm[8], ac[8];
            __m256i ref, sum0, sum1, acc0, acc1;
            for (i = 0; i < 8; i++) {
                const int32_t k = (g + i) * F2 + f;
                rf[i] = i < n ? s->ref[k] : 0;
                sm[i] = i < n ? s->sum[k] : 0;
                ac[i] = i < n ? s->acc[k] : 0;
            }
            ref = LD(rf), sum0 = LD(sm), sum1 = LD(sm + 4), acc0 = LD(ac), acc1 = LD(ac + 4);
            for (t = 0; t < n_rows; t++) {
                const int8_t *x = (t == n_rows - 1 ? last : rows + (size_t)t * stride) + f * C;
                int16_t xs[W2S_MAX_CHANNELS + 16];
                __m256i sc = vsb, value = vvb, logit, r, k, q, idx, fr, a, b, d, v, e, msk;
                for (j = 0; j < C; j += 16)
                    _mm256_storeu_si256((__m256i *)(xs + j),
                                        _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + j))), off16));
                for (j = 0; j < J; j++) {
                    int32_t p;
                    __m256i xb;
                    memcpy(&p, xs + 2 * j, 4);
                    xb = _mm256_set1_epi32(p);
                    sc = _mm256_add_epi32(sc, _mm256_madd_epi16(xb, LD(ws + ((size_t)cg * (size_t)J + (size_t)j) * 8u)));
                    value = _mm256_add_epi32(value, _mm256_madd_epi16(xb, LD(wl + ((size_t)cg * (size_t)J + (size_t)j) * 8u)));
                }
                { /* w2s_rshift_round(value, value_shift), 0 <= shift <= 31 */
                    const __m256i mk = _mm256_sub_epi32(_mm256_sllv_epi32(one, vsh), one);
                    const __m256i thr = _mm256_sub_epi32(_mm256_srli_epi32(mk, 1), _mm256_srai_epi32(value, 31));
                    value = _mm256_sub_epi32(_mm256_srav_epi32(value, vsh), _mm256_cmpgt_epi32(_mm256_and_si256(value, mk), thr));
                }
                logit = requant8(sc, vm, vl, vr);
                /* ceil(logit / 2^16): + 1 unless the fraction is 0 */
                r = _mm256_add_epi32(_mm256_add_epi32(_mm256_srai_epi32(logit, W2S_Q_LOG), one),
                                     _mm256_cmpeq_epi32(_mm256_and_si256(logit, fmask), _mm256_setzero_si256()));
                if (t == 0 && n0 == 0) {
                    ref = r;
                } else {
                    const __m256i kk = _mm256_max_epi32(_mm256_sub_epi32(r, ref), _mm256_setzero_si256());
                    if (!_mm256_testz_si256(kk, kk)) {
                        const __m256i k0 = _mm256_cvtepu32_epi64(_mm256_castsi256_si128(kk));
                        const __m256i k1 = _mm256_cvtepu32_epi64(_mm256_extracti128_si256(kk, 1));
                        sum0 = rshift_round4x64(sum0, k0);
                        sum1 = rshift_round4x64(sum1, k1);
                        acc0 = rshift_round4x64(acc0, k0);
                        acc1 = rshift_round4x64(acc1, k1);
                        ref = _mm256_max_epi32(ref, r);
                    }
                }
                k = _mm256_sub_epi32(ref, r);
                q = _mm256_and_si256(_mm256_sub_epi32(_mm256_setzero_si256(), logit), fmask);
                idx = _mm256_srli_epi32(q, W2S_EXP_FRAC_BITS);
                fr = _mm256_and_si256(q, _mm256_set1_epi32((1 << W2S_EXP_FRAC_BITS) - 1));
                a = _mm256_i32gather_epi32((const int *)w->exp_lut, idx, 4);
                b = _mm256_i32gather_epi32((const int *)w->exp_lut, _mm256_add_epi32(idx, one), 4);
                d = _mm256_sub_epi32(a, b);
                v = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(d, W2S_EXP_FRAC_BITS), fr),
                                     _mm256_srli_epi32(_mm256_add_epi32(_mm256_mullo_epi32(_mm256_and_si256(d, _mm256_set1_epi32((1 << W2S_EXP_FRAC_BITS) - 1)), fr),
                                                                        _mm256_set1_epi32(1 << (W2S_EXP_FRAC_BITS - 1))),
                                                       W2S_EXP_FRAC_BITS));
                v = _mm256_sub_epi32(a, v);
                {
                    const __m256i sft = _mm256_add_epi32(_mm256_min_epu32(k, _mm256_set1_epi32(64)),
                                                         _mm256_set1_epi32(W2S_Q_EXP_LUT - W2S_Q_EXP));
                    const __m256i half = _mm256_sllv_epi32(one, _mm256_sub_epi32(sft, one));
                    msk = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                    e = _mm256_and_si256(_mm256_srlv_epi32(_mm256_add_epi32(v, half), sft), msk);
                }
                {
                    const __m256i e0 = _mm256_cvtepu32_epi64(_mm256_castsi256_si128(e));
                    const __m256i e1 = _mm256_cvtepu32_epi64(_mm256_extracti128_si256(e, 1));
                    sum0 = _mm256_add_epi64(sum0, e0);
                    sum1 = _mm256_add_epi64(sum1, e1);
                    acc0 = _mm256_add_epi64(acc0, _mm256_mul_epi32(e0, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(value))));
                    acc1 = _mm256_add_epi64(acc1, _mm256_mul_epi32(e1, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(value, 1))));
                }
            }
            _mm256_storeu_si256((__m256i *)rf, ref);
            _mm256_storeu_si256((__m256i *)sm, sum0);
            _mm256_storeu_si256((__m256i *)(sm + 4), sum1);
            _mm256_storeu_si256((__m256i *)ac, acc0);
            _mm256_storeu_si256((__m256i *)(ac + 4), acc1);
            for (i = 0; i < n; i++) {
                const int32_t k2 = (g + i) * F2 + f;
                s->ref[k2] = rf[i];
                s->sum[k2] = sm[i];
                s->acc[k2] = ac[i];
            }
        }
    }
    s->n += n_rows;
}

/* Layer 1 with VPDPWSSD (int16 pairs into int32 lanes), output channels in the lanes, sixteen per
 * block. The input offset comes out of the sums: sum over the taps inside the map of (x + off) w
 * = sum x' w + off sum w, x' being the row with zeros for padding, and sum w over the taps inside
 * the map depends only on which rows are there and whether the column is the first or the last:
 * one bias vector per kind of column for each row. Kernel row ky of column f is the pair
 * (x'[f - 1], x'[f]) against (w0, w1) and the pair (x'[f + 1], x'[f + 2]) against (w2, 0): two
 * VPDPWSSD per row, products <= 2^15 * 2^7, every partial sum exact in int32. */
typedef struct {
    int32_t (*wp)[3][2][16]; /* [block][ky][pair][co]: two int16 in each, in kernel scratch */
    epilogue e;
    int32_t any_left; /* some channel's shift is > 0 */
} l1_weights;

/* Kernel scratch of layer 1: the weight pairs, then three padded rows (f + 4 int16 each, l1_pad) */
static size_t l1_layout(int32_t f_len, int32_t c_out, void *scratch, l1_weights *z, int16_t **xs) {
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    z->wp = (int32_t(*)[3][2][16])w2s_carve_take(&k, (size_t)((c_out + 15) / 16) * sizeof z->wp[0]);
    *xs = (int16_t *)w2s_carve_take(&k, (size_t)(3 * (f_len + 4)) * sizeof(int16_t));
    return w2s_carve_bytes(&k);
}

/* z->wp set by l1_layout */
W2S_AVX512 static void l1_prepare(const w2s_conv_layer *l, int32_t c_out, l1_weights *z) {
    int32_t co, ky;
    memset(z->wp, 0, (size_t)(c_out + 15) / 16 * sizeof z->wp[0]);
    for (co = 0; co < c_out; co++)
        for (ky = 0; ky < 3; ky++) {
            const int8_t *w = l->w + co * 9 + ky * 3;
            z->wp[co / 16][ky][0][co % 16] = (int32_t)(((uint32_t)(uint16_t)(int16_t)w[1] << 16) | (uint16_t)(int16_t)w[0]);
            z->wp[co / 16][ky][1][co % 16] = (int32_t)(uint16_t)(int16_t)w[2];
        }
    epilogue_init(l, c_out, &z->e);
    z->any_left = 0;
    for (co = 0; co < c_out; co++) z->any_left |= z->e.left[co] != 0;
}

/* [0 | x (n values) | 0 0 ...]: n + 4 values; x NULL: zeros */
static void l1_pad(const int16_t *x, int32_t n, int16_t *d) {
    int32_t i;
    d[0] = 0;
    for (i = 0; i < n; i++) d[1 + i] = x ? x[i] : 0;
    d[n + 1] = d[n + 2] = d[n + 3] = 0;
}

/* With all three input rows the nine taps of a column pack into five int16 pairs: (x0[f], x0[f+1]),
 * (x0[f+2], x1[f]), (x1[f+1], x1[f+2]), (x2[f], x2[f+1]) and (x2[f+2], x2[f+3]) against a zero
 * weight (padded indices). The pair that spans two rows is gathered once per row into pr. */
W2S_AVX512_INLINE void l1_span_pairs(const int16_t *const xr[3], int32_t f_len, int32_t *pr) {
    const __m512i lo = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                        39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const __m512i hi = _mm512_add_epi16(lo, _mm512_set1_epi16(16));
    int32_t f;
    for (f = 0; f < f_len; f += 32) {
        const __mmask32 k = f_len - f >= 32 ? 0xFFFFFFFFu : (1u << (f_len - f)) - 1u;
        const __m512i a = _mm512_maskz_loadu_epi16(k, xr[0] + f + 2), b = _mm512_maskz_loadu_epi16(k, xr[1] + f);
        _mm512_storeu_si512(pr + f, _mm512_permutex2var_epi16(a, lo, b));
        _mm512_storeu_si512(pr + f + 16, _mm512_permutex2var_epi16(a, hi, b));
    }
}

/* the weights in the same five pairs (w[ky][0] = (w_ky0, w_ky1), w[ky][1] = (w_ky2, 0)) */
W2S_AVX512_INLINE void l1_pack5(__m512i w[3][2], __m512i wq[5]) {
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    wq[0] = w[0][0];
    wq[1] = _mm512_or_si512(_mm512_and_si512(w[0][1], low16), _mm512_slli_epi32(w[1][0], 16));
    wq[2] = _mm512_or_si512(_mm512_srli_epi32(w[1][0], 16), _mm512_slli_epi32(w[1][1], 16));
    wq[3] = w[2][0];
    wq[4] = w[2][1];
}

/* one column of an output row with all three input rows: five VPDPWSSD in two chains */
W2S_AVX512_INLINE __m512i l1_col5(__m512i acc, const __m512i wq[5], const int16_t *const xr[3], const int32_t *pr,
                                  int32_t f) {
    __m512i a1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_set1_epi32(pr[f]), wq[1]);
    acc = _mm512_dpwssd_epi32(acc, _mm512_set1_epi32(w2s_load32(xr[0] + f)), wq[0]);
    acc = _mm512_dpwssd_epi32(acc, _mm512_set1_epi32(w2s_load32(xr[1] + f + 1)), wq[2]);
    a1 = _mm512_dpwssd_epi32(a1, _mm512_set1_epi32(w2s_load32(xr[2] + f)), wq[3]);
    acc = _mm512_dpwssd_epi32(acc, _mm512_set1_epi32(w2s_load32(xr[2] + f + 2)), wq[4]);
    return _mm512_add_epi32(acc, a1);
}

/* one output row from padded rows xr (NULL: missing) */
W2S_AVX512_INLINE void l1_row(const w2s_conv_layer *l, const l1_weights *z, const out16 *o, int32_t f_len,
                              int32_t c_out, const int16_t *const xr[3], int8_t *out) {
    int32_t cb, f, ky, pr[W2S_MAX_MELS + 32];
    if (xr[0] && xr[2]) l1_span_pairs(xr, f_len, pr);
    for (cb = 0; cb < (c_out + 15) / 16; cb++) {
        const __m512i off = _mm512_set1_epi32(l->input_offset);
        const out16_block c = out16_get(o, cb);
        __m512i w[3][2], wq[5], sl = _mm512_setzero_si512(), sm = _mm512_setzero_si512(), sr = _mm512_setzero_si512();
        __m512i bl, bm, br;
        for (ky = 0; ky < 3; ky++) {
            w[ky][0] = _mm512_loadu_si512(z->wp[cb][ky][0]);
            w[ky][1] = _mm512_loadu_si512(z->wp[cb][ky][1]);
            if (xr[ky]) { /* sums of the weights of the taps inside the map, by kind of column */
                const __m512i w0 = _mm512_srai_epi32(_mm512_slli_epi32(w[ky][0], 16), 16);
                const __m512i w1 = _mm512_srai_epi32(w[ky][0], 16), w2 = _mm512_srai_epi32(_mm512_slli_epi32(w[ky][1], 16), 16);
                sl = _mm512_add_epi32(sl, f_len > 1 ? _mm512_add_epi32(w1, w2) : w1);
                sm = _mm512_add_epi32(sm, _mm512_add_epi32(_mm512_add_epi32(w0, w1), w2));
                sr = _mm512_add_epi32(sr, _mm512_add_epi32(w0, w1));
            }
        }
        bl = _mm512_add_epi32(_mm512_loadu_si512(z->e.bias + 16 * cb), _mm512_mullo_epi32(off, sl));
        bm = _mm512_add_epi32(_mm512_loadu_si512(z->e.bias + 16 * cb), _mm512_mullo_epi32(off, sm));
        br = _mm512_add_epi32(_mm512_loadu_si512(z->e.bias + 16 * cb), _mm512_mullo_epi32(off, sr));
        l1_pack5(w, wq);
        if (xr[0] && xr[2] && out16_plain(o) && f_len >= 2) {
            /* every row but the first and the last, with every released model's epilogue: no test
             * per column (the edge columns' biases apart) */
            out16_put_plain(&c, l1_col5(bl, wq, xr, pr, 0), out);
            for (f = 1; f < f_len - 1; f++) out16_put_plain(&c, l1_col5(bm, wq, xr, pr, f), out + f * c_out);
            out16_put_plain(&c, l1_col5(br, wq, xr, pr, f), out + f * c_out);
            continue;
        }
        for (f = 0; f < f_len; f++) {
            __m512i acc = f == 0 ? bl : f == f_len - 1 ? br : bm;
            if (xr[0] && xr[2]) {
                acc = l1_col5(acc, wq, xr, pr, f);
            } else {
                for (ky = 0; ky < 3; ky++) {
                    int32_t p0, p1;
                    if (!xr[ky]) continue;
                    memcpy(&p0, xr[ky] + f, 4);
                    memcpy(&p1, xr[ky] + f + 2, 4);
                    acc = _mm512_dpwssd_epi32(acc, _mm512_set1_epi32(p0), w[ky][0]);
                    acc = _mm512_dpwssd_epi32(acc, _mm512_set1_epi32(p1), w[ky][1]);
                }
            }
            out16_put(&c, acc, out + f * c_out);
        }
    }
}

W2S_AVX512 void w2s_conv3x3_row_s16_avx512(const w2s_conv_layer *l, int32_t f_len, int32_t c_out,
                                           const int16_t *const rows[3], int8_t *out, void *scratch) {
    l1_weights z;
    out16 o;
    int16_t *xs;
    const int16_t *xr[3];
    int32_t ky;
    l1_layout(f_len, c_out, scratch, &z, &xs);
    l1_prepare(l, c_out, &z);
    out16_init(l, &z.e, c_out, z.any_left, &o);
    for (ky = 0; ky < 3; ky++) {
        if (rows[ky]) l1_pad(rows[ky], f_len, xs + ky * (f_len + 4));
        xr[ky] = rows[ky] ? xs + ky * (f_len + 4) : NULL;
    }
    l1_row(l, &z, &o, f_len, c_out, xr, out);
}

/* w2s_conv3x3_layer_s16: the weights prepared once, each input row padded once (ring of three) */
W2S_AVX512 void w2s_conv3x3_layer_s16_avx512(const w2s_conv_layer *l, int32_t T, int32_t f_len, int32_t c_out,
                                             const int16_t *src, int8_t *dst, void *scratch) {
    l1_weights z;
    out16 o;
    int16_t *xs;
    int32_t t;
#define W2S_XS(r) (xs + ((r) % 3) * (f_len + 4))
    l1_layout(f_len, c_out, scratch, &z, &xs);
    l1_prepare(l, c_out, &z);
    out16_init(l, &z.e, c_out, z.any_left, &o);
    l1_pad(src, f_len, W2S_XS(0));
    for (t = 0; t < T; t++) {
        const int16_t *xr[3];
        if (t + 1 < T) l1_pad(src + (size_t)(t + 1) * (size_t)f_len, f_len, W2S_XS(t + 1));
        xr[0] = t > 0 ? W2S_XS(t + 2) : NULL;
        xr[1] = W2S_XS(t);
        xr[2] = t + 1 < T ? W2S_XS(t + 1) : NULL;
        l1_row(l, &z, &o, f_len, c_out, xr, dst + (size_t)t * (size_t)(f_len * c_out));
    }
}
#undef W2S_XS

/* ---- SSE4.1 ------------------------------------------------------------------------------------------ */

/* Kernel scratch: the three padded rows (R int16: each kernel row reads at most 3 C_in + 7 values
 * from its start), the weights of four channels (3 KP int16 each) */
static size_t sse41_layout(int32_t f_len, int32_t c_in, void *scratch, int16_t **xo, int16_t **wv) {
    const int32_t R = (f_len + 2) * c_in + 16, KP = (3 * c_in + 7) / 8 * 8;
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    *xo = (int16_t *)w2s_carve_take(&k, (size_t)(3 * R) * sizeof(int16_t));
    *wv = (int16_t *)w2s_carve_take(&k, (size_t)(4 * 3 * KP) * sizeof(int16_t));
    return w2s_carve_bytes(&k);
}

/* As the AVX2 int8 kernel with 8-lane int16 vectors and four channels at a time; the epilogue is
 * the scalar one (SSE4.1 has no per-lane shifts). */
W2S_SSE41 void w2s_conv3x3_row_s8_sse41(const w2s_conv_layer *l, int32_t f_len, int32_t c_in,
                                        int32_t c_out, const int8_t *const rows[3], int8_t *out, void *scratch) {
    int16_t *xo, *wv;
    const int32_t R = (f_len + 2) * c_in + 16, K = 3 * c_in, kv = (K + 7) / 8, KP = 8 * kv;
    int32_t ky, g, f, j, v, i;
    sse41_layout(f_len, c_in, scratch, &xo, &wv);
    for (ky = 0; ky < 3; ky++) pad_row16(rows[ky], f_len * c_in, c_in, l->input_offset, xo + ky * R, R);
    for (g = 0; g < c_out; g += 4) {
        const int32_t n = c_out - g < 4 ? c_out - g : 4;
        for (j = 0; j < 4; j++) {
            for (ky = 0; ky < 3; ky++) {
                int16_t *d = wv + (j * 3 + ky) * KP;
                const int8_t *s = l->w + (size_t)((g + j) * 3 + ky) * (size_t)K;
                i = 0;
                if (j < n)
                    for (; i < K; i++) d[i] = s[i];
                for (; i < KP; i++) d[i] = 0;
            }
        }
        for (f = 0; f < f_len; f++) {
            __m128i a[4], s;
            int32_t r[4];
            for (j = 0; j < 4; j++) {
                __m128i acc = _mm_setzero_si128();
                for (ky = 0; ky < 3; ky++) {
                    const int16_t *x = xo + ky * R + f * c_in, *w = wv + (j * 3 + ky) * KP;
                    for (v = 0; v < kv; v++)
                        acc = _mm_add_epi32(acc, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(x + 8 * v)),
                                                                _mm_loadu_si128((const __m128i *)(w + 8 * v))));
                }
                a[j] = acc;
            }
            s = _mm_hadd_epi32(_mm_hadd_epi32(a[0], a[1]), _mm_hadd_epi32(a[2], a[3]));
            _mm_storeu_si128((__m128i *)r, s);
            for (j = 0; j < n; j++) out[f * c_out + g + j] = w2s_conv_finish(l, l->bias[g + j] + r[j], g + j);
        }
    }
}

/* ---- DFT (frontend.c) ------------------------------------------------------------------------------- */

int w2s_dft_simd_ok(int32_t isa) {
    const int32_t r = w2s_isa_resolve(isa);
    return r == W2S_ISA_AVX2 || r == W2S_ISA_AVX512;
}

/* row 2k: cos(k n), row 2k + 1: sin(k n) = cos(k n + 3N/4), table indices mod N; zero-padded */
void w2s_dft_matrix(const int32_t *cosine, int32_t N, int64_t *mat) {
    const int32_t h = N / 2, L = W2S_DFT_MAT_L(h);
    int32_t k, n;
    for (k = 0; k <= h; k++) {
        int64_t *mr = mat + (size_t)(2 * k) * (size_t)L, *mi = mr + L;
        for (n = 0; n < L; n++) {
            mr[n] = n <= h ? cosine[(k * n) % N] : 0;
            mi[n] = n <= h ? cosine[(k * n + 3 * (N / 4)) % N] : 0;
        }
    }
    /* cos((h - k) n) = (-1)^n cos(k n) and sin((h - k) n) = -(-1)^n sin(k n) (h = N/2): checked on
     * the table values, so w2s_dft_simd may compute rows k <= h/2 only, exactly */
    mat[W2S_DFT_MAT_WORDS_OF(h) - 1] = h % 2 == 0;
    for (k = 0; k <= h; k++) {
        const int64_t *mr = mat + (size_t)(2 * k) * (size_t)L, *mi = mr + L;
        const int64_t *nr = mat + (size_t)(2 * (h - k)) * (size_t)L, *ni = nr + L;
        for (n = 0; n <= h; n++)
            if (nr[n] != (n % 2 ? -mr[n] : mr[n]) || ni[n] != (n % 2 ? mi[n] : -mi[n])) mat[W2S_DFT_MAT_WORDS_OF(h) - 1] = 0;
    }
}

/* lane q = sum of the four int64 lanes of s[q] */
W2S_AVX2_INLINE __m256i hsum4x64(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    const __m256i t0 = _mm256_add_epi64(_mm256_unpacklo_epi64(s0, s1), _mm256_unpackhi_epi64(s0, s1));
    const __m256i t1 = _mm256_add_epi64(_mm256_unpacklo_epi64(s2, s3), _mm256_unpackhi_epi64(s2, s3));
    return _mm256_add_epi64(_mm256_permute2x128_si256(t0, t1, 0x20), _mm256_permute2x128_si256(t0, t1, 0x31));
}

/* VPMULDQ: signed 32 x 32 -> 64 of the low halves (|a| <= 2^25, |cos| <= 2^31): exact products,
 * four per instruction, summed in int64 lanes (|sum| < 2^62 as in frontend.c); four
 * frequencies at a time share the loads of a and b and one horizontal sum. With the symmetry
 * w2s_dft_matrix checked, rows k <= h/2 only: sums over even and odd n apart, then
 * re[k] = E + O, re[h - k] = E - O, im[k] = E + O, im[h - k] = O - E: half the products. */
W2S_AVX2 void w2s_dft_simd(const int64_t *mat, int32_t h, const int64_t *a, const int64_t *b,
                           int64_t *re, int64_t *im) {
    const int32_t L = W2S_DFT_MAT_L(h);
    int32_t k, n, q;
    if (mat[W2S_DFT_MAT_WORDS_OF(h) - 1]) { /* rows k <= h/2: sums over even n (E) and odd n (O) */
        for (k = 0; k <= h / 2; k += 4) {
            const int64_t *m[4];
            __m256i r0 = _mm256_setzero_si256(), r1 = r0, r2 = r0, r3 = r0, i0 = r0, i1 = r0, i2 = r0, i3 = r0;
            int64_t er[4], orr[4], ei[4], oi[4];
            for (q = 0; q < 4; q++) m[q] = mat + (size_t)(2 * (k + q <= h / 2 ? k + q : h / 2)) * (size_t)L;
            for (n = 0; n < L; n += 4) { /* lanes 0, 2: even n; 1, 3: odd n */
                const __m256i va = LD(a + n), vb = LD(b + n);
                r0 = _mm256_add_epi64(r0, _mm256_mul_epi32(va, LD(m[0] + n)));
                i0 = _mm256_add_epi64(i0, _mm256_mul_epi32(vb, LD(m[0] + L + n)));
                r1 = _mm256_add_epi64(r1, _mm256_mul_epi32(va, LD(m[1] + n)));
                i1 = _mm256_add_epi64(i1, _mm256_mul_epi32(vb, LD(m[1] + L + n)));
                r2 = _mm256_add_epi64(r2, _mm256_mul_epi32(va, LD(m[2] + n)));
                i2 = _mm256_add_epi64(i2, _mm256_mul_epi32(vb, LD(m[2] + L + n)));
                r3 = _mm256_add_epi64(r3, _mm256_mul_epi32(va, LD(m[3] + n)));
                i3 = _mm256_add_epi64(i3, _mm256_mul_epi32(vb, LD(m[3] + L + n)));
            }
#define W2S_EO(s0, s1, s2, s3, e, o)                                                                           \
    {                                                                                                          \
        const __m256i lo01 = _mm256_unpacklo_epi64(s0, s1), lo23 = _mm256_unpacklo_epi64(s2, s3);              \
        const __m256i hi01 = _mm256_unpackhi_epi64(s0, s1), hi23 = _mm256_unpackhi_epi64(s2, s3);              \
        _mm256_storeu_si256((__m256i *)e, _mm256_add_epi64(_mm256_permute2x128_si256(lo01, lo23, 0x20),        \
                                                           _mm256_permute2x128_si256(lo01, lo23, 0x31)));      \
        _mm256_storeu_si256((__m256i *)o, _mm256_add_epi64(_mm256_permute2x128_si256(hi01, hi23, 0x20),        \
                                                           _mm256_permute2x128_si256(hi01, hi23, 0x31)));      \
    }
            W2S_EO(r0, r1, r2, r3, er, orr)
            W2S_EO(i0, i1, i2, i3, ei, oi)
#undef W2S_EO
            for (q = 0; q < 4 && k + q <= h / 2; q++) {
                re[h - k - q] = er[q] - orr[q]; /* row h/2: O = 0 (checked), both the same */
                im[h - k - q] = oi[q] - ei[q];
                re[k + q] = er[q] + orr[q];
                im[k + q] = ei[q] + oi[q];
            }
        }
        return;
    }
    for (k = 0; k <= h; k += 4) {
        const int64_t *m[4]; /* the cosine row of frequency k + q (past h: row h again, unused) */
        __m256i r0 = _mm256_setzero_si256(), r1 = r0, r2 = r0, r3 = r0, i0 = r0, i1 = r0, i2 = r0, i3 = r0;
        int64_t rs[4], is[4];
        for (q = 0; q < 4; q++) m[q] = mat + (size_t)(2 * (k + q <= h ? k + q : h)) * (size_t)L;
        for (n = 0; n < L; n += 4) {
            const __m256i va = LD(a + n), vb = LD(b + n);
            r0 = _mm256_add_epi64(r0, _mm256_mul_epi32(va, LD(m[0] + n)));
            i0 = _mm256_add_epi64(i0, _mm256_mul_epi32(vb, LD(m[0] + L + n)));
            r1 = _mm256_add_epi64(r1, _mm256_mul_epi32(va, LD(m[1] + n)));
            i1 = _mm256_add_epi64(i1, _mm256_mul_epi32(vb, LD(m[1] + L + n)));
            r2 = _mm256_add_epi64(r2, _mm256_mul_epi32(va, LD(m[2] + n)));
            i2 = _mm256_add_epi64(i2, _mm256_mul_epi32(vb, LD(m[2] + L + n)));
            r3 = _mm256_add_epi64(r3, _mm256_mul_epi32(va, LD(m[3] + n)));
            i3 = _mm256_add_epi64(i3, _mm256_mul_epi32(vb, LD(m[3] + L + n)));
        }
        _mm256_storeu_si256((__m256i *)rs, hsum4x64(r0, r1, r2, r3));
        _mm256_storeu_si256((__m256i *)is, hsum4x64(i0, i1, i2, i3));
        for (q = 0; q < 4 && k + q <= h; q++) {
            re[k + q] = rs[q];
            im[k + q] = is[q];
        }
    }
}

/* w2s_log2_q16's sixteen squarings on four mantissas per vector, four vectors at a time (their
 * chains of dependent multiplies interleave): x < 2^31, so VPMULUDQ's 32 x 32 product is the
 * exact square; each step keeps one fraction bit, as the scalar loop does. */
W2S_AVX2 void w2s_log2_q16_simd(const uint64_t *v, int32_t n, int32_t *lg) {
    int32_t i, j;
    for (i = 0; i < n; i += 16) {
        uint64_t x[16];
        int64_t frac[16];
        int32_t msb[16];
        __m256i x0, x1, x2, x3, f0 = _mm256_setzero_si256(), f1 = f0, f2 = f0, f3 = f0;
        for (j = 0; j < 16; j++) {
            const uint64_t u = i + j < n && v[i + j] ? v[i + j] : 1;
            msb[j] = 63 - __builtin_clzll(u);
            x[j] = msb[j] >= 30 ? u >> (msb[j] - 30) : u << (30 - msb[j]); /* [2^30, 2^31) */
        }
        x0 = LD(x), x1 = LD(x + 4), x2 = LD(x + 8), x3 = LD(x + 12);
        for (j = 0; j < W2S_Q_LOG; j++) {
#define W2S_SQ(x, f)                                                              \
    {                                                                             \
        const __m256i sq = _mm256_srli_epi64(_mm256_mul_epu32(x, x), 30);         \
        const __m256i bit = _mm256_srli_epi64(sq, 31);                            \
        x = _mm256_srlv_epi64(sq, bit);                                           \
        f = _mm256_add_epi64(_mm256_add_epi64(f, f), bit);                        \
    }
            W2S_SQ(x0, f0) W2S_SQ(x1, f1) W2S_SQ(x2, f2) W2S_SQ(x3, f3)
#undef W2S_SQ
        }
        _mm256_storeu_si256((__m256i *)frac, f0);
        _mm256_storeu_si256((__m256i *)(frac + 4), f1);
        _mm256_storeu_si256((__m256i *)(frac + 8), f2);
        _mm256_storeu_si256((__m256i *)(frac + 12), f3);
        for (j = 0; j < 16 && i + j < n; j++) lg[i + j] = (msb[j] << W2S_Q_LOG) + (int32_t)frac[j];
    }
}

/* ---- front end with AVX-512 (frontend.c): the per-frame scalar steps, eight int64 lanes ------- */

int w2s_frame_avx512_ok(int32_t isa) { return w2s_isa_resolve(isa) == W2S_ISA_AVX512; }

/* w2s_rshift_round on int64 lanes, s in [1, 62], |x| < 2^62: floor((x + 2^(s-1) - [x < 0]) / 2^s),
 * which is ties away from zero (a negative tie stays at the floor) */
W2S_AVX512_INLINE __m512i rshift_round_q(__m512i x, int s) {
    const __m512i h = _mm512_add_epi64(_mm512_set1_epi64((int64_t)1 << (s - 1)), _mm512_srai_epi64(x, 63));
    return _mm512_srai_epi64(_mm512_add_epi64(x, h), (unsigned)s);
}

/* |d| < 2^20 and |window| <= 2^30 fit VPMULDQ's signed 32 x 32 -> 64 product exactly */
W2S_AVX512 void w2s_window_avx512(const int16_t *frame, int32_t mean, const int32_t *window, int32_t n,
                                  int32_t *xw) {
    const __m512i m = _mm512_set1_epi64(mean);
    int32_t i;
    for (i = 0; i < n; i += 8) {
        const __mmask8 k = (__mmask8)(n - i >= 8 ? 0xFF : (1u << (n - i)) - 1u);
        const __m512i x = _mm512_cvtepi16_epi64(_mm_maskz_loadu_epi16(k, frame + i));
        const __m512i d = _mm512_sub_epi64(_mm512_slli_epi64(x, W2S_Q_PCM), m);
        const __m512i w = _mm512_cvtepi32_epi64(_mm256_maskz_loadu_epi32(k, window + i));
        const __m512i r = rshift_round_q(_mm512_mul_epi32(d, w), W2S_Q_TRIG + W2S_Q_PCM - W2S_Q_WINDOWED);
        _mm256_mask_storeu_epi32(xw + i, k, _mm512_cvtepi64_epi32(r));
    }
}

/* power[k] = r^2 + i^2 of the rounded DFT sums (|r|, |i| < 2^28: VPMULDQ exact); returns the max */
W2S_AVX512 uint64_t w2s_power_avx512(const int64_t *re, const int64_t *im, int32_t n, uint64_t *power) {
    const int s = W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM;
    __m512i mx = _mm512_setzero_si512();
    int32_t i;
    for (i = 0; i < n; i += 8) {
        const __mmask8 k = (__mmask8)(n - i >= 8 ? 0xFF : (1u << (n - i)) - 1u);
        const __m512i r = rshift_round_q(_mm512_maskz_loadu_epi64(k, re + i), s);
        const __m512i q = rshift_round_q(_mm512_maskz_loadu_epi64(k, im + i), s);
        const __m512i pw = _mm512_add_epi64(_mm512_mul_epi32(r, r), _mm512_mul_epi32(q, q));
        _mm512_mask_storeu_epi64(power + i, k, pw);
        mx = _mm512_max_epu64(mx, pw); /* masked-off lanes are 0 */
    }
    return (uint64_t)_mm512_reduce_max_epu64(mx);
}

/* out[j] = sat16(requantize(L_j, mult, shift)), L_j = log_floor where m[j] = 0, else
 * max(lg[j] + offset, log_floor): frontend.c's last step, sixteen mels at a time */
W2S_AVX512 void w2s_db_avx512(const uint64_t *m, const int32_t *lg, int32_t n, int32_t offset, int32_t log_floor,
                              int32_t mult, int32_t shift, int16_t *out) {
    const __m512i off = _mm512_set1_epi32(offset), fl = _mm512_set1_epi32(log_floor);
    const __m512i mu = _mm512_set1_epi32(mult), left = _mm512_set1_epi32(shift > 0 ? shift : 0);
    const __m512i right = _mm512_set1_epi32(shift > 0 ? 0 : -shift);
    int32_t i;
    for (i = 0; i < n; i += 16) {
        const __mmask16 k = (__mmask16)(n - i >= 16 ? 0xFFFF : (1u << (n - i)) - 1u);
        const __mmask8 z0 = _mm512_testn_epi64_mask(_mm512_maskz_loadu_epi64((__mmask8)k, m + i),
                                                    _mm512_set1_epi64(-1));
        const __mmask8 z1 = _mm512_testn_epi64_mask(_mm512_maskz_loadu_epi64((__mmask8)(k >> 8), m + i + 8),
                                                    _mm512_set1_epi64(-1));
        const __mmask16 zero = (__mmask16)(z0 | (z1 << 8)); /* m[j] = 0 (or past n) */
        const __m512i L = _mm512_mask_mov_epi32(
            _mm512_max_epi32(_mm512_add_epi32(_mm512_maskz_loadu_epi32(k, lg + i), off), fl), zero, fl);
        const __m512i q = requant16_l(L, mu, left, right, shift > 0);
        _mm256_mask_storeu_epi16(out + i, k, _mm512_cvtsepi32_epi16(q));
    }
}

/* floor(log2 v) of v >= 1 (the bit length by VPLZCNTQ) */
W2S_AVX512_INLINE __m512i floor_log2_8(__m512i v) {
    return _mm512_sub_epi64(_mm512_set1_epi64(63), _mm512_lzcnt_epi64(v));
}

/* nine chains of squarings hold 27 of the 32 vector registers (x, fraction, bit length) */
#define W2S_LOG2_CHAINS 9

/* w2s_log2_q16 on 8 * cnt values, one chain of squarings per vector, cnt chains interleaved (cnt a
 * constant at every call: the chains stay in registers). The bit length by VPLZCNTQ; the mantissa
 * normalised to [2^30, 2^31) by whichever of the two shifts has a count below 64 (the other gives
 * 0). Each squaring keeps one fraction bit as the scalar loop does: x < 2^31, so VPMULUDQ's
 * 32 x 32 product is the exact square; sq = x^2 / 2^30 in [2^30, 2^32), and the bit is sq >= 2^31. */
W2S_AVX512_INLINE void log2_chains(const __m512i *v, __m512i *lg, const int cnt) {
    const __m512i one = _mm512_set1_epi64(1), top = _mm512_set1_epi64((int64_t)1 << 31);
    __m512i x[W2S_LOG2_CHAINS], fr[W2S_LOG2_CHAINS], msb[W2S_LOG2_CHAINS];
    int q, i;
W2S_UNROLL(W2S_LOG2_CHAINS)
    for (q = 0; q < cnt; q++) {
        const __m512i u = _mm512_max_epu64(v[q], one); /* log2 of 0 is taken as log2 of 1 */
        const __m512i b = floor_log2_8(u);
        x[q] = _mm512_or_si512(_mm512_sllv_epi64(u, _mm512_sub_epi64(_mm512_set1_epi64(30), b)),
                               _mm512_srlv_epi64(u, _mm512_sub_epi64(b, _mm512_set1_epi64(30))));
        msb[q] = b;
        fr[q] = _mm512_setzero_si512();
    }
    for (i = 0; i < W2S_Q_LOG; i++) {
W2S_UNROLL(W2S_LOG2_CHAINS)
        for (q = 0; q < cnt; q++) {
            const __m512i sq = _mm512_srli_epi64(_mm512_mul_epu32(x[q], x[q]), 30);
            const __mmask8 bit = _mm512_cmpge_epu64_mask(sq, top);
            x[q] = _mm512_mask_srli_epi64(sq, bit, sq, 1);
            fr[q] = _mm512_mask_add_epi64(_mm512_add_epi64(fr[q], fr[q]), bit, _mm512_add_epi64(fr[q], fr[q]), one);
        }
    }
W2S_UNROLL(W2S_LOG2_CHAINS)
    for (q = 0; q < cnt; q++) lg[q] = _mm512_add_epi64(_mm512_slli_epi64(msb[q], W2S_Q_LOG), fr[q]);
}

W2S_AVX512 void w2s_log2_q16_avx512(const uint64_t *v, int32_t n, int32_t *lg) {
    int32_t i, q;
    for (i = 0; i < n; i += 32) {
        __m512i x[4], r[4];
        for (q = 0; q < 4; q++) {
            const int32_t m = n - i - 8 * q;
            x[q] = _mm512_maskz_loadu_epi64((__mmask8)(m >= 8 ? 0xFF : m > 0 ? (1u << m) - 1u : 0u), v + i + 8 * q);
        }
        log2_chains(x, r, 4);
        for (q = 0; q < 4; q++) {
            const int32_t m = n - i - 8 * q;
            _mm256_mask_storeu_epi32(lg + i + 8 * q, (__mmask8)(m >= 8 ? 0xFF : m > 0 ? (1u << m) - 1u : 0u),
                                     _mm512_cvtepi64_epi32(r[q]));
        }
    }
}

/* sum of x and of x^2 over the clip (w2s_prenorm_s16): VPMADDWD pairs against 1 and against
 * themselves; a pair of squares is at most 2^31, exact as uint32 (the one wrap, -32768 twice, reads
 * as 2^31), widened to uint64 lanes at once; the pair sums of x (|.| <= 2^16) stay in int32 for
 * 2^14 vectors at a time */
W2S_AVX512 void w2s_sums_s16_avx512(const int16_t *pcm, size_t n, int64_t *sum, uint64_t *sum2) {
    const __m512i ones = _mm512_set1_epi16(1), low32 = _mm512_set1_epi64(0xFFFFFFFF);
    __m512i s1 = _mm512_setzero_si512(), s64 = s1, q_e = s1, q_o = s1;
    size_t i;
    int32_t k = 0;
    int64_t lanes[8];
    uint64_t qe[8], qo[8];
    int j;
    for (i = 0; i < n; i += 32) {
        const __mmask32 m = n - i >= 32 ? 0xFFFFFFFFu : (1u << (n - i)) - 1u;
        const __m512i x = _mm512_maskz_loadu_epi16(m, pcm + i), sq = _mm512_madd_epi16(x, x);
        s1 = _mm512_dpwssd_epi32(s1, x, ones);
        q_e = _mm512_add_epi64(q_e, _mm512_and_si512(sq, low32));
        q_o = _mm512_add_epi64(q_o, _mm512_srli_epi64(sq, 32));
        if (++k == 1 << 14) {
            s64 = _mm512_add_epi64(s64, _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(s1)),
                                                         _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s1, 1))));
            s1 = _mm512_setzero_si512();
            k = 0;
        }
    }
    s64 = _mm512_add_epi64(s64, _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(s1)),
                                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s1, 1))));
    _mm512_storeu_si512(lanes, s64);
    _mm512_storeu_si512(qe, q_e);
    _mm512_storeu_si512(qo, q_o);
    *sum = 0;
    *sum2 = 0;
    for (j = 0; j < 8; j++) {
        *sum += lanes[j];
        *sum2 += qe[j] + qo[j];
    }
}

/* ---- the front end, eight frames in the lanes ------------------------------------------------------ */

/* frontend.c's frame, for eight consecutive frames at once, lane f = frame t0 + f: the same
 * integers step by step (window and rounding, the fold and the DFT rows k <= h/2 of the symmetric
 * table, power, each frame's block exponent, the mel sums, log2, dB), with no horizontal sums and
 * every lane used. Products as in the per-frame kernels: VPMULDQ for |d| < 2^20 by the window and
 * |a|, |b| <= 2^25 by the table, VPMULUDQ for a 16-bit mel weight by the 32-bit halves of the power
 * (m = sum w lo + 2^32 sum w hi in uint64: the true sum is below 2^63, checked at load, so the
 * wrap-around of the parts cancels). Needs the DFT matrix of a symmetric table
 * (w2s_dft_matrix's last word) and n_fft <= 64. Its arrays, one vector of eight frames per value,
 * are in kernel scratch (logmel8_layout). */
typedef struct {
    __m512i *xw;                /* (N) windowed samples */
    __m512i *a, *b;             /* (h + 1) the first fold */
    __m512i *ap, *am, *bp, *bm; /* (h/2 + 1) the second fold */
    __m512i *pw;                /* (h + 1) power */
    __m512i *m, *lg;            /* mel sums and their log2, padded to whole groups of chains */
    int16_t (*res)[8];          /* [mel][frame] dB, padded to whole groups of 32 mels */
} logmel8_bufs;

static size_t logmel8_layout(const w2s_config *c, void *scratch, logmel8_bufs *z) {
    const size_t N = (size_t)c->n_fft, h = N / 2, v = sizeof(__m512i);
    const size_t F9 = (size_t)(c->n_mels + W2S_LOG2_CHAINS - 1) / W2S_LOG2_CHAINS * W2S_LOG2_CHAINS;
    const size_t F32 = (size_t)(c->n_mels + 31) / 32 * 32;
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    z->xw = (__m512i *)w2s_carve_take(&k, N * v);
    z->a = (__m512i *)w2s_carve_take(&k, (h + 1) * v);
    z->b = (__m512i *)w2s_carve_take(&k, (h + 1) * v);
    z->ap = (__m512i *)w2s_carve_take(&k, (h / 2 + 1) * v);
    z->am = (__m512i *)w2s_carve_take(&k, (h / 2 + 1) * v);
    z->bp = (__m512i *)w2s_carve_take(&k, (h / 2 + 1) * v);
    z->bm = (__m512i *)w2s_carve_take(&k, (h / 2 + 1) * v);
    z->pw = (__m512i *)w2s_carve_take(&k, (h + 1) * v);
    z->m = (__m512i *)w2s_carve_take(&k, F9 * v);
    z->lg = (__m512i *)w2s_carve_take(&k, F9 * v);
    z->res = (int16_t(*)[8])w2s_carve_take(&k, F32 * 8 * sizeof(int16_t));
    return w2s_carve_bytes(&k);
}

size_t w2s_logmel8_scratch_bytes(const w2s_config *c) {
    logmel8_bufs z;
    return logmel8_layout(c, NULL, &z);
}

W2S_AVX512 void w2s_logmel8_avx512(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                                   const int64_t *mat, const int16_t *pcm, int16_t *out, void *scratch) {
    const int32_t N = c->n_fft, h = N / 2, L = W2S_DFT_MAT_L(h), F = c->n_mels;
    const __m512i one = _mm512_set1_epi64(1), mean = _mm512_set1_epi64(pn->mean);
    const __m256i frame0 = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(c->hop));
    logmel8_bufs z;
    __m512i *xw, *ap, *am, *bp, *bm, *pw, *m, *lg;
    __m512i pmax = _mm512_setzero_si512(), e;
    int32_t n, k, j, q;
    logmel8_layout(c, scratch, &z);
    xw = z.xw, ap = z.ap, am = z.am, bp = z.bp, bm = z.bm, pw = z.pw, m = z.m, lg = z.lg;
    memset(xw, 0, (size_t)N * sizeof *xw); /* every n < N is written below (N even); the compiler cannot tell */
    /* windowing: samples n and n + 1 of the eight frames with one gather of int16 pairs */
    for (n = 0; n < N; n += 2) {
        const __m256i pair = _mm256_i32gather_epi32((const int *)(const void *)pcm,
                                                    _mm256_add_epi32(frame0, _mm256_set1_epi32(n)), 2);
        const __m256i lo = _mm256_srai_epi32(_mm256_slli_epi32(pair, 16), 16), hi = _mm256_srai_epi32(pair, 16);
        const int sh = W2S_Q_TRIG + W2S_Q_PCM - W2S_Q_WINDOWED;
        xw[n] = rshift_round_q(_mm512_mul_epi32(_mm512_sub_epi64(_mm512_slli_epi64(_mm512_cvtepi32_epi64(lo), W2S_Q_PCM), mean),
                                                _mm512_set1_epi64(w->window[n])), sh);
        xw[n + 1] = rshift_round_q(_mm512_mul_epi32(_mm512_sub_epi64(_mm512_slli_epi64(_mm512_cvtepi32_epi64(hi), W2S_Q_PCM), mean),
                                                    _mm512_set1_epi64(w->window[n + 1])), sh);
    }
    /* the fold (a = x_n + x_(N-n), b = x_n - x_(N-n)), then a second fold n <-> h - n: the table's
     * symmetries (trig_symmetric) make cos(k (h - n)) = (-1)^k cos(k n) and sin(k (h - n)) =
     * -(-1)^k sin(k n) exactly, so row k needs only n <= h/2, on ap = a_n + a_(h-n) or
     * am = a_n - a_(h-n) by the parity of k (b likewise, the other way round); the middle n = h/2
     * enters once (ap = am = a_(h/2)). Then the DFT rows k <= h/2: even n (E) and odd n (O) apart. */
    {
        __m512i *a = z.a, *b = z.b;
        a[0] = b[0] = xw[0];
        a[h] = b[h] = xw[h];
        for (n = 1; n < h; n++) {
            a[n] = _mm512_add_epi64(xw[n], xw[N - n]);
            b[n] = _mm512_sub_epi64(xw[n], xw[N - n]);
        }
        for (n = 0; n < h / 2; n++) {
            ap[n] = _mm512_add_epi64(a[n], a[h - n]);
            am[n] = _mm512_sub_epi64(a[n], a[h - n]);
            bp[n] = _mm512_add_epi64(b[n], b[h - n]);
            bm[n] = _mm512_sub_epi64(b[n], b[h - n]);
        }
        ap[h / 2] = am[h / 2] = a[h / 2];
        bp[h / 2] = bm[h / 2] = b[h / 2];
    }
    for (k = 0; k <= h / 2; k++) {
        const int64_t *mr = mat + (size_t)(2 * k) * (size_t)L, *mi = mr + L;
        const __m512i *ar = k % 2 ? am : ap, *bi = k % 2 ? bp : bm;
        __m512i er = _mm512_setzero_si512(), orr = er, ei = er, oi = er, r, im, rr, ii;
        for (n = 0; n <= h / 2; n += 2) {
            er = _mm512_add_epi64(er, _mm512_mul_epi32(ar[n], _mm512_set1_epi64(mr[n])));
            ei = _mm512_add_epi64(ei, _mm512_mul_epi32(bi[n], _mm512_set1_epi64(mi[n])));
        }
        for (n = 1; n <= h / 2; n += 2) {
            orr = _mm512_add_epi64(orr, _mm512_mul_epi32(ar[n], _mm512_set1_epi64(mr[n])));
            oi = _mm512_add_epi64(oi, _mm512_mul_epi32(bi[n], _mm512_set1_epi64(mi[n])));
        }
        /* power of bins k and h - k (the same bin when k = h/2, where O = 0) */
        for (q = 0; q < 2; q++) {
            const int sh = W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM;
            r = q ? _mm512_sub_epi64(er, orr) : _mm512_add_epi64(er, orr);
            im = q ? _mm512_sub_epi64(oi, ei) : _mm512_add_epi64(ei, oi);
            rr = rshift_round_q(r, sh);
            ii = rshift_round_q(im, sh);
            pw[q ? h - k : k] = _mm512_add_epi64(_mm512_mul_epi32(rr, rr), _mm512_mul_epi32(ii, ii));
        }
    }
    for (k = 0; k <= h; k++) pmax = _mm512_max_epu64(pmax, pw[k]);
    /* block exponent e = max(0, bitlen(pmax) - pow_bits) of each frame; power rounded down by it */
    e = _mm512_max_epi64(_mm512_sub_epi64(_mm512_add_epi64(floor_log2_8(_mm512_max_epu64(pmax, one)), _mm512_maskz_mov_epi64(
                                              _mm512_test_epi64_mask(pmax, pmax), one)), _mm512_set1_epi64(w->pow_bits)),
                         _mm512_setzero_si512());
    {
        const __mmask8 any = _mm512_test_epi64_mask(e, e);
        const __m512i half = _mm512_maskz_sllv_epi64(any, one, _mm512_sub_epi64(e, one));
        for (k = 0; k <= h; k++) pw[k] = _mm512_srlv_epi64(_mm512_add_epi64(pw[k], half), e);
    }
    /* mel sums over the stored bands */
    {
        const uint16_t *mw = w->mel;
        for (j = 0; j < F; j++) {
            const int32_t first = w->mel_band[2 * j], count = w->mel_band[2 * j + 1];
            __m512i slo = _mm512_setzero_si512(), shi = slo;
            for (k = 0; k < count; k++) {
                const __m512i wk = _mm512_set1_epi64(mw[k]);
                slo = _mm512_add_epi64(slo, _mm512_mul_epu32(pw[first + k], wk));
                shi = _mm512_add_epi64(shi, _mm512_mul_epu32(_mm512_srli_epi64(pw[first + k], 32), wk));
            }
            m[j] = _mm512_add_epi64(slo, _mm512_slli_epi64(shi, 32));
            mw += count;
        }
    }
    /* log2 of every mel of the eight frames, W2S_LOG2_CHAINS chains of squarings at a time (m is
     * padded with zeros past F to a whole number of groups) */
    for (j = F; j < (F + W2S_LOG2_CHAINS - 1) / W2S_LOG2_CHAINS * W2S_LOG2_CHAINS; j++) m[j] = _mm512_setzero_si512();
    for (j = 0; j < F; j += W2S_LOG2_CHAINS) log2_chains(m + j, lg + j, W2S_LOG2_CHAINS);
    /* dB: L = lg + (e - mel_shift) 2^Q_LOG - log2_var, at least log_floor (log_floor where m = 0) */
    {
        const __m512i off = _mm512_sub_epi64(_mm512_slli_epi64(_mm512_sub_epi64(e, _mm512_set1_epi64(w->mel_shift)), W2S_Q_LOG),
                                             _mm512_set1_epi64(pn->log2_var));
        const __m512i fl = _mm512_set1_epi64(w->log_floor);
        const __m512i mu = _mm512_set1_epi32(w->db_mult), left = _mm512_set1_epi32(w->db_shift > 0 ? w->db_shift : 0);
        const __m512i right = _mm512_set1_epi32(w->db_shift > 0 ? 0 : -w->db_shift);
        int16_t(*res)[8] = z.res; /* [mel][frame], padded to whole groups of 32 mels */
        for (j = 0; j < F; j += 2) { /* two mels (sixteen int32 lanes) per requantization */
            __m256i l2[2];
            for (q = 0; q < 2; q++) {
                const __m512i mv = m[j + q < F ? j + q : j], lv = _mm512_max_epi64(_mm512_add_epi64(lg[j + q < F ? j + q : j], off), fl);
                l2[q] = _mm512_cvtepi64_epi32(_mm512_mask_blend_epi64(_mm512_test_epi64_mask(mv, mv), fl, lv));
            }
            _mm256_storeu_si256((__m256i *)res[j],
                                _mm512_cvtsepi32_epi16(requant16_l(_mm512_inserti64x4(_mm512_castsi256_si512(l2[0]), l2[1], 1),
                                                                   mu, left, right, w->db_shift > 0)));
        }
        /* the transpose to [frame][mel]: for each frame, 32 mels at a time, four two-vector
         * permutes of eight mels each (lane j takes element 8 j + q of its 64-element pair) */
        memset(res[F], 0, sizeof res[0] * (size_t)((F + 31) / 32 * 32 - F));
        for (j = 0; j < F; j += 32) {
            const int16_t *r = res[j];
            const __m512i base = _mm512_and_si512(_mm512_slli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                                                                     15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 3),
                                                  _mm512_set1_epi16(63));
            const __mmask32 keep = F - j >= 32 ? 0xFFFFFFFFu : (1u << (F - j)) - 1u;
            __m512i zr[8];
            int p2;
            for (p2 = 0; p2 < 8; p2++) zr[p2] = _mm512_loadu_si512(r + 32 * p2);
            for (q = 0; q < 8; q++) {
                const __m512i idx = _mm512_add_epi16(base, _mm512_set1_epi16((short)q));
                __m512i v = _mm512_maskz_permutex2var_epi16(0x000000FFu, zr[0], idx, zr[1]);
                v = _mm512_or_si512(v, _mm512_maskz_permutex2var_epi16(0x0000FF00u, zr[2], idx, zr[3]));
                v = _mm512_or_si512(v, _mm512_maskz_permutex2var_epi16(0x00FF0000u, zr[4], idx, zr[5]));
                v = _mm512_or_si512(v, _mm512_maskz_permutex2var_epi16(0xFF000000u, zr[6], idx, zr[7]));
                _mm512_mask_storeu_epi16(out + (size_t)q * (size_t)F + (size_t)j, keep, v);
            }
        }
    }
}

/* ---- kernel scratch of a model ----------------------------------------------------------------------- */

/* The largest layout of any kernel above for this model's calls: int8 conv layers have C_in = C_out
 * = channels and at most n_mels columns (fewer after the pool), layer 1 n_mels, the max-pool
 * n_mels columns, vox pooling (n_mels + 1) / 2. Each layout grows with its arguments. */
size_t w2s_x86_scratch_bytes(const w2s_config *c, int clip) {
    const int32_t F = c->n_mels, C = c->channels, F2 = (F + 1) / 2;
    conv_bufs cb;
    vnni_weights vw;
    l1_weights lw;
    vox512_bufs v5;
    vox2_bufs v2;
    uint8_t *u8;
    int16_t *i16, *j16;
    int8_t *i8;
    size_t n = conv_layout(F, C, C, NULL, &cb);
    n = w2s_max_size(n, sse41_layout(F, C, NULL, &i16, &j16));
    n = w2s_max_size(n, vnni_layout(F, C, C, clip ? 8 : 3, NULL, &vw, &u8)); /* a layer: eight slots */
    n = w2s_max_size(n, l1_layout(F, C, NULL, &lw, &i16));
    n = w2s_max_size(n, vox512_layout(C, F2, NULL, &v5));
    n = w2s_max_size(n, vox2_layout(C, F2, NULL, &v2));
    if (clip) n = w2s_max_size(n, pool512_layout(F, C, NULL, &i8)); /* whole maps only */
    return n;
}

#else
typedef int w2s_kernels_x86_unused; /* ISO C: no empty translation unit */
#endif
