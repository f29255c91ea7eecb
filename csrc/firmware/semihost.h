/*
 * semihost.h - ARM semihosting for the emulated boards: text out and exit status, nothing else.
 *
 * A `bkpt 0xAB` with an operation in r0 and its argument in r1 is served by the debugger, here
 * qemu-system-arm -semihosting-config enable=on,target=native. No C library is involved, so
 * the firmware needs no newlib stdio or syscall stubs.
 */
#ifndef W2S_SEMIHOST_H
#define W2S_SEMIHOST_H

#include <stdint.h>

#define SEMIHOST_SYS_WRITE0 0x04u   /* r1: NUL-terminated string */
#define SEMIHOST_SYS_EXIT   0x18u   /* r1: reason; qemu exits 0 on ApplicationExit, 1 otherwise */
#define SEMIHOST_EXIT_OK    0x20026u /* ADP_Stopped_ApplicationExit */
#define SEMIHOST_EXIT_ERROR 0x20023u /* ADP_Stopped_RunTimeErrorUnknown */

static inline uint32_t semihost_call(uint32_t op, const void *arg) {
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline void semihost_puts(const char *s) { (void)semihost_call(SEMIHOST_SYS_WRITE0, s); }

static inline void semihost_exit(int ok) {
    (void)semihost_call(SEMIHOST_SYS_EXIT, (const void *)(uintptr_t)(ok ? SEMIHOST_EXIT_OK : SEMIHOST_EXIT_ERROR));
    for (;;) {
    }
}

#endif /* W2S_SEMIHOST_H */
