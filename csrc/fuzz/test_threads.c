/*
 * test_threads.c - one w2s_model shared by 8 threads that predict at once must give exactly the
 * sequential results. Built with -fsanitize=thread (Makefile), so a write by one thread to memory
 * another reads (a static, the model, a shared arena) is reported as a data race, not just a
 * wrong number by luck of the schedule.
 *
 *     test_threads model.w2s        prints "test_threads: PASS" or "FAIL" on the last line
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check/host_file.h"
#include "../w2s.h"

#define N_THREADS 8
#define N_CLIPS 8
#define ROUNDS 2

static w2s_model model; /* shared, read-only after w2s_model_init */
static int16_t *clips[N_CLIPS];
static size_t clip_len[N_CLIPS];
static w2s_output sequential[N_CLIPS];
static pthread_barrier_t start;

/* Clip i: a different length and signal per clip (LCG noise over a square wave, fixed seeds). */
static void make_clip(int i) {
    const size_t n = 600 + 300 * (size_t)i; /* 38..170 ms: TSan runs ~10x slower */
    uint32_t seed = 1000u + (uint32_t)i;
    size_t k;
    clips[i] = (int16_t *)malloc(n * sizeof(int16_t));
    clip_len[i] = n;
    for (k = 0; k < n; k++) {
        seed = seed * 1664525u + 1013904223u;
        clips[i][k] = (int16_t)((((k / (size_t)(20 + 7 * i)) & 1) ? 6000 : -6000) + (int32_t)(seed >> 20) - 2048);
    }
}

static w2s_status run(int i, w2s_output *out) {
    const size_t need = w2s_arena_size(&model, clip_len[i]);
    void *arena = malloc(need); /* each call its own arena: the engine keeps all state there */
    w2s_status st = w2s_predict_s16(&model, clips[i], clip_len[i], arena, need, out);
    free(arena);
    return st;
}

typedef struct {
    int id;
    int mismatches;
} worker;

static void *work(void *arg) {
    worker *wk = (worker *)arg;
    int r, j;
    pthread_barrier_wait(&start); /* all threads enter the engine together */
    for (r = 0; r < ROUNDS; r++) {
        for (j = 0; j < N_CLIPS; j++) {
            const int i = (wk->id + j) % N_CLIPS; /* every thread runs every clip, in its own order */
            w2s_output out;
            if (run(i, &out) != W2S_OK || memcmp(&out, &sequential[i], sizeof out) != 0) wk->mismatches++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    size_t len;
    void *buf;
    pthread_t th[N_THREADS];
    worker wk[N_THREADS];
    int i, failures = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: test_threads model.w2s\n");
        return 2;
    }
    if (!(buf = w2s_host_read_file(argv[1], &len)) || w2s_model_init(&model, buf, len) != W2S_OK) {
        printf("test_threads: FAIL (cannot load %s)\n", argv[1]);
        return 1;
    }
    for (i = 0; i < N_CLIPS; i++) {
        make_clip(i);
        if (run(i, &sequential[i]) != W2S_OK) failures++;
    }
    pthread_barrier_init(&start, NULL, N_THREADS);
    for (i = 0; i < N_THREADS; i++) {
        wk[i].id = i;
        wk[i].mismatches = 0;
        pthread_create(&th[i], NULL, work, &wk[i]);
    }
    for (i = 0; i < N_THREADS; i++) {
        pthread_join(th[i], NULL);
        if (wk[i].mismatches) printf("  thread %d: %d results differ from the sequential run\n", i, wk[i].mismatches);
        failures += wk[i].mismatches;
    }
    pthread_barrier_destroy(&start);
    printf("  %d threads x %d rounds x %d clips on one model\n", N_THREADS, ROUNDS, N_CLIPS);
    for (i = 0; i < N_CLIPS; i++) free(clips[i]);
    free(buf);
    printf("test_threads: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
