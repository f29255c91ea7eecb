/*
 * w2s.h - Wav2Small speech emotion recognition, int8 inference engine (C99, no malloc, no FPU).
 *
 * Usage:
 *
 *     #include "w2s.h"
 *
 *     w2s_model model;                                   // parsed view of a model buffer
 *     w2s_status st = w2s_model_init(&model, buf, len);  // buf: a .w2s file in memory, or the
 *     if (st != W2S_OK) puts(w2s_status_str(st));        //      array of a generated model header
 *
 *     size_t need = w2s_arena_size(&model, n_samples);   // bytes of working memory for this clip
 *     w2s_output out;
 *     st = w2s_predict_s16(&model, pcm, n_samples, arena, need, &out);
 *     // out.value[0..2] / 2^out.frac_bits = arousal, dominance, valence
 *
 * Thread safety: a w2s_model is read-only after w2s_model_init, so any number of threads may run
 * w2s_predict_s16 on one model at once, each with its own arena.
 *
 * Memory: the engine never allocates. The model buffer must stay alive and unchanged while the
 * w2s_model is used (the model points into it) and be 4-byte aligned; the arena is caller memory
 * of at least w2s_arena_size() bytes, 8-byte aligned. Every constant the engine needs (window,
 * DFT table, mel filterbank, exp table, scales, multipliers and shifts) comes from the model
 * buffer; docs/format.md specifies it and docs/numerics.md the integer arithmetic.
 *
 * Stack: no engine function needs more than 8 KB of it on any kernel set (gcc -fstack-usage;
 * tests/test_stack.py): the SIMD kernels' buffers (padded rows, rearranged weights, the DFT
 * matrix) are sized for the model and taken from the arena. A whole call, measured: under 5 KB
 * on Cortex-M (DSP or portable kernels; docs/engine.md has the firmware's figure per call); on
 * x86-64 and aarch64 Linux about 11 KB per w2s_predict_s16 and 17 KB per stream push or read (a
 * 6 KB stack buffer of the stream's row kernels included, stream.c), so 64 KB threads suffice.
 * These are optimised builds (-O1 and above, -Os); an -O0 build needs more (docs/engine.md).
 *
 * Alignment: the Cortex-M (DSP) and ARM Linux kernels load 4 int8 values with one LDR that need
 * not be word-aligned, which ARMv7E-M allows unless the firmware sets CCR.UNALIGN_TRP. If yours
 * does, build with -mno-unaligned-access (the DSP kernels stay, ~150 B more code) or with
 * -DW2S_NO_SIMD. Model and arena must be in Normal memory (not Device), as for any C data.
 */
#ifndef W2S_H
#define W2S_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define W2S_FORMAT_MAGIC    0x4D533257u /* "W2SM" read as a little-endian uint32 */
#define W2S_FORMAT_VERSION  3           /* the format version this engine reads */
#define W2S_HEADER_BYTES    64          /* fixed header size */

/* Header flags (docs/format.md). An engine rejects a flag it does not know (W2S_ERR_FORMAT). */
#define W2S_FLAG_UNCERTAINTY 1u /* outputs: n values, n log-sigmas, 1 speech logit; decide.params */
#define W2S_FLAG_STEADY      2u /* with W2S_FLAG_UNCERTAINTY: the decision reads the spectrum's
                                   steadiness too (w2s_output.steady); decide.steady */
#define W2S_KNOWN_FLAGS      (W2S_FLAG_UNCERTAINTY | W2S_FLAG_STEADY)

/* Limits of this engine; a model beyond them is rejected with W2S_ERR_FORMAT. W2S_MAX_CHANNELS
 * (16, 32, 48 or 64) and W2S_MAX_MELS (even, 2..128) may be lowered at build time for a known model
 * (-DW2S_MAX_CHANNELS=16 -DW2S_MAX_MELS=32 for the default): wider models are then refused, and
 * the few fixed per-channel arrays left on the stack shrink (the DSP and portable conv rows' by
 * 1.7 KB). The arena does not change: it is sized for the model's own shape. No public struct
 * depends on them, so an application built with the defaults links with such a library. */
