/*
 * stream.c - the forward pass of engine.c, one STFT frame at a time, in memory independent of
 * the clip length.
 *
 * A frame (n_fft samples) becomes one log-mel row; each row runs down the stack as far as it can:
 *
 *   conv layer l    keeps its last two input rows (line[l], row r in slot r % 2). Input row r
 *                   completes output row r - 1 (rows r-2, r-1, r: the same row kernels as batch).
 *   max-pool        keeps one running row: the horizontal 3-max of each input row, maxed over the
 *                   rows of the current output row; odd input rows complete an output row.
 *   vox pooling     the online softmax of vox.c, one row at a time.
 *
 * So layer l lags its input by one row, and at any moment every layer holds exactly one row it
 * has not emitted: the one whose lower neighbour is not there yet. Reading (w2s_stream_read)
 * finishes those rows in scratch memory as the batch pass would at the end of the clip (bottom
 * padding), without touching the stream: each layer's pending rows are computed in place, last
 * first, each over the input row it no longer needs; the rows that reach vox pooling (6 for the
 * default model) are pushed into a copy of one mel column of the softmax state at a time, since
 * the softmax of each (channel, mel bin) is independent. Every integer operation is the batch
 * engine's, in the same order, so reading after the whole clip gives the batch outputs bit for bit
 * whenever the prenorm statistics are the same (W2S_PRENORM_FIXED with w2s_clip_stats).
 *
 * Arena: [stream | vox state | pcm | mel line | conv lines | pool row | work | kernel], work being
 * the scratch of one push (log-mel, two ping-pong rows) or of one read (pending rows, one softmax
 * column, pooled values, Gram). One function sizes and places it (base NULL: size only).
 *
 * Kernel scratch (w2s_kernel_scratch_bytes(c, W2S_SCRATCH_ROWS): the SIMD row kernels' padded
 * rows and weights, per call) comes from a buffer of W2S_STREAM_STACK_SCRATCH bytes on the stack
 * of the push or read when the model's rows fit in it, as the default model's do on every kernel
 * set (6,111 B at most, the AVX2 int8 row): its arena then stays within issue 5's 8 KB on 64-bit
 * hosts too. A wider model's row scratch is the arena's `kernel` slice instead; build with
 * -DW2S_STREAM_STACK_SCRATCH=0 to put every model's there. Builds whose kernels need none (DSP,
 * W2S_NO_SIMD) have neither.
 */
#include <string.h>

#include "kernels.h"

#if !defined(W2S_STREAM_STACK_SCRATCH)
#if defined(W2S_KERNEL_SCRATCH)
#define W2S_STREAM_STACK_SCRATCH 6144
#else
#define W2S_STREAM_STACK_SCRATCH 0 /* no kernel scratch: no buffer (defined for -Wundef) */
#endif
#endif

struct w2s_stream {
    const w2s_model  *model;
    w2s_stream_params params;
    w2s_prenorm       pn;      /* statistics the next frame uses */
    int64_t           sum;     /* running prenorm: decayed sum of x = pcm * 2^Q_PCM */
    int64_t           sq;      /* and of x^2 */
    int64_t           n_stat;  /* their weight in samples, <= 2^log2_window */
    uint64_t          samples; /* pushed since reset */
    w2s_vox_state     vox;     /* pointers into the arena, bound again on each call */
    int32_t           n_pcm;   /* samples in the frame buffer, < n_fft between calls */
    int32_t           frames;  /* STFT frames so far (log-mel rows into layer 1) */
    w2s_modulation    mod;     /* of the log-mel rows so far (an uncertainty head's decision) */
    w2s_steady        steady;  /* likewise, with W2S_FLAG_STEADY */
};

/* ---- arena ------------------------------------------------------------------------------------ */

typedef struct {
    int16_t *pcm;                 /* (n_fft) the frame being filled */
    int16_t *mel;                 /* (2, F) layer 1 input rows, row r in slot r % 2 */
    int8_t  *line[W2S_MAX_LAYERS]; /* [l - 1], l >= 2: (2, width(l) * C) input rows of layer l */
    int8_t  *pool;                /* (F' * C) running max of the pool's next output row */
    void    *vox;                 /* online softmax state (8-byte aligned) */
    void    *steady;              /* the steadiness's arrays (8-byte aligned; empty without the flag) */
    uint8_t *work;                /* scratch of one push or one read (8-byte aligned) */
    void    *kernel;              /* kernel scratch: the arena's slice, or the caller's stack */
} slices;

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }
static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* Mel bins of conv layer l's input and output: the pool halves them. */
static int32_t width(const w2s_config *c, int32_t l) {
    return l <= c->pool_after ? c->n_mels : (c->n_mels + 1) / 2;
}

