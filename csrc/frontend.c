/*
 * frontend.c - prenorm, STFT power, mel filterbank and log, in integer arithmetic.
 *
 * The float model normalises the clip to zero mean and unit variance, then takes
 * 10 log10(mel power). Scaling the clip by 1/sigma only shifts the log, so here the clip is
 * centred (not scaled) and log2(variance + eps) is subtracted after the log:
 *
 *   d[n]  = pcm[n] * 2^Q_PCM - mean                         |d| < 2^20
 *   xw[n] = round(d[n] * window[n] / 2^(Q_TRIG + Q_PCM - Q_WINDOWED))   |xw| <= 2^24, Q8
 *   re_k  = round(sum_n xw[n] cos(2 pi k n / N) / 2^(Q_TRIG + Q_WINDOWED - Q_PCM))
 *                                                            sum < 2^62 (N <= 256), |re| < 2^28, Q4
 *   P_k   = re_k^2 + im_k^2                                 < 2^57, units (pcm * 2^Q_PCM)^2
 *   e     = max(0, bitlen(max_k P_k) - pow_bits)            block exponent of the frame
 *   M_j   = sum_k mel[j][k] * round(P_k / 2^e)              < 2^63 (checked at load);
 *           mel[j] is stored as its band of nonzero weights (format.c)
 *   L_j   = log2(M_j) + e - mel_shift - log2(var + eps)     Q_LOG, floored at log_floor
 *   out_j = requantize(L_j, db_mult, db_shift)              dB in Q_DB: 10 log10(2) * L_j
 */
#include "kernels.h"

static int32_t bit_length(uint64_t v) {
#if defined(__GNUC__)
    return v ? 64 - __builtin_clzll(v) : 0;
#else
    int32_t n = 0;
    if (v >> 32) { v >>= 32; n += 32; }
    if (v >> 16) { v >>= 16; n += 16; }
    if (v >> 8) { v >>= 8; n += 8; }
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
#endif
}

/* Does the cosine table have the symmetries of cos(2 pi i / N), c[N - i] = c[i] and
 * c[i + N/2] = -c[i], with N a multiple of 4? Every exported table has (it is rounded from
 * those values); the engine checks instead of assuming, as the table comes from the file. */
static int trig_symmetric(const int32_t *c, int32_t N) {
    int32_t i;
    if (N % 4) return 0;
    for (i = 1; i < N; i++)
        if (c[N - i] != c[i]) return 0;
    for (i = 0; i < N / 2; i++)
        if ((int64_t)c[i + N / 2] != -(int64_t)c[i]) return 0;
    return 1;
}

int32_t w2s_log2_q16(uint64_t v) {
    const int32_t msb = bit_length(v) - 1; /* v >= 1 */
    uint64_t x = msb >= 30 ? v >> (msb - 30) : v << (30 - msb); /* mantissa in [2^30, 2^31) */
    int32_t frac = 0, i;
    for (i = 1; i <= W2S_Q_LOG; i++) { /* each squaring doubles log2 of the mantissa: one bit */
        const uint64_t sq = (x * x) >> 30;
        const int32_t bit = (int32_t)(sq >> 31); /* square in [2^30, 2^32): bit set when >= 2 */
        x = sq >> bit;
        frac |= bit << (W2S_Q_LOG - i);
    }
    return (msb << W2S_Q_LOG) + frac;
}

w2s_prenorm w2s_prenorm_s16(const w2s_weights *w, const int16_t *pcm, size_t n) {
    w2s_prenorm pn;
    int64_t sum = 0;
    uint64_t sum2 = 0, sq; /* n <= 2^24: |sum| < 2^39, sum2 <= 2^54 */
    size_t i;
#if defined(W2S_DFT_SIMD)
    if (w2s_frame_avx512_ok(w->isa)) {
        w2s_sums_s16_avx512(pcm, n, &sum, &sum2);
    } else
#endif
    for (i = 0; i < n; i++) { /* one pass over the clip */
        const int32_t x = pcm[i];
        sum += x;
        sum2 += (uint32_t)(x * x);
    }
    pn.mean = (int32_t)w2s_div_round(sum * (1 << W2S_Q_PCM), (int64_t)n);
    /* sq = sum (16 x - mean)^2 = 256 sum2 - 32 mean sum + n mean^2, in uint64 arithmetic: the
     * true value is below 2^64 (n < 2^24 terms under 2^40), so the wrap-around of the partial
     * terms cancels and sq is exact, the same integer as summing the squares one by one */
    sq = (sum2 << (2 * W2S_Q_PCM)) - (((uint64_t)(int64_t)pn.mean * (uint64_t)sum) << (W2S_Q_PCM + 1)) +
         (uint64_t)n * ((uint64_t)(int64_t)pn.mean * (uint64_t)(int64_t)pn.mean);
    pn.log2_var = w2s_log2_q16((sq + n / 2) / n + (uint64_t)w->pcm_eps);
    return pn;
}

