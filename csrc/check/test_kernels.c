/*
 * check/test_kernels.c - every kernel set this build and CPU run against the portable C kernels, bit for
 * bit, with no Python: on the host for the x86 sets, under qemu for NEON and the DSP extension.
 *
 *     test_kernels model.w2s [clip.raw ...]
 *
 * 1. conv rows, and whole layers of 1-11 rows: random layers (C_in, C_out 1..64, F 1..40, int8
 *    weights including -128, input offsets including -128 and 128, saturating shifts, every channel's
 *    shift in [-23, -1] in a third of the trials), random
 *    rows, missing rows above/below;
 * 2. vox pooling: random weights and rows (1-64 channels, 1-40 mel bins), the softmax state;
 * 3. x86: the front end's log2, DFT, windowing and power kernels and the AVX-512 conv epilogue
 *    (ties of its roundings) against plain C;
 * 4. whole clips (the given raw int16 files, or synthetic signals): every stage of the forward
 *    pass (trace) hashed under each set and compared with the portable one.
 * The kernels of 1 and 2 get exactly the kernel scratch w2s_kernel_scratch_bytes plans for the
 * trial's shape, at an address that is 8 mod 16, with canaries past it.
 * Prints "test_kernels: <sets> PASS" or the first difference, exit status 0 or 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_file.h"
#include "kernels.h"

static uint32_t rng_state = 12345u;
static uint32_t rnd(void) { /* xorshift32: the same sequence on every target */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}
static int32_t rnd_in(int32_t lo, int32_t hi) { /* lo <= hi, unsigned: the span may pass INT32_MAX */
    const uint32_t span = (uint32_t)hi - (uint32_t)lo + 1u; /* 0: all 2^32 values */
    return (int32_t)((uint32_t)lo + (span ? rnd() % span : rnd()));
}

/* Trial shapes stay within this build's limits (w2s.h: W2S_MAX_CHANNELS and W2S_MAX_MELS may be
 * lowered at build time); with the defaults they are the shapes this file always drew. */
#define TK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TK_C     TK_MIN(20, W2S_MAX_CHANNELS) /* upper end of a random small channel count */
#define TK_F     TK_MIN(40, W2S_MAX_MELS)     /* mel bins of a conv row */
#define TK_VOX_F TK_MIN(80, W2S_MAX_MELS)     /* mel bins before the pool, for vox pooling */

/* ---- conv rows ------------------------------------------------------------------------------------ */

#define MAXW (W2S_MAX_CHANNELS * 9 * W2S_MAX_CHANNELS)
static int8_t w8[MAXW], x8[3][40 * W2S_MAX_CHANNELS], o_ref[40 * W2S_MAX_CHANNELS], o_got[40 * W2S_MAX_CHANNELS];
static int16_t x16[3][40];
#define MAX_T 11
static int8_t map8[MAX_T * 40 * W2S_MAX_CHANNELS], map_ref[MAX_T * 40 * W2S_MAX_CHANNELS], map_got[MAX_T * 40 * W2S_MAX_CHANNELS];
static int16_t map16[MAX_T * 40];
static int32_t bias[W2S_MAX_CHANNELS], mult[W2S_MAX_CHANNELS], shift[W2S_MAX_CHANNELS];

/* Output buffers are filled with CANARY first: a kernel must not touch a byte past its n outputs
 * (the AVX2 row kernel's 8-byte stores once did with C_out <= 3, ASan-invisible in these arrays). */
#define CANARY 0x5A
static int wrote_past(const int8_t *buf, size_t n, size_t len) {
    size_t i;
    for (i = n; i < len; i++)
        if ((uint8_t)buf[i] != CANARY) return 1;
    return 0;
}

/* Kernel scratch for a trial: the bytes w2s_kernel_scratch_bytes gives a model of that shape (the
 * engine's plan), 8 bytes past malloc's 16-byte alignment (the arena promises 8, the kernels align
 * inside), then 64 canary bytes: a kernel must stay inside what is planned for its shape. */
static uint8_t *scratch_mem;
static size_t scratch_need;

static void *scratch_for(int32_t channels, int32_t n_mels) {
    w2s_config c;
    memset(&c, 0, sizeof c);
    c.channels = channels;
    c.n_mels = n_mels;
    c.n_fft = 8;
    scratch_need = w2s_kernel_scratch_bytes(&c, W2S_SCRATCH_CLIP);
    free(scratch_mem);
    scratch_mem = (uint8_t *)malloc(scratch_need + 8 + 64);
    if (!scratch_mem) {
        printf("test_kernels: out of memory\n");
        exit(1);
    }
    memset(scratch_mem, CANARY, scratch_need + 8 + 64);
    return scratch_mem + 8;
}

