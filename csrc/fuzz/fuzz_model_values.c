/*
 * fuzz_model_values.c - libFuzzer harness (c): arbitrary model *contents* behind a valid header,
 * then inference on arbitrary PCM.
 *
 * A random file almost never passes the CRC-32, so fuzz_model_init.c spends its time in the
 * header checks. Here the harness writes the header itself and fixes up the CRC, so every input
 * reaches the value validation (values_ok in format.c) and, when that accepts, the arithmetic
 * of every stage with the fuzzer's weights, shifts, offsets, tables and samples. Input:
 *
 *   bytes 0..39   10 x u32: sample_rate, n_fft, hop, n_mels, channels, n_layers, pool_after,
 *                 n_outputs, out_frac_bits, mel_weights; a value outside its legal range is folded into it
 *                 (so the header is always valid: its rejection is harness (a)'s job)
 *   then          the tensors in file order (w2s_layout): end - 64 bytes, zero-filled if short
 *   then          int16 little-endian PCM, the rest of the input
 *
 * w2s_model_init must return W2S_OK or W2S_ERR_FORMAT (nothing else can be wrong); an accepted
 * model runs on the PCM with fuzz_run()'s checks. The run is capped by a multiply-accumulate
 * budget (2 frames of the default model, fewer for wider ones) to keep the fuzzer fast.
 */
#include "fuzz_util.h"

#define CONFIG_BYTES 40
#define RUN_BUDGET 2.5e5

/* raw as is when it is in [lo, hi] (so seeds read naturally), else folded into the range */
static int32_t fold(uint32_t raw, int32_t lo, int32_t hi) {
    const int64_t v = (int32_t)raw;
    if (v >= lo && v <= hi) return (int32_t)v;
    return lo + (int32_t)(raw % (uint32_t)(hi - lo + 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t cfg_raw[CONFIG_BYTES] = {0};
    w2s_config c;
    w2s_model m;
    w2s_status st;
    size_t end, body, avail, n, i;
    uint8_t *file;
    int16_t *pcm;

    memcpy(cfg_raw, data, size < CONFIG_BYTES ? size : CONFIG_BYTES);
    c.sample_rate = fold(fuzz_le32(cfg_raw + 0), 1, 384000);
    c.n_fft = fold(fuzz_le32(cfg_raw + 4), 8, W2S_MAX_FFT) & ~3;
    c.hop = fold(fuzz_le32(cfg_raw + 8), 1, c.n_fft);
    c.n_mels = fold(fuzz_le32(cfg_raw + 12), 1, W2S_MAX_MELS);
    c.channels = fold(fuzz_le32(cfg_raw + 16), 1, W2S_MAX_CHANNELS);
    c.n_layers = fold(fuzz_le32(cfg_raw + 20), 1, W2S_MAX_LAYERS);
    c.pool_after = fold(fuzz_le32(cfg_raw + 24), 1, c.n_layers);
    c.n_outputs = fold(fuzz_le32(cfg_raw + 28), 1, W2S_MAX_OUTPUTS);
    c.out_frac_bits = fold(fuzz_le32(cfg_raw + 32), 0, 30);
    c.mel_weights = fold(fuzz_le32(cfg_raw + 36), 0, c.n_mels * (c.n_fft / 2 + 1));
    /* the top bit of the n_outputs word asks for an uncertainty head (then n_outputs must be odd) */
    c.flags = (fuzz_le32(cfg_raw + 28) >> 31) ? W2S_FLAG_UNCERTAINTY : 0u;

    /* the file: header written here, tensors from the input, CRC-32 fixed up */
    end = w2s_layout(&c, NULL, NULL);
    file = (uint8_t *)calloc(end + 4, 1);
    FUZZ_CHECK(file != NULL);
    fuzz_put32(file + 0, W2S_FORMAT_MAGIC);
    fuzz_put32(file + 4, (uint32_t)W2S_FORMAT_VERSION | ((uint32_t)W2S_HEADER_BYTES << 16));
    fuzz_put32(file + 8, (uint32_t)(end + 4));
    fuzz_put32(file + 12, c.flags);
    fuzz_put32(file + 16, (uint32_t)c.sample_rate);
    fuzz_put32(file + 20, (uint32_t)c.n_fft);
    fuzz_put32(file + 24, (uint32_t)c.hop);
    fuzz_put32(file + 28, (uint32_t)c.n_mels);
    fuzz_put32(file + 32, (uint32_t)c.channels);
    fuzz_put32(file + 36, (uint32_t)c.n_layers);
    fuzz_put32(file + 40, (uint32_t)c.pool_after);
    fuzz_put32(file + 44, (uint32_t)c.n_outputs);
    fuzz_put32(file + 48, (uint32_t)c.out_frac_bits);
    fuzz_put32(file + 52, (uint32_t)c.mel_weights);
    body = end - W2S_HEADER_BYTES;
    avail = size > CONFIG_BYTES ? size - CONFIG_BYTES : 0;
    memcpy(file + W2S_HEADER_BYTES, data + CONFIG_BYTES, avail < body ? avail : body);
    fuzz_put32(file + end, w2s_crc32(file, end));

    st = w2s_model_init(&m, file, end + 4);
    FUZZ_CHECK(st == W2S_OK || st == W2S_ERR_FORMAT);
    if (st == W2S_OK) {
        FUZZ_CHECK(memcmp(&m.config, &c, sizeof c) == 0);
        /* the PCM: whatever follows the tensors, capped by the run budget */
        avail = avail > body ? (avail - body) / 2 : 0;
        n = fuzz_max_samples(&c, RUN_BUDGET);
        if (n > avail) n = avail;
        if (n > 0 || avail == 0) {
            const uint8_t *src = data + CONFIG_BYTES + body;
            pcm = (int16_t *)malloc(n ? n * sizeof *pcm : 1);
            FUZZ_CHECK(pcm != NULL);
            for (i = 0; i < n; i++) pcm[i] = (int16_t)(uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            fuzz_run(&m, pcm, n);
            free(pcm);
        }
    }
    free(file);
    return 0;
}
