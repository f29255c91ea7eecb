/*
 * check/ab_stages.c - two or more builds of the engine (shared objects) in one process, called in
 * turn on the same clip: the median thread CPU time of every stage of w2s_forward (trace hook)
 * for each build. Taking turns call by call puts the builds under the same machine conditions
 * (frequency, neighbours), which separate processes on a shared machine do not.
 *
 *     ab_stages model.w2s clip.raw runs lib1.so lib2.so [lib3.so lib4.so]
 *
 * scripts/ab_engine.sh builds the objects from two git revisions and runs this.
 */
#define _POSIX_C_SOURCE 200809L
#include "host_file.h"
#include "w2s_internal.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LIBS 4
#define MAX_STAGES 16
#define MAX_RUNS 5000

typedef w2s_status (*init_fn)(w2s_model *, const void *, size_t);
typedef size_t (*size_fn)(const w2s_model *, size_t);
typedef w2s_status (*forward_fn)(const w2s_model *, const int16_t *, size_t, void *, size_t, w2s_output *,
                                 w2s_trace_fn, void *);

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

typedef struct {
    double t0, d[MAX_STAGES];
    int stage[MAX_STAGES], layer[MAX_STAGES]; /* which trace point ended each interval */
    int k;
} stage_clock;

static void on_stage(void *user, w2s_trace_stage s, int32_t l, const void *data, int32_t a, int32_t b, int32_t c) {
    stage_clock *x = (stage_clock *)user;
    (void)data, (void)a, (void)b, (void)c;
    if (x->k < MAX_STAGES) {
        x->stage[x->k] = (int)s;
        x->layer[x->k] = (int)l;
        x->d[x->k++] = now_us() - x->t0;
    }
    x->t0 = now_us(); /* the callback's own time is not counted */
}

/* A row's name: the work between the previous trace point and this one. */
static const char *stage_name(int s, int l, char *buf, size_t len) {
    switch (s) {
    case W2S_TRACE_PRENORM: return "prenorm";
    case W2S_TRACE_LOGMEL: return "log-mel";
    case W2S_TRACE_MODULATION: return "modulation";
    case W2S_TRACE_STEADY: return "steady";
    case W2S_TRACE_CONV: snprintf(buf, len, "conv%d", l); return buf;
    case W2S_TRACE_POOL: return "max-pool";
    case W2S_TRACE_POOLED: return "vox";
    case W2S_TRACE_GRAM: return "gram";
    case W2S_TRACE_OUTPUT: return "head";
    default: return "?";
    }
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double st[MAX_LIBS][MAX_STAGES + 1][MAX_RUNS];

int main(int argc, char **argv) {
    size_t model_len, clip_len;
    void *model_buf, *clip;
    w2s_model m[MAX_LIBS];
    forward_fn fw[MAX_LIBS];
    void *arena[MAX_LIBS];
    size_t arena_len[MAX_LIBS];
    int runs, nl, i, r, s, k = 0;
    stage_clock seen = {0}; /* the trace points of the first build's first timed call */
    char name[16];
    if (argc < 5 || argc > 4 + MAX_LIBS || (runs = atoi(argv[3])) < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "usage: ab_stages model.w2s clip.raw runs(1..%d) lib.so ... (up to %d)\n", MAX_RUNS, MAX_LIBS);
        return 2;
    }
    model_buf = w2s_host_read_file(argv[1], &model_len);
    clip = w2s_host_read_file(argv[2], &clip_len);
    if (!model_buf || !clip) {
        fprintf(stderr, "ab_stages: cannot read %s\n", model_buf ? argv[2] : argv[1]);
        return 1;
    }
    nl = argc - 4;
    for (i = 0; i < nl; i++) {
        void *h = dlopen(argv[4 + i], RTLD_NOW | RTLD_LOCAL);
        init_fn init;
        size_fn size;
        if (!h) {
            fprintf(stderr, "ab_stages: %s\n", dlerror());
            return 1;
        }
        void *f1 = dlsym(h, "w2s_model_init"), *f2 = dlsym(h, "w2s_arena_size"), *f3 = dlsym(h, "w2s_forward");
        /* ISO C has no object-to-function pointer cast; POSIX guarantees the representation */
        memcpy(&init, &f1, sizeof init);
        memcpy(&size, &f2, sizeof size);
        memcpy(&fw[i], &f3, sizeof fw[i]);
        if (!init || !size || !fw[i] || init(&m[i], model_buf, model_len) != W2S_OK) {
            fprintf(stderr, "ab_stages: %s: not an engine build, or it refuses the model\n", argv[4 + i]);
            return 1;
        }
        arena_len[i] = size(&m[i], clip_len / 2);
        if (!arena_len[i] || !(arena[i] = malloc(arena_len[i]))) return 1;
    }
    for (r = -10; r < runs; r++) /* ten warm-up rounds */
        for (i = 0; i < nl; i++) {
            stage_clock x;
            w2s_output out;
            const double t0 = now_us();
            x.k = 0;
            x.t0 = t0;
            if (fw[i](&m[i], (const int16_t *)clip, clip_len / 2, arena[i], arena_len[i], &out, on_stage, &x) != W2S_OK)
                return 1;
            if (r < 0) continue;
            if (i == 0 && r == 0) seen = x;
            if (x.k != seen.k || memcmp(x.stage, seen.stage, sizeof(int) * (size_t)x.k) != 0 ||
                memcmp(x.layer, seen.layer, sizeof(int) * (size_t)x.k) != 0) {
                fprintf(stderr, "ab_stages: %s traces other stages than %s: no row-by-row comparison\n", argv[4 + i],
                        argv[4]);
                return 1;
            }
            k = x.k;
            for (s = 0; s < k; s++) st[i][s][r] = x.d[s];
            st[i][MAX_STAGES][r] = now_us() - t0;
        }
    printf("%-10s", "stage");
    for (i = 0; i < nl; i++) printf(" %12s", argv[4 + i] + (strlen(argv[4 + i]) > 12 ? strlen(argv[4 + i]) - 12 : 0));
    printf("   (median of %d calls, microseconds of thread CPU time)\n", runs);
    for (s = 0; s <= k; s++) {
        const int row = s == k ? MAX_STAGES : s;
        printf("%-10s", s == k ? "total" : stage_name(seen.stage[s], seen.layer[s], name, sizeof name));
        for (i = 0; i < nl; i++) {
            qsort(st[i][row], (size_t)runs, sizeof(double), by_value);
            printf(" %12.1f", st[i][row][runs / 2]);
        }
        printf("\n");
    }
    return 0;
}