static int scratch_overrun(const char *what, int t, int32_t isa) {
    if (!wrote_past((const int8_t *)scratch_mem + 8, scratch_need, scratch_need + 64)) return 0;
    printf("%s %d: %s wrote past its kernel scratch (%lu bytes)\n", what, t, w2s_isa_name(isa), (unsigned long)scratch_need);
    return 1;
}

static int conv_rows(int32_t isa, int trials) {
    int t, i;
    for (t = 0; t < trials; t++) {
        w2s_conv_layer l;
        /* c_in 13: the released width has its own tile; shifts all in [-23, -1]: the fast epilogue */
        const int32_t c_in = t % 7 == 0 ? W2S_MAX_CHANNELS : (t % 6 == 1 ? 13 : rnd_in(1, TK_C));
        /* the released width often takes the fast epilogue and whole layers (its four-row tile) */
        const int32_t c_out = t % 5 == 0 ? W2S_MAX_CHANNELS : rnd_in(1, TK_C), fast = t % 3 == 0 || (c_in == 13 && rnd() % 4 != 0);
        const int whole = t % 5 == 3 || (c_in == 13 && rnd() % 2 == 0);
        const int32_t f = t % 11 == 0 ? 1 : t % 13 == 0 ? 2 : rnd_in(1, TK_F), ends[] = {-128, 128, -127, 0};
        const int first = t % 9 == 0; /* layer 1: one int16 channel */
        const int8_t *rows8[3];
        const int16_t *rows16[3];
        void *ks = scratch_for(c_in > c_out ? c_in : c_out, f);
        int32_t ky;
        for (i = 0; i < c_out * 9 * (first ? 1 : c_in); i++) w8[i] = (int8_t)rnd_in(-128, 127);
        for (ky = 0; ky < 3; ky++) {
            for (i = 0; i < f * c_in; i++) x8[ky][i] = (int8_t)rnd_in(-128, 127);
            for (i = 0; i < f; i++) x16[ky][i] = (int16_t)rnd_in(-32768, 32767);
            rows8[ky] = (ky != 1 && rnd() % 4 == 0) ? NULL : x8[ky];
            rows16[ky] = rows8[ky] ? x16[ky] : NULL;
        }
        for (i = 0; i < c_out; i++) {
            bias[i] = rnd_in(-(1 << 20), 1 << 20);
            mult[i] = rnd_in(1 << 30, 0x7FFFFFFF);
            shift[i] = fast ? rnd_in(-23, -1) : (rnd() % 4 == 0 ? rnd_in(-31, 30) : rnd_in(-16, -6));
            if (rnd() % 8 == 0) mult[i] = 0x7FFFFFFF; /* the largest products */
        }
        l.input_offset = first ? rnd_in(-32768, 32768) : (t % 3 ? ends[t % 4] : rnd_in(-128, 128));
        l.output_offset = rnd_in(-128, 127);
        l.act_min = rnd_in(-128, 0);
        l.act_max = rnd_in(l.act_min, 127);
        if (rnd() % 3 == 0) l.act_min = -128, l.act_max = 127; /* no clamp (every released model) */
        l.w = w8;
        l.bias = bias;
        l.mult = mult;
        l.shift = shift;
        if (whole) { /* a whole layer of 1..11 rows (w2s_conv3x3_layer_*: tiles of 4, 2, 1 rows) */
            const int32_t T = rnd_in(1, MAX_T);
            for (i = 0; i < T * f * c_in; i++) map8[i] = (int8_t)rnd_in(-128, 127);
            for (i = 0; i < T * f; i++) map16[i] = (int16_t)rnd_in(-32768, 32767);
            memset(map_got, CANARY, sizeof map_got);
            if (first) {
                w2s_conv3x3_layer_s16(&l, W2S_ISA_PORTABLE, T, f, c_out, map16, map_ref, ks);
                w2s_conv3x3_layer_s16(&l, isa, T, f, c_out, map16, map_got, ks);
            } else {
                w2s_conv3x3_layer_s8(&l, W2S_ISA_PORTABLE, T, f, c_in, c_out, map8, map_ref, ks);
                w2s_conv3x3_layer_s8(&l, isa, T, f, c_in, c_out, map8, map_got, ks);
            }
            if (scratch_overrun("conv layer", t, isa)) return 1;
            if (wrote_past(map_got, (size_t)(T * f * c_out), sizeof map_got)) {
                printf("conv layer %d (c_in %d, c_out %d, f %d): %s wrote past the layer's output\n", t, (int)c_in,
                       (int)c_out, (int)f, w2s_isa_name(isa));
                return 1;
            }
            if (memcmp(map_ref, map_got, (size_t)(T * f * c_out)) != 0) {
                printf("conv layer %d (%s, %d rows, c_in %d, c_out %d, f %d, offset %d): %s differs from portable\n", t,
                       first ? "s16" : "s8", (int)T, (int)c_in, (int)c_out, (int)f, (int)l.input_offset, w2s_isa_name(isa));
                return 1;
            }
        }
        memset(o_got, CANARY, sizeof o_got);
        if (first) {
            w2s_conv3x3_row_s16(&l, W2S_ISA_PORTABLE, f, c_out, rows16, o_ref, ks);
            w2s_conv3x3_row_s16(&l, isa, f, c_out, rows16, o_got, ks);
        } else {
            w2s_conv3x3_row_s8(&l, W2S_ISA_PORTABLE, f, c_in, c_out, rows8, o_ref, ks);
            w2s_conv3x3_row_s8(&l, isa, f, c_in, c_out, rows8, o_got, ks);
        }
        if (scratch_overrun("conv row", t, isa)) return 1;
        if (wrote_past(o_got, (size_t)(f * c_out), sizeof o_got)) {
            printf("conv row %d (c_in %d, c_out %d, f %d): %s wrote past the row\n", t, (int)c_in, (int)c_out,
                   (int)f, w2s_isa_name(isa));
            return 1;
        }
        if (memcmp(o_ref, o_got, (size_t)(f * c_out)) != 0) {
            printf("conv row %d (%s, c_in %d, c_out %d, f %d, offset %d): %s differs from portable\n", t,
                   first ? "s16" : "s8", (int)c_in, (int)c_out, (int)f, (int)l.input_offset, w2s_isa_name(isa));
            return 1;
        }
    }
    return 0;
}

