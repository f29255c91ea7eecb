/*
 * engine.c - the forward pass of a whole clip, and its arena.
 *
 * Reads like Wav2Small.forward: prenorm -> log-mel -> conv layers (max-pool after one of them)
 * -> vox pooling -> Gram -> head; with an uncertainty head, the log-mel's modulation (and
 * steadiness) as well.
 * Activations live in two ping-pong maps of the arena; every kernel works on rows, so a streaming
 * engine can feed the same kernels from line buffers.
 */
#include "w2s_internal.h"

/* ---- arena ------------------------------------------------------------------------------------ */

typedef struct {
    int16_t *logmel;  /* (T, F) */
    int8_t  *map[2];  /* (T, F, C) each: ping-pong activations */
    void    *scratch; /* front-end frame scratch */
    void    *vox;     /* online softmax state */
    int16_t *pooled;  /* (C, F') */
    int16_t *gram;    /* (C, C) */
    void    *kernel;  /* kernel scratch, shared by the stages in turn (empty in builds without) */
    void    *steady;  /* the steadiness's arrays (empty without W2S_FLAG_STEADY) */
} arena_slices;

static uint64_t align8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

static size_t n_frames(const w2s_config *c, size_t n) {
    return n < (size_t)c->n_fft ? 0 : (n - (size_t)c->n_fft) / (size_t)c->hop + 1;
}

w2s_status w2s_clip_length(const w2s_config *c, size_t n) {
    if (n < (size_t)c->n_fft) return W2S_ERR_TOO_SHORT;
    if (n > (size_t)W2S_MAX_SAMPLES || n_frames(c, n) > (size_t)W2S_MAX_FRAMES) return W2S_ERR_TOO_LONG;
    return W2S_OK;
}

/* One function sizes and places the slices (base NULL: size only), so the two can't drift.
 * Sizes are summed in 64 bits: a long clip of a wide model (2^20 frames x 128 mels x 64 channels)
 * needs more than a 32-bit size_t holds. Returns 0 when the arena would not fit in a size_t. */
static size_t plan(const w2s_config *c, size_t n, uint8_t *base, arena_slices *s) {
    const uint64_t T = n_frames(c, n), F = (uint64_t)c->n_mels, C = (uint64_t)c->channels;
    const uint64_t F2 = (F + 1) / 2;
    uint64_t off = 0, sizes[9];
    size_t at[9], i;
    sizes[0] = T * F * sizeof(int16_t);
    sizes[1] = sizes[2] = T * F * C;
    sizes[3] = w2s_logmel_scratch_bytes(c);
    sizes[4] = w2s_vox_state_bytes(c);
    sizes[5] = C * F2 * sizeof(int16_t);
    sizes[6] = C * C * sizeof(int16_t);
    sizes[7] = w2s_kernel_scratch_bytes(c, W2S_SCRATCH_CLIP);
    sizes[8] = w2s_steady_bytes(c);
    for (i = 0; i < 9; i++) {
        at[i] = (size_t)off;
        off += align8(sizes[i]);
    }
    if (off > (uint64_t)SIZE_MAX) return 0;
    if (s) {
        s->logmel = (int16_t *)(void *)(base + at[0]);
        s->map[0] = (int8_t *)(base + at[1]);
        s->map[1] = (int8_t *)(base + at[2]);
        s->scratch = base + at[3];
        s->vox = base + at[4];
        s->pooled = (int16_t *)(void *)(base + at[5]);
        s->gram = (int16_t *)(void *)(base + at[6]);
        s->kernel = base + at[7]; /* one past the arena's end where it is empty: never read then */
        s->steady = base + at[8];
    }
    return (size_t)off;
}

size_t w2s_arena_size(const w2s_model *m, size_t n) {
    if (!w2s_model_ready(m) || w2s_clip_length(&m->config, n) != W2S_OK) return 0;
    return plan(&m->config, n, NULL, NULL);
}

/* ---- forward ------------------------------------------------------------------------------------ */

