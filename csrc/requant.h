/*
 * requant.h - every integer rounding rule of the engine, in one place.
 *
 * wav2small/_reference.py mirrors each function here with the same name; docs/numerics.md
 * states the rules in words. Nothing else in the engine rounds on its own.
 *
 *   w2s_requantize      TFLM/CMSIS-NN "double rounding": x * mult * 2^(shift - 31), used for every
 *                       rescale of an accumulator (conv outputs, log2 -> dB, scores, pooled values).
 *   w2s_rshift_round    x / 2^s rounded to nearest, ties away from zero (TFLM's RoundingDivideByPOT).
 *   w2s_div_round       x / d rounded to nearest, ties away from zero.
 *
 * Right shifts of negative values are written as ~(~x >> s) so the result is the floor, whatever
 * the compiler does with signed >> (implementation-defined in C99).
 */
#ifndef W2S_REQUANT_H
#define W2S_REQUANT_H

#include <stdint.h>

static inline int64_t w2s_asr64(int64_t x, int s) { /* floor(x / 2^s), 0 <= s <= 63 */
    return x >= 0 ? (x >> s) : ~(~x >> s);
}

static inline int32_t w2s_sat32(int64_t x) {
    return x > INT32_MAX ? INT32_MAX : (x < INT32_MIN ? INT32_MIN : (int32_t)x);
}

static inline int16_t w2s_sat16(int64_t x) {
    return x > INT16_MAX ? INT16_MAX : (x < INT16_MIN ? INT16_MIN : (int16_t)x);
}

/* x / 2^s, nearest, ties away from zero; s >= 0. Shifts of 63 or more give 0. */
static inline int64_t w2s_rshift_round(int64_t x, int s) {
    if (s <= 0) return x;
    if (s >= 63) return 0;
    {
        const int64_t mask = ((int64_t)1 << s) - 1;
        const int64_t rem = x & mask; /* two's complement low bits: x - floor(x / 2^s) * 2^s */
        const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
        return w2s_asr64(x, s) + (rem > threshold ? 1 : 0);
    }
}

/* x / d, nearest, ties away from zero; d > 0. */
static inline int64_t w2s_div_round(int64_t x, int64_t d) {
    return x >= 0 ? (x + d / 2) / d : -((-x + d / 2) / d);
}

/* The same in 32 bits, where |x| + d / 2 < 2^31 (one SDIV on a Cortex-M4, no library call). */
static inline int32_t w2s_div_round32(int32_t x, int32_t d) {
    return x >= 0 ? (x + d / 2) / d : -((-x + d / 2) / d);
}

/* High 32 bits of 2*a*b, nearest, ties away from zero (ARM VQRDMULH); saturates the one overflow. */
static inline int32_t w2s_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    {
        const int64_t ab = (int64_t)a * (int64_t)b;
        const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
        return (int32_t)((ab + nudge) / ((int64_t)1 << 31)); /* C division truncates toward zero */
    }
}

/*
 * acc * M with M = mult * 2^(shift - 31), mult in [0, 2^31 - 1], shift in [-31, 30]
 * (checked when the model is loaded). shift > 0: saturating left shift first; then the doubling
 * high multiply; shift < 0: rounding right shift. Two roundings, as in TFLM's default.
 */
static inline int32_t w2s_requantize(int32_t acc, int32_t mult, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t x = w2s_sat32((int64_t)acc * ((int64_t)1 << left));
    return (int32_t)w2s_rshift_round(w2s_srdhm(x, mult), right);
}

#endif /* W2S_REQUANT_H */