/* ---- vox pooling ---------------------------------------------------------------------------------- */

/* Random vox weights inside the format's checks (format.c), random rows, pushed in two pieces (so
 * the second starts from a live state), some rows apart by more than one row; every cell's state
 * must equal the portable one. Scores from near 0 to saturation: references that jump by more
 * than 63 (sums shifted to 0) and weights that underflow to 0. */
#define VOX_ROWS 50
static int16_t lin_w[W2S_MAX_CHANNELS * W2S_MAX_CHANNELS];
static int8_t sof_w[W2S_MAX_CHANNELS * W2S_MAX_CHANNELS], vrows[VOX_ROWS * 2 * 40 * W2S_MAX_CHANNELS];
static int32_t lin_b[W2S_MAX_CHANNELS], sof_b[W2S_MAX_CHANNELS], sof_mult[W2S_MAX_CHANNELS], sof_shift[W2S_MAX_CHANNELS];
static int64_t vox_mem[2][3 * 40 * W2S_MAX_CHANNELS];
static uint32_t vox_lut[W2S_EXP_LUT_SIZE];

static int vox_rows(const w2s_model *m, int32_t isa, int trials) {
    int t, i, k;
    for (t = 0; t < trials; t++) {
        w2s_config c = m->config;
        w2s_weights w = m->w;
        w2s_vox_state st[2];
        /* t % 5 == 2: the released shape (13-16 channels, score shifts all left, without saturation
         * in most such trials: the kernel's own path) */
        const int released = t % 5 == 2;
        const int32_t C = released ? rnd_in(13, 16) : t % 6 == 0 ? W2S_MAX_CHANNELS : rnd_in(1, TK_C);
        const int32_t F = t % 7 == 0 ? TK_VOX_F : rnd_in(1, TK_VOX_F);
        const int32_t F2 = (F + 1) / 2, n_rows = rnd_in(1, VOX_ROWS), split = rnd_in(0, n_rows);
        const size_t stride = (size_t)(F2 * C) + (t % 3 == 0 ? (size_t)rnd_in(0, 40) : 0);
        const int32_t wmag = t % 4 == 0 ? 32768 : 1 << rnd_in(0, 15); /* |lin_w| <= wmag */
        int64_t worst = 0;
        c.channels = C;
        c.n_mels = F;
        w.vox_input_offset = t % 5 == 0 ? (t % 2 ? -128 : 128) : rnd_in(-128, 128);
        for (i = 0; i < C * C; i++) {
            lin_w[i] = (int16_t)(t % 8 == 1 ? (i % 2 ? -32768 : 32767) : rnd_in(-wmag, wmag - 1));
            sof_w[i] = (int8_t)(t % 8 == 2 ? (i % 2 ? -128 : 127) : rnd_in(-128, 127));
        }
        for (k = 0; k < C; k++) {
            int64_t wk = 0;
            for (i = 0; i < C; i++) wk += 256 * (int64_t)(lin_w[k * C + i] < 0 ? -lin_w[k * C + i] : lin_w[k * C + i]);
            lin_b[k] = rnd_in(-(1 << 29), 1 << 29);
            if (wk + (1 << 29) > worst) worst = wk + (1 << 29);
            sof_b[k] = t % 8 == 3 ? (k % 2 ? -(1 << 21) : 1 << 21) : rnd_in(-(1 << 21), 1 << 21);
            sof_mult[k] = rnd() % 8 == 0 ? rnd_in(0, 0x7FFFFFFF) : rnd_in(1 << 30, 0x7FFFFFFF);
            sof_shift[k] = rnd() % 4 == 0 ? rnd_in(-31, 30) : rnd_in(-12, 12);
            if (released) { /* |score| < 2^21: shifts up to 10 cannot saturate; 11-12 on a bias of 2^20 do */
                sof_b[k] = rnd_in(-(1 << 17), 1 << 17);
                sof_shift[k] = rnd_in(0, 10);
                if (rnd() % 16 == 0) sof_b[k] = k % 2 ? -(1 << 20) : 1 << 20, sof_shift[k] = rnd_in(11, 12); /* saturates */
            }
        }
        for (w.value_shift = 0; worst >= ((int64_t)1 << (22 + w.value_shift)); w.value_shift++) {}
        if (rnd() % 4 == 0 && w.value_shift < 31) w.value_shift = rnd_in(w.value_shift, 31);
        w.lin_w = lin_w;
        w.lin_b = lin_b;
        w.sof_w = sof_w;
        w.sof_b = sof_b;
        w.sof_mult = sof_mult;
        w.sof_shift = sof_shift;
        if (t % 3 == 1) { /* an exp2 table of other steps, as the format allows: non-increasing from at
                           * most 2^30 to at least 2^29, one step of up to 2^28 in half the trials */
            const int32_t big = t % 2 ? rnd_in(0, W2S_EXP_LUT_SIZE - 2) : -1;
            uint32_t room = (1u << (W2S_Q_EXP_LUT - 1)) - (uint32_t)rnd_in(0, 1 << 20);
            vox_lut[0] = (1u << (W2S_Q_EXP_LUT - 1)) + room;
            for (i = 1; i < W2S_EXP_LUT_SIZE; i++) {
                uint32_t step = i - 1 == big ? (uint32_t)rnd_in(1 << 22, 1 << 28) : (uint32_t)rnd_in(0, 1 << 23);
                if (step > room) step = room;
                room -= step;
                vox_lut[i] = vox_lut[i - 1] - step;
            }
            w.exp_lut = vox_lut;
        }
        for (i = 0; i < (int)(stride * (size_t)n_rows); i++)
            vrows[i] = (int8_t)(t % 8 == 4 ? (i % 3 ? 127 : -128) : rnd_in(-128, 127));
        for (k = 0; k < 2; k++) {
            void *ks = scratch_for(C, F);
            w.isa = k == 0 ? W2S_ISA_PORTABLE : isa;
            w2s_vox_init(&c, vox_mem[k], &st[k]);
            w2s_vox_push_rows_s8(&c, &w, &st[k], vrows, split, stride, ks);
            w2s_vox_push_rows_s8(&c, &w, &st[k], vrows + (size_t)split * stride, n_rows - split, stride, ks);
            if (scratch_overrun("vox", t, w.isa)) return 1;
        }
        if (st[0].n != st[1].n || memcmp(vox_mem[0], vox_mem[1], w2s_vox_state_bytes(&c)) != 0) {
            printf("vox %d (C %d, F' %d, rows %d + %d, offset %d, value_shift %d): %s differs from portable\n", t,
                   (int)C, (int)F2, (int)split, (int)(n_rows - split), (int)w.vox_input_offset, (int)w.value_shift,
                   w2s_isa_name(isa));
            return 1;
        }
    }
    return 0;
}

