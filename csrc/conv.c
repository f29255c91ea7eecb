/*
 * conv.c - conv3x3 (stride 1, zero padding 1) + requantize + clamp, one output row at a time.
 *
 * Layout [T][F][C], weights (C_out, 3, 3, C_in). TFLM's ConvPerChannel arithmetic: padding taps
 * are skipped, which equals padding with the input zero point (real 0).
 *   acc = bias[co] + sum (x + input_offset) * w            int32
 *   out = clamp(requantize(acc, mult[co], shift[co]) + output_offset, act_min, act_max)
 * Bounds: int8 layers: 9 * 64 channels * 256 * 128 < 2^25; layer 1 (int16 log-mel, one channel):
 * 9 * 2^16 * 128 < 2^27; |bias| <= 2^30 (checked at load); so acc stays inside int32.
 */
#include "requant.h"
#include "w2s_internal.h"

static int8_t finish(const w2s_conv_layer *l, int32_t acc, int32_t co) {
    int32_t v = w2s_requantize(acc, l->mult[co], l->shift[co]) + l->output_offset;
    if (v < l->act_min) v = l->act_min;
    if (v > l->act_max) v = l->act_max;
    return (int8_t)v;
}

void w2s_conv3x3_row_s16(const w2s_conv_layer *l, int32_t f_len, int32_t c_out,
                         const int16_t *const rows[3], int8_t *out) {
    int32_t f, co, ky, kx;
    for (f = 0; f < f_len; f++) {
        for (co = 0; co < c_out; co++) {
            const int8_t *wk = l->w + co * 9;
            int32_t acc = l->bias[co];
            for (ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (kx = 0; kx < 3; kx++) {
                    const int32_t fi = f + kx - 1;
                    if (fi < 0 || fi >= f_len) continue;
                    acc += ((int32_t)rows[ky][fi] + l->input_offset) * wk[ky * 3 + kx];
                }
            }
            out[f * c_out + co] = finish(l, acc, co);
        }
    }
}

void w2s_conv3x3_row_s8(const w2s_conv_layer *l, int32_t f_len, int32_t c_in, int32_t c_out,
                        const int8_t *const rows[3], int8_t *out) {
    int32_t f, co, ky, kx, ci;
    for (f = 0; f < f_len; f++) {
        for (co = 0; co < c_out; co++) {
            int32_t acc = l->bias[co];
            for (ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (kx = 0; kx < 3; kx++) {
                    const int32_t fi = f + kx - 1;
                    const int8_t *x, *wk;
                    if (fi < 0 || fi >= f_len) continue;
                    x = rows[ky] + fi * c_in;
                    wk = l->w + ((co * 3 + ky) * 3 + kx) * c_in;
                    for (ci = 0; ci < c_in; ci++) acc += ((int32_t)x[ci] + l->input_offset) * wk[ci];
                }
            }
            out[f * c_out + co] = finish(l, acc, co);
        }
    }
}
