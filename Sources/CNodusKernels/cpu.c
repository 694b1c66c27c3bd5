#include "nodus_cpu.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const labels[] = {"baseline", "avx2", "avx512", "avx512_bf16"};
enum { LEVEL_COUNT = sizeof labels / sizeof labels[0] };

const char *nodus_kernels_level_label(int level) {
    return level >= 0 && level < LEVEL_COUNT ? labels[level] : NULL;
}

/* __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0). */
nodus_kernel_level nodus_kernels_level_supported(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return NODUS_KERNEL_LEVEL_BASELINE;
    if (!__builtin_cpu_supports("avx512f")) return NODUS_KERNEL_LEVEL_AVX2;
    if (!__builtin_cpu_supports("avx512bf16")) return NODUS_KERNEL_LEVEL_AVX512;
    return NODUS_KERNEL_LEVEL_AVX512_BF16;
}

static pthread_once_t decided = PTHREAD_ONCE_INIT;
static nodus_kernel_level level_in_use = NODUS_KERNEL_LEVEL_BASELINE;
static char problem[256];

static void decide(void) {
    const nodus_kernel_level supported = nodus_kernels_level_supported();
    level_in_use = supported;
    const char *requested = getenv("NODUS_CPU");
    if (requested == NULL || requested[0] == '\0') return;
    int wanted = -1;
    for (int level = 0; level < LEVEL_COUNT; level++) {
        if (strcmp(requested, labels[level]) == 0) wanted = level;
    }
    if (wanted < 0) {
        snprintf(problem, sizeof problem,
                 "NODUS_CPU='%.64s' is not a CPU level (baseline, avx2, avx512, avx512_bf16); using %s",
                 requested, labels[supported]);
    } else if (wanted > (int)supported) {
        snprintf(problem, sizeof problem,
                 "NODUS_CPU=%s asks for a level this CPU lacks; using %s, the highest it supports",
                 labels[wanted], labels[supported]);
    } else {
        level_in_use = (nodus_kernel_level)wanted;
    }
    /* Said once, where a person running the host sees it; the C ABI also returns it. */
    if (problem[0] != '\0') fprintf(stderr, "nodus: %s\n", problem);
}

nodus_kernel_level nodus_kernels_level_in_use(void) {
    pthread_once(&decided, decide);
    return level_in_use;
}

const char *nodus_kernels_level_problem(void) {
    pthread_once(&decided, decide);
    return problem[0] != '\0' ? problem : NULL;
}
