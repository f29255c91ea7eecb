/*
 * test_w2s.c - C tests of the engine that need no Python: rounding rules, model validation,
 * error codes, arena bounds, determinism, streaming (bit-identical with batch for every chunk
 * size tried). Prints "test_w2s: PASS" or "FAIL" on the last line.
 *
 *     test_w2s model.w2s [clip.raw ...]
 *
 * Each clip (raw little-endian int16, 16 kHz) also prints one line of fixed-point outputs,
 * "clip NAME: batch a d v stream a d v running a d v", so that runs on other targets (qemu-user,
 * the MPS2 firmware) can be compared with the host's bit for bit.
 *
 * The exhaustive comparisons (every stage bit-exact with the NumPy reference, fidelity against
 * the float model) live in tests/ and run through the Python binding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check/host_file.h"
#include "requant.h"
#include "w2s_internal.h"

static int failures = 0;

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            printf("  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);      \
            failures++;                                                   \
        }                                                                 \
    } while (0)

static int same(const w2s_output *a, const w2s_output *b) {
    return a->n_outputs == b->n_outputs && a->frac_bits == b->frac_bits &&
           memcmp(a->value, b->value, sizeof a->value) == 0 && a->modulation == b->modulation &&
           a->steady == b->steady && a->decision == b->decision;
}

/* An output as the Python binding returns it: the values, then an uncertainty head's modulation
 * and steadiness. */
static void print_fixed(const char *label, const w2s_model *m, const w2s_output *o) {
    int32_t k;
    printf(" %s", label);
    for (k = 0; k < o->n_outputs; k++) printf(" %ld", (long)o->value[k]);
    if (m->config.flags & W2S_FLAG_UNCERTAINTY) printf(" %ld", (long)o->modulation);
    if (m->config.flags & W2S_FLAG_STEADY) printf(" %ld", (long)o->steady);
}

static void test_rounding(void) {
    CHECK(w2s_requantize(12345, 1 << 30, 1) == 12345);     /* M = 1 */
    CHECK(w2s_requantize(3, 1 << 30, 0) == 2);             /* 1.5 -> 2: the high multiply rounds */
    CHECK(w2s_requantize(-3, 1 << 30, 0) == -1);           /* -1.5 -> -1   half up (VQRDMULH) */
    CHECK(w2s_requantize(-3, 1 << 30, -1) == -1);          /* -1.5 -> -1, then -0.5 -> -1 (away) */
    CHECK(w2s_requantize(1000, 1 << 30, 5) == 16000);      /* positive shift: 1000 * 2^5 / 2 */
    CHECK(w2s_requantize(1 << 30, 1 << 30, 30) == 1 << 30); /* left shift saturates first */
    CHECK(w2s_requantize(INT32_MIN, INT32_MAX, 0) == -INT32_MAX);
    CHECK(w2s_srdhm(INT32_MIN, INT32_MIN) == INT32_MAX);
    CHECK(w2s_rshift_round(-5, 1) == -3 && w2s_rshift_round(5, 1) == 3 && w2s_rshift_round(-4, 1) == -2);
    CHECK(w2s_rshift_round(7, 0) == 7 && w2s_rshift_round(-7, 63) == 0);
    CHECK(w2s_div_round(5, 2) == 3 && w2s_div_round(-5, 2) == -3 && w2s_div_round(4, 3) == 1);
    CHECK(w2s_log2_q16(1) == 0 && w2s_log2_q16(2) == 65536);
    CHECK(w2s_log2_q16((uint64_t)1 << 63) == 63 * 65536);
    CHECK(abs(w2s_log2_q16(3) - 103872) <= 1); /* log2(3) = 1.5849625 */
}

static w2s_status init_copy(const uint8_t *src, size_t len, size_t misalign, w2s_model *m) {
    uint32_t *mem = (uint32_t *)malloc(len + 8);
    w2s_status st;
    memcpy((uint8_t *)mem + misalign, src, len);
    st = w2s_model_init(m, (uint8_t *)mem + misalign, len);
    free(mem);
    return st;
}