static size_t push_bytes(const w2s_config *c) {
    const size_t R = (size_t)c->n_mels * (size_t)c->channels;
    return align8((size_t)c->n_mels * sizeof(int16_t)) + max_sz(w2s_logmel_scratch_bytes(c), 2 * R);
}

/* Read scratch, from upper bounds of the pending rows at each stage: a conv layer emits its m
 * pending input rows plus its own, the pool at most m / 2 + 1 of its m. */
static size_t tail_rows(const w2s_config *c) {
    size_t m = 0;
    int32_t l;
    for (l = 1; l <= c->n_layers; l++) {
        m += 1;
        if (l == c->pool_after) m = m / 2 + 1;
    }
    return m < 2 ? 2 : m; /* two rows at least: their used columns park the pooled values */
}

static size_t read_bytes(const w2s_config *c) {
    const size_t C = (size_t)c->channels, F2 = (size_t)(c->n_mels + 1) / 2;
    const size_t R = (size_t)c->n_mels * C, R2 = F2 * C, K = tail_rows(c);
    w2s_config col = *c;
    size_t need = 0, m = 0, tail, fin;
    int32_t l;
    for (l = 1; l <= c->n_layers; l++) {
        const size_t row = (size_t)width(c, l) * C;
        need = max_sz(need, (m + 2) * row); /* m inputs, m + 1 outputs in place, one being computed */
        m += 1;
        if (l == c->pool_after) {
            need = max_sz(need, m * R + 2 * R2); /* inputs, running max, one pooled input row */
            m = m / 2 + 1;
        }
    }
    col.n_mels = 1;
    tail = align8(K * R2);
    fin = C * F2 * sizeof(int16_t) + (C * C * sizeof(int16_t) <= K * R2 ? 0 : C * C * sizeof(int16_t));
    return max_sz(need, tail + max_sz(w2s_vox_state_bytes(&col), fin));
}

/* The arena's kernel slice: the row kernels' scratch when the stack buffer is too small for it. */
static size_t kernel_bytes(const w2s_config *c) {
#if defined(W2S_KERNEL_SCRATCH)
    const size_t n = w2s_kernel_scratch_bytes(c, W2S_SCRATCH_ROWS);
    return n <= (size_t)W2S_STREAM_STACK_SCRATCH / 8 * 8 ? 0 : n; /* whole words on the stack */
#else
    (void)c;
    return 0;
#endif
}

static size_t plan(const w2s_config *c, uint8_t *base, slices *a) {
    const size_t C = (size_t)c->channels, F = (size_t)c->n_mels, F2 = (F + 1) / 2;
    size_t off = align8(sizeof(w2s_stream));
#if defined(W2S_KERNEL_SCRATCH)
    const size_t K = kernel_bytes(c);
#endif
    int32_t l;
    if (a) a->vox = base + off;
    off += align8(w2s_vox_state_bytes(c));
    if (a) a->steady = base + off;
    off += w2s_steady_bytes(c);
    if (a) a->pcm = (int16_t *)(void *)(base + off);
    off += (size_t)c->n_fft * sizeof(int16_t);
    if (a) a->mel = (int16_t *)(void *)(base + off);
    off += 2 * F * sizeof(int16_t);
    for (l = 2; l <= c->n_layers; l++) {
        if (a) a->line[l - 1] = (int8_t *)(base + off);
        off += 2 * (size_t)width(c, l) * C;
    }
    if (a) a->pool = (int8_t *)(base + off);
    off += F2 * C;
    off = align8(off);
    if (a) a->work = base + off;
#if defined(W2S_KERNEL_SCRATCH)
    off += max_sz(push_bytes(c), read_bytes(c));
    if (K) off = align8(off);
    if (a) a->kernel = K ? base + off : NULL;
    return off + K;
#else
    if (a) a->kernel = NULL; /* no kernel of this build takes scratch */
    return off + max_sz(push_bytes(c), read_bytes(c));
#endif
}

