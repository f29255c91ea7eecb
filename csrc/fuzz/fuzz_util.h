/*
 * fuzz_util.h - shared checks of the libFuzzer harnesses (csrc/fuzz/fuzz_*.c).
 *
 * The sanitizers (ASan + UBSan, -fno-sanitize-recover=all) catch memory and arithmetic errors;
 * these helpers add the engine's own promises on top, and abort() when one is broken, which
 * libFuzzer reports as a crash with the input that caused it:
 *   - a run returns W2S_OK or a documented error, never anything else;
 *   - the arena holds no state: two runs with differently filled arenas give the same output;
 *   - nothing is read or written outside the buffers it was given (exact-size heap copies, so
 *     ASan sees one byte too far).
 */
#ifndef W2S_FUZZ_UTIL_H
#define W2S_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../w2s_internal.h"

#define FUZZ_CHECK(cond)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static inline uint32_t fuzz_le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void fuzz_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* A heap copy of exactly n bytes (at least 1, so an empty input is a valid pointer). malloc
 * aligns for any type, which satisfies the 4-byte rule of w2s_model_init. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t n) {
    uint8_t *p = (uint8_t *)malloc(n ? n : 1);
    FUZZ_CHECK(p != NULL);
    if (n) memcpy(p, data, n);
    return p;
}

/* Multiply-accumulates of one STFT frame through the whole model: a rough cost, used to keep
 * every fuzz input fast (the fuzzers need ~1000 runs/s to reach 10^6 in a bounded time). */
static inline double fuzz_frame_cost(const w2s_config *c) {
    const double N = c->n_fft, bins = c->n_fft / 2 + 1, F = c->n_mels, C = c->channels;
    return 2 * bins * N + F * bins + 9 * F * C + 9 * (c->n_layers - 1) * F * C * C + 2 * F * C * C +
           c->n_outputs * C * (F + C);
}

/* The most samples a run may have within `budget` multiply-accumulates (0: not even one frame). */
static inline size_t fuzz_max_samples(const w2s_config *c, double budget) {
    const double frames = budget / fuzz_frame_cost(c);
    if (frames < 1) return 0;
    return (size_t)c->n_fft + (size_t)(frames - 1) * (size_t)c->hop;
}

/*
 * Run a model on n samples and check the run: the status must be the documented one for the
 * length, and a second run on an arena filled with another pattern must give the same output
 * (nothing is read before it is written). The arena is malloc'ed at exactly the asked size.
 */
static inline void fuzz_run(const w2s_model *m, const int16_t *pcm, size_t n) {
    const size_t need = w2s_arena_size(m, n);
    w2s_output a, b;
    w2s_status st;
    uint8_t *arena;
    if (n < (size_t)m->config.n_fft) {
        uint64_t dummy[1];
        FUZZ_CHECK(need == 0);
        st = w2s_predict_s16(m, pcm, n, dummy, sizeof dummy, &a);
        FUZZ_CHECK(st == W2S_ERR_TOO_SHORT);
        return;
    }
    FUZZ_CHECK(need > 0);
    arena = (uint8_t *)malloc(need);
    FUZZ_CHECK(arena != NULL);
    FUZZ_CHECK(w2s_predict_s16(m, pcm, n, arena, need - 1, &a) == W2S_ERR_ARENA);
    memset(arena, 0x00, need);
    memset(&a, 0x11, sizeof a);
    st = w2s_predict_s16(m, pcm, n, arena, need, &a);
    FUZZ_CHECK(st == W2S_OK);
    memset(arena, 0xA5, need);
    memset(&b, 0x77, sizeof b);
    st = w2s_predict_s16(m, pcm, n, arena, need, &b);
    FUZZ_CHECK(st == W2S_OK);
    FUZZ_CHECK(a.n_outputs == m->config.n_outputs && a.frac_bits == m->config.out_frac_bits);
    FUZZ_CHECK(memcmp(&a, &b, sizeof a) == 0); /* every byte of the output, padding included */
    free(arena);
}

#endif /* W2S_FUZZ_UTIL_H */