/* ---- front-end kernels (x86) ------------------------------------------------------------------------ */

#ifdef W2S_HAVE_X86
/* The AVX-512 conv epilogue against w2s_conv_finish: multipliers that are powers of two (so the
 * products land on the rounding ties of both roundings, both signs) and the largest one, shifts
 * inside and outside the fast form's range, accumulators near every tie and at the int32 ends. */
static int epilogue_avx512(int trials) {
    static int32_t acc[64 * 64];
    static int8_t got[64 * 64];
    int t, i, j;
    for (t = 0; t < trials; t++) {
        w2s_conv_layer l;
        const int32_t c_out = rnd_in(1, W2S_MAX_CHANNELS), n = 64, fast = t % 4 != 0;
        for (i = 0; i < c_out; i++) {
            const int32_t kind = (int32_t)(rnd() % 4);
            mult[i] = kind == 0 ? 0x7FFFFFFF : kind == 1 ? rnd_in(1 << 30, 0x7FFFFFFF) : (int32_t)1 << rnd_in(0, 30);
            shift[i] = fast ? rnd_in(-23, -1) : rnd_in(-31, 30);
        }
        l.output_offset = rnd_in(-128, 127);
        l.act_min = t % 3 ? -128 : rnd_in(-128, 0);
        l.act_max = t % 5 ? 127 : rnd_in(l.act_min, 127);
        l.mult = mult;
        l.shift = shift;
        l.bias = bias; /* read, unused: the accumulators come with it */
        for (j = 0; j < n; j++)
            for (i = 0; i < c_out; i++) {
                int32_t *a = &acc[j * c_out + i];
                const int32_t r = shift[i] < 0 ? -shift[i] : 0, k = 31 - __builtin_clz((uint32_t)mult[i]);
                const int32_t e = 30 + r - k; /* acc 2^e: half a step of the result when mult = 2^k */
                if (rnd() % 8 == 0) {
                    *a = rnd() % 2 ? INT32_MAX - rnd_in(0, 2) : INT32_MIN + rnd_in(0, 2);
                } else if (mult[i] == 1 && rnd() % 2) { /* p = acc next to -2^30: v = 0 or -1 */
                    *a = (rnd() % 2 ? -(1 << 30) : (1 << 30)) + rnd_in(-2, 2);
                } else if (e >= 0 && e < 31 && rnd() % 4) {
                    const int64_t v = (int64_t)rnd_in(-64, 64) * ((int64_t)1 << e) + rnd_in(-2, 2);
                    *a = v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : (int32_t)v;
                } else {
                    *a = (int32_t)rnd();
                }
            }
        w2s_conv_finish_avx512(&l, c_out, acc, n, got);
        for (j = 0; j < n * c_out; j++)
            if (got[j] != w2s_conv_finish(&l, acc[j], j % c_out)) {
                printf("epilogue %d: acc %ld mult %ld shift %d offset %d: %d, plain C %d\n", t, (long)acc[j],
                       (long)mult[j % c_out], (int)shift[j % c_out], (int)l.output_offset, (int)got[j],
                       (int)w2s_conv_finish(&l, acc[j], j % c_out));
                return 1;
            }
    }
    return 0;
}

