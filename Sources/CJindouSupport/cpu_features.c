#include "jindou_support.h"

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

int jindou_cpu_vector_level(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, f16c = (ecx >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    const unsigned long long xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6) return 0;  // XMM and YMM state saved by the OS
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int avx2 = (ebx >> 5) & 1;
    if (!avx2) return 0;
    const int avx512f = (ebx >> 16) & 1, avx512dq = (ebx >> 17) & 1, avx512cd = (ebx >> 28) & 1;
    const int avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
    const int zmmState = (xcr0 & 0xE6) == 0xE6;  // plus opmask, ZMM0-15 upper halves, ZMM16-31
    if (avx512f && avx512dq && avx512cd && avx512bw && avx512vl && zmmState) return 2;
    return 1;
}
#else
int jindou_cpu_vector_level(void) { return 0; }
#endif