static void test_model_errors(const uint8_t *buf, size_t len) {
    w2s_model m;
    uint8_t *bad = (uint8_t *)malloc(len);
    CHECK(w2s_model_init(NULL, buf, len) == W2S_ERR_ARG);
    CHECK(w2s_model_init(&m, NULL, len) == W2S_ERR_ARG);
    CHECK(init_copy(buf, len, 1, &m) == W2S_ERR_ARG);          /* misaligned */
    CHECK(init_copy(buf, 2, 0, &m) == W2S_ERR_TRUNCATED);
    CHECK(init_copy(buf, 40, 0, &m) == W2S_ERR_TRUNCATED);
    CHECK(init_copy(buf, len - 1, 0, &m) == W2S_ERR_TRUNCATED);
    memcpy(bad, buf, len);
    bad[0] ^= 0xFF;
    CHECK(init_copy(bad, len, 0, &m) == W2S_ERR_MAGIC);
    memcpy(bad, buf, len);
    bad[4] = (uint8_t)(W2S_FORMAT_VERSION + 1); /* a newer version */
    CHECK(init_copy(bad, len, 0, &m) == W2S_ERR_VERSION);
    memcpy(bad, buf, len);
    bad[len / 2] ^= 0x10; /* one flipped bit in the weights */
    CHECK(init_copy(bad, len, 0, &m) == W2S_ERR_CHECKSUM);
    free(bad);
}

/* A deterministic test signal: two chirping tones and a little noise (LCG, fixed seed). */
/* A w2s_model that w2s_model_init never filled (zeroed, as init leaves a static model it rejects):
 * every entry point refuses it instead of dividing by its zero hop. */
static void test_zeroed_model(void) {
    w2s_model zero;
    int16_t pcm[2000];
    uint64_t arena[8];
    w2s_output out;
    w2s_stats st;
    w2s_stream *s;
    memset(&zero, 0, sizeof zero);
    memset(pcm, 0, sizeof pcm);
    CHECK(w2s_arena_size(&zero, 2000) == 0 && w2s_stream_arena_size(&zero) == 0);
    CHECK(w2s_predict_s16(&zero, pcm, 2000, arena, sizeof arena, &out) == W2S_ERR_ARG);
    CHECK(w2s_clip_stats(&zero, pcm, 2000, &st) == W2S_ERR_ARG);
    CHECK(w2s_stream_init(&s, &zero, NULL, arena, sizeof arena) == W2S_ERR_ARG);
}

static void synth(int16_t *pcm, size_t n) {
    uint32_t seed = 12345u;
    int32_t phase1 = 0, phase2 = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        int32_t tri1, tri2, noise;
        phase1 += 900 + (int32_t)(i / 64);
        phase2 += 2300;
        tri1 = (phase1 & 0xFFFF) < 0x8000 ? (phase1 & 0x7FFF) - 0x4000 : 0x4000 - (phase1 & 0x7FFF);
        tri2 = (phase2 & 0xFFFF) < 0x8000 ? (phase2 & 0x7FFF) - 0x4000 : 0x4000 - (phase2 & 0x7FFF);
        seed = seed * 1664525u + 1013904223u;
        noise = (int32_t)(seed >> 22) - 512;
        pcm[i] = (int16_t)((tri1 + tri2 / 2) / 2 + noise);
    }
}

