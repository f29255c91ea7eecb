/*
 * w2s_cli.c - run a .w2s model on 16-bit PCM files from the command line (host tool; the
 * engine itself does no I/O). Reads mono 16-bit PCM WAV at the model's rate, or raw int16
 * little-endian with -r.
 *
 *     w2s_cli model.w2s speech.wav [more.wav ...]
 *     w2s_cli -r model.w2s speech.raw
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check/host_file.h"
#include "w2s.h"

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Whether a fmt chunk of `size` bytes says integer PCM: format tag 1, or WAVE_FORMAT_EXTENSIBLE
 * (0xFFFE, what many recorders and libsndfile's WAVEX write) with the PCM SubFormat GUID. */
static int wav_format_pcm(const uint8_t *fmt, uint32_t size) {
    static const uint8_t pcm_guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                              0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
    if (le16(fmt) == 1) return 1;
    return le16(fmt) == 0xFFFE && size >= 40 && le16(fmt + 16) >= 22 && le16(fmt + 24) == 1 &&
           !memcmp(fmt + 26, pcm_guid_tail, sizeof pcm_guid_tail);
}

/* The samples of a mono 16-bit PCM WAV at `rate`; NULL and a message in err[0..err_len) if not. */
static const uint8_t *wav_samples(const uint8_t *d, size_t len, int32_t rate, size_t *n, char *err,
                                  size_t err_len) {
    size_t pos = 12;
    int fmt_ok = 0;
    if (len < 12 || memcmp(d, "RIFF", 4) || memcmp(d + 8, "WAVE", 4))
        return snprintf(err, err_len, "not a RIFF/WAVE file"), NULL;
    while (pos + 8 <= len) {
        const int is_data = !memcmp(d + pos, "data", 4);
        const uint8_t *body = d + pos + 8;
        uint32_t size = le32(d + pos + 4);
        /* a WAV written to a pipe leaves its data size open (0 or 0xFFFFFFFF): samples to the end */
        if (is_data && (size == 0u || size == 0xFFFFFFFFu)) size = (uint32_t)(len - pos - 8);
        if (size > len - pos - 8) return snprintf(err, err_len, "truncated WAV chunk"), NULL;
        if (!memcmp(d + pos, "fmt ", 4) && size >= 16) {
            if (!wav_format_pcm(body, size) || le16(body + 2) != 1 || le16(body + 14) != 16)
                return snprintf(err, err_len, "only mono 16-bit PCM WAV is read (convert with sox)"), NULL;
            if ((int32_t)le32(body + 4) != rate)
                return snprintf(err, err_len, "sample rate %lu Hz, the model's is %ld Hz (convert with sox)",
                                (unsigned long)le32(body + 4), (long)rate), NULL;
            fmt_ok = 1;
        } else if (is_data) {
            if (!fmt_ok) return snprintf(err, err_len, "WAV data before its fmt chunk"), NULL;
            *n = size / 2;
            return body;
        }
        pos += 8 + (size_t)size + (size & 1u);
    }
    return snprintf(err, err_len, "no data chunk"), NULL;
}

int main(int argc, char **argv) {
    int raw = 0, i, failed = 0;
    size_t model_len;
    void *model_buf;
    w2s_model model;
    w2s_status st;
    if (argc > 1 && !strcmp(argv[1], "-r")) {
        raw = 1;
        argv++;
        argc--;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: w2s_cli [-r] model.w2s audio.wav [...]\n");
        return 2;
    }
    if (!(model_buf = w2s_host_read_file(argv[1], &model_len))) {
        fprintf(stderr, "w2s_cli: cannot read %s\n", argv[1]);
        return 2;
    }
    if ((st = w2s_model_init(&model, model_buf, model_len)) != W2S_OK) {
        fprintf(stderr, "w2s_cli: %s: %s\n", argv[1], w2s_status_str(st));
        free(model_buf);
        return 2;
    }
    /* an uncertainty head adds its raw outputs (natural-log sigmas, speech logit), the modulation
     * (dB), the steadiness (0..1, with W2S_FLAG_STEADY) and the decision */
    printf("file\tarousal\tdominance\tvalence%s%s\n", (model.config.flags & W2S_FLAG_UNCERTAINTY)
           ? "\tlog_sigma_arousal\tlog_sigma_dominance\tlog_sigma_valence\tspeech_logit\tmodulation_db" : "",
           (model.config.flags & W2S_FLAG_STEADY) ? "\tsteady\tdecision"
           : (model.config.flags & W2S_FLAG_UNCERTAINTY) ? "\tdecision" : "");
    for (i = 2; i < argc; i++) {
        size_t len, n = 0, need;
        char err[160];
        uint8_t *data = (uint8_t *)w2s_host_read_file(argv[i], &len);
        const uint8_t *samples;
        int16_t *pcm;
        void *arena;
        w2s_output out;
        if (!data) {
            fprintf(stderr, "w2s_cli: cannot read %s\n", argv[i]);
            failed = 1;
            continue;
        }
        samples = raw ? data : wav_samples(data, len, model.config.sample_rate, &n, err, sizeof err);
        if (raw) n = len / 2;
        if (!samples) {
            fprintf(stderr, "w2s_cli: %s: %s\n", argv[i], err);
            free(data);
            failed = 1;
            continue;
        }
        pcm = (int16_t *)malloc(n * sizeof(int16_t) + 1);
        need = w2s_arena_size(&model, n);
        arena = malloc(need ? need : 1);
        if (pcm && arena) {
            size_t k;
            for (k = 0; k < n; k++) pcm[k] = (int16_t)le16(samples + 2 * k); /* file is little-endian */
            st = w2s_predict_s16(&model, pcm, n, arena, need, &out);
            if (st == W2S_OK) {
                static const char *const decisions[] = {"reliable", "no speech", "too uncertain", "unknown"};
                int32_t k2;
                printf("%s", argv[i]);
                for (k2 = 0; k2 < out.n_outputs; k2++) printf("\t%.6f", out.value[k2] / (double)(1L << out.frac_bits));
                if (model.config.flags & W2S_FLAG_UNCERTAINTY) printf("\t%.6f", out.modulation / (double)(1L << W2S_Q_DB));
                if (model.config.flags & W2S_FLAG_STEADY) printf("\t%.6f", out.steady / (double)W2S_STEADY_ONE);
                if (model.config.flags & W2S_FLAG_UNCERTAINTY) printf("\t%s", decisions[out.decision & 3]);
                printf("\n");
            } else {
                fprintf(stderr, "w2s_cli: %s: %s\n", argv[i], w2s_status_str(st));
                failed = 1;
            }
        } else { /* a long clip's arena (365 KB a second) may not fit: say so, never skip the file */
            fprintf(stderr, "w2s_cli: %s: out of memory (%lu bytes of arena)\n", argv[i], (unsigned long)need);
            failed = 1;
        }
        free(arena);
        free(pcm);
        free(data);
    }
    free(model_buf);
    return failed;
}
