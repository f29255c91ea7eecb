/*
 * startup.c - reset and fault handling for the Cortex-M firmware (MPS2/MPS3 boards under qemu).
 *
 * The vector table holds the initial stack pointer and the handlers; Reset_Handler copies .data
 * from its load address, zeroes .bss, turns the FPU on in hard-float builds (the compiler may
 * move 64-bit data through FPU registers even in integer code), runs main and reports its
 * result through semihosting. A fault prints FAIL instead of hanging, so a broken build fails
 * the test run quickly.
 */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
int main(void);

void Reset_Handler(void);
void Fault_Handler(void);

void Reset_Handler(void) {
    const uint32_t *src = &__data_load__;
    uint32_t *dst;
    for (dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
#if defined(__ARM_FP) /* a soft-float build (cortex-m3) has no FPU to turn on */
    volatile uint32_t *cpacr = (volatile uint32_t *)0xE000ED88u;
    *cpacr |= 0xFu << 20; /* CP10, CP11: full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    semihost_exit(main() == 0);
}

void Fault_Handler(void) {
    semihost_puts("w2s_fw: FAIL (processor fault)\n");
    semihost_exit(0);
}

/* Initial SP, reset, then NMI .. SysTick: every exception ends in Fault_Handler. */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top__,
    Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, 0, 0, 0, 0,
    Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
