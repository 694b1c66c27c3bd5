/*
 * tokenize: loads a CLIP tokenizer folder and prints the ids of a prompt, padded
 * and truncated to the tokenizer's max length (77) as Stable Diffusion pipelines
 * call it; with --weighted, the long-prompt chunks and each id's weight.
 *
 *     tokenize TOKENIZER_DIR PROMPT [--weighted]
 *
 * Exit codes: 0 success, 1 a call failed, 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodus.h"

static int fail(const char *what, nodus_status status) {
    fprintf(stderr, "%s: error (%s): %s\n", what, nodus_status_name(status), nodus_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "--weighted") == 0)) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR PROMPT [--weighted]\n", argv[0]);
        return 2;
    }
    nodus_tokenizer *tokenizer = NULL;
    nodus_status status = nodus_tokenizer_load(argv[1], &tokenizer);
    if (status != NODUS_OK) return fail("nodus_tokenizer_load", status);

    const char *prompt = argv[2];
    size_t length = strlen(prompt);
    size_t count = 0;
    int result = 0;
    if (argc == 3) {
        int64_t ids[256];
        status = nodus_tokenizer_encode(tokenizer, prompt, length, NODUS_TOKENIZE_PAD_TO_MAX_LENGTH, ids,
                                        sizeof ids / sizeof ids[0], &count);
        if (status != NODUS_OK) {
            result = fail("nodus_tokenizer_encode", status);
        } else {
            for (size_t i = 0; i < count; i++) printf("%s%lld", i ? " " : "", (long long)ids[i]);
            printf("\n");
        }
    } else {
        /* A size query first (capacity 0), then the chunks. */
        status = nodus_tokenizer_encode_prompt(tokenizer, prompt, length, NULL, NULL, NULL, 0, &count);
        int64_t *ids = malloc(count * sizeof *ids);
        float *weights = malloc(count * sizeof *weights);
        if (status == NODUS_OK && ids && weights) {
            status = nodus_tokenizer_encode_prompt(tokenizer, prompt, length, NULL, ids, weights, count, &count);
        }
        if (status != NODUS_OK) {
            result = fail("nodus_tokenizer_encode_prompt", status);
        } else if (!ids || !weights) {
            result = 1;
        } else {
            int32_t width = nodus_tokenizer_max_length(tokenizer);
            for (size_t i = 0; i < count; i++) {
                printf("%s%lld:%.4g%s", i % (size_t)width ? " " : "", (long long)ids[i], weights[i],
                       (i + 1) % (size_t)width ? "" : "\n");
            }
        }
        free(ids);
        free(weights);
    }

    /* Bad input comes back as a status: invalid UTF-8, and freeing NULL is a no-op. */
    static const char invalid[] = "caf\xc3";
    if (nodus_tokenizer_encode(tokenizer, invalid, 4, 0, NULL, 0, &count) != NODUS_ERROR_INVALID_ARGUMENT) {
        fprintf(stderr, "invalid UTF-8 was accepted\n");
        result = 1;
    }
    nodus_tokenizer_free(tokenizer);
    nodus_tokenizer_free(NULL);
    return result;
}