static void test_predict(const w2s_model *m) {
    const size_t n = 16000, need = w2s_arena_size(m, n);
    int16_t *pcm = (int16_t *)malloc(n * sizeof(int16_t));
    uint8_t *arena = (uint8_t *)malloc(need + 64);
    w2s_output a, b;
    size_t i;
    int canary_ok = 1;
    synth(pcm, n);
    CHECK(need > 0);
    CHECK(w2s_arena_size(m, (size_t)m->config.n_fft - 1) == 0);
    CHECK(w2s_predict_s16(m, pcm, (size_t)m->config.n_fft - 1, arena, need, &a) == W2S_ERR_TOO_SHORT);
    CHECK(w2s_predict_s16(m, pcm, (size_t)W2S_MAX_SAMPLES + 1, arena, need, &a) == W2S_ERR_TOO_LONG);
    CHECK(w2s_predict_s16(m, pcm, n, arena, need - 1, &a) == W2S_ERR_ARENA);
    CHECK(w2s_predict_s16(m, pcm, n, arena + 1, need, &a) == W2S_ERR_ARENA);
    CHECK(w2s_predict_s16(m, pcm, n, NULL, need, &a) == W2S_ERR_ARENA);
    CHECK(w2s_predict_s16(m, NULL, n, arena, need, &a) == W2S_ERR_ARG);
    memset(arena + need, 0xA5, 64);
    CHECK(w2s_predict_s16(m, pcm, n, arena, need, &a) == W2S_OK);
    for (i = 0; i < 64; i++) canary_ok &= arena[need + i] == 0xA5; /* nothing written past the arena */
    CHECK(canary_ok);
    memset(arena, 0x5A, need); /* stale arena contents must not matter */
    CHECK(w2s_predict_s16(m, pcm, n, arena, need, &b) == W2S_OK);
    CHECK(a.n_outputs == m->config.n_outputs && same(&a, &b));
    printf("  synth 1 s:");
    for (i = 0; i < (size_t)a.n_outputs; i++) printf(" %ld", (long)a.value[i]);
    printf(" (/2^%d), arena %lu bytes\n", (int)a.frac_bits, (unsigned long)need);
    free(arena);
    free(pcm);
}

/* The arena of the widest shape the format allows (128 mels x 64 channels, hop 8) for a quarter of
 * the longest clip: 2^19 frames, two maps of 4 GiB each. It must never come out smaller than that
 * (size_t wrapped on 32-bit targets: an arena of 134 MB, and the run wrote far past it); where a
 * size_t cannot hold it, the size is 0 and a run is W2S_ERR_TOO_LONG. Only the size is computed. */
static void test_arena_of_a_huge_shape(const w2s_model *m) {
    w2s_model wide = *m;
    const size_t n = (size_t)W2S_MAX_SAMPLES / 4;
    uint64_t maps;
    size_t need;
    w2s_output out;
    uint64_t arena[1];
    wide.config.n_mels = W2S_MAX_MELS;
    wide.config.channels = W2S_MAX_CHANNELS;
    wide.config.hop = 8;
    maps = 2 * (uint64_t)((n - (size_t)wide.config.n_fft) / 8 + 1) * W2S_MAX_MELS * W2S_MAX_CHANNELS;
    need = w2s_arena_size(&wide, n);
    if (maps > (uint64_t)SIZE_MAX) {
        CHECK(need == 0);
        CHECK(w2s_predict_s16(&wide, (const int16_t *)(const void *)arena, n, arena, sizeof arena, &out) ==
              W2S_ERR_TOO_LONG);
    } else {
        CHECK((uint64_t)need >= maps);
    }
}

/* A model with a hop below 16 reaches 2^20 frames before W2S_MAX_SAMPLES: batch, its arena size and
 * w2s_clip_stats all refuse the same lengths (clip_stats checked samples only). No sample is read
 * past the limit check, so a one-sample buffer stands in for the clip. */
static void test_frame_limit_of_a_small_hop(const w2s_model *m) {
    w2s_model fine = *m;
    const size_t max_n = ((size_t)1 << 20) * 8 + (size_t)m->config.n_fft - 8; /* 2^20 frames at hop 8 */
    const int16_t one[1] = {0};
    w2s_stats st;
    w2s_output out;
    uint64_t arena[1];
    fine.config.hop = 8;
    CHECK(w2s_arena_size(&fine, max_n) > 0);
    CHECK(w2s_arena_size(&fine, max_n + 8) == 0);
    CHECK(w2s_predict_s16(&fine, one, max_n + 8, arena, sizeof arena, &out) == W2S_ERR_TOO_LONG);
    CHECK(w2s_clip_stats(&fine, one, max_n + 8, &st) == W2S_ERR_TOO_LONG);
    CHECK(w2s_clip_stats(&fine, one, (size_t)m->config.n_fft - 1, &st) == W2S_ERR_TOO_SHORT);
}