size_t w2s_logmel_scratch_bytes(const w2s_config *c) {
    return (size_t)c->n_fft * sizeof(int32_t) + (size_t)(c->n_fft / 2 + 1) * sizeof(uint64_t);
}

/* ---- per-call plan: what the tables allow (computed from the model, never assumed) ---------- */

typedef struct {
    int32_t sym;                     /* trig_symmetric(cosine) */
    const int64_t *mat;              /* SIMD DFT matrix (kernels.h), or NULL */
    int32_t avx512;                  /* the AVX-512 set's windowing, power, log2, dB (kernels.h) */
} fe_plan;

static void plan_init(const w2s_config *c, const w2s_weights *w, fe_plan *p) {
    p->sym = trig_symmetric(w->cosine, c->n_fft);
    p->mat = NULL;
    p->avx512 = 0;
}

/* ---- one frame ------------------------------------------------------------------------------------ */

static void frame_s16(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                      const fe_plan *p, const int16_t *frame, void *scratch, int16_t *out) {
    const int32_t N = c->n_fft, bins = N / 2 + 1, quarter = N / 4, h = N / 2;
    uint64_t *power = (uint64_t *)scratch;             /* (bins) */
    int32_t *xw = (int32_t *)(power + bins);           /* (N) windowed, centred samples */
    uint64_t pmax = 0;
    int32_t n, k, j, e;

#if defined(W2S_DFT_SIMD)
    if (p->avx512)
        w2s_window_avx512(frame, pn->mean, w->window, N, xw);
    else
#endif
        for (n = 0; n < N; n++) {
            const int64_t d = (int64_t)frame[n] * (1 << W2S_Q_PCM) - pn->mean;
            xw[n] = (int32_t)w2s_rshift_round(d * (int64_t)w->window[n], W2S_Q_TRIG + W2S_Q_PCM - W2S_Q_WINDOWED);
        }
    if (p->sym) {
        /* the same sums, pairing n with N - n: with the symmetries of trig_symmetric,
         * cos(k (N - n)) = cos(k n) and sin(k (N - n)) = -sin(k n) hold for the table values
         * exactly, so re_k = sum_{n <= N/2} a[n] c(k n), im_k = sum_{n <= N/2} b[n] s(k n) with
         * a = b = xw at n = 0 and N/2, a[n] = xw[n] + xw[N-n], b[n] = xw[n] - xw[N-n] between:
         * half the products, the same integers */
        int64_t ab[2 * (W2S_MAX_FFT / 2 + 4)]; /* a then b, |.| <= 2^25, zero-padded */
        int64_t *a = ab, *b = ab + W2S_MAX_FFT / 2 + 4;
        int64_t re[W2S_MAX_FFT / 2 + 1], im[W2S_MAX_FFT / 2 + 1];
        a[0] = b[0] = xw[0];
        a[h] = b[h] = xw[h];
        for (n = 1; n < h; n++) {
            a[n] = (int64_t)xw[n] + xw[N - n];
            b[n] = (int64_t)xw[n] - xw[N - n];
        }
        for (n = h + 1; n < h + 4; n++) a[n] = b[n] = 0;
#if defined(W2S_DFT_SIMD)
        if (p->mat) {
            w2s_dft_simd(p->mat, h, a, b, re, im);
        } else
#endif
        {
            for (k = 0; k < bins; k++) {
                int32_t ic = 0, is = 3 * quarter; /* k n and k n + 3N/4, mod N */
                re[k] = im[k] = 0;
                for (n = 0; n <= h; n++) {
                    re[k] += a[n] * w->cosine[ic];
                    im[k] += b[n] * w->cosine[is];
                    ic += k;
                    if (ic >= N) ic -= N;
                    is += k;
                    if (is >= N) is -= N;
                }
            }
        }
#if defined(W2S_DFT_SIMD)
        if (p->avx512)
            pmax = w2s_power_avx512(re, im, bins, power);
        else
#endif
            for (k = 0; k < bins; k++) {
                const int64_t r = w2s_rshift_round(re[k], W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM);
                const int64_t i = w2s_rshift_round(im[k], W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM);
                power[k] = (uint64_t)(r * r) + (uint64_t)(i * i);
                if (power[k] > pmax) pmax = power[k];
            }
    } else { /* direct DFT, for a table without those symmetries */
        for (k = 0; k < bins; k++) {
            int64_t re = 0, im = 0;
            int32_t idx = 0; /* k * n mod N */
            for (n = 0; n < N; n++) {
                re += (int64_t)xw[n] * w->cosine[idx];
                im += (int64_t)xw[n] * w->cosine[(idx + 3 * quarter) % N]; /* sin x = cos(x - pi/2) */
                idx += k;
                if (idx >= N) idx -= N;
            }
            re = w2s_rshift_round(re, W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM);
            im = w2s_rshift_round(im, W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM);
            power[k] = (uint64_t)(re * re) + (uint64_t)(im * im);
            if (power[k] > pmax) pmax = power[k];
        }
    }
    /* block exponent: shift loud frames so the mel sums fit in 64 bits */
    e = bit_length(pmax) - w->pow_bits;
    if (e < 0) e = 0;
    for (k = 0; k < bins; k++) power[k] = e ? (power[k] + ((uint64_t)1 << (e - 1))) >> e : power[k];

    {
        uint64_t m[W2S_MAX_MELS];
        int32_t lg[W2S_MAX_MELS];
        const uint16_t *mw = w->mel; /* the bands' weights, one band after the other */
        for (j = 0; j < c->n_mels; j++) {
            const uint64_t *pw = power + w->mel_band[2 * j];
            const int32_t count = w->mel_band[2 * j + 1];
            m[j] = 0;
            for (k = 0; k < count; k++) m[j] += (uint64_t)mw[k] * pw[k];
            mw += count;
        }
#if defined(W2S_DFT_SIMD)
        if (p->avx512)
            w2s_log2_q16_avx512(m, c->n_mels, lg);
        else if (p->mat) /* the SIMD build's frames: the same log2, four at a time */
            w2s_log2_q16_simd(m, c->n_mels, lg);
        else
#endif
            for (j = 0; j < c->n_mels; j++) lg[j] = m[j] ? w2s_log2_q16(m[j]) : 0;
#if defined(W2S_DFT_SIMD)
        if (p->avx512)
            w2s_db_avx512(m, lg, c->n_mels, (e - w->mel_shift) * (1 << W2S_Q_LOG) - pn->log2_var, w->log_floor,
                          w->db_mult, w->db_shift, out);
        else
#endif
            for (j = 0; j < c->n_mels; j++) {
                int32_t L;
                if (m[j] == 0) {
                    L = w->log_floor;
                } else {
                    L = lg[j] + (e - w->mel_shift) * (1 << W2S_Q_LOG) - pn->log2_var;
                    if (L < w->log_floor) L = w->log_floor;
                }
                out[j] = w2s_sat16(w2s_requantize(L, w->db_mult, w->db_shift));
            }
    }
}