size_t w2s_stream_arena_size(const w2s_model *m) { return w2s_model_ready(m) ? plan(&m->config, NULL, NULL) : 0; }

void w2s_stream_sizes_of(const w2s_config *c, w2s_stream_sizes *z) {
    const size_t C = (size_t)c->channels, F2 = (size_t)(c->n_mels + 1) / 2;
    int32_t l;
    z->state = align8(sizeof(w2s_stream)) + w2s_steady_bytes(c);
    z->vox = align8(w2s_vox_state_bytes(c));
    z->lines = (size_t)c->n_fft * sizeof(int16_t) + 2 * (size_t)c->n_mels * sizeof(int16_t) + F2 * C;
    for (l = 2; l <= c->n_layers; l++) z->lines += 2 * (size_t)width(c, l) * C;
    z->work_push = push_bytes(c);
    z->work_read = read_bytes(c);
    z->kernel = kernel_bytes(c);
    z->total = plan(c, NULL, NULL);
}

/* ---- prenorm ------------------------------------------------------------------------------------ */

w2s_stream_params w2s_stream_default_params(void) {
    w2s_stream_params p;
    p.prenorm = W2S_PRENORM_RUNNING;
    /* the prior, if a caller weights it: speech at -26 dBFS RMS (the ITU-T P.56 active speech
     * level), zero mean: log2((32768 * 10^(-26/20) * 2^Q_PCM)^2) = 29.363 in Q16 */
    p.stats.mean = 0;
    p.stats.log2_var = 1924333;
    p.log2_window = 16; /* ~4 s at 16 kHz; longer windows measured the same (docs/engine.md) */
    p.prior_samples = 0; /* a wrong prior level costs more than none (docs/engine.md) */
    return p;
}

w2s_status w2s_clip_stats(const w2s_model *m, const int16_t *pcm, size_t n, w2s_stats *st) {
    w2s_prenorm pn;
    w2s_status length;
    if (!w2s_model_ready(m) || !pcm || !st) return W2S_ERR_ARG;
    length = w2s_clip_length(&m->config, n); /* batch's limits: a clip it would refuse has no stats */
    if (length != W2S_OK) return length;
    pn = w2s_prenorm_s16(&m->w, pcm, n);
    st->mean = pn.mean;
    st->log2_var = pn.log2_var;
    return W2S_OK;
}

/* Running mean and variance of the samples so far, over an exponential window of 2^k samples
 * (exact running sums until the window fills): one division per frame, no history kept.
 * Bounds: |x| <= 2^19, weight <= 2^20, a prior's variance <= 2^39: |sum| < 2^39, sq < 2^60. */
static void running_update(const w2s_weights *w, w2s_stream *s, const int16_t *pcm, int32_t n) {
    const int64_t window = (int64_t)1 << s->params.log2_window;
    int64_t bs = 0, bq = 0, excess, var;
    int32_t i, mean;
    for (i = 0; i < n; i++) { /* n <= 256: bq < 2^46 */
        const int64_t x = (int64_t)pcm[i] * (1 << W2S_Q_PCM);
        bs += x;
        bq += x * x;
    }
    excess = s->n_stat + n - window; /* <= n <= n_stat once the first frame is in */
    if (excess > 0) {                 /* forget `excess` samples' worth of the past, in proportion */
        s->sum -= w2s_div_round(s->sum, s->n_stat) * excess;
        s->sq -= w2s_div_round(s->sq, s->n_stat) * excess;
        s->n_stat -= excess;
    }
    s->sum += bs;
    s->sq += bq;
    s->n_stat += n;
    mean = (int32_t)w2s_div_round(s->sum, s->n_stat);
    var = w2s_div_round(s->sq, s->n_stat) - (int64_t)mean * mean;
    if (var < 0) var = 0; /* rounding only: sq >= sum^2 / n_stat */
    s->pn.mean = mean;
    s->pn.log2_var = w2s_log2_q16((uint64_t)var + (uint64_t)w->pcm_eps);
}

/* ---- push --------------------------------------------------------------------------------------- */

/* Horizontal part of max-pool 3x3/2/1: the pool kernel on one row (max is associative, so the
 * vertical part is an elementwise max of these, in any order). */
static void pool_h(int32_t f_in, int32_t c, const int8_t *row, int8_t *out, void *kernel) {
    const int8_t *rows[3];
    rows[0] = row;
    rows[1] = NULL;
    rows[2] = NULL;
    w2s_maxpool_row_s8(f_in, c, rows, out, kernel);
}