#define W2S_MAX_LAYERS      16
#ifndef W2S_MAX_CHANNELS
#define W2S_MAX_CHANNELS    64
#endif
#ifndef W2S_MAX_MELS
#define W2S_MAX_MELS        128
#endif
#if W2S_MAX_CHANNELS < 16 || W2S_MAX_CHANNELS > 64 || W2S_MAX_CHANNELS % 16 != 0
#error "W2S_MAX_CHANNELS must be 16, 32, 48 or 64"
#endif
#if W2S_MAX_MELS < 2 || W2S_MAX_MELS > 128 || W2S_MAX_MELS % 2 != 0
#error "W2S_MAX_MELS must be even, 2..128"
#endif
#define W2S_MAX_FFT         256
#define W2S_MAX_OUTPUTS     16
#define W2S_MAX_SAMPLES     (1L << 24)  /* 17.5 min at 16 kHz: keeps the prenorm sums in 64 bits */

/* Fixed-point conventions of the format (docs/numerics.md). */
#define W2S_Q_PCM           4   /* prenorm works on (pcm * 2^4 - mean), mean in the same units */
#define W2S_Q_TRIG          30  /* window and cosine tables (int32: Q15 leaves -90 dB of leakage) */
#define W2S_Q_WINDOWED      8   /* windowed samples keep 8 fraction bits (4 more than Q_PCM) */
#define W2S_Q_LOG           16  /* log2 values */
#define W2S_Q_DB            8   /* log-mel in dB, the input of layer 1 (int16) */
#define W2S_Q_EXP_LUT       30  /* exp2 table entries */
#define W2S_Q_EXP           20  /* softmax weights of vox pooling */
#define W2S_EXP_LUT_SIZE    65  /* 2^(-i/64) for i = 0..64 */

typedef enum {
    W2S_OK              =  0,  /**< success */
    W2S_ERR_ARG         = -1,  /**< NULL pointer, misaligned buffer or parameter out of range */
    W2S_ERR_TRUNCATED   = -2,  /**< model buffer shorter than its header says */
    W2S_ERR_MAGIC       = -3,  /**< not a wav2small model (bad magic) */
    W2S_ERR_VERSION     = -4,  /**< model format version this engine does not read */
    W2S_ERR_CHECKSUM    = -5,  /**< CRC-32 of the model does not match */
    W2S_ERR_FORMAT      = -6,  /**< inconsistent header, size or value out of range */
    W2S_ERR_ARENA       = -7,  /**< arena NULL, misaligned or smaller than w2s_arena_size() */
    W2S_ERR_TOO_SHORT   = -8,  /**< fewer samples than one STFT frame (n_fft) */
    W2S_ERR_TOO_LONG    = -9   /**< more than W2S_MAX_SAMPLES samples, or 2^20 STFT frames (a hop below 16) */
} w2s_status;

/* Model configuration, read from the file header. */
typedef struct {
    int32_t sample_rate;   /* Hz the model expects */
    int32_t n_fft;         /* STFT size = window length */
    int32_t hop;           /* STFT hop */
    int32_t n_mels;        /* mel bands F */
    int32_t channels;      /* conv width C */
    int32_t n_layers;      /* conv3x3 layers */
    int32_t pool_after;    /* max-pool follows this layer (1-based) */
    int32_t n_outputs;     /* outputs (3: arousal, dominance, valence) */
    int32_t out_frac_bits; /* output value = value / 2^out_frac_bits */
    int32_t mel_weights;   /* nonzero band weights stored of the mel filterbank */
    uint32_t flags;        /* W2S_FLAG_* */
} w2s_config;