/* w2s_log2_q16_simd against w2s_log2_q16 on values of every bit length, w2s_dft_simd against the
 * matrix product in plain C on random tables and inputs at the bounds of frontend.c */
static int frontend_simd(int trials) {
    static int64_t mat[W2S_DFT_MAT_WORDS];
    int t, i, k;
    for (t = 0; t < trials; t++) {
        uint64_t v[W2S_MAX_MELS];
        int32_t lg[W2S_MAX_MELS];
        const int32_t n = t % 5 == 0 ? W2S_MAX_MELS : rnd_in(1, TK_F);
        for (i = 0; i < n; i++) {
            const int bits = rnd_in(1, 64);
            uint64_t u = ((uint64_t)rnd() << 32 | rnd()) >> (64 - bits);
            if (t % 7 == 0) u = i % 2 ? ~(uint64_t)0 >> rnd_in(0, 63) : (uint64_t)1 << rnd_in(0, 63);
            v[i] = u ? u : 1;
        }
        w2s_log2_q16_simd(v, n, lg);
        for (i = 0; i < n; i++)
            if (lg[i] != w2s_log2_q16(v[i])) {
                printf("log2 %d: simd %ld, scalar %ld for %llu\n", t, (long)lg[i], (long)w2s_log2_q16(v[i]),
                       (unsigned long long)v[i]);
                return 1;
            }
    }
    for (t = 0; t < trials; t++) {
        const int32_t N = 4 << rnd_in(0, 4), h = N / 2, L = W2S_DFT_MAT_L(h); /* n_fft 4..64 */
        int32_t cosine[W2S_DFT_MAT_MAX_N];
        int64_t a[W2S_DFT_MAT_MAX_N / 2 + 4] = {0}, b[W2S_DFT_MAT_MAX_N / 2 + 4] = {0};
        int64_t re[W2S_DFT_MAT_MAX_N / 2 + 1], im[W2S_DFT_MAT_MAX_N / 2 + 1];
        for (i = 0; i < N; i++) cosine[i] = t % 4 == 0 ? (i % 2 ? INT32_MIN : INT32_MAX) : (int32_t)rnd();
        if (t % 2) { /* the symmetries of a cosine table (frontend.c's trig_symmetric): the folded path */
            for (i = 0; i < N / 4; i++) cosine[i] = t % 4 == 1 ? (i % 2 ? -INT32_MAX : INT32_MAX) : (int32_t)(rnd() | 1u); /* odd */
            cosine[N / 4] = 0;
            for (i = 0; i < N / 4; i++) cosine[h - i] = -cosine[i];
            for (i = h + 1; i < N; i++) cosine[i] = cosine[N - i];
            if (t % 8 == 7) cosine[rnd_in(1, N - 1)] ^= 1 << rnd_in(0, 30); /* almost: the full path */
        }
        for (i = 0; i <= h; i++) {
            a[i] = t % 4 == 1 ? -(1 << 25) : rnd_in(-(1 << 25), 1 << 25);
            b[i] = t % 4 == 1 ? 1 << 25 : rnd_in(-(1 << 25), 1 << 25);
        }
        w2s_dft_matrix(cosine, N, mat);
        w2s_dft_simd(mat, h, a, b, re, im);
        for (k = 0; k <= h; k++) {
            int64_t r = 0, m = 0;
            for (i = 0; i <= h; i++) {
                r += a[i] * mat[(size_t)(2 * k) * (size_t)L + (size_t)i];
                m += b[i] * mat[(size_t)(2 * k + 1) * (size_t)L + (size_t)i];
            }
            if (r != re[k] || m != im[k]) {
                printf("dft %d (n_fft %d): frequency %d differs\n", t, (int)N, (int)k);
                return 1;
            }
        }
    }
    return 0;
}