static void max_into(int8_t *acc, const int8_t *x, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (x[i] > acc[i]) acc[i] = x[i];
}

/* The frame in a->pcm: log-mel row t = s->frames, then down the stack while rows complete. */
static void run_frame(w2s_stream *s, const slices *a) {
    const w2s_config *c = &s->model->config;
    const w2s_weights *w = &s->model->w;
    const int32_t F = c->n_mels, C = c->channels, F2 = (F + 1) / 2;
    int16_t *mel = (int16_t *)(void *)a->work;
    uint8_t *rest = a->work + align8((size_t)F * sizeof(int16_t));
    int8_t *buf[2];
    const int8_t *in = NULL;
    int32_t r = s->frames, l, f = F, cur = 0;

    buf[0] = (int8_t *)rest;
    buf[1] = (int8_t *)rest + (size_t)F * (size_t)C;
    if (s->params.prenorm == W2S_PRENORM_RUNNING) { /* the samples this frame adds */
        const int32_t fresh = r == 0 ? c->n_fft : c->hop;
        running_update(w, s, a->pcm + (c->n_fft - fresh), fresh);
    }
    w2s_logmel_frame_s16(c, w, &s->pn, a->pcm, rest, mel);
    if (c->flags & W2S_FLAG_UNCERTAINTY) w2s_modulation_push(&s->mod, mel, F, w->mod_block);
    if (c->flags & W2S_FLAG_STEADY) w2s_steady_push(&s->steady, w, mel, F);

    for (l = 1; l <= c->n_layers; l++) {
        const size_t row = (size_t)f * (size_t)C;
        /* = F.relu(bn(conv(x))): input row r completes output row r - 1 */
        if (l == 1) {
            const int16_t *rows[3];
            rows[0] = r >= 2 ? a->mel + (size_t)(r % 2) * (size_t)F : NULL;
            rows[1] = r >= 1 ? a->mel + (size_t)((r - 1) % 2) * (size_t)F : NULL;
            rows[2] = mel;
            if (r >= 1) w2s_conv3x3_row_s16(&w->layer[0], w->isa, F, C, rows, buf[cur], a->kernel);
            memcpy(a->mel + (size_t)(r % 2) * (size_t)F, mel, (size_t)F * sizeof(int16_t));
        } else {
            const int8_t *rows[3];
            int8_t *line = a->line[l - 1];
            rows[0] = r >= 2 ? line + (size_t)(r % 2) * row : NULL;
            rows[1] = r >= 1 ? line + (size_t)((r - 1) % 2) * row : NULL;
            rows[2] = in;
            if (r >= 1) w2s_conv3x3_row_s8(&w->layer[l - 1], w->isa, f, C, C, rows, buf[cur], a->kernel);
            memcpy(line + (size_t)(r % 2) * row, in, row);
        }
        if (r < 1) return;
        in = buf[cur];
        cur = 1 - cur;
        r--;

        if (l == c->pool_after) { /* = F.max_pool2d(x, 3, 2, 1): odd rows complete an output row */
            const size_t row2 = (size_t)F2 * (size_t)C;
            int8_t *h = buf[cur];
            size_t i;
            pool_h(f, C, in, h, a->kernel);
            if (r % 2 == 0) {
                if (r == 0) memcpy(a->pool, h, row2);
                else max_into(a->pool, h, row2);
                return;
            }
            for (i = 0; i < row2; i++) { /* out = max(running, h); running = h (next row's top) */
                const int8_t o = h[i] > a->pool[i] ? h[i] : a->pool[i];
                a->pool[i] = h[i];
                h[i] = o;
            }
            in = h;
            cur = 1 - cur;
            r = (r - 1) / 2;
            f = F2;
        }
    }
    /* vox pooling: P = sum_t lin(x) * softmax_t(sof(x)), one frame at a time */
    w2s_vox_push_s8(c, w, &s->vox, in, a->kernel);
}