/* What a model with an uncertainty head says about one clip (w2s_output.decision). */
typedef enum {
    W2S_RELIABLE       = 0, /**< speech, and every dimension's sigma within the threshold */
    W2S_NO_SPEECH      = 1, /**< the speech logit, or the modulation, is below its threshold, or
                                 the steadiness above its own */
    W2S_TOO_UNCERTAIN  = 2, /**< speech, but some dimension's log-sigma is above its threshold */
    W2S_NO_DECISION    = 3  /**< the model has no uncertainty head */
} w2s_decision;

/* Thresholds of the decision: the first two in output units (value / 2^out_frac_bits). */
typedef struct {
    int32_t max_log_sigma;    /* natural log of the largest acceptable sigma */
    int32_t min_speech_logit; /* smallest speech logit (log-odds) still taken for speech */
    int32_t min_modulation;   /* smallest modulation (w2s_output.modulation, dB Q_DB) still taken
                                 for speech; 0 lets every clip through */
    int32_t max_steady;       /* with W2S_FLAG_STEADY: largest steadiness (w2s_output.steady, Q15)
                                 still taken for speech; W2S_STEADY_ONE lets every clip through */
} w2s_thresholds;

#define W2S_STEADY_ONE 32768 /* steadiness 1.0: every loud block pair keeps its spectral shape */

typedef struct {
    int32_t value[W2S_MAX_OUTPUTS]; /* fixed point, n_outputs of them */
    int32_t n_outputs;
    int32_t frac_bits;              /* value[i] / 2^frac_bits is the real output */
    int32_t decision;               /* w2s_decision, by the model's own thresholds */
    int32_t modulation;             /* with W2S_FLAG_UNCERTAINTY: how much the clip's level rises and
                                       falls over time, dB in Q_DB (docs/numerics.md); else 0 */
    int32_t steady;                 /* with W2S_FLAG_STEADY: the share of consecutive loud blocks
                                       whose spectral shape stays the same (0..W2S_STEADY_ONE, Q15:
                                       a held tone or note, not speech); else 0 */
} w2s_output;

/* ---- private: views into the model buffer, filled by w2s_model_init (do not touch) -------- */
typedef struct {
    int32_t input_offset, output_offset, act_min, act_max; /* TFLM signs: offset = -zp_in, +zp_out */
    const int8_t  *w;       /* (C_out, 3, 3, C_in) */
    const int32_t *bias;    /* (C_out) */
    const int32_t *mult;    /* (C_out) */
    const int32_t *shift;   /* (C_out) */
} w2s_conv_layer;