/* The decision of an uncertainty head: the one rule of w2s.h, for any thresholds. */
static void test_decision(const w2s_model *m) {
    const size_t n = 8000, need = w2s_arena_size(m, n);
    int16_t *pcm = (int16_t *)malloc(n * sizeof(int16_t));
    uint8_t *arena = (uint8_t *)malloc(need);
    w2s_output out, other;
    w2s_thresholds t, def;
    int32_t nv, d, top;
    synth(pcm, n);
    CHECK(w2s_predict_s16(m, pcm, n, arena, need, &out) == W2S_OK);
    CHECK(w2s_default_thresholds(NULL, &t) == W2S_ERR_ARG && w2s_default_thresholds(m, NULL) == W2S_ERR_ARG);
    CHECK(w2s_decide(NULL, &out, &t) == W2S_NO_DECISION && w2s_decide(m, NULL, &t) == W2S_NO_DECISION);
    if (!(m->config.flags & W2S_FLAG_UNCERTAINTY)) {
        CHECK(out.decision == W2S_NO_DECISION && w2s_default_thresholds(m, &t) == W2S_ERR_ARG);
        printf("  decision: no uncertainty head\n");
    } else {
        CHECK(w2s_default_thresholds(m, &def) == W2S_OK);
        CHECK(w2s_decide(m, &out, &def) == (w2s_decision)out.decision); /* the pass used the defaults */
        nv = (m->config.n_outputs - 1) / 2;
        for (top = out.value[nv], d = 1; d < nv; d++) top = out.value[nv + d] > top ? out.value[nv + d] : top;
        t.max_log_sigma = top;
        t.min_speech_logit = out.value[2 * nv];
        t.min_modulation = out.modulation;
        t.max_steady = out.steady;
        CHECK(w2s_decide(m, &out, &t) == W2S_RELIABLE); /* all four at their limits */
        t.max_log_sigma = top - 1;
        CHECK(w2s_decide(m, &out, &t) == W2S_TOO_UNCERTAIN);
        t.min_modulation = out.modulation + 1;
        CHECK(w2s_decide(m, &out, &t) == W2S_NO_SPEECH); /* a level too steady is no speech */
        t.min_modulation = out.modulation;
        if (m->config.flags & W2S_FLAG_STEADY) {
            CHECK(out.steady >= 0 && out.steady <= W2S_STEADY_ONE);
            if (out.steady > 0) {
                t.max_steady = out.steady - 1;
                CHECK(w2s_decide(m, &out, &t) == W2S_NO_SPEECH); /* a spectrum too steady is no speech */
            }
            t.max_steady = out.steady;
        } else {
            CHECK(out.steady == 0 && def.max_steady == W2S_STEADY_ONE);
        }
        t.min_speech_logit = out.value[2 * nv] + 1;
        CHECK(w2s_decide(m, &out, &t) == W2S_NO_SPEECH); /* speech is checked first */
        other = out;
        other.n_outputs = 3;
        CHECK(w2s_decide(m, &other, &t) == W2S_NO_DECISION); /* an output of another shape */
        printf("  decision of synth 0.5 s: %d, modulation %ld, steady %ld (thresholds %ld, %ld, %ld, %ld)\n",
               (int)out.decision, (long)out.modulation, (long)out.steady, (long)def.max_log_sigma,
               (long)def.min_speech_logit, (long)def.min_modulation, (long)def.max_steady);
    }
    free(arena);
    free(pcm);
}

