/* The C library's heap, for what the Swift runtime cannot reach: glibc's
 * malloc_trim is declared in malloc.h, which Swift's Glibc module leaves out. */
#ifndef NODUS_HEAP_H
#define NODUS_HEAP_H

#include "nodus_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hands the heap's free pages back to the kernel (malloc_trim(0) on glibc; nothing elsewhere). */
NODUS_KERNEL void nodus_heap_return_free_pages(void);

#ifdef __cplusplus
}
#endif

#endif
