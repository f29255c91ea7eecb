/*
 * w2s_internal.h - the engine's stages, its model-file layout and its trace hook.
 *
 * Not part of the public API: the Python binding uses it to expose every stage for the
 * bit-exact tests against wav2small/_reference.py, and the stage files implement it.
 * Layout of every activation: [T][F][C], channels innermost.
 */
#ifndef W2S_INTERNAL_H
#define W2S_INTERNAL_H

#include "w2s.h"

#ifdef __cplusplus
extern "C" {
#endif

#define W2S_MAX_FRAMES (1L << 20) /* STFT frames; bounds the vox-pooling sums (vox.c) */

/* ---- model file layout (format.c) ---------------------------------------------------------- */

typedef enum { W2S_DT_I8, W2S_DT_I16, W2S_DT_U16, W2S_DT_I32, W2S_DT_U32 } w2s_dtype;

typedef struct {
    const char *name;     /* e.g. "window", "conv.w"; conv tensors carry their layer */
    int32_t     layer;    /* 1-based conv layer, 0 for tensors outside the conv stack */
    w2s_dtype   dtype;
    int32_t     ndim;
    int32_t     dims[4];
    size_t      offset;   /* bytes from the start of the file, a multiple of 4 */
    size_t      bytes;
} w2s_tensor;

typedef void (*w2s_tensor_fn)(void *user, const w2s_tensor *tensor);

/* Walk the tensors of a model with this config in file order; returns the offset just past the
 * last tensor (where the CRC-32 goes). The config must already be range-checked. */
size_t w2s_layout(const w2s_config *config, w2s_tensor_fn visit, void *user);

/* Rows of the head stored as int16 (head.w): the A/D/V values; the log-sigma and speech rows of
 * an uncertainty head are int8 (head.uw), since a ranking needs less precision than a value. */
int32_t w2s_head_wide_rows(const w2s_config *config);

/* 1 if m was filled by a successful w2s_model_init: a w2s_model left zeroed by a failed one (a
 * static model after a bad flash image, say) is refused by every entry point instead of dividing by
 * its zero hop. */
int w2s_model_ready(const w2s_model *m);
/* Whether a batch clip of n samples is within the engine's limits: W2S_ERR_TOO_SHORT below one
 * frame, W2S_ERR_TOO_LONG beyond W2S_MAX_SAMPLES or W2S_MAX_FRAMES frames (models with a hop
 * below 16 reach the frame limit first), else W2S_OK. */
w2s_status w2s_clip_length(const w2s_config *c, size_t n);

/* CRC-32 (IEEE 802.3, as zlib.crc32) of n bytes. */
uint32_t w2s_crc32(const uint8_t *data, size_t n);

/* ---- front end (frontend.c) ------------------------------------------------------------------- */

typedef struct {
    int32_t mean;     /* mean of pcm * 2^Q_PCM, rounded */
    int32_t log2_var; /* log2(variance + eps) in Q_LOG, variance in (pcm * 2^Q_PCM)^2 units */
} w2s_prenorm;

/* Mean and variance of the whole clip (the prenorm of the float model, as a log offset). */
w2s_prenorm w2s_prenorm_s16(const w2s_weights *w, const int16_t *pcm, size_t n);

/* log2(v) in Q_LOG for v >= 1: MSB position plus 16 fraction bits by repeated squaring. */
int32_t w2s_log2_q16(uint64_t v);

/* One frame: n_fft samples -> n_mels log-mel values in dB Q_DB. scratch: n_fft int32 + n_bins
 * uint64 (w2s_logmel_scratch_bytes). */
void w2s_logmel_frame_s16(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                          const int16_t *frame, void *scratch, int16_t *out);
size_t w2s_logmel_scratch_bytes(const w2s_config *c);
/* n_frames frames of a clip, frame t from pcm + t * hop, into out (n_frames, n_mels): the same
 * values as w2s_logmel_frame_s16 frame by frame, with the tables prepared once (w->isa) in kernel
 * scratch (w2s_kernel_scratch_bytes(c, W2S_SCRATCH_CLIP)). */
void w2s_logmel_frames_s16(const w2s_config *c, const w2s_weights *w, const w2s_prenorm *pn,
                           const int16_t *pcm, int32_t n_frames, void *scratch, void *kernel,
                           int16_t *out);

/* ---- modulation (modulation.c): the level's rise and fall over time, for the decision ---------- */

#define W2S_MAX_MOD_BLOCK 64 /* frames per block; bounds the sums (modulation.c) */

typedef struct {
    int64_t sum, sum_sq;  /* of the complete blocks' sums */
    int32_t block;        /* sum of the current block's frame maxima so far */
    int32_t in_block;     /* frames in the current block */
    int32_t blocks;       /* complete blocks */
} w2s_modulation;

void    w2s_modulation_init(w2s_modulation *m);
/* One log-mel frame (n_mels values, dB Q_DB). */
void    w2s_modulation_push(w2s_modulation *m, const int16_t *logmel, int32_t n_mels, int32_t mod_block);
/* The standard deviation over blocks of the block means of the frames' loudest band: dB Q_DB. */
int32_t w2s_modulation_db(const w2s_modulation *m);

/* ---- steadiness (modulation.c): does the spectrum's shape hold still, for the decision ---------- */

#define W2S_STEADY_COS2_ONE 4096 /* cos^2 = 1 in w2s_weights.steady_cos2 (Q12) */

typedef struct {
    int32_t *sum;          /* (n_mels) the current block's sums per band, dB Q_DB */
    int16_t *shape;        /* (n_mels) the last block's shape: band minus the bands' mean, dB Q1 */
    int32_t  in_block;     /* frames in the current block */
    int32_t  last_loud;    /* -1 before the first block, else whether the last one was loud */
    int32_t  pairs, steady; /* consecutive loud block pairs, and those of the same shape */
} w2s_steady;

/* Bytes of the arrays (8-byte aligned memory; 0 for a model without W2S_FLAG_STEADY). */
size_t  w2s_steady_bytes(const w2s_config *c);
void    w2s_steady_init(const w2s_config *c, void *mem, w2s_steady *s);
/* Point s at the arrays in mem, keeping their contents (a stream's arena may have moved). */
void    w2s_steady_bind(const w2s_config *c, void *mem, w2s_steady *s);
/* One log-mel frame (n_mels values, dB Q_DB). */
void    w2s_steady_push(w2s_steady *s, const w2s_weights *w, const int16_t *logmel, int32_t n_mels);
/* The share of loud block pairs whose shapes are the same: 0..W2S_STEADY_ONE (Q15), 0 without pairs. */
int32_t w2s_steady_share(const w2s_steady *s);

/* ---- kernel sets (conv.c; csrc/kernels.h has the per-ISA inner loops) ------------------------- */

/* Which inner loops run. Every set gives the portable C results bit for bit (tests/test_simd.py).
 * x86: chosen at run time from the CPU (one build runs on any x86-64); ARM: at compile time. */
typedef enum {
    W2S_ISA_AUTO     = 0, /**< the best set this CPU runs (w2s_weights.isa after w2s_model_init) */
    W2S_ISA_PORTABLE = 1, /**< plain C99 */
    W2S_ISA_SSE41    = 2, /**< x86 SSE4.1 */
    W2S_ISA_AVX2     = 3, /**< x86 AVX2 */
    W2S_ISA_AVX512   = 4, /**< x86 AVX-512 F/CD/BW/VL/VNNI (VPDPBUSD): every stage (the per-frame DFT of the last frames with AVX2) */
    W2S_ISA_NEON     = 5, /**< aarch64 Advanced SIMD */
    W2S_ISA_DSP      = 6  /**< ARMv7E-M / ARMv7-A DSP extension (SMLAD), Cortex-M4/M7/M55 */
} w2s_isa;

/* The set w2s_isa value `isa` runs as: AUTO becomes the best available; 0 if isa is unknown or
 * not available in this build on this CPU. */
int32_t     w2s_isa_resolve(int32_t isa);
const char *w2s_isa_name(int32_t isa);

/* Kernel scratch: the working buffers of the SIMD kernels (kernels.h), caller memory like the
 * rest of the arena, so that no kernel keeps large buffers on the stack. Bytes for a model, the
 * maximum over every kernel set compiled into this build (w2s_weights.isa may change after sizing,
 * as the binding's set_isa does); 0 in builds whose kernels need none (the DSP and portable sets).
 * W2S_SCRATCH_ROWS: the row kernels a stream calls (conv rows, a max-pool row, a vox row);
 * W2S_SCRATCH_CLIP: also the whole-clip kernels (the front end's DFT matrix and eight-frame
 * kernel, whole conv layers and max-pool maps). Any 8-byte aligned address (kernels align
 * inside). Every `scratch` argument below needs this much (any pointer where it is 0). */
enum { W2S_SCRATCH_ROWS = 0, W2S_SCRATCH_CLIP = 1 };
size_t      w2s_kernel_scratch_bytes(const w2s_config *c, int32_t what);

/* ---- conv stack (conv.c, pool.c) -------------------------------------------------------------- */

/* One output row of conv3x3 (stride 1, pad 1) + requantize + clamp. rows[0..2] are input rows
 * t-1, t, t+1, NULL where the row is padding. Layer 1 reads int16 log-mel, later layers int8.
 * isa: a w2s_isa (w2s_weights.isa). */
void w2s_conv3x3_row_s16(const w2s_conv_layer *l, int32_t isa, int32_t f, int32_t c_out,
                         const int16_t *const rows[3], int8_t *out, void *scratch);
void w2s_conv3x3_row_s8(const w2s_conv_layer *l, int32_t isa, int32_t f, int32_t c_in, int32_t c_out,
                        const int8_t *const rows[3], int8_t *out, void *scratch);
/* A whole layer: t rows of (f, c_in) (layer 1: (f)) at src to t rows of (f, c_out) at dst, rows -1 and t being
 * padding; the same values as w2s_conv3x3_row_s8 row by row. */
void w2s_conv3x3_layer_s16(const w2s_conv_layer *l, int32_t isa, int32_t t, int32_t f, int32_t c_out,
                           const int16_t *src, int8_t *dst, void *scratch);
void w2s_conv3x3_layer_s8(const w2s_conv_layer *l, int32_t isa, int32_t t, int32_t f, int32_t c_in,
                          int32_t c_out, const int8_t *src, int8_t *dst, void *scratch);

/* One output row of max-pool 3x3, stride 2, pad 1 (padding never wins). rows as above. */
void w2s_maxpool_row_s8(int32_t f_in, int32_t c, const int8_t *const rows[3], int8_t *out, void *scratch);
/* The whole map: t rows of (f_in, c) at src to (t + 1) / 2 rows of ((f_in + 1) / 2, c) at dst. */
void w2s_maxpool_s8(int32_t isa, int32_t t, int32_t f_in, int32_t c, const int8_t *src, int8_t *dst,
                    void *scratch);

/* ---- vox pooling, Gram, head (vox.c, head.c) ---------------------------------------------------- */

/* Online softmax state per (channel, mel bin), index c * F' + f. */
typedef struct {
    int32_t *ref;   /* integer log2 reference: ceil of the largest score so far */
    int64_t *sum;   /* sum of exp weights, Q_EXP, scaled by 2^-ref */
    int64_t *acc;   /* sum of exp weight * value accumulator */
    int32_t  n;     /* frames pushed */
} w2s_vox_state;

size_t w2s_vox_state_bytes(const w2s_config *c);
void   w2s_vox_init(const w2s_config *c, void *mem, w2s_vox_state *s);
/* Point s at the arrays in mem, keeping their contents (a stream's arena may have moved). */
void   w2s_vox_bind(const w2s_config *c, void *mem, w2s_vox_state *s);
void   w2s_vox_push_s8(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                       const int8_t *row, void *scratch);
/* n_rows frames, frame t at rows + t * stride bytes: n_rows calls of w2s_vox_push_s8, or a kernel
 * that gives the same state (kernels.h) */
void   w2s_vox_push_rows_s8(const w2s_config *c, const w2s_weights *w, w2s_vox_state *s,
                            const int8_t *rows, int32_t n_rows, size_t stride, void *scratch);
/* Pooled values P (C, F') and Gram G (C, C), both int16. */
void   w2s_vox_finish(const w2s_config *c, const w2s_weights *w, const w2s_vox_state *s,
                      int16_t *pooled, int16_t *gram);
/* The outputs from P and G; `modulation` (dB Q_DB) and `steady` (Q15) go into out and into the
 * decision. */
void   w2s_head(const w2s_config *c, const w2s_weights *w, const int16_t *pooled,
                const int16_t *gram, int32_t modulation, int32_t steady, w2s_output *out);

/* ---- forward pass with a trace hook (engine.c) ------------------------------------------------ */

/* Stage outputs handed to a trace callback, in order; data stays valid only during the call. */
typedef enum {
    W2S_TRACE_PRENORM,  /* int32 (2): mean, log2_var */
    W2S_TRACE_LOGMEL,   /* int16 (T, F) */
    W2S_TRACE_CONV,     /* int8 (T, F, C) after layer `layer` */
    W2S_TRACE_POOL,     /* int8 (T', F', C) */
    W2S_TRACE_POOLED,   /* int16 (C, F') */
    W2S_TRACE_GRAM,     /* int16 (C, C) */
    W2S_TRACE_MODULATION, /* int32 (1): dB Q_DB, with W2S_FLAG_UNCERTAINTY */
    W2S_TRACE_STEADY,   /* int32 (1): Q15, with W2S_FLAG_STEADY */
    W2S_TRACE_OUTPUT    /* int32 (n_outputs) */
} w2s_trace_stage;

typedef void (*w2s_trace_fn)(void *user, w2s_trace_stage stage, int32_t layer, const void *data,
                             int32_t d0, int32_t d1, int32_t d2);

w2s_status w2s_forward(const w2s_model *m, const int16_t *pcm, size_t n, void *arena,
                       size_t arena_len, w2s_output *out, w2s_trace_fn trace, void *user);

/* ---- streaming (stream.c) --------------------------------------------------------------------- */

/* Where a stream's arena goes (bytes, each slice rounded as placed); for the footprint table. */
typedef struct {
    size_t state;     /* struct w2s_stream, and the steadiness's arrays after it */
    size_t vox;       /* online softmax state */
    size_t lines;     /* frame buffer, line buffers of every layer, running max-pool row */
    size_t work_push; /* scratch of one push: log-mel row and scratch, two ping-pong rows */
    size_t work_read; /* scratch of one read: pending rows, one softmax column, pooled values, Gram */
    size_t kernel;    /* the row kernels' scratch, when it does not fit the stack buffer (stream.c) */
    size_t total;     /* = w2s_stream_arena_size() */
} w2s_stream_sizes;

void        w2s_stream_sizes_of(const w2s_config *c, w2s_stream_sizes *sizes);

/* The prenorm statistics the stream's next frame uses (running mode: the estimate so far). */
w2s_prenorm w2s_stream_prenorm(const w2s_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* W2S_INTERNAL_H */