/* ---- streaming ------------------------------------------------------------------------------ */

/* Stream pcm in chunks of `chunk` samples (FIXED prenorm with the clip's own statistics), reading
 * (non-destructively) every `read_every` chunks; returns the final read. */
static w2s_status stream_clip(const w2s_model *m, const w2s_stream_params *p, const int16_t *pcm,
                              size_t n, size_t chunk, size_t read_every, uint8_t *arena, size_t len,
                              w2s_output *out) {
    w2s_stream *s;
    w2s_output mid;
    size_t i, k = 0;
    w2s_status st = w2s_stream_init(&s, m, p, arena, len);
    if (st != W2S_OK) return st;
    for (i = 0; i < n; i += chunk, k++) {
        st = w2s_stream_push_s16(s, pcm + i, n - i < chunk ? n - i : chunk);
        if (st != W2S_OK) return st;
        if (read_every && k % read_every == 0) (void)w2s_stream_read(s, &mid);
    }
    return w2s_stream_read(s, out);
}

static w2s_stream_params fixed_params(const w2s_model *m, const int16_t *pcm, size_t n) {
    w2s_stream_params p = w2s_stream_default_params();
    p.prenorm = W2S_PRENORM_FIXED;
    CHECK(w2s_clip_stats(m, pcm, n, &p.stats) == W2S_OK);
    return p;
}

