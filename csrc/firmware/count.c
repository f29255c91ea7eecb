/*
 * count.c - instructions of the engine per second of audio on an emulated Cortex-M (docs/performance.md).
 *
 *     make -C csrc TARGET=cortex-m4 count
 *
 * qemu runs the image with -icount shift=0: the virtual clock advances exactly 1 ns per guest
 * instruction, and the MPS2 FPGA COUNTER register counts that clock at a fixed rate. A loop of
 * known length (2 instructions per turn) calibrates counts per instruction; then each real speech
 * clip of fw_data.h (1 s) runs w2s_predict_s16 with the portable kernels and with the build's best
 * set (DSP on Cortex-M4/M7/M55), and the difference of the counter gives the instructions.
 */
#include "fw_data.h"
#include "semihost.h"
#include "w2s.h"
#include "w2s_internal.h"

#define FPGAIO_COUNTER (*(volatile uint32_t *)0x40028018u) /* MPS2 FPGAIO COUNTER */

static uint8_t arena[FW_ARENA_BYTES] __attribute__((aligned(8)));

static void put_int(unsigned long u) {
    char buf[24], *p = buf + sizeof buf - 1;
    *p = '\0';
    do {
        *--p = (char)('0' + u % 10u);
        u /= 10u;
    } while (u);
    semihost_puts(p);
}

/* 2 * n instructions (SUBS, BNE) between two reads of the counter */
static uint32_t __attribute__((noinline)) spin(uint32_t n) {
    uint32_t t0 = FPGAIO_COUNTER, t1;
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    t1 = FPGAIO_COUNTER;
    return t1 - t0;
}

/* counter at each stage the forward pass reports (w2s_trace_stage order) */
typedef struct { uint32_t t[24]; int n; } stamps;
static void stamp(void *user, w2s_trace_stage stage, int32_t layer, const void *data, int32_t d0,
                  int32_t d1, int32_t d2) {
    stamps *s = (stamps *)user;
    (void)stage, (void)layer, (void)data, (void)d0, (void)d1, (void)d2;
    if (s->n < 24) s->t[s->n++] = FPGAIO_COUNTER;
}

int main(void) {
    w2s_model model;
    w2s_output out;
    const uint32_t turns = 20000000u;
    const uint32_t ticks = spin(turns); /* ticks per 2 * turns instructions */
    int32_t isa, i;
    if (w2s_model_init(&model, w2s_model_data, W2S_MODEL_DATA_BYTES) != W2S_OK || ticks == 0) {
        semihost_puts("w2s_count: FAIL (model or counter)\n");
        semihost_exit(0);
    }
    semihost_puts("w2s_count: " W2S_FW_CPU ", counter ticks per 1000 instructions ");
    put_int((unsigned long)((uint64_t)ticks * 1000u / (2u * turns)));
    semihost_puts("\n");
    for (isa = W2S_ISA_PORTABLE; isa <= W2S_ISA_DSP; isa++) {
        uint64_t total = 0;
        if (isa != W2S_ISA_PORTABLE && isa != w2s_isa_resolve(W2S_ISA_AUTO)) continue;
        model.w.isa = isa;
        for (i = 0; i < FW_N_CLIPS; i++) {
            const uint32_t t0 = FPGAIO_COUNTER;
            w2s_predict_s16(&model, fw_clip[i], FW_CLIP_SAMPLES, arena, sizeof arena, &out);
            total += (uint64_t)(FPGAIO_COUNTER - t0);
        }
        semihost_puts("w2s_count: kernels ");
        semihost_puts(w2s_isa_name(isa));
        semihost_puts(": instructions per second of audio (w2s_predict_s16, mean of 3 clips) ");
        put_int((unsigned long)(total * 2u * turns / ticks / FW_N_CLIPS / (FW_CLIP_SAMPLES / 16000)));
        semihost_puts("\n");
        { /* by stage, first clip: prenorm, log-mel, modulation, steadiness, conv 1..n (pool after its layer), vox,
         * Gram, head */
            stamps st;
            uint32_t t0;
            int k;
            st.n = 0;
            t0 = FPGAIO_COUNTER;
            w2s_forward(&model, fw_clip[0], FW_CLIP_SAMPLES, arena, sizeof arena, &out, stamp, &st);
            semihost_puts("w2s_count: by stage (thousands of instructions, clip 1)");
            for (k = 0; k < st.n; k++) {
                semihost_puts(" ");
                put_int((unsigned long)((uint64_t)(st.t[k] - (k ? st.t[k - 1] : t0)) * 2u * turns / ticks / 1000u));
            }
            semihost_puts("\n");
        }
    }
    semihost_exit(1);
    return 0;
}