w2s_status w2s_stream_push_s16(w2s_stream *s, const int16_t *pcm, size_t n) {
    const w2s_config *c;
    size_t total, frames;
    slices a;
#if W2S_STREAM_STACK_SCRATCH > 0
    uint64_t stack_scratch[W2S_STREAM_STACK_SCRATCH / 8]; /* the row kernels', unless in the arena */
#endif
    if (!s || (!pcm && n)) return W2S_ERR_ARG;
    c = &s->model->config;
    /* check the frame limit before anything is consumed */
    if (n > (size_t)W2S_MAX_FRAMES * (size_t)c->hop + (size_t)c->n_fft) return W2S_ERR_TOO_LONG;
    total = (size_t)s->n_pcm + n;
    frames = total >= (size_t)c->n_fft ? (total - (size_t)c->n_fft) / (size_t)c->hop + 1 : 0;
    if ((size_t)s->frames + frames > (size_t)W2S_MAX_FRAMES) return W2S_ERR_TOO_LONG;

    plan(c, (uint8_t *)s, &a);
#if W2S_STREAM_STACK_SCRATCH > 0
    if (!a.kernel) a.kernel = stack_scratch;
#endif
    w2s_vox_bind(c, a.vox, &s->vox); /* the arena may have been moved since the last call */
    w2s_steady_bind(c, a.steady, &s->steady);
    s->samples += n;
    while (n > 0) {
        size_t take = (size_t)(c->n_fft - s->n_pcm);
        if (take > n) take = n;
        memcpy(a.pcm + s->n_pcm, pcm, take * sizeof(int16_t));
        s->n_pcm += (int32_t)take;
        pcm += take;
        n -= take;
        if (s->n_pcm == c->n_fft) {
            run_frame(s, &a);
            s->frames++;
            memmove(a.pcm, a.pcm + c->hop, (size_t)(c->n_fft - c->hop) * sizeof(int16_t));
            s->n_pcm = c->n_fft - c->hop;
        }
    }
    return W2S_OK;
}

/* ---- read ---------------------------------------------------------------------------------------- */

/* Finish every layer's pending rows into a->work, as batch does at the clip's end (rows past the
 * last are padding). Returns how many rows reach vox pooling; they are at a->work, F' * C each. */
static int32_t flush(const w2s_stream *s, const slices *a) {
    const w2s_config *c = &s->model->config;
    const w2s_weights *w = &s->model->w;
    const int32_t F = c->n_mels, C = c->channels, F2 = (F + 1) / 2;
    uint8_t *work = a->work;
    int32_t n_in = s->frames; /* rows the current layer has received from pushes */
    int32_t m = 0;            /* pending rows waiting for it at work, `row` bytes each */
    int32_t l, g, f = F;

    for (l = 1; l <= c->n_layers; l++) {
        const size_t row = (size_t)f * (size_t)C;
        const int32_t N = n_in + m, first = n_in > 0 ? n_in - 1 : 0;
        const int32_t slot0 = n_in > 0 ? 0 : 1; /* where the first output lands */
        int8_t *tmp = (int8_t *)work + (size_t)(m + 1) * row;
        /* last row first: output g goes over input g + 1, which no smaller g reads */
        for (g = N - 1; g >= first; g--) {
            if (l == 1) { /* all of layer 1's input is in its line: pushes made every log-mel row */
                const int16_t *rows[3];
                rows[0] = g >= 1 ? a->mel + (size_t)((g - 1) % 2) * (size_t)F : NULL;
                rows[1] = a->mel + (size_t)(g % 2) * (size_t)F;
                rows[2] = NULL;
                w2s_conv3x3_row_s16(&w->layer[0], w->isa, F, C, rows, tmp, a->kernel);
            } else {
                const int8_t *rows[3];
                int32_t k;
                for (k = 0; k < 3; k++) {
                    const int32_t i = g - 1 + k;
                    if (i < 0 || i >= N) rows[k] = NULL;
                    else if (i < n_in) rows[k] = a->line[l - 1] + (size_t)(i % 2) * row;
                    else rows[k] = (const int8_t *)work + (size_t)(i - n_in) * row;
                }
                w2s_conv3x3_row_s8(&w->layer[l - 1], w->isa, f, C, C, rows, tmp, a->kernel);
            }
            memcpy(work + (size_t)(g + 1 - n_in) * row, tmp, row);
        }
        if (slot0) memmove(work, work + row, (size_t)(N - first) * row);
        m = N - first;
        n_in = first; /* the next layer received what this one emitted */

        if (l == c->pool_after) {
            const size_t row2 = (size_t)F2 * (size_t)C;
            int8_t *run = (int8_t *)work + (size_t)m * row, *h = run + row2;
            int32_t k = 0, j;
            if (n_in > 0) memcpy(run, a->pool, row2);
            for (j = n_in; j < n_in + m; j++) {
                pool_h(f, C, (const int8_t *)work + (size_t)(j - n_in) * row, h, a->kernel);
                if (j == 0) {
                    memcpy(run, h, row2);
                } else {
                    max_into(run, h, row2);
                    if (j % 2 == 1) { /* output k is complete; pending rows up to j are dead */
                        memmove(work + (size_t)k++ * row2, run, row2);
                        memcpy(run, h, row2);
                    }
                }
            }
            if ((n_in + m) % 2 == 1) memmove(work + (size_t)k++ * row2, run, row2);
            n_in /= 2;
            m = k;
            f = F2;
        }
    }
    return m;
}

