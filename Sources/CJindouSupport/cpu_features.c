#include "jindou_support.h"

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

#define BIT(word, n) (((word) >> (n)) & 1u)

// Every feature the kernel modules' compiler targets enable (Package.swift), so a module is
// only chosen where all of its instructions run:
//   avx2       = x86-64-v3: the x86-64-v2 set (CMPXCHG16B, LAHF/SAHF, POPCNT, SSE3, SSSE3,
//                SSE4.1, SSE4.2) + AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT, MOVBE, XSAVE,
//                with the OS saving XMM/YMM state (XCR0);
//   avxvnni    = avx2 + AVX-VNNI;
//   avx512     = x86-64-v4: avx2 + AVX-512 F, BW, CD, DQ, VL, with opmask/ZMM state saved;
//   avx512vnni = avx512 + AVX512-VNNI, AVX512-VBMI, AVX512-BF16.
int jindou_cpu_kernel_sets(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned int ecx1 = ecx;
    const int v2 = BIT(ecx1, 0) /* SSE3 */ && BIT(ecx1, 9) /* SSSE3 */ && BIT(ecx1, 13) /* CMPXCHG16B */
        && BIT(ecx1, 19) /* SSE4.1 */ && BIT(ecx1, 20) /* SSE4.2 */ && BIT(ecx1, 23) /* POPCNT */;
    const int v3cpuid1 = BIT(ecx1, 12) /* FMA */ && BIT(ecx1, 22) /* MOVBE */ && BIT(ecx1, 26) /* XSAVE */
        && BIT(ecx1, 27) /* OSXSAVE */ && BIT(ecx1, 28) /* AVX */ && BIT(ecx1, 29) /* F16C */;
    if (!(v2 && v3cpuid1)) return 0;
    if (!__get_cpuid(0x80000001, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(BIT(ecx, 0) /* LAHF/SAHF */ && BIT(ecx, 5) /* LZCNT (ABM) */)) return 0;
    const unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;  // XMM and YMM state saved by the OS
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned int ebx7 = ebx, ecx7 = ecx;
    if (!(BIT(ebx7, 3) /* BMI1 */ && BIT(ebx7, 5) /* AVX2 */ && BIT(ebx7, 8) /* BMI2 */)) return 0;
    int sets = JINDOU_KERNELS_AVX2;
    unsigned int eax71 = 0;
    if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) eax71 = eax;
    if (BIT(eax71, 4) /* AVX-VNNI */) sets |= JINDOU_KERNELS_AVXVNNI;
    const int v4 = BIT(ebx7, 16) /* AVX512F */ && BIT(ebx7, 17) /* AVX512DQ */ && BIT(ebx7, 28) /* AVX512CD */
        && BIT(ebx7, 30) /* AVX512BW */ && BIT(ebx7, 31) /* AVX512VL */;
    const int zmmState = (xcr0 & 0xE6) == 0xE6;  // plus opmask, ZMM0-15 upper halves, ZMM16-31
    if (v4 && zmmState) {
        sets |= JINDOU_KERNELS_AVX512;
        if (BIT(ecx7, 1) /* AVX512-VBMI */ && BIT(ecx7, 11) /* AVX512-VNNI */ && BIT(eax71, 5) /* AVX512-BF16 */) {
            sets |= JINDOU_KERNELS_AVX512VNNI;
        }
    }
    return sets;
}

int jindou_cpu_vector_level(void) {
    const int sets = jindou_cpu_kernel_sets();
    return (sets & JINDOU_KERNELS_AVX512) ? 2 : (sets & JINDOU_KERNELS_AVX2) ? 1 : 0;
}
#else
int jindou_cpu_kernel_sets(void) { return 0; }
int jindou_cpu_vector_level(void) { return 0; }
#endif
