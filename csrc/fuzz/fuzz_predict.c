/*
 * fuzz_predict.c - libFuzzer harness (b): inference on arbitrary PCM with the shipped model.
 *
 * The input is little-endian int16 PCM (an odd last byte is dropped), any length the fuzzer
 * picks: empty, shorter than one frame, one frame exactly, many frames, with any values (DC,
 * int16 extremes, square waves, silence). fuzz_run() checks the status, the arena bounds (an
 * exact-size heap arena) and that two runs with differently filled arenas agree.
 *
 * The model is wav2small/models/default.w2s (path compiled in by the Makefile), or the file
 * named by the environment variable W2S_FUZZ_MODEL.
 */
#include "../check/host_file.h"
#include "fuzz_util.h"

#ifndef W2S_FUZZ_MODEL_PATH
#define W2S_FUZZ_MODEL_PATH "wav2small/models/default.w2s"
#endif

static w2s_model model;
static uint8_t *model_buf; /* kept for the whole run: the model points into it */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("W2S_FUZZ_MODEL") ? getenv("W2S_FUZZ_MODEL") : W2S_FUZZ_MODEL_PATH;
    size_t len;
    w2s_status st;
    (void)argc;
    (void)argv;
    if (!(model_buf = (uint8_t *)w2s_host_read_file(path, &len))) {
        fprintf(stderr, "fuzz_predict: cannot read model %s\n", path);
        exit(2);
    }
    st = w2s_model_init(&model, model_buf, len);
    if (st != W2S_OK) {
        fprintf(stderr, "fuzz_predict: %s: %s\n", path, w2s_status_str(st));
        exit(2);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const size_t n = size / 2;
    int16_t *pcm = (int16_t *)malloc(n ? n * sizeof *pcm : 1); /* exact size: ASan sees overreads */
    size_t i;
    FUZZ_CHECK(pcm != NULL);
    for (i = 0; i < n; i++) pcm[i] = (int16_t)(uint16_t)(data[2 * i] | (data[2 * i + 1] << 8));
    fuzz_run(&model, pcm, n);
    free(pcm);
    return 0;
}
