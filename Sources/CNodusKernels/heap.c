#include "nodus_heap.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void nodus_heap_return_free_pages(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