/* Pooled value and Gram: steps 6 and 7 of docs/numerics.md, as w2s_vox_finish computes them for
 * a whole state (which a read cannot afford to copy). test_stream.py checks them bit for bit. */
static int16_t pooled_value(const w2s_weights *w, int64_t acc, int64_t sum, int32_t ch) {
    const int32_t p = w2s_sat32(w2s_div_round(acc, sum));
    return w2s_sat16(w2s_requantize(p, w->pool_mult[ch], w->pool_shift[ch]));
}

static void gram_of(const w2s_config *c, const w2s_weights *w, const int16_t *pooled, int16_t *gram) {
    const int32_t C = c->channels, F2 = (c->n_mels + 1) / 2;
    int32_t c1, c2, f;
    for (c1 = 0; c1 < C; c1++) {
        for (c2 = 0; c2 < C; c2++) {
            int64_t g = 0;
            for (f = 0; f < F2; f++) g += (int64_t)pooled[c1 * F2 + f] * pooled[c2 * F2 + f];
            gram[c1 * C + c2] = w2s_sat16(w2s_rshift_round(g, w->gram_shift));
        }
    }
}

w2s_status w2s_stream_read(w2s_stream *s, w2s_output *out) {
    const w2s_config *c;
    const w2s_weights *w;
    w2s_config col;
    w2s_vox_state cs;
    slices a;
    int16_t p[W2S_MAX_CHANNELS], *pooled, *gram;
    size_t R2, tail;
    int32_t C, F2, K, f, ch, k;
    uint8_t *work;
#if W2S_STREAM_STACK_SCRATCH > 0
    uint64_t stack_scratch[W2S_STREAM_STACK_SCRATCH / 8]; /* the row kernels', unless in the arena */
#endif

    if (!s || !out) return W2S_ERR_ARG;
    if (s->frames == 0) return W2S_ERR_TOO_SHORT;
    c = &s->model->config;
    w = &s->model->w;
    C = c->channels;
    F2 = (c->n_mels + 1) / 2;
    R2 = (size_t)F2 * (size_t)C;
    plan(c, (uint8_t *)s, &a);
#if W2S_STREAM_STACK_SCRATCH > 0
    if (!a.kernel) a.kernel = stack_scratch;
#endif
    w2s_vox_bind(c, a.vox, &s->vox);
    w2s_steady_bind(c, a.steady, &s->steady);
    work = a.work;
    K = flush(s, &a);
    tail = tail_rows(c) * R2; /* the region read_bytes() sized; K <= tail_rows */

    /* one mel column at a time: its softmax state, plus the K pending rows, finished */
    col = *c;
    col.n_mels = 1;
    w2s_vox_init(&col, work + align8(tail), &cs);
    for (f = 0; f < F2; f++) {
        for (ch = 0; ch < C; ch++) {
            const int32_t i = ch * F2 + f;
            cs.sum[ch] = s->vox.sum[i];
            cs.acc[ch] = s->vox.acc[i];
            cs.ref[ch] = s->vox.ref[i];
        }
        cs.n = s->vox.n;
        for (k = 0; k < K; k++)
            w2s_vox_push_s8(&col, w, &cs, (const int8_t *)work + (size_t)k * R2 + (size_t)f * (size_t)C, a.kernel);
        for (ch = 0; ch < C; ch++) p[ch] = pooled_value(w, cs.acc[ch], cs.sum[ch], ch);
        /* column f of pending rows 0 and 1 is read no more: park the C values there */
        memcpy(work + (size_t)f * (size_t)C, p, (size_t)C);
        memcpy(work + R2 + (size_t)f * (size_t)C, (uint8_t *)p + C, (size_t)C);
    }
    pooled = (int16_t *)(void *)(work + align8(tail));
    for (f = 0; f < F2; f++) {
        memcpy(p, work + (size_t)f * (size_t)C, (size_t)C);
        memcpy((uint8_t *)p + C, work + R2 + (size_t)f * (size_t)C, (size_t)C);
        for (ch = 0; ch < C; ch++) pooled[ch * F2 + f] = p[ch];
    }
    gram = (size_t)C * (size_t)C * sizeof(int16_t) <= tail ? (int16_t *)(void *)work : pooled + (size_t)C * (size_t)F2;
    gram_of(c, w, pooled, gram);

    /* = adv(cat([P, G]).flatten()) */
    w2s_head(c, w, pooled, gram, w2s_modulation_db(&s->mod), w2s_steady_share(&s->steady), out);
    return W2S_OK;
}