static void test_stream(const w2s_model *m) {
    static const size_t chunks[] = {1, 7, 31, 32, 33, 64, 100, 160, 1000, 4096, 16000};
    /* clip lengths past one frame: T = 1, 2, 3, ... frames and ragged ends */
    static const size_t prefixes[] = {0, 1, 31, 32, 33, 63, 64, 65, 96, 128, 160, 192, 224, 256,
                                      288, 320, 352, 384, 416, 448, 936, 1953};
    const size_t n = 16000, len = w2s_stream_arena_size(m);
    int16_t *pcm = (int16_t *)malloc(n * sizeof(int16_t));
    uint8_t *arena = (uint8_t *)malloc(len + 64), *batch_arena = (uint8_t *)malloc(w2s_arena_size(m, n));
    w2s_stream_params p = w2s_stream_default_params(), bad;
    w2s_stream *s;
    w2s_output ref, out, out2;
    size_t i;
    int ok = 1, canary_ok = 1;

    synth(pcm, n);
    CHECK(len > 0 && w2s_stream_arena_size(NULL) == 0);
    CHECK(w2s_predict_s16(m, pcm, n, batch_arena, w2s_arena_size(m, n), &ref) == W2S_OK);

    /* argument and arena errors */
    CHECK(w2s_stream_init(NULL, m, &p, arena, len) == W2S_ERR_ARG);
    CHECK(w2s_stream_init(&s, NULL, &p, arena, len) == W2S_ERR_ARG);
    CHECK(w2s_stream_init(&s, m, &p, arena, len - 1) == W2S_ERR_ARENA);
    CHECK(w2s_stream_init(&s, m, &p, arena + 4, len) == W2S_ERR_ARENA);
    CHECK(w2s_stream_init(&s, m, &p, NULL, len) == W2S_ERR_ARENA);
    bad = p;
    bad.log2_window = W2S_STREAM_MAX_LOG2_WINDOW + 1;
    CHECK(w2s_stream_init(&s, m, &bad, arena, len) == W2S_ERR_ARG);
    bad.prenorm = 7;
    CHECK(w2s_stream_init(&s, m, &bad, arena, len) == W2S_ERR_ARG);
    bad.prenorm = W2S_PRENORM_FIXED;
    bad.stats.log2_var = -1;
    CHECK(w2s_stream_init(&s, m, &bad, arena, len) == W2S_ERR_ARG);
    CHECK(w2s_clip_stats(m, pcm, (size_t)m->config.n_fft - 1, &bad.stats) == W2S_ERR_TOO_SHORT);
    CHECK(w2s_stream_init(&s, m, NULL, arena, len) == W2S_OK); /* NULL params: the defaults */
    CHECK(w2s_stream_read(s, &out) == W2S_ERR_TOO_SHORT);
    CHECK(w2s_stream_push_s16(s, NULL, 1) == W2S_ERR_ARG && w2s_stream_push_s16(s, NULL, 0) == W2S_OK);
    CHECK(w2s_stream_push_s16(s, pcm, (size_t)m->config.n_fft - 1) == W2S_OK);
    CHECK(w2s_stream_read(s, &out) == W2S_ERR_TOO_SHORT);
    CHECK(w2s_stream_push_s16(s, pcm, 1) == W2S_OK && w2s_stream_read(s, &out) == W2S_OK);
    CHECK(w2s_stream_push_s16(s, pcm, (size_t)-1) == W2S_ERR_TOO_LONG);
    CHECK(w2s_stream_samples(s) == (uint64_t)m->config.n_fft && w2s_stream_read(NULL, &out) == W2S_ERR_ARG);

    /* whole clip, fixed prenorm = the clip's: bit-identical with batch for every chunk size,
     * with and without reads in between (reads must not change the stream) */
    p = fixed_params(m, pcm, n);
    for (i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        memset(arena, 0x5A, len); /* stale arena contents must not matter */
        memset(arena + len, 0xA5, 64);
        CHECK(stream_clip(m, &p, pcm, n, chunks[i], 0, arena, len, &out) == W2S_OK);
        ok &= same(&out, &ref);
        if (chunks[i] >= 7) {
            CHECK(stream_clip(m, &p, pcm, n, chunks[i], chunks[i] < 64 ? 97 : 1, arena, len, &out2) == W2S_OK);
            ok &= same(&out2, &ref);
        }
        for (size_t j = 0; j < 64; j++) canary_ok &= arena[len + j] == 0xA5;
        if (!same(&out, &ref)) printf("  stream chunk %lu: %ld %ld %ld vs batch %ld %ld %ld\n", (unsigned long)chunks[i],
                                     (long)out.value[0], (long)out.value[1], (long)out.value[2],
                                     (long)ref.value[0], (long)ref.value[1], (long)ref.value[2]);
    }
    CHECK(ok);
    CHECK(canary_ok); /* nothing written past the stream arena */

    /* short clips exercise every layer with few rows (T = 1, 2, 3, ... frames) */
    ok = 1;
    for (i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        const size_t k = (size_t)m->config.n_fft + prefixes[i];
        w2s_stream_params q = fixed_params(m, pcm, k);
        CHECK(w2s_predict_s16(m, pcm, k, batch_arena, w2s_arena_size(m, k), &out2) == W2S_OK);
        CHECK(stream_clip(m, &q, pcm, k, 13, 1, arena, len, &out) == W2S_OK);
        if (!same(&out, &out2)) {
            printf("  stream prefix %lu differs from batch\n", (unsigned long)k);
            ok = 0;
        }
    }
    CHECK(ok);

    /* a read is repeatable, and reset starts a new clip */
    CHECK(w2s_stream_init(&s, m, &p, arena, len) == W2S_OK);
    CHECK(w2s_stream_push_s16(s, pcm, 5000) == W2S_OK);
    CHECK(w2s_stream_read(s, &out) == W2S_OK && w2s_stream_read(s, &out2) == W2S_OK && same(&out, &out2));
    CHECK(w2s_stream_reset(s) == W2S_OK && w2s_stream_samples(s) == 0);
    CHECK(w2s_stream_read(s, &out) == W2S_ERR_TOO_SHORT);
    CHECK(w2s_stream_push_s16(s, pcm, n) == W2S_OK && w2s_stream_read(s, &out) == W2S_OK && same(&out, &ref));

    /* running prenorm: deterministic and independent of the chunking */
    p = w2s_stream_default_params();
    CHECK(stream_clip(m, &p, pcm, n, 1, 0, arena, len, &out) == W2S_OK);
    CHECK(stream_clip(m, &p, pcm, n, 999, 3, arena, len, &out2) == W2S_OK);
    CHECK(same(&out, &out2));
    /* the arena holds no pointer into itself: a stream copied to another buffer mid-clip (retention
     * RAM across a deep sleep, say), with the old buffer wiped, goes on as if it had never moved */
    {
        uint8_t *moved = (uint8_t *)malloc(len);
        CHECK(moved != NULL && w2s_stream_init(&s, m, &p, arena, len) == W2S_OK);
        CHECK(w2s_stream_push_s16(s, pcm, 7777) == W2S_OK);
        memcpy(moved, arena, len);
        memset(arena, 0xA5, len);
        s = (w2s_stream *)(void *)moved;
        CHECK(w2s_stream_push_s16(s, pcm + 7777, n - 7777) == W2S_OK && w2s_stream_read(s, &out2) == W2S_OK);
        CHECK(same(&out, &out2));
        free(moved);
    }
    printf("  stream 1 s: fixed = batch for %lu chunk sizes and %lu prefixes; running:",
           (unsigned long)(sizeof chunks / sizeof chunks[0]), (unsigned long)(sizeof prefixes / sizeof prefixes[0]));
    for (i = 0; i < (size_t)out.n_outputs; i++) printf(" %ld", (long)out.value[i]);
    printf(", arena %lu bytes\n", (unsigned long)len);
    free(batch_arena);
    free(arena);
    free(pcm);
}