/* The AVX-512 windowing, power, log2 and dB step against frontend.c's plain C on random and extreme values
 * at the bounds frontend.c guarantees (|d| < 2^20, |window| <= 2^30, |DFT sum| < 2^62), with exact
 * rounding ties of both signs. */
static int64_t rnd64(void) { return (int64_t)((uint64_t)rnd() << 32 | rnd()); }

/* The clip sums of w2s_prenorm_s16 (AVX-512) against a plain loop: lengths around the vector
 * width, and clips past 2^20 samples (the int32 pair sums would wrap if never widened) of extremes, noise
 * and -32768 throughout (its pair of squares is 2^31, one past INT32_MAX). */
static int16_t long_clip[(1 << 20) + 4099];

static int prenorm_sums_avx512(void) {
    int t;
    for (t = 0; t < 40; t++) {
        const size_t n = t < 32 ? (size_t)rnd_in(1, 200) : (size_t)rnd_in((1 << 20) + 2048, (1 << 20) + 4099);
        int64_t sum = 0, got_sum;
        uint64_t sum2 = 0, got_sum2;
        size_t i;
        for (i = 0; i < n; i++) {
            long_clip[i] = t % 4 == 0 ? -32768 : t % 4 == 1 ? (int16_t)(i % 2 ? 32767 : -32768) : (int16_t)rnd_in(-32768, 32767);
            sum += long_clip[i];
            sum2 += (uint64_t)((int64_t)long_clip[i] * long_clip[i]);
        }
        w2s_sums_s16_avx512(long_clip, n, &got_sum, &got_sum2);
        if (got_sum != sum || got_sum2 != sum2) {
            printf("prenorm sums %d (n %lu): differ\n", t, (unsigned long)n);
            return 1;
        }
    }
    return 0;
}