void w2s_logmel_frame_s16(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                          const int16_t *frame, void *scratch, int16_t *out) {
    fe_plan p;
    plan_init(c, w, &p);
    frame_s16(c, w, pn, &p, frame, scratch, out);
}

#if defined(W2S_DFT_SIMD)
/* kernel scratch: the DFT matrix of this n_fft, then w2s_logmel8_avx512's buffers */
static size_t fe_layout(const w2s_config *c, void *scratch, int64_t **mat, void **rest) {
    w2s_carve k;
    w2s_carve_init(&k, scratch);
    *mat = (int64_t *)w2s_carve_take(&k, W2S_DFT_MAT_WORDS_OF(c->n_fft / 2) * sizeof(int64_t));
    *rest = w2s_carve_take(&k, w2s_logmel8_scratch_bytes(c));
    return w2s_carve_bytes(&k);
}

size_t w2s_logmel_kernel_scratch_bytes(const w2s_config *c) {
    int64_t *mat;
    void *rest;
    return c->n_fft <= W2S_DFT_MAT_MAX_N ? fe_layout(c, NULL, &mat, &rest) : 0; /* larger: scalar DFT */
}
#endif

void w2s_logmel_frames_s16(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                           const int16_t *pcm, int32_t n_frames, void *scratch, void *kernel,
                           int16_t *out) {
    fe_plan p;
    int32_t t;
#if defined(W2S_DFT_SIMD)
    int64_t *mat = NULL;
    void *rest = NULL;
#endif
    plan_init(c, w, &p);
#if defined(W2S_DFT_SIMD)
    if (p.sym && c->n_fft <= W2S_DFT_MAT_MAX_N && w2s_dft_simd_ok(w->isa)) {
        fe_layout(c, kernel, &mat, &rest);
        w2s_dft_matrix(w->cosine, c->n_fft, mat);
        p.mat = mat;
        p.avx512 = w2s_frame_avx512_ok(w->isa);
    }
#else
    (void)kernel;
#endif
    t = 0;
#if defined(W2S_DFT_SIMD)
    if (p.avx512 && mat[W2S_DFT_MAT_WORDS_OF(c->n_fft / 2) - 1]) /* eight frames in the lanes, the rest one by one */
        for (; t + 8 <= n_frames; t += 8)
            w2s_logmel8_avx512(c, w, pn, mat, pcm + (size_t)t * (size_t)c->hop, out + (size_t)t * (size_t)c->n_mels,
                               rest);
#endif
    for (; t < n_frames; t++)
        frame_s16(c, w, pn, &p, pcm + (size_t)t * (size_t)c->hop, scratch, out + (size_t)t * (size_t)c->n_mels);
}