typedef struct {
    /* front end */
    int32_t pcm_eps;        /* prenorm epsilon in (pcm * 2^Q_PCM)^2 units */
    int32_t mel_shift;      /* mel weights are real * 2^mel_shift */
    int32_t pow_bits;       /* power spectrum is shifted to at most this many bits before the mel sum */
    int32_t log_floor;      /* log2(amin) in Q_LOG */
    int32_t db_mult, db_shift; /* log2 Q_LOG -> dB Q_DB */
    const int32_t  *window; /* (n_fft) Q_TRIG */
    const int32_t  *cosine; /* (n_fft) Q_TRIG, cos(2 pi i / n_fft) */
    const uint16_t *mel_band; /* (n_mels, 2): first bin and number of bins of each band */
    const uint16_t *mel;    /* (mel_weights): the bands' weights, band after band */
    /* conv stack */
    w2s_conv_layer layer[W2S_MAX_LAYERS];
    int32_t isa;            /* inner loops (csrc/kernels.h): 0 = the best this CPU runs; tests force others */
    /* vox pooling */
    int32_t vox_input_offset;
    int32_t gram_shift;     /* Gram accumulators -> int16 by this rounding right shift */
    int32_t value_shift;    /* value accumulators -> |v| < 2^22 by this rounding right shift */
    const int16_t *lin_w;   /* (C, C) values: int16, the pooled values feed a second-order Gram */
    const int32_t *lin_b;   /* (C) */
    const int8_t  *sof_w;   /* (C, C) scores */
    const int32_t *sof_b;   /* (C) */
    const int32_t *sof_mult, *sof_shift;   /* (C) score accumulator -> log2 Q_LOG */
    const int32_t *pool_mult, *pool_shift; /* (C) pooled accumulator -> int16 */
    const uint32_t *exp_lut;               /* (W2S_EXP_LUT_SIZE) Q_EXP_LUT */
    /* head: outputs from the pooled part P and the Gram part G */
    int32_t head_pre_shift_p, head_pre_shift_g; /* int64 sums -> int32 */
    const int16_t *head_w;  /* (n_wide, C, F' + C): A/D/V rows (every row without uncertainty) */
    const int8_t  *head_uw; /* (n_outputs - n_wide, C, F' + C): log-sigma and speech rows, or NULL */
    const int32_t *head_b;  /* (n_outputs) in output units */
    const int32_t *head_mult_p, *head_shift_p; /* (n_outputs) */
    const int32_t *head_mult_g, *head_shift_g; /* (n_outputs) */
    /* uncertainty (W2S_FLAG_UNCERTAINTY): the default thresholds of the decision, and the frames
     * per block of the modulation measure */
    w2s_thresholds thresholds;
    int32_t mod_block;
    /* W2S_FLAG_STEADY (modulation.c): frames per block, the level a block's loudest band must
     * reach (dB Q_DB), and the smallest cos^2 of two blocks' spectral shapes taken as the same (Q12) */
    int32_t steady_block, steady_level, steady_cos2;
} w2s_weights;
/* ------------------------------------------------------------------------------------------- */

typedef struct {
    w2s_config  config;   /* public, read-only */
    w2s_weights w;        /* private */
} w2s_model;

/**
 * Parse and validate a model buffer (format version W2S_FORMAT_VERSION) without copying it.
 * @param[out] model  filled on success, untouched on failure
 * @param[in]  buf    model bytes, 4-byte aligned, alive while model is used
 * @param[in]  len    bytes in buf
 * @return W2S_OK, W2S_ERR_ARG (model or buf NULL, buf not 4-byte aligned, or a big-endian host:
 *         the tensors are read in place, little-endian), W2S_ERR_TRUNCATED, W2S_ERR_MAGIC,
 *         W2S_ERR_VERSION, W2S_ERR_CHECKSUM or W2S_ERR_FORMAT
 */
w2s_status  w2s_model_init(w2s_model *model, const void *buf, size_t len);

/**
 * Bytes of arena w2s_predict_s16 needs for a clip of n_samples; 0 if model is NULL or was not
 * filled by w2s_model_init, if n_samples is out of range
 * (fewer than n_fft, more than W2S_MAX_SAMPLES, or more than 2^20 STFT frames), or if the arena would not fit in a size_t (a
 * long clip of a wide model on a 32-bit target; w2s_predict_s16 then returns W2S_ERR_TOO_LONG).
 * It includes the SIMD kernels' scratch for every kernel set of the build (38 KB for the default
 * model on x86-64, 2.4 KB on aarch64, none on Cortex-M), so it depends on the build, not the CPU.
 */
size_t      w2s_arena_size(const w2s_model *model, size_t n_samples);

/**
 * Run the whole model on one clip of mono int16 PCM at config.sample_rate.
 * @param[in]  model      initialised model
 * @param[in]  pcm        n_samples samples
 * @param[in]  arena      working memory, 8-byte aligned, arena_len >= w2s_arena_size()
 * @param[out] out        outputs in fixed point
 * @return W2S_OK, W2S_ERR_ARG, W2S_ERR_ARENA, W2S_ERR_TOO_SHORT or W2S_ERR_TOO_LONG
 */