static int frontend_avx512(int trials) {
    int t, i;
    for (t = 0; t < trials; t++) {
        const int32_t n = 4 * rnd_in(1, 64), q = W2S_Q_TRIG + W2S_Q_PCM - W2S_Q_WINDOWED;
        const int32_t mean = t % 3 == 0 ? (t % 2 ? 32767 * 16 : -32768 * 16) : rnd_in(-(1 << 19), 1 << 19);
        int16_t frame[W2S_MAX_FFT];
        int32_t window[W2S_MAX_FFT], xw[W2S_MAX_FFT];
        int64_t re[W2S_MAX_FFT / 2 + 1], im[W2S_MAX_FFT / 2 + 1];
        uint64_t power[W2S_MAX_FFT / 2 + 1], v[W2S_MAX_MELS], pmax = 0, got;
        int32_t lg[W2S_MAX_MELS];
        const int32_t bins = n / 2 + 1, nv = rnd_in(1, W2S_MAX_MELS);
        for (i = 0; i < n; i++) {
            frame[i] = t % 3 == 0 ? (int16_t)(i % 2 ? 32767 : -32768) : (int16_t)rnd_in(-32768, 32767);
            window[i] = t % 5 == 0 ? (i % 2 ? -(1 << 30) : 1 << 30)
                                   : (int32_t)((int64_t)(rnd() % ((1u << 31) + 1u)) - (1 << 30));
        }
        w2s_window_avx512(frame, mean, window, n, xw);
        for (i = 0; i < n; i++) {
            const int64_t d = (int64_t)frame[i] * (1 << W2S_Q_PCM) - mean;
            if (xw[i] != (int32_t)w2s_rshift_round(d * window[i], q)) {
                printf("window %d: sample %d differs\n", t, (int)i);
                return 1;
            }
        }
        for (i = 0; i < bins; i++) {
            const int s = W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM;
            const int64_t low = ((int64_t)1 << s) - 1;
            re[i] = rnd64() / 4; /* |.| < 2^62 */
            im[i] = rnd64() / 4;
            if (t % 4 == 1) { /* exact ties, both signs */
                re[i] = (re[i] & ~low) + ((int64_t)1 << (s - 1));
                im[i] = -((im[i] & ~low) + ((int64_t)1 << (s - 1)));
            }
        }
        got = w2s_power_avx512(re, im, bins, power);
        for (i = 0; i < bins; i++) {
            const int s = W2S_Q_TRIG + W2S_Q_WINDOWED - W2S_Q_PCM;
            const int64_t r = w2s_rshift_round(re[i], s), m = w2s_rshift_round(im[i], s);
            const uint64_t pw = (uint64_t)(r * r) + (uint64_t)(m * m);
            if (pw != power[i]) {
                printf("power %d: bin %d differs\n", t, (int)i);
                return 1;
            }
            if (pw > pmax) pmax = pw;
        }
        if (got != pmax) {
            printf("power %d: maximum differs\n", t);
            return 1;
        }
        for (i = 0; i < nv; i++) {
            const uint64_t u = (uint64_t)rnd64() >> rnd_in(0, 63);
            v[i] = u ? u : 1;
        }
        w2s_log2_q16_avx512(v, nv, lg);
        for (i = 0; i < nv; i++)
            if (lg[i] != w2s_log2_q16(v[i])) {
                printf("log2 (avx512) %d: value %d differs\n", t, (int)i);
                return 1;
            }
        { /* the dB step: zero sums take the floor; multipliers and shifts over their whole range */
            const int32_t offset = rnd_in(-(1 << 23), 1 << 23), floor_ = rnd_in(-64 * 65536, 0);
            const int32_t db_mult = t % 6 == 0 ? INT32_MAX : (int32_t)(rnd() >> 1), db_shift = rnd_in(-31, 30);
            int16_t db[W2S_MAX_MELS];
            for (i = 0; i < nv; i++) {
                if (rnd() % 4 == 0) v[i] = 0;
                lg[i] = rnd_in(0, 64 * 65536 - 1);
            }
            w2s_db_avx512(v, lg, nv, offset, floor_, db_mult, db_shift, db);
            for (i = 0; i < nv; i++) {
                int32_t L = v[i] == 0 ? floor_ : lg[i] + offset;
                if (L < floor_) L = floor_;
                if (db[i] != w2s_sat16(w2s_requantize(L, db_mult, db_shift))) {
                    printf("dB (avx512) %d: mel %d differs\n", t, (int)i);
                    return 1;
                }
            }
        }
    }
    return 0;
}
#endif

/* ---- whole clips ------------------------------------------------------------------------------------ */

#define MAX_STAGES 32
typedef struct { uint32_t hash[MAX_STAGES]; int n; } stage_hashes;

static void hash_stage(void *user, w2s_trace_stage stage, int32_t layer, const void *data, int32_t d0,
                       int32_t d1, int32_t d2) {
    static const size_t elem[] = {4, 2, 1, 1, 2, 2, 4}; /* bytes per value of each stage */
    stage_hashes *h = (stage_hashes *)user;
    const uint8_t *p = (const uint8_t *)data;
    const size_t bytes = (size_t)stage < sizeof elem / sizeof elem[0] ? elem[stage] : 1; /* a newer stage: its first bytes */
    size_t n = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1) * (size_t)(d2 > 0 ? d2 : 1) * bytes, i;
    uint32_t v = 2166136261u ^ (uint32_t)layer;
    for (i = 0; i < n; i++) v = (v ^ p[i]) * 16777619u; /* FNV-1a */
    if (h->n < MAX_STAGES) h->hash[h->n++] = v;
}

