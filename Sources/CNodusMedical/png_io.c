/* Gray PNG through libpng's progressive API, which hands over the samples as
 * stored (the simplified API would apply gamma to 8-bit files). libpng reports
 * errors by longjmp, so these functions keep no resources in locals that a
 * jump would leak: each frees through the state it passes to setjmp's frame. */
#include "nodus_medical.h"
#include "atomic_file.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_failure {
    char message[256];
} png_failure;

static void on_png_error(png_structp png, png_const_charp message) {
    png_failure *failure = png_get_error_ptr(png);
    snprintf(failure->message, sizeof failure->message, "%s", message);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static const char *color_type_name(int type) {
    switch (type) {
    case PNG_COLOR_TYPE_GRAY_ALPHA: return "gray with alpha";
    case PNG_COLOR_TYPE_PALETTE: return "palette colour";
    case PNG_COLOR_TYPE_RGB: return "RGB colour";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA colour";
    default: return "unknown";
    }
}

typedef struct png_read_state {
    FILE *file;
    png_structp png;
    png_infop info;
    png_bytep *rows;
    png_bytep data;
} png_read_state;

static void finish_read(png_read_state *state) {
    if (state->png) png_destroy_read_struct(&state->png, state->info ? &state->info : NULL, NULL);
    if (state->file) fclose(state->file);
    free(state->rows);
    free(state->data);
    free(state);
}

int nodus_medical_png_read(const char *path, nodus_medical_png_image *image, char *error, size_t error_size) {
    memset(image, 0, sizeof *image);
    png_failure failure = {{0}};
    /* On the heap: what setjmp's frame frees must not live in locals changed after setjmp. */
    png_read_state *state = calloc(1, sizeof *state);
    if (!state) return medical_fail(error, error_size, "cannot read '%s': out of memory", path);
    state->file = fopen(path, "rb");
    if (!state->file) {
        int code = errno;
        finish_read(state);
        return medical_fail(error, error_size, "cannot read '%s': %s", path, strerror(code));
    }
    unsigned char signature[8];
    if (fread(signature, 1, 8, state->file) != 8 || png_sig_cmp(signature, 0, 8) != 0) {
        finish_read(state);
        return medical_fail(error, error_size, "'%s' is not a PNG file", path);
    }
    state->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure, on_png_error, on_png_warning);
    if (state->png) state->info = png_create_info_struct(state->png);
    if (!state->png || !state->info) {
        finish_read(state);
        return medical_fail(error, error_size, "cannot read '%s': out of memory", path);
    }
    if (setjmp(png_jmpbuf(state->png))) {
        finish_read(state);
        free(image->samples);
        image->samples = NULL;
        return medical_fail(error, error_size, "cannot read '%s': %s", path, failure.message);
    }
    png_init_io(state->png, state->file);
    png_set_sig_bytes(state->png, 8);
    png_read_info(state->png, state->info);
    png_uint_32 width = png_get_image_width(state->png, state->info), height = png_get_image_height(state->png, state->info);
    int depth = png_get_bit_depth(state->png, state->info), type = png_get_color_type(state->png, state->info);
    if (type != PNG_COLOR_TYPE_GRAY) {
        finish_read(state);
        return medical_fail(error, error_size,
                            "'%s' is a %s PNG; only grayscale images are supported (convert it to gray first)",
                            path, color_type_name(type));
    }
    if ((size_t)width * height > ((size_t)1 << 31)) {
        finish_read(state);
        return medical_fail(error, error_size, "'%s' is too large (%ux%u)", path, width, height);
    }
    int significant = depth < 8 ? 8 : depth;
    png_color_8p bits = NULL;
    if (png_get_sBIT(state->png, state->info, &bits) && bits && bits->gray > 0 && bits->gray <= significant)
        significant = bits->gray;
    if (depth < 8) png_set_expand_gray_1_2_4_to_8(state->png);
    if (depth == 16) png_set_swap(state->png);  /* PNG is big-endian; read little-endian words */
    png_read_update_info(state->png, state->info);
    size_t rowBytes = png_get_rowbytes(state->png, state->info);
    state->data = malloc(rowBytes * height);
    state->rows = malloc(sizeof(png_bytep) * height);
    image->samples = malloc(sizeof(uint16_t) * (size_t)width * height);
    if (!state->data || !state->rows || !image->samples) {
        finish_read(state);
        free(image->samples);
        image->samples = NULL;
        return medical_fail(error, error_size, "cannot read '%s': out of memory", path);
    }
    for (png_uint_32 row = 0; row < height; row++) state->rows[row] = state->data + row * rowBytes;
    png_read_image(state->png, state->rows);
    png_read_end(state->png, NULL);
    for (png_uint_32 row = 0; row < height; row++) {
        for (png_uint_32 column = 0; column < width; column++) {
            image->samples[(size_t)row * width + column] =
                depth == 16 ? ((const uint16_t *)state->rows[row])[column] : state->rows[row][column];
        }
    }
    finish_read(state);
    image->width = (int32_t)width;
    image->height = (int32_t)height;
    image->bit_depth = depth == 16 ? 16 : 8;
    image->significant_bits = significant;
    return 0;
}

