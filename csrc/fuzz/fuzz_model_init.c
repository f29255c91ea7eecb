/*
 * fuzz_model_init.c - libFuzzer harness (a): w2s_model_init on arbitrary bytes.
 *
 * The input is the model file. Checks, beyond ASan + UBSan:
 *   - the status is one of those w2s_model_init documents;
 *   - on failure the w2s_model is left untouched (the header promises it);
 *   - on success the config is inside the engine's limits and a short clip runs;
 *   - the same bytes one byte off alignment give W2S_ERR_ARG, never a misaligned read.
 * Random bytes rarely pass the CRC-32; fuzz_model_values.c fixes the CRC up to reach the value
 * checks. Build and run: csrc/fuzz/Makefile, scripts/fuzz.sh.
 */
#include "fuzz_util.h"

/* Cap on the multiply-accumulates of the check run of an accepted model. */
#define RUN_BUDGET 2.5e5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = fuzz_copy(data, size), *odd;
    w2s_model m, untouched;
    w2s_status st;

    memset(&m, 0x5A, sizeof m);
    untouched = m;
    st = w2s_model_init(&m, buf, size);
    FUZZ_CHECK(st == W2S_OK || st == W2S_ERR_TRUNCATED || st == W2S_ERR_MAGIC || st == W2S_ERR_VERSION ||
               st == W2S_ERR_CHECKSUM || st == W2S_ERR_FORMAT);
    FUZZ_CHECK(strlen(w2s_status_str(st)) > 0);
    if (st != W2S_OK) {
        FUZZ_CHECK(memcmp(&m, &untouched, sizeof m) == 0);
    } else {
        const w2s_config *c = &m.config;
        size_t n;
        int16_t *pcm;
        size_t i;
        FUZZ_CHECK(c->n_fft >= 8 && c->n_fft <= W2S_MAX_FFT && c->n_mels <= W2S_MAX_MELS &&
                   c->channels <= W2S_MAX_CHANNELS && c->n_layers <= W2S_MAX_LAYERS &&
                   c->n_outputs <= W2S_MAX_OUTPUTS);
        n = fuzz_max_samples(c, RUN_BUDGET);
        if (n > (size_t)c->n_fft * 4) n = (size_t)c->n_fft * 4;
        if (n) { /* a loud alternating clip: int16 extremes are the worst case of every bound */
            pcm = (int16_t *)malloc(n * sizeof *pcm);
            FUZZ_CHECK(pcm != NULL);
            for (i = 0; i < n; i++) pcm[i] = (int16_t)(i & 1 ? INT16_MIN : INT16_MAX);
            fuzz_run(&m, pcm, n);
            free(pcm);
        }
    }

    /* one byte off the 4-byte alignment: refused before any read */
    odd = (uint8_t *)malloc(size + 1);
    FUZZ_CHECK(odd != NULL);
    if (size) memcpy(odd + 1, data, size);
    FUZZ_CHECK(w2s_model_init(&m, odd + 1, size) == W2S_ERR_ARG);
    free(odd);
    free(buf);
    return 0;
}
