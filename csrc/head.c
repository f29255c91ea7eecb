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
 * more rows of W), and the decision is integer comparisons on them: no exp, no division.
 */
#include "requant.h"
#include "w2s_internal.h"

/* The decision rule, once (w2s.h): speech first (the speech logit, the modulation and the
 * steadiness), then the largest log-sigma. */
static w2s_decision decide(const w2s_config *c, const w2s_output *out, const w2s_thresholds *t) {
    const int32_t n = (c->n_outputs - 1) / 2;
    const int32_t *value = out->value;
    int32_t d;
    if (!(c->flags & W2S_FLAG_UNCERTAINTY)) return W2S_NO_DECISION;
    if (value[2 * n] < t->min_speech_logit || out->modulation < t->min_modulation ||
        ((c->flags & W2S_FLAG_STEADY) && out->steady > t->max_steady))
        return W2S_NO_SPEECH;
    for (d = 0; d < n; d++)
        if (value[n + d] > t->max_log_sigma) return W2S_TOO_UNCERTAIN;
    return W2S_RELIABLE;
}

/* The two sums of one output over [P, G], for either weight width (w16 or w8, the other NULL):
 * one plain loop, as the head is 7 x 338 products, and its code counts on a Cortex-M4 (docs/engine.md). */
static void head_sums(const int16_t *w16, const int8_t *w8, int32_t C, int32_t F2, const int16_t *pooled,
                      const int16_t *gram, int64_t *ap, int64_t *ag) {
    const int32_t row = F2 + C;
    int32_t ch, j;
    for (ch = 0; ch < C; ch++) {
        for (j = 0; j < row; j++) {
            const int32_t i = ch * row + j, wt = w16 ? w16[i] : w8[i];
            if (j < F2) *ap += (int64_t)wt * pooled[ch * F2 + j];
            else *ag += (int64_t)wt * gram[ch * C + j - F2];
        }
    }
}

void w2s_head(const w2s_config *c, const w2s_weights *w, const int16_t *pooled,
              const int16_t *gram, int32_t modulation, int32_t steady, w2s_output *out) {
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2, row = F2 + C, wide = w2s_head_wide_rows(c);
    int32_t k, part;
    for (k = 0; k < c->n_outputs; k++) {
        int64_t a[2] = {0, 0}, y = w->head_b[k];
        head_sums(k < wide ? w->head_w + (size_t)k * C * row : NULL,
                  k < wide ? NULL : w->head_uw + (size_t)(k - wide) * C * row, C, F2, pooled, gram, &a[0], &a[1]);
        for (part = 0; part < 2; part++) { /* the pooled part, then the Gram part: one copy of the code */
            const int32_t *mult = part ? w->head_mult_g : w->head_mult_p, *shift = part ? w->head_shift_g : w->head_shift_p;
            const int32_t x = w2s_sat32(w2s_rshift_round(a[part], part ? w->head_pre_shift_g : w->head_pre_shift_p));
            y += w2s_requantize(x, mult[k], shift[k]);
        }
        out->value[k] = w2s_sat32(y);
    }
    for (; k < W2S_MAX_OUTPUTS; k++) out->value[k] = 0; /* the whole struct is defined */
    out->n_outputs = c->n_outputs;
    out->frac_bits = c->out_frac_bits;
    out->modulation = c->flags & W2S_FLAG_UNCERTAINTY ? modulation : 0;
    out->steady = c->flags & W2S_FLAG_STEADY ? steady : 0;
    out->decision = (int32_t)decide(c, out, &w->thresholds);
}

w2s_status w2s_default_thresholds(const w2s_model *model, w2s_thresholds *thresholds) {
    if (!thresholds) return W2S_ERR_ARG;
    thresholds->max_log_sigma = thresholds->min_speech_logit = thresholds->min_modulation = 0;
    thresholds->max_steady = W2S_STEADY_ONE;
    if (!model || !(model->config.flags & W2S_FLAG_UNCERTAINTY)) return W2S_ERR_ARG;
    *thresholds = model->w.thresholds;
    return W2S_OK;
}

w2s_decision w2s_decide(const w2s_model *model, const w2s_output *out, const w2s_thresholds *thresholds) {
    if (!model || !out || !thresholds || out->n_outputs != model->config.n_outputs ||
        out->frac_bits != model->config.out_frac_bits)
        return W2S_NO_DECISION;
    return decide(&model->config, out, thresholds);
}