static int clip(w2s_model *m, int32_t isa, const int16_t *pcm, size_t n, const char *name) {
    stage_hashes a, b;
    const size_t need = w2s_arena_size(m, n);
    void *arena = malloc(need + 8);
    w2s_output out;
    int i, bad = 0;
    a.n = b.n = 0;
    m->w.isa = W2S_ISA_PORTABLE;
    w2s_forward(m, pcm, n, arena, need, &out, hash_stage, &a);
    m->w.isa = isa;
    w2s_forward(m, pcm, n, arena, need, &out, hash_stage, &b);
    m->w.isa = W2S_ISA_AUTO;
    for (i = 0; i < a.n && !bad; i++) bad = i >= b.n || a.hash[i] != b.hash[i];
    if (bad || a.n != b.n) printf("clip %s: %s differs from portable at stage %d\n", name, w2s_isa_name(isa), i - 1);
    free(arena);
    return bad || a.n != b.n;
}

int main(int argc, char **argv) {
    w2s_model m;
    size_t len;
    void *buf;
    int32_t isa, failures = 0, tested = 0;
    int a;
    if (argc < 2) {
        fprintf(stderr, "usage: test_kernels model.w2s [clip.raw ...]\n");
        return 2;
    }
    buf = w2s_host_read_file(argv[1], &len);
    if (!buf || w2s_model_init(&m, buf, len) != W2S_OK) {
        printf("test_kernels: cannot load %s\n", argv[1]);
        return 1;
    }
    printf("test_kernels: best kernel set %s\n", w2s_isa_name(w2s_isa_resolve(W2S_ISA_AUTO)));
#ifdef W2S_HAVE_X86
    if (w2s_x86_has_avx2()) {
        const int bad = frontend_simd(300);
        printf("test_kernels: log2 and DFT (avx2) against plain C: %s\n", bad ? "FAIL" : "identical");
        failures += bad;
    }
    if (w2s_frame_avx512_ok(W2S_ISA_AVX512)) {
        const int bad = frontend_avx512(400) + prenorm_sums_avx512();
        printf("test_kernels: clip sums, windowing, power, log2 and dB (avx512) against plain C: %s\n", bad ? "FAIL" : "identical");
        failures += bad;
    }
    if (w2s_isa_resolve(W2S_ISA_AVX512) == W2S_ISA_AVX512) {
        const int bad = epilogue_avx512(2000);
        printf("test_kernels: conv epilogue (avx512) against plain C: %s\n", bad ? "FAIL" : "identical");
        failures += bad;
    }
#endif
    for (isa = W2S_ISA_PORTABLE + 1; isa <= W2S_ISA_DSP; isa++) {
        if (!w2s_isa_resolve(isa)) continue;
        tested++;
        failures += conv_rows(isa, 400);
        failures += vox_rows(&m, isa, 300);
        for (a = 2; a < argc; a++) {
            size_t n;
            int16_t *pcm = (int16_t *)w2s_host_read_file(argv[a], &n);
            if (!pcm) {
                printf("cannot read %s\n", argv[a]);
                return 1;
            }
            failures += clip(&m, isa, pcm, n / 2, argv[a]);
            free(pcm);
        }
        { /* synthetic: noise, extremes, silence, one frame */
            static int16_t s[16000];
            size_t i;
            for (i = 0; i < 16000; i++) s[i] = (int16_t)rnd_in(-32768, 32767);
            failures += clip(&m, isa, s, 16000, "noise");
            failures += clip(&m, isa, s, (size_t)m.config.n_fft, "one frame");
            for (i = 0; i < 16000; i++) s[i] = (int16_t)(i % 2 ? 32767 : -32768);
            failures += clip(&m, isa, s, 16000, "extremes");
            memset(s, 0, sizeof s);
            failures += clip(&m, isa, s, 8000, "silence");
        }
        printf("test_kernels: %s against portable: %s\n", w2s_isa_name(isa), failures ? "FAIL" : "identical");
    }
    printf("test_kernels: %s (%d kernel sets besides portable, %d failures)\n", failures ? "FAIL" : "PASS",
           (int)tested, (int)failures);
    free(scratch_mem);
    free(buf);
    return failures ? 1 : 0;
}