/* One clip file: batch, fixed-prenorm stream (160-sample chunks) and running stream outputs. */
static void run_clip(const w2s_model *m, const char *path) {
    size_t bytes, n;
    int16_t *pcm = (int16_t *)w2s_host_read_file(path, &bytes); /* little-endian host and file */
    uint8_t *arena;
    w2s_output b, s, r;
    w2s_stream_params p;
    if (!pcm) {
        printf("  FAIL cannot read %s\n", path);
        failures++;
        return;
    }
    n = bytes / 2;
    arena = (uint8_t *)malloc(w2s_arena_size(m, n) + w2s_stream_arena_size(m) + 8);
    CHECK(w2s_predict_s16(m, pcm, n, arena, w2s_arena_size(m, n), &b) == W2S_OK);
    p = fixed_params(m, pcm, n);
    CHECK(stream_clip(m, &p, pcm, n, 160, 0, arena, w2s_stream_arena_size(m), &s) == W2S_OK);
    CHECK(same(&s, &b));
    p = w2s_stream_default_params();
    CHECK(stream_clip(m, &p, pcm, n, 160, 0, arena, w2s_stream_arena_size(m), &r) == W2S_OK);
    printf("clip %s:", path);
    print_fixed("batch", m, &b);
    print_fixed("stream", m, &s);
    print_fixed("running", m, &r);
    printf("\n");
    free(arena);
    free(pcm);
}

int main(int argc, char **argv) {
    uint32_t *buf;
    size_t len;
    w2s_model m;
    w2s_status st;
    int i;
    if (argc < 2) {
        fprintf(stderr, "usage: test_w2s model.w2s [clip.raw ...]\n");
        return 2;
    }
    test_rounding();
    buf = (uint32_t *)w2s_host_read_file(argv[1], &len);
    if (!buf || len == 0) {
        printf("test_w2s: FAIL (cannot read %s)\n", argv[1]);
        return 1;
    }
    test_model_errors((const uint8_t *)buf, len);
    test_zeroed_model();
    st = w2s_model_init(&m, buf, len);
    CHECK(st == W2S_OK);
    if (st == W2S_OK) {
        test_predict(&m);
        test_arena_of_a_huge_shape(&m);
        test_frame_limit_of_a_small_hop(&m);
        test_decision(&m);
        test_stream(&m);
        for (i = 2; i < argc; i++) run_clip(&m, argv[i]);
    }
    free(buf);
    printf("test_w2s: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