/* ---- lifetime ------------------------------------------------------------------------------------ */

/* The variance v (>= 0) whose log2(v + eps) is the smallest value >= log2_var: the engine's own
 * log inverted by bisection, so a prior round-trips through the statistics it came from. */
static int64_t variance_of(const w2s_weights *w, int32_t log2_var) {
    uint64_t lo = 0, hi = (uint64_t)1 << 40; /* (2^19)^2 * 2: above any int16 clip's variance */
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        if (w2s_log2_q16(mid + (uint64_t)w->pcm_eps) >= log2_var) hi = mid;
        else lo = mid + 1;
    }
    return (int64_t)lo;
}

w2s_status w2s_stream_reset(w2s_stream *s) {
    slices a;
    if (!s) return W2S_ERR_ARG;
    plan(&s->model->config, (uint8_t *)s, &a);
    w2s_vox_init(&s->model->config, a.vox, &s->vox);
    s->pn.mean = s->params.stats.mean;
    s->pn.log2_var = s->params.stats.log2_var;
    s->sum = s->sq = s->n_stat = 0;
    if (s->params.prenorm == W2S_PRENORM_RUNNING && s->params.prior_samples > 0) {
        /* prior_samples samples of mean m and variance v: sums n m and n (v + m^2) */
        const int64_t n = s->params.prior_samples, mean = s->params.stats.mean;
        s->n_stat = n;
        s->sum = n * mean;
        s->sq = n * (variance_of(&s->model->w, s->params.stats.log2_var) + mean * mean);
    }
    s->samples = 0;
    s->n_pcm = 0;
    s->frames = 0;
    w2s_modulation_init(&s->mod);
    w2s_steady_init(&s->model->config, a.steady, &s->steady);
    return W2S_OK;
}

w2s_status w2s_stream_init(w2s_stream **out, const w2s_model *m, const w2s_stream_params *params,
                           void *arena, size_t arena_len) {
    w2s_stream_params p = params ? *params : w2s_stream_default_params();
    w2s_stream *s;
    if (!out || !w2s_model_ready(m)) return W2S_ERR_ARG;
    if (p.prenorm != W2S_PRENORM_FIXED && p.prenorm != W2S_PRENORM_RUNNING) return W2S_ERR_ARG;
    if (p.stats.mean < -W2S_STATS_MAX_ABS_MEAN || p.stats.mean > W2S_STATS_MAX_ABS_MEAN || p.stats.log2_var < 0 ||
        p.stats.log2_var > W2S_STATS_MAX_LOG2_VAR)
        return W2S_ERR_ARG;
    if (p.prenorm == W2S_PRENORM_RUNNING &&
        (p.log2_window < W2S_STREAM_MIN_LOG2_WINDOW || p.log2_window > W2S_STREAM_MAX_LOG2_WINDOW ||
         p.prior_samples < 0 || p.prior_samples > (1 << p.log2_window)))
        return W2S_ERR_ARG;
    if (!arena || ((uintptr_t)arena & 7u) || arena_len < w2s_stream_arena_size(m)) return W2S_ERR_ARENA;
    s = (w2s_stream *)arena; /* the stream's struct opens its arena (plan) */
    s->model = m;
    s->params = p;
    *out = s;
    return w2s_stream_reset(s);
}

uint64_t w2s_stream_samples(const w2s_stream *s) { return s ? s->samples : 0; }

w2s_prenorm w2s_stream_prenorm(const w2s_stream *s) { return s->pn; } /* s: non-NULL */
