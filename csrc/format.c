/*
 * format.c - the model file: layout, validation, views into the caller's buffer.
 *
 * docs/format.md specifies the file. The layout is defined once, by w2s_layout(): the loader
 * below, the Python binding (tensor views for tests) and the Python writer (via the binding)
 * all walk the same list, so the three can't disagree.
 */
#include <string.h>

#include "requant.h"
#include "w2s_internal.h"

/* ---- little-endian reads (the header is read byte-wise, so any host works) ------------------ */

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

uint32_t w2s_crc32(const uint8_t *data, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        crc ^= data[i];
        for (k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- layout -------------------------------------------------------------------------------------- */

int32_t w2s_head_wide_rows(const w2s_config *c) {
    return (c->flags & W2S_FLAG_UNCERTAINTY) ? (c->n_outputs - 1) / 2 : c->n_outputs;
}

static const size_t dtype_bytes[] = {1, 2, 2, 4, 4}; /* indexed by w2s_dtype */

typedef struct {
    size_t offset;
    w2s_tensor_fn visit;
    void *user;
} layout_cursor;

static void put(layout_cursor *cur, const char *name, int32_t layer, w2s_dtype dt, int32_t ndim,
                int32_t d0, int32_t d1, int32_t d2, int32_t d3) {
    w2s_tensor t;
    size_t count = 1;
    int32_t i;
    t.name = name;
    t.layer = layer;
    t.dtype = dt;
    t.ndim = ndim;
    t.dims[0] = d0; t.dims[1] = d1; t.dims[2] = d2; t.dims[3] = d3;
    for (i = 0; i < ndim; i++) count *= (size_t)t.dims[i];
    t.offset = cur->offset;
    t.bytes = count * dtype_bytes[dt];
    cur->offset += (t.bytes + 3u) & ~(size_t)3u; /* every tensor starts 4-byte aligned */
    if (cur->visit) cur->visit(cur->user, &t);
}

/* The one-dimensional tensors outside the conv stack: most of the list, in four arguments a call
 * (on a Cortex-M, all in registers: the list's code shrinks by a third). */
static void put1(layout_cursor *cur, const char *name, w2s_dtype dt, int32_t d0) {
    put(cur, name, 0, dt, 1, d0, 0, 0, 0);
}

/* Runs of int32 vectors of one length, in file order (a loop each: the list is code on a Cortex-M) */
static const char *const conv_vectors[3] = {"conv.bias", "conv.mult", "conv.shift"};
static const char *const vox_vectors[5] = {"vox.sof_b", "vox.sof_mult", "vox.sof_shift", "vox.pool_mult",
                                           "vox.pool_shift"};
static const char *const head_vectors[5] = {"head.b", "head.mult_p", "head.shift_p", "head.mult_g", "head.shift_g"};

size_t w2s_layout(const w2s_config *c, w2s_tensor_fn visit, void *user) {
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2, wide = w2s_head_wide_rows(c);
    layout_cursor cur;
    int32_t l, k;
    cur.offset = W2S_HEADER_BYTES;
    cur.visit = visit;
    cur.user = user;
    /* front end */
    put1(&cur, "front.params", W2S_DT_I32, 6);
    put1(&cur, "window", W2S_DT_I32, c->n_fft);
    put1(&cur, "cosine", W2S_DT_I32, c->n_fft);
    put(&cur, "mel.band", 0, W2S_DT_U16, 2, c->n_mels, 2, 0, 0);
    put1(&cur, "mel", W2S_DT_U16, c->mel_weights);
    /* conv stack */
    for (l = 1; l <= c->n_layers; l++) {
        put(&cur, "conv.params", l, W2S_DT_I32, 1, 4, 0, 0, 0);
        put(&cur, "conv.w", l, W2S_DT_I8, 4, C, 3, 3, l == 1 ? 1 : C);
        for (k = 0; k < 3; k++) put(&cur, conv_vectors[k], l, W2S_DT_I32, 1, C, 0, 0, 0); /* bias, mult, shift */
    }
    /* vox pooling */
    put1(&cur, "vox.params", W2S_DT_I32, 3);
    put(&cur, "vox.lin_w", 0, W2S_DT_I16, 2, C, C, 0, 0);
    put1(&cur, "vox.lin_b", W2S_DT_I32, C);
    put(&cur, "vox.sof_w", 0, W2S_DT_I8, 2, C, C, 0, 0);
    for (k = 0; k < 5; k++) put1(&cur, vox_vectors[k], W2S_DT_I32, C);
    put1(&cur, "vox.exp_lut", W2S_DT_U32, W2S_EXP_LUT_SIZE);
    /* head */
    put1(&cur, "head.params", W2S_DT_I32, 2);
    put(&cur, "head.w", 0, W2S_DT_I16, 3, wide, C, F2 + C, 0);
    if (c->n_outputs > wide) put(&cur, "head.uw", 0, W2S_DT_I8, 3, c->n_outputs - wide, C, F2 + C, 0);
    for (k = 0; k < 5; k++) put1(&cur, head_vectors[k], W2S_DT_I32, c->n_outputs);
    if (c->flags & W2S_FLAG_UNCERTAINTY) put1(&cur, "decide.params", W2S_DT_I32, 4);
    if (c->flags & W2S_FLAG_STEADY) put1(&cur, "decide.steady", W2S_DT_I32, 4);
    return cur.offset;
}

/* ---- loading --------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *base;
    w2s_weights *w;
    const int32_t *front, *vox, *head, *decide, *steady; /* parameter blocks, unpacked after the walk */
    const int32_t *conv_params[W2S_MAX_LAYERS + 1];
} bind_ctx;

#define IS(name_) (strcmp(t->name, name_) == 0)

static void bind_tensor(void *user, const w2s_tensor *t) {
    bind_ctx *b = (bind_ctx *)user;
    w2s_weights *w = b->w;
    const void *p = b->base + t->offset;
    if (t->layer > 0) {
        w2s_conv_layer *l = &w->layer[t->layer - 1];
        if (IS("conv.params")) b->conv_params[t->layer] = (const int32_t *)p;
        else if (IS("conv.w")) l->w = (const int8_t *)p;
        else if (IS("conv.bias")) l->bias = (const int32_t *)p;
        else if (IS("conv.mult")) l->mult = (const int32_t *)p;
        else if (IS("conv.shift")) l->shift = (const int32_t *)p;
        return;
    }
    if (IS("front.params")) b->front = (const int32_t *)p;
    else if (IS("window")) w->window = (const int32_t *)p;
    else if (IS("cosine")) w->cosine = (const int32_t *)p;
    else if (IS("mel.band")) w->mel_band = (const uint16_t *)p;
    else if (IS("mel")) w->mel = (const uint16_t *)p;
    else if (IS("vox.params")) b->vox = (const int32_t *)p;
    else if (IS("vox.lin_w")) w->lin_w = (const int16_t *)p;
    else if (IS("vox.lin_b")) w->lin_b = (const int32_t *)p;
    else if (IS("vox.sof_w")) w->sof_w = (const int8_t *)p;
    else if (IS("vox.sof_b")) w->sof_b = (const int32_t *)p;
    else if (IS("vox.sof_mult")) w->sof_mult = (const int32_t *)p;
    else if (IS("vox.sof_shift")) w->sof_shift = (const int32_t *)p;
    else if (IS("vox.pool_mult")) w->pool_mult = (const int32_t *)p;
    else if (IS("vox.pool_shift")) w->pool_shift = (const int32_t *)p;
    else if (IS("vox.exp_lut")) w->exp_lut = (const uint32_t *)p;
    else if (IS("head.params")) b->head = (const int32_t *)p;
    else if (IS("head.w")) w->head_w = (const int16_t *)p;
    else if (IS("head.uw")) w->head_uw = (const int8_t *)p;
    else if (IS("head.b")) w->head_b = (const int32_t *)p;
    else if (IS("head.mult_p")) w->head_mult_p = (const int32_t *)p;
    else if (IS("head.shift_p")) w->head_shift_p = (const int32_t *)p;
    else if (IS("head.mult_g")) w->head_mult_g = (const int32_t *)p;
    else if (IS("head.shift_g")) w->head_shift_g = (const int32_t *)p;
    else if (IS("decide.params")) b->decide = (const int32_t *)p;
    else if (IS("decide.steady")) b->steady = (const int32_t *)p;
}

static int in_range(int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; }

/* A requantization multiplier/shift pair as w2s_requantize accepts it. */
static int quant_ok(const int32_t *mult, const int32_t *shift, int32_t n) {
    int32_t i;
    for (i = 0; i < n; i++)
        if (mult[i] < 0 || !in_range(shift[i], -31, 30)) return 0;
    return 1;
}

static int all_in_range(const int32_t *v, int32_t n, int64_t lo, int64_t hi) {
    int32_t i;
    for (i = 0; i < n; i++)
        if (!in_range(v[i], lo, hi)) return 0;
    return 1;
}

static int config_ok(const w2s_config *c) {
    return in_range(c->sample_rate, 1, 384000) && in_range(c->n_fft, 8, W2S_MAX_FFT) &&
           c->n_fft % 4 == 0 && in_range(c->hop, 1, c->n_fft) &&
           in_range(c->n_mels, 1, W2S_MAX_MELS) && in_range(c->channels, 1, W2S_MAX_CHANNELS) &&
           in_range(c->n_layers, 1, W2S_MAX_LAYERS) && in_range(c->pool_after, 1, c->n_layers) &&
           in_range(c->n_outputs, 1, W2S_MAX_OUTPUTS) && in_range(c->out_frac_bits, 0, 30) &&
           in_range(c->mel_weights, 0, (int64_t)c->n_mels * (c->n_fft / 2 + 1)) &&
           (c->flags & ~W2S_KNOWN_FLAGS) == 0 &&
           /* an uncertainty head: n values, n log-sigmas, one speech logit */
           (!(c->flags & W2S_FLAG_UNCERTAINTY) || (c->n_outputs >= 3 && c->n_outputs % 2 == 1)) &&
           /* the steadiness is a part of the uncertainty head's decision */
           (!(c->flags & W2S_FLAG_STEADY) || (c->flags & W2S_FLAG_UNCERTAINTY));
}

/* Value ranges that keep every accumulator of the engine inside its type (docs/numerics.md). */
static int values_ok(const w2s_config *c, const w2s_weights *w) {
    const int32_t C = c->channels, bins = c->n_fft / 2 + 1;
    int32_t l, j, k, used;
    for (k = 0; k < c->n_fft; k++) /* |table| <= 1.0 keeps the DFT sums inside 64 bits */
        if (!in_range(w->window[k], -(1L << W2S_Q_TRIG), 1L << W2S_Q_TRIG) ||
            !in_range(w->cosine[k], -(1L << W2S_Q_TRIG), 1L << W2S_Q_TRIG))
            return 0;
    if (w->pcm_eps < 1 || !in_range(w->mel_shift, 0, 31) || !in_range(w->pow_bits, 1, 62) ||
        !in_range(w->log_floor, -64L * 65536, 0) || !quant_ok(&w->db_mult, &w->db_shift, 1))
        return 0;
    for (j = 0, used = 0; j < c->n_mels; j++) { /* bands inside the spectrum, using every weight */
        const int32_t first = w->mel_band[2 * j], count = w->mel_band[2 * j + 1];
        uint64_t row = 0;
        if (first + count > bins || used + count > c->mel_weights) return 0;
        for (k = 0; k < count; k++) row += w->mel[used + k];
        if (row >= ((uint64_t)1 << (63 - w->pow_bits))) return 0; /* sum of powers < 2^pow_bits: < 2^63 */
        used += count;
    }
    if (used != c->mel_weights) return 0;
    for (l = 0; l < c->n_layers; l++) {
        const w2s_conv_layer *L = &w->layer[l];
        const int64_t in_lim = l == 0 ? 32768 : 128; /* layer 1 reads int16, the others int8 */
        if (!in_range(L->input_offset, -in_lim, in_lim) || !in_range(L->output_offset, -128, 127) ||
            !in_range(L->act_min, -128, 127) || !in_range(L->act_max, L->act_min, 127) ||
            !all_in_range(L->bias, C, -(1L << 30), 1L << 30) || !quant_ok(L->mult, L->shift, C))
            return 0;
    }
    if (!in_range(w->vox_input_offset, -128, 128) || !in_range(w->gram_shift, 0, 62) ||
        !in_range(w->value_shift, 0, 31) || !all_in_range(w->lin_b, C, -(1L << 29), 1L << 29) ||
        !all_in_range(w->sof_b, C, -(1L << 21), 1L << 21) ||
        !quant_ok(w->sof_mult, w->sof_shift, C) || !quant_ok(w->pool_mult, w->pool_shift, C))
        return 0;
    for (k = 0; k < C; k++) { /* worst-case value of each channel, after its shift: < 2^22 */
        int64_t worst = w->lin_b[k] < 0 ? -(int64_t)w->lin_b[k] : w->lin_b[k];
        for (j = 0; j < C; j++) {
            const int32_t wt = w->lin_w[k * C + j];
            worst += 256 * (int64_t)(wt < 0 ? -wt : wt); /* |x + input_offset| <= 256 */
        }
        if (worst >= ((int64_t)1 << (22 + w->value_shift))) return 0;
    }
    /* 2^0 = 1.0 at most, then falling to 2^-1 = 0.5 at least: the newest maximum of every vox
     * cell then weighs >= 2^19 in Q_EXP, so the softmax sum is never 0 (vox.c divides by it) */
    if (w->exp_lut[0] > (1u << W2S_Q_EXP_LUT) || w->exp_lut[W2S_EXP_LUT_SIZE - 1] < (1u << (W2S_Q_EXP_LUT - 1)))
        return 0;
    for (k = 1; k < W2S_EXP_LUT_SIZE; k++)
        if (w->exp_lut[k] > w->exp_lut[k - 1]) return 0;
    if (!in_range(w->head_pre_shift_p, 0, 62) || !in_range(w->head_pre_shift_g, 0, 62) ||
        !quant_ok(w->head_mult_p, w->head_shift_p, c->n_outputs) ||
        !quant_ok(w->head_mult_g, w->head_shift_g, c->n_outputs))
        return 0;
    /* the modulation's block bounds its sums (modulation.c); a threshold above any int16 level
     * range would only ever say "no speech" */
    if ((c->flags & W2S_FLAG_UNCERTAINTY) &&
        (!in_range(w->mod_block, 1, W2S_MAX_MOD_BLOCK) || !in_range(w->thresholds.min_modulation, 0, 32767)))
        return 0;
    /* the steadiness's block bounds its sums and its level is a log-mel value (modulation.c) */
    if ((c->flags & W2S_FLAG_STEADY) &&
        (!in_range(w->steady_block, 1, W2S_MAX_MOD_BLOCK) || !in_range(w->steady_level, -32768, 32767) ||
         !in_range(w->steady_cos2, 0, W2S_STEADY_COS2_ONE) || !in_range(w->thresholds.max_steady, 0, W2S_STEADY_ONE)))
        return 0;
    return 1;
}

static int little_endian_host(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

int w2s_model_ready(const w2s_model *m) {
    /* init checks every one of these against its range: none is 0 in a parsed model */
    return m && m->config.n_fft > 0 && m->config.hop > 0 && m->config.n_mels > 0 && m->config.channels > 0 &&
           m->config.n_layers > 0;
}

w2s_status w2s_model_init(w2s_model *model, const void *buf, size_t len) {
    const uint8_t *p = (const uint8_t *)buf;
    w2s_config c;
    w2s_weights w;
    bind_ctx b;
    size_t file_bytes, end;
    int32_t l;

    if (!model || !buf || ((uintptr_t)buf & 3u) || !little_endian_host()) return W2S_ERR_ARG;
    if (len < 4) return W2S_ERR_TRUNCATED;
    if (rd_u32(p) != W2S_FORMAT_MAGIC) return W2S_ERR_MAGIC;
    if (len < W2S_HEADER_BYTES) return W2S_ERR_TRUNCATED;
    if (rd_u16(p + 4) != W2S_FORMAT_VERSION) return W2S_ERR_VERSION;
    file_bytes = rd_u32(p + 8);
    if (rd_u16(p + 6) != W2S_HEADER_BYTES || file_bytes < W2S_HEADER_BYTES + 4) return W2S_ERR_FORMAT;
    if (file_bytes > len) return W2S_ERR_TRUNCATED;
    if (w2s_crc32(p, file_bytes - 4) != rd_u32(p + file_bytes - 4)) return W2S_ERR_CHECKSUM;

    c.flags = rd_u32(p + 12);
    c.sample_rate = (int32_t)rd_u32(p + 16);
    c.n_fft = (int32_t)rd_u32(p + 20);
    c.hop = (int32_t)rd_u32(p + 24);
    c.n_mels = (int32_t)rd_u32(p + 28);
    c.channels = (int32_t)rd_u32(p + 32);
    c.n_layers = (int32_t)rd_u32(p + 36);
    c.pool_after = (int32_t)rd_u32(p + 40);
    c.n_outputs = (int32_t)rd_u32(p + 44);
    c.out_frac_bits = (int32_t)rd_u32(p + 48);
    c.mel_weights = (int32_t)rd_u32(p + 52);
    /* reserved bytes must be zero, so a later version can give them a meaning this one would ignore */
    if (!config_ok(&c) || rd_u32(p + 56) != 0 || rd_u32(p + 60) != 0) return W2S_ERR_FORMAT;

    end = w2s_layout(&c, NULL, NULL);
    if (end + 4 != file_bytes) return W2S_ERR_FORMAT;

    memset(&w, 0, sizeof w);
    memset(&b, 0, sizeof b);
    b.base = p;
    b.w = &w;
    w2s_layout(&c, bind_tensor, &b);
    w.pcm_eps = b.front[0];
    w.mel_shift = b.front[1];
    w.pow_bits = b.front[2];
    w.log_floor = b.front[3];
    w.db_mult = b.front[4];
    w.db_shift = b.front[5];
    for (l = 1; l <= c.n_layers; l++) {
        w.layer[l - 1].input_offset = b.conv_params[l][0];
        w.layer[l - 1].output_offset = b.conv_params[l][1];
        w.layer[l - 1].act_min = b.conv_params[l][2];
        w.layer[l - 1].act_max = b.conv_params[l][3];
    }
    w.vox_input_offset = b.vox[0];
    w.gram_shift = b.vox[1];
    w.value_shift = b.vox[2];
    w.head_pre_shift_p = b.head[0];
    w.head_pre_shift_g = b.head[1];
    if (b.decide) {
        w.thresholds.max_log_sigma = b.decide[0];
        w.thresholds.min_speech_logit = b.decide[1];
        w.thresholds.min_modulation = b.decide[2];
        w.mod_block = b.decide[3];
    }
    /* without the measure nothing is too steady: the threshold lets every clip through */
    w.thresholds.max_steady = W2S_STEADY_ONE;
    if (b.steady) {
        w.steady_block = b.steady[0];
        w.steady_level = b.steady[1];
        w.steady_cos2 = b.steady[2];
        w.thresholds.max_steady = b.steady[3];
    }
    if (!values_ok(&c, &w)) return W2S_ERR_FORMAT;

    model->config = c;
    model->w = w;
    return W2S_OK;
}

const char *w2s_status_str(w2s_status s) {
    switch (s) {
    case W2S_OK: return "ok";
    case W2S_ERR_ARG: return "invalid argument (NULL pointer, misaligned buffer or parameter out of range)";
    case W2S_ERR_TRUNCATED: return "model data is truncated";
    case W2S_ERR_MAGIC: return "not a wav2small model (bad magic)";
    case W2S_ERR_VERSION: return "unsupported model format version";
    case W2S_ERR_CHECKSUM: return "model checksum mismatch (corrupted file)";
    case W2S_ERR_FORMAT: return "malformed model (inconsistent sizes or values out of range)";
    case W2S_ERR_ARENA: return "arena missing, misaligned or too small";
    case W2S_ERR_TOO_SHORT: return "audio shorter than one analysis frame";
    case W2S_ERR_TOO_LONG: return "audio longer than the engine's limit";
    }
    return "unknown status";
}
