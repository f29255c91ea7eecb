/*
 * pool.c - max-pool 3x3, stride 2, padding 1 (= F.max_pool2d(x, 3, 2, 1)) on int8 [T][F][C].
 * Padding never wins, as PyTorch pads with -inf. Scale and zero point pass through unchanged.
 */
#include "w2s_internal.h"

void w2s_maxpool_row_s8(int32_t f_in, int32_t c, const int8_t *const rows[3], int8_t *out) {
    const int32_t f_out = (f_in + 1) / 2;
    int32_t fo, ch, ky, kx;
    for (fo = 0; fo < f_out; fo++) {
        for (ch = 0; ch < c; ch++) {
            int32_t best = -129; /* below any int8: every window has at least one real tap */
            for (ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (kx = 0; kx < 3; kx++) {
                    const int32_t fi = 2 * fo + kx - 1;
                    if (fi < 0 || fi >= f_in) continue;
                    if (rows[ky][fi * c + ch] > best) best = rows[ky][fi * c + ch];
                }
            }
            out[fo * c + ch] = (int8_t)best;
        }
    }
}