void nodus_medical_png_image_release(nodus_medical_png_image *image) {
    if (!image) return;
    free(image->samples);
    image->samples = NULL;
}

/* The encoded file grows in memory, then goes to disk in one atomic write. */
typedef struct png_buffer {
    unsigned char *bytes;
    size_t length, capacity;
} png_buffer;

static void append_to_buffer(png_structp png, png_bytep data, png_size_t length) {
    png_buffer *buffer = png_get_io_ptr(png);
    if (buffer->length + length > buffer->capacity) {
        size_t capacity = buffer->capacity ? buffer->capacity : 65536;
        while (capacity < buffer->length + length) capacity *= 2;
        unsigned char *grown = realloc(buffer->bytes, capacity);
        if (!grown) png_error(png, "out of memory");
        buffer->bytes = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->bytes + buffer->length, data, length);
    buffer->length += length;
}

static void flush_buffer(png_structp png) { (void)png; }

typedef struct png_write_state {
    png_structp png;
    png_infop info;
    png_bytep *rows;
    unsigned char *packed;
} png_write_state;

static void finish_write(png_write_state *state) {
    if (state->png) png_destroy_write_struct(&state->png, state->info ? &state->info : NULL);
    free(state->rows);
    free(state->packed);
}

int nodus_medical_png_write(const char *path, const uint16_t *samples, int32_t width, int32_t height,
                            int32_t bit_depth, char *error, size_t error_size) {
    if (width <= 0 || height <= 0) return medical_fail(error, error_size, "cannot write '%s': empty image (%dx%d)", path, width, height);
    if (bit_depth != 8 && bit_depth != 16)
        return medical_fail(error, error_size, "cannot write '%s': bit depth %d (need 8 or 16)", path, bit_depth);
    size_t count = (size_t)width * (size_t)height;
    if (bit_depth == 8) {
        for (size_t index = 0; index < count; index++) {
            if (samples[index] > 255)
                return medical_fail(error, error_size, "cannot write '%s': sample %u does not fit 8 bits", path, samples[index]);
        }
    }
    png_failure failure = {{0}};
    png_buffer *buffer = calloc(1, sizeof *buffer);  /* heap: grows after setjmp */
    png_write_state state = {0};
    size_t bytesPerSample = bit_depth == 16 ? 2 : 1;
    state.packed = malloc(count * bytesPerSample);
    state.rows = malloc(sizeof(png_bytep) * (size_t)height);
    state.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &failure, on_png_error, on_png_warning);
    if (state.png) state.info = png_create_info_struct(state.png);
    if (!buffer || !state.packed || !state.rows || !state.png || !state.info) {
        finish_write(&state);
        free(buffer);
        return medical_fail(error, error_size, "cannot write '%s': out of memory", path);
    }
    if (setjmp(png_jmpbuf(state.png))) {
        finish_write(&state);
        free(buffer->bytes);
        free(buffer);
        return medical_fail(error, error_size, "cannot write '%s': %s", path, failure.message);
    }
    for (size_t index = 0; index < count; index++) {
        if (bit_depth == 16) {  /* big-endian, as PNG stores it */
            state.packed[2 * index] = (unsigned char)(samples[index] >> 8);
            state.packed[2 * index + 1] = (unsigned char)(samples[index] & 0xff);
        } else {
            state.packed[index] = (unsigned char)samples[index];
        }
    }
    for (int32_t row = 0; row < height; row++) state.rows[row] = state.packed + (size_t)row * width * bytesPerSample;
    png_set_write_fn(state.png, buffer, append_to_buffer, flush_buffer);
    png_set_IHDR(state.png, state.info, (png_uint_32)width, (png_uint_32)height, bit_depth, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(state.png, state.info);
    png_write_image(state.png, state.rows);
    png_write_end(state.png, NULL);
    finish_write(&state);
    int status = medical_write_atomically(path, buffer->bytes, buffer->length, error, error_size);
    free(buffer->bytes);
    free(buffer);
    return status;
}