w2s_status  w2s_predict_s16(const w2s_model *model, const int16_t *pcm, size_t n_samples,
                            void *arena, size_t arena_len, w2s_output *out);

/* ---- streaming ------------------------------------------------------------------------------
 *
 *     w2s_stream *s;
 *     size_t need = w2s_stream_arena_size(&model);       // constant: independent of clip length
 *     w2s_stream_params p = w2s_stream_default_params();  // running prenorm estimate
 *     st = w2s_stream_init(&s, &model, &p, arena, need); // s points into the arena
 *     while (more audio) w2s_stream_push_s16(s, chunk, n_chunk);   // any chunk size, even 1
 *     st = w2s_stream_read(s, &out);                     // A/D/V so far; the stream goes on
 *
 * The stream computes exactly the batch forward pass, one STFT frame at a time: each conv layer
 * keeps its last two input rows, the max-pool one running row, vox pooling its online softmax.
 * Reading finishes a copy of the pending rows (the bottom padding of every layer), so a read
 * never changes what later pushes compute. With W2S_PRENORM_FIXED and the statistics of the whole
 * clip (w2s_clip_stats: a first pass), read after the last push is bit-identical with
 * w2s_predict_s16 on that clip. W2S_PRENORM_RUNNING needs no first pass (docs/engine.md has its
 * measured cost). A stream is used by one thread at a time; it lives entirely in its arena, which
 * holds no pointer into itself: between calls the arena may be copied or moved (e.g. to retention
 * RAM across a deep sleep) and the stream goes on at its new address, (w2s_stream *)new_arena, as
 * long as the model stays where it was and new_arena is 8-byte aligned like the first (push and
 * read do not check it again). */

typedef struct w2s_stream w2s_stream; /* opaque; lives at the start of its arena */

typedef enum {
    W2S_PRENORM_RUNNING = 0, /**< estimate mean and variance from the audio so far (causal) */
    W2S_PRENORM_FIXED   = 1  /**< use w2s_stream_params.stats (a clip's, or a calibrated level) */
} w2s_prenorm_mode;

/* Prenorm statistics: what the batch engine computes from the whole clip. */
typedef struct {
    int32_t mean;     /* mean of pcm * 2^W2S_Q_PCM, rounded; |mean| <= W2S_STATS_MAX_ABS_MEAN */
    int32_t log2_var; /* log2(variance + eps) in Q_LOG, variance in (pcm * 2^Q_PCM)^2 units,
                         0..W2S_STATS_MAX_LOG2_VAR */
} w2s_stats;
/* The ranges w2s_stream_init accepts: every int16 clip's mean is within the first; the second
   bounds the prior's running sums (prior_samples * variance) in 64 bits. */
#define W2S_STATS_MAX_ABS_MEAN (1 << 19)
#define W2S_STATS_MAX_LOG2_VAR (39 * (1 << W2S_Q_LOG))

typedef struct {
    int32_t   prenorm;       /* w2s_prenorm_mode */
    w2s_stats stats;         /* FIXED: the statistics every frame uses; RUNNING: the prior */
    int32_t   log2_window;   /* RUNNING: the estimate covers about the last 2^log2_window samples
                                (exact running sums before that many), MIN..MAX_LOG2_WINDOW */
    int32_t   prior_samples; /* RUNNING: the estimate starts as if this many samples had shown
                                `stats` (0: no prior, the first frame alone), 0..2^log2_window */
} w2s_stream_params;

#define W2S_STREAM_MIN_LOG2_WINDOW 8  /* 256 samples: one frame (n_fft <= 256) always fits */
#define W2S_STREAM_MAX_LOG2_WINDOW 20 /* 65 s at 16 kHz; keeps the running sums in 64 bits */

/** Defaults: W2S_PRENORM_RUNNING with the window docs/engine.md recommends. */
w2s_stream_params w2s_stream_default_params(void);

