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
 *   M_j   = sum_k mel[j][k] * round(P_k / 2^e)              < 2^63 (checked at load)
 *   L_j   = log2(M_j) + e - mel_shift - log2(var + eps)     Q_LOG, floored at log_floor
 *   out_j = requantize(L_j, db_mult, db_shift)              dB in Q_DB: 10 log10(2) * L_j
 */
#include "requant.h"
#include "w2s_internal.h"

static int32_t bit_length(uint64_t v) {
    int32_t n = 0;
    while (v) {
        v >>= 1;
        n++;
    }
    return n;
}

int32_t w2s_log2_q16(uint64_t v) {
    const int32_t msb = bit_length(v) - 1; /* v >= 1 */
    uint64_t x = msb >= 30 ? v >> (msb - 30) : v << (30 - msb); /* mantissa in [2^30, 2^31) */
    int32_t frac = 0, i;
    for (i = 1; i <= W2S_Q_LOG; i++) { /* each squaring doubles log2 of the mantissa: one bit */
        x = (x * x) >> 30;
        if (x >= ((uint64_t)1 << 31)) {
            x >>= 1;
            frac |= 1 << (W2S_Q_LOG - i);
        }
    }
    return (msb << W2S_Q_LOG) + frac;
}

w2s_prenorm w2s_prenorm_s16(const w2s_weights *w, const int16_t *pcm, size_t n) {
    w2s_prenorm pn;
    int64_t sum = 0;
    uint64_t sq = 0; /* n < 2^24 and d^2 < 2^40: no overflow */
    size_t i;
    for (i = 0; i < n; i++) sum += pcm[i];
    pn.mean = (int32_t)w2s_div_round(sum * (1 << W2S_Q_PCM), (int64_t)n);
    for (i = 0; i < n; i++) {
        const int64_t d = (int64_t)pcm[i] * (1 << W2S_Q_PCM) - pn.mean;
        sq += (uint64_t)(d * d);
    }
    pn.log2_var = w2s_log2_q16((sq + n / 2) / n + (uint64_t)w->pcm_eps);
    return pn;
}

size_t w2s_logmel_scratch_bytes(const w2s_config *c) {
    return (size_t)c->n_fft * sizeof(int32_t) + (size_t)(c->n_fft / 2 + 1) * sizeof(uint64_t);
}

void w2s_logmel_frame_s16(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                          const int16_t *frame, void *scratch, int16_t *out) {
    const int32_t N = c->n_fft, bins = N / 2 + 1, quarter = N / 4;
    uint64_t *power = (uint64_t *)scratch;             /* (bins) */
    int32_t *xw = (int32_t *)(power + bins);           /* (N) windowed, centred samples */
    uint64_t pmax = 0;
    int32_t n, k, j, e;

    for (n = 0; n < N; n++) {
        const int64_t d = (int64_t)frame[n] * (1 << W2S_Q_PCM) - pn->mean;
        xw[n] = (int32_t)w2s_rshift_round(d * (int64_t)w->window[n], W2S_Q_TRIG + W2S_Q_PCM - W2S_Q_WINDOWED);
    }
    /* direct DFT: 33 bins of 64 points cost less than 4% of the conv stack */
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
    /* block exponent: shift loud frames so the mel sums fit in 64 bits */
    e = bit_length(pmax) - w->pow_bits;
    if (e < 0) e = 0;
    for (k = 0; k < bins; k++) power[k] = e ? (power[k] + ((uint64_t)1 << (e - 1))) >> e : power[k];

    for (j = 0; j < c->n_mels; j++) {
        const uint16_t *mw = w->mel + (size_t)j * bins;
        uint64_t m = 0;
        int32_t L;
        for (k = 0; k < bins; k++) m += (uint64_t)mw[k] * power[k];
        if (m == 0) {
            L = w->log_floor;
        } else {
            L = w2s_log2_q16(m) + (e - w->mel_shift) * (1 << W2S_Q_LOG) - pn->log2_var;
            if (L < w->log_floor) L = w->log_floor;
        }
        out[j] = w2s_sat16(w2s_requantize(L, w->db_mult, w->db_shift));
    }
}
