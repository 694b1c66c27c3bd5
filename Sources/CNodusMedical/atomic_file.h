/* Atomic output files: written under a temporary name beside the target, flushed,
 * then renamed, so a reader never sees a half-written file under the real name. */
#ifndef NODUS_MEDICAL_ATOMIC_FILE_H
#define NODUS_MEDICAL_ATOMIC_FILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* printf into `error` (NUL-terminated, truncated to `error_size`); returns -1. */
int medical_fail(char *error, size_t error_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Creates an empty, unique file `.NAME.partial-XXXXXX<suffix>` in the folder of
 * `path` and writes its name to `temporary`. `suffix` keeps the extension a
 * library decides the format by (".nii.gz"). Returns 0, or -1 with a message
 * about `path` (its folder missing, not writable, ...). */
int medical_temporary_path(const char *path, const char *suffix, char *temporary, size_t temporary_size,
                           char *error, size_t error_size);

/* Writes `length` bytes to `path` atomically (temporary file, fsync, rename). */
int medical_write_atomically(const char *path, const void *bytes, size_t length,
                             char *error, size_t error_size);

/* Flushes the finished `temporary` to disk and renames it to `path`; on failure
 * removes it. */
int medical_commit(const char *temporary, const char *path, char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
