/*
 * head.c - the linear head on [P, G] (= model.adv), int16 weights and features.
 *
 * Feature i = c * (F' + C) + j is P[c][j] for j < F' and G[c][j - F'] otherwise (the flatten order
 * of the float model). P and G have their own scales, so each output sums the two parts apart:
 *   a_p = sum W * P, a_g = sum W * G        int64: 64 * 128 terms of 2^30 < 2^43
 * W is int16 for the values and int8 for an uncertainty head's rows (w2s_head_wide_rows); the
 * per-row multipliers absorb the difference in scale, the arithmetic is the same.
 *   out = requantize(round(a_p / 2^pre_p)) + requantize(round(a_g / 2^pre_g)) + bias
 * in output units (value / 2^out_frac_bits).
 *
 * With an uncertainty head the same sums give the log-sigmas and the speech logit (they are just
 * more rows of W), and the decision is two integer comparisons on them: no exp, no division.
 */
#include "requant.h"
#include "w2s_internal.h"

/* The decision rule, once (w2s.h): speech first, then the largest log-sigma. */
static w2s_decision decide(const w2s_config *c, const int32_t *value, const w2s_thresholds *t) {
    const int32_t n = (c->n_outputs - 1) / 2;
    int32_t d;
    if (!(c->flags & W2S_FLAG_UNCERTAINTY)) return W2S_NO_DECISION;
    if (value[2 * n] < t->min_speech_logit) return W2S_NO_SPEECH;
    for (d = 0; d < n; d++)
        if (value[n + d] > t->max_log_sigma) return W2S_TOO_UNCERTAIN;
    return W2S_RELIABLE;
}

/* The two sums of one output over [P, G]; one body for both weight widths. */
#define HEAD_SUMS(wk)                                                                           \
    for (ch = 0; ch < C; ch++) {                                                                \
        for (j = 0; j < F2; j++) ap += (int64_t)(wk)[ch * row + j] * pooled[ch * F2 + j];       \
        for (j = 0; j < C; j++) ag += (int64_t)(wk)[ch * row + F2 + j] * gram[ch * C + j];      \
    }

void w2s_head(const w2s_config *c, const w2s_weights *w, const int16_t *pooled,
              const int16_t *gram, w2s_output *out) {
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2, row = F2 + C, wide = w2s_head_wide_rows(c);
    int32_t k, ch, j;
    for (k = 0; k < c->n_outputs; k++) {
        int64_t ap = 0, ag = 0, y;
        int32_t p32, g32;
        if (k < wide) {
            HEAD_SUMS(w->head_w + (size_t)k * C * row)
        } else {
            HEAD_SUMS(w->head_uw + (size_t)(k - wide) * C * row)
        }
        p32 = w2s_sat32(w2s_rshift_round(ap, w->head_pre_shift_p));
        g32 = w2s_sat32(w2s_rshift_round(ag, w->head_pre_shift_g));
        y = (int64_t)w2s_requantize(p32, w->head_mult_p[k], w->head_shift_p[k]) +
            w2s_requantize(g32, w->head_mult_g[k], w->head_shift_g[k]) + w->head_b[k];
        out->value[k] = w2s_sat32(y);
    }
    for (; k < W2S_MAX_OUTPUTS; k++) out->value[k] = 0; /* the whole struct is defined */
    out->n_outputs = c->n_outputs;
    out->frac_bits = c->out_frac_bits;
    out->decision = (int32_t)decide(c, out->value, &w->thresholds);
}

w2s_status w2s_default_thresholds(const w2s_model *model, w2s_thresholds *thresholds) {
    if (!thresholds) return W2S_ERR_ARG;
    thresholds->max_log_sigma = thresholds->min_speech_logit = 0;
    if (!model || !(model->config.flags & W2S_FLAG_UNCERTAINTY)) return W2S_ERR_ARG;
    *thresholds = model->w.thresholds;
    return W2S_OK;
}

w2s_decision w2s_decide(const w2s_model *model, const w2s_output *out, const w2s_thresholds *thresholds) {
    if (!model || !out || !thresholds || out->n_outputs != model->config.n_outputs ||
        out->frac_bits != model->config.out_frac_bits)
        return W2S_NO_DECISION;
    return decide(&model->config, out->value, thresholds);
}