/**
 * The prenorm statistics of a whole clip, exactly as w2s_predict_s16 computes them.
 * @return W2S_OK, W2S_ERR_ARG, W2S_ERR_TOO_SHORT or W2S_ERR_TOO_LONG (same limits as batch)
 */
w2s_status  w2s_clip_stats(const w2s_model *model, const int16_t *pcm, size_t n_samples,
                           w2s_stats *stats);

/** Bytes of arena one stream needs (state, line buffers and read scratch, and the SIMD row kernels'
 *  scratch for models wider than the default); 0 if model is NULL. */
size_t      w2s_stream_arena_size(const w2s_model *model);

/**
 * Start a stream in caller memory. The model must outlive the stream.
 * @param[out] stream  set to the stream (inside arena) on success
 * @param[in]  params  NULL for w2s_stream_default_params()
 * @param[in]  arena   8-byte aligned, arena_len >= w2s_stream_arena_size(model)
 * @return W2S_OK, W2S_ERR_ARG (NULL model/stream, or params out of range) or W2S_ERR_ARENA
 */
w2s_status  w2s_stream_init(w2s_stream **stream, const w2s_model *model,
                            const w2s_stream_params *params, void *arena, size_t arena_len);

/**
 * Feed n_samples of mono int16 PCM (any n, 0 included). Runs every frame the chunk completes.
 * @return W2S_OK, W2S_ERR_ARG, or W2S_ERR_TOO_LONG when the stream would pass 2^20
 *         STFT frames (35 min at 16 kHz); then nothing of the chunk is consumed: read, then reset
 */
w2s_status  w2s_stream_push_s16(w2s_stream *stream, const int16_t *pcm, size_t n_samples);

/**
 * Outputs for all audio pushed so far, as if the clip ended here. Does not change the stream.
 * @return W2S_OK, W2S_ERR_ARG, or W2S_ERR_TOO_SHORT before the first n_fft samples
 */
w2s_status  w2s_stream_read(w2s_stream *stream, w2s_output *out);

/** Forget all audio (a new clip) and keep the params. @return W2S_OK or W2S_ERR_ARG */
w2s_status  w2s_stream_reset(w2s_stream *stream);

/** Samples pushed since init or reset (0 for NULL). */
uint64_t    w2s_stream_samples(const w2s_stream *stream);

/* ---- uncertainty ------------------------------------------------------------------------------
 *
 * A model with W2S_FLAG_UNCERTAINTY has n_outputs = 2 n + 1: value[0..n-1] the predictions
 * (A/D/V), value[n..2n-1] the natural log of each one's sigma, value[2n] a speech logit, all in
 * output units, and out.modulation the level's modulation (dB Q_DB); with W2S_FLAG_STEADY also
 * out.steady, the spectrum's steadiness (Q15). Every prediction sets
 * out.decision by the model's thresholds; w2s_decide applies other thresholds to an output without
 * running the model again. */

/** The model's own thresholds. Without an uncertainty head (or with a NULL model): W2S_ERR_ARG, and
 *  thresholds, if not NULL, set to zeros with max_steady W2S_STEADY_ONE. */
w2s_status  w2s_default_thresholds(const w2s_model *model, w2s_thresholds *thresholds);

/**
 * The decision for an output of this model: W2S_NO_SPEECH if value[2n] < min_speech_logit or
 * modulation < min_modulation or (W2S_FLAG_STEADY) steady > max_steady, else
 * W2S_TOO_UNCERTAIN if any value[n + d] > max_log_sigma, else W2S_RELIABLE; W2S_NO_DECISION for a
 * model without an uncertainty head, or NULL arguments, or an output of another model shape.
 */
w2s_decision w2s_decide(const w2s_model *model, const w2s_output *out, const w2s_thresholds *thresholds);

/** A short English description of a status code (never NULL). */
const char *w2s_status_str(w2s_status status);

#ifdef __cplusplus
}
#endif

#endif /* W2S_H */
