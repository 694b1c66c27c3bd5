#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int medical_fail(char *error, size_t error_size, const char *format, ...) {
    if (error && error_size > 0) {
        va_list arguments;
        va_start(arguments, format);
        vsnprintf(error, error_size, format, arguments);
        va_end(arguments);
    }
    return -1;
}

int medical_temporary_path(const char *path, const char *suffix, char *temporary, size_t temporary_size,
                           char *error, size_t error_size) {
    if (!path || !*path) return medical_fail(error, error_size, "no output path given");
    char *folderCopy = strdup(path), *nameCopy = strdup(path);
    if (!folderCopy || !nameCopy) {
        free(folderCopy);
        free(nameCopy);
        return medical_fail(error, error_size, "cannot write '%s': out of memory", path);
    }
    const char *folder = dirname(folderCopy), *name = basename(nameCopy);
    int length = snprintf(temporary, temporary_size, "%s/.%s.partial-XXXXXX%s", folder, name, suffix ? suffix : "");
    free(folderCopy);
    free(nameCopy);
    if (length < 0 || (size_t)length >= temporary_size)
        return medical_fail(error, error_size, "cannot write '%s': the path is too long", path);
    int descriptor = mkstemps(temporary, suffix ? (int)strlen(suffix) : 0);
    if (descriptor < 0) {
        int code = errno;
        if (code == ENOENT) return medical_fail(error, error_size, "cannot write '%s': its folder does not exist", path);
        return medical_fail(error, error_size, "cannot write '%s': %s", path, strerror(code));
    }
    /* mkstemps makes the file 0600; give it the mode a plain create would (0666 less
     * the umask). umask can only be read by setting it: the CLI does this on one thread. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(descriptor, 0666 & ~mask);
    close(descriptor);
    return 0;
}

/* fsync then rename; a close error (deferred write failures on NFS) counts too. */
int medical_commit(const char *temporary, const char *path, char *error, size_t error_size) {
    int descriptor = open(temporary, O_RDONLY);
    if (descriptor < 0 || fsync(descriptor) != 0) {
        int code = errno;
        if (descriptor >= 0) close(descriptor);
        unlink(temporary);
        return medical_fail(error, error_size, "cannot write '%s': %s", path, strerror(code));
    }
    close(descriptor);
    if (rename(temporary, path) != 0) {
        int code = errno;
        unlink(temporary);
        return medical_fail(error, error_size, "cannot write '%s': %s", path, strerror(code));
    }
    return 0;
}

int medical_write_atomically(const char *path, const void *bytes, size_t length, char *error, size_t error_size) {
    char temporary[4096];
    if (medical_temporary_path(path, "", temporary, sizeof temporary, error, error_size) != 0) return -1;
    int descriptor = open(temporary, O_WRONLY | O_TRUNC);
    int code = descriptor < 0 ? errno : 0;
    const char *cursor = bytes;
    size_t left = length;
    while (code == 0 && left > 0) {
        ssize_t written = write(descriptor, cursor, left);
        if (written < 0) {
            if (errno == EINTR) continue;
            code = errno;
        } else {
            cursor += written;
            left -= (size_t)written;
        }
    }
    if (code == 0 && fsync(descriptor) != 0) code = errno;
    if (descriptor >= 0 && close(descriptor) != 0 && code == 0) code = errno;
    if (code != 0) {
        unlink(temporary);
        return medical_fail(error, error_size, "cannot write '%s': %s", path, strerror(code));
    }
    if (rename(temporary, path) != 0) {
        code = errno;
        unlink(temporary);
        return medical_fail(error, error_size, "cannot write '%s': %s", path, strerror(code));
    }
    return 0;
}
