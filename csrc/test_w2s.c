/*
 * test_w2s.c - C tests of the engine that need no Python: rounding rules, model validation,
 * error codes, arena bounds, determinism. Prints "test_w2s: PASS" or "FAIL" on the last line.
 *
 *     test_w2s model.w2s
 *
 * The exhaustive comparisons (every stage bit-exact with the NumPy reference, fidelity against
 * the float model) live in tests/ and run through the Python binding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    bad[4] = 2; /* a newer version */
    CHECK(init_copy(bad, len, 0, &m) == W2S_ERR_VERSION);
    memcpy(bad, buf, len);
    bad[len / 2] ^= 0x10; /* one flipped bit in the weights */
    CHECK(init_copy(bad, len, 0, &m) == W2S_ERR_CHECKSUM);
    free(bad);
}

/* A deterministic test signal: two chirping tones and a little noise (LCG, fixed seed). */
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
    CHECK(a.n_outputs == m->config.n_outputs && memcmp(a.value, b.value, sizeof a.value) == 0);
    printf("  synth 1 s:");
    for (i = 0; i < (size_t)a.n_outputs; i++) printf(" %ld", (long)a.value[i]);
    printf(" (/2^%d), arena %lu bytes\n", (int)a.frac_bits, (unsigned long)need);
    free(arena);
    free(pcm);
}

int main(int argc, char **argv) {
    FILE *f;
    uint32_t *buf;
    long len;
    w2s_model m;
    w2s_status st;
    if (argc != 2) {
        fprintf(stderr, "usage: test_w2s model.w2s\n");
        return 2;
    }
    test_rounding();
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) || (len = ftell(f)) <= 0 || fseek(f, 0, SEEK_SET)) {
        printf("test_w2s: FAIL (cannot read %s)\n", argv[1]);
        return 1;
    }
    buf = (uint32_t *)malloc((size_t)len + 4);
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) failures++;
    fclose(f);
    test_model_errors((const uint8_t *)buf, (size_t)len);
    st = w2s_model_init(&m, buf, (size_t)len);
    CHECK(st == W2S_OK);
    if (st == W2S_OK) test_predict(&m);
    free(buf);
    printf("test_w2s: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