w2s_status w2s_forward(const w2s_model *m, const int16_t *pcm, size_t n, void *arena,
                       size_t arena_len, w2s_output *out, w2s_trace_fn trace, void *user) {
    const w2s_config *c;
    const w2s_weights *w;
    arena_slices a;
    w2s_prenorm pn;
    w2s_vox_state vox;
    w2s_modulation mod;
    w2s_steady steady;
    int32_t T, F, C, l, t, modulation = 0, steadiness = 0, cur = 0;
    size_t need;
    w2s_status length;

    if (!w2s_model_ready(m) || !pcm || !out) return W2S_ERR_ARG;
    c = &m->config;
    w = &m->w;
    length = w2s_clip_length(c, n);
    if (length != W2S_OK) return length;
    need = plan(c, n, NULL, NULL);
    if (!need) return W2S_ERR_TOO_LONG; /* the arena would not fit in this target's address space */
    if (!arena || ((uintptr_t)arena & 7u) || arena_len < need) return W2S_ERR_ARENA;
    plan(c, n, (uint8_t *)arena, &a);
    T = (int32_t)n_frames(c, n);
    F = c->n_mels;
    C = c->channels;

    /* prenorm statistics of the whole clip: x - mean, / sqrt(mean(x^2) + eps) */
    pn = w2s_prenorm_s16(w, pcm, n);
    if (trace) trace(user, W2S_TRACE_PRENORM, 0, &pn, 2, 0, 0);

    /* log-mel = 10 log10(max(melW . |STFT|^2, amin)), one frame per hop */
    w2s_logmel_frames_s16(c, w, &pn, pcm, T, a.scratch, a.kernel, a.logmel);
    if (trace) trace(user, W2S_TRACE_LOGMEL, 0, a.logmel, T, F, 0);
    if (c->flags & W2S_FLAG_UNCERTAINTY) { /* the level's rise and fall, for the decision */
        w2s_modulation_init(&mod);
        for (t = 0; t < T; t++) w2s_modulation_push(&mod, a.logmel + (size_t)t * (size_t)F, F, w->mod_block);
        modulation = w2s_modulation_db(&mod);
        if (trace) trace(user, W2S_TRACE_MODULATION, 0, &modulation, 1, 0, 0);
    }
    if (c->flags & W2S_FLAG_STEADY) { /* a held tone or note keeps its spectral shape: no speech */
        w2s_steady_init(c, a.steady, &steady);
        for (t = 0; t < T; t++) w2s_steady_push(&steady, w, a.logmel + (size_t)t * (size_t)F, F);
        steadiness = w2s_steady_share(&steady);
        if (trace) trace(user, W2S_TRACE_STEADY, 0, &steadiness, 1, 0, 0);
    }

    for (l = 1; l <= c->n_layers; l++) {
        const w2s_conv_layer *L = &w->layer[l - 1];
        int8_t *dst = a.map[cur];
        /* = F.relu(bn(conv(x))) with BatchNorm folded into the weights */
        if (l == 1) {
            w2s_conv3x3_layer_s16(L, w->isa, T, F, C, a.logmel, dst, a.kernel);
        } else {
            w2s_conv3x3_layer_s8(L, w->isa, T, F, C, C, a.map[1 - cur], dst, a.kernel);
        }
        if (trace) trace(user, W2S_TRACE_CONV, l, dst, T, F, C);
        cur = 1 - cur;

        if (l == c->pool_after) { /* = F.max_pool2d(x, 3, 2, 1) */
            dst = a.map[cur];
            w2s_maxpool_s8(w->isa, T, F, C, a.map[1 - cur], dst, a.kernel);
            T = (T + 1) / 2;
            F = (F + 1) / 2;
            if (trace) trace(user, W2S_TRACE_POOL, l, dst, T, F, C);
            cur = 1 - cur;
        }
    }

    /* vox pooling: P = sum_t lin(x) * softmax_t(sof(x)); then G = P P^T */
    w2s_vox_init(c, a.vox, &vox);
    w2s_vox_push_rows_s8(c, w, &vox, a.map[1 - cur], T, (size_t)(F * C), a.kernel);
    w2s_vox_finish(c, w, &vox, a.pooled, a.gram);
    if (trace) trace(user, W2S_TRACE_POOLED, 0, a.pooled, C, F, 0);
    if (trace) trace(user, W2S_TRACE_GRAM, 0, a.gram, C, C, 0);

    /* = adv(cat([P, G]).flatten()) */
    w2s_head(c, w, a.pooled, a.gram, modulation, steadiness, out);
    if (trace) trace(user, W2S_TRACE_OUTPUT, 0, out->value, c->n_outputs, 0, 0);
    return W2S_OK;
}

w2s_status w2s_predict_s16(const w2s_model *m, const int16_t *pcm, size_t n, void *arena,
                           size_t arena_len, w2s_output *out) {
    return w2s_forward(m, pcm, n, arena, arena_len, out, NULL, NULL);
}
