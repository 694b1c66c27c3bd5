/*
 * struct_size of every params struct, through every function that reads one.
 * Refused with NODUS_ERROR_INVALID_ARGUMENT naming `struct_size`: 0 (never
 * initialised), below 4 bytes, beyond the struct this library knows (a newer
 * header), garbage (a struct never filled, all 0xAB), and sizes that end inside
 * a field (half a pointer would otherwise be read as a whole one). Accepted,
 * with the defaults for the fields beyond: the sizes of older headers (the
 * struct cut at a field's start). The params are copied into a buffer of
 * exactly struct_size bytes where that is smaller, so a read past it shows
 * under valgrind.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "misuse.h"

/* A function taking a params struct, called with valid other arguments; 0 for OK. */
typedef nodus_status (*params_call)(fixtures *f, const void *params);

static nodus_status load_model(fixtures *f, const void *params) {
    nodus_model *model = NULL;
    nodus_status status = nodus_model_load(f->dit_path, params, &model);
    nodus_model_free(model);
    return status;
}

static nodus_status load_pipeline(fixtures *f, const void *params) {
    nodus_pipeline *pipeline = NULL;
    nodus_status status = nodus_pipeline_load(f->pipeline_path, params, &pipeline);
    nodus_pipeline_free(pipeline);
    return status;
}

static nodus_status new_context(fixtures *f, const void *params) {
    nodus_context *context = NULL;
    nodus_status status = nodus_context_new(f->dit, params, &context);
    nodus_context_free(context);
    return status;
}

static nodus_status forward_windowed(fixtures *f, const void *params) {
    float latent_values[1 * 4 * 8 * 8] = {0};
    nodus_tensor latent = float_tensor(latent_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_tensor output = {0}; /* a shape query */
    return nodus_model_forward_windowed(f->vae, &latent, params, &output);
}

static float noise_values[1 * 4 * 8 * 8];
static nodus_tensor noise;
static int64_t label = 3;

static nodus_status sample(fixtures *f, const void *params) {
    nodus_tensor output = {0}; /* a shape query */
    return nodus_sample(f->dit, f->scheduler, params, &output);
}

static nodus_status encode_prompt(fixtures *f, const void *params) {
    int64_t ids[80];
    size_t count = 0;
    return nodus_tokenizer_encode_prompt(f->tokenizer, "a (chest:1.2) x-ray", 19, params, ids, NULL, 80, &count);
}

static nodus_status generate(fixtures *f, const void *params) {
    nodus_tensor output = {0}; /* a shape query */
    return nodus_pipeline_generate(f->pipeline, params, &output);
}

/* Calls `call` with `params` (a valid struct of `size` bytes) at `struct_size`, in a buffer
 * of min(size, struct_size) bytes. */
static nodus_status call_with_size(fixtures *f, params_call call, const void *params, size_t size,
                                   uint32_t struct_size) {
    size_t bytes = struct_size >= 4 && struct_size < size ? struct_size : size;
    unsigned char *copy = malloc(bytes);
    if (copy == NULL) abort();
    memcpy(copy, params, bytes);
    memcpy(copy, &struct_size, sizeof struct_size);
    nodus_status status = call(f, copy);
    free(copy);
    return status;
}

typedef struct params_case {
    const char *function;
    params_call call;
    const void *params;   /* valid, filled by its init function */
    size_t size;          /* sizeof the struct                  */
    size_t older[3];      /* older headers' sizes (0: none)     */
    size_t cut;           /* a size ending inside a field       */
} params_case;

static void run(fixtures *f, const params_case *c) {
    char what[256];
    uint32_t refused[] = {0, 1, 3, (uint32_t)c->size + 1, (uint32_t)c->size + 8, (uint32_t)c->size - 1,
                          (uint32_t)c->cut, 0xABABABABu, 0xDEADBEEFu, UINT32_MAX};
    for (size_t index = 0; index < sizeof refused / sizeof refused[0]; index++) {
        misuse_mark();
        nodus_status status = call_with_size(f, c->call, c->params, c->size, refused[index]);
        snprintf(what, sizeof what, "%s with struct_size %u", c->function, refused[index]);
        misuse_status(status, NODUS_ERROR_INVALID_ARGUMENT, c->function, "struct_size", what, __FILE__, __LINE__);
    }
    for (size_t index = 0; index < 3 && c->older[index] != 0; index++) {
        misuse_mark();
        nodus_status status = call_with_size(f, c->call, c->params, c->size, (uint32_t)c->older[index]);
        snprintf(what, sizeof what, "%s with an older header's struct_size %zu", c->function, c->older[index]);
        misuse_status(status, NODUS_OK, c->function, NULL, what, __FILE__, __LINE__);
    }
    misuse_mark();
    snprintf(what, sizeof what, "%s with struct_size %zu", c->function, c->size);
    misuse_status(call_with_size(f, c->call, c->params, c->size, (uint32_t)c->size), NODUS_OK, c->function, NULL,
                  what, __FILE__, __LINE__);
}

void misuse_params(fixtures *f) {
    noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8});

    nodus_model_params model;
    nodus_model_params_init(&model);
    nodus_context_params context;
    nodus_context_params_init(&context);
    context.threads = 1;
    nodus_window_params window;
    nodus_window_params_init(&window);
    window.ndim = 2;
    window.window_size[0] = window.window_size[1] = 4;
    nodus_sample_params sampling;
    nodus_sample_params_init(&sampling);
    sampling.steps = 2;
    sampling.init_noise = &noise;
    sampling.class_labels = &label;
    sampling.class_label_count = 1;
    nodus_prompt_params prompt;
    nodus_prompt_params_init(&prompt);
    nodus_generate_params generating;
    nodus_generate_params_init(&generating);
    const char *prompts[] = {"a chest x-ray"};
    generating.prompts = prompts;
    generating.prompt_count = 1;
    generating.steps = 2;

    params_case cases[] = {
        {"nodus_model_load", load_model, &model, sizeof model,
         {4, offsetof(nodus_model_params, read_files)}, 6},
        {"nodus_pipeline_load", load_pipeline, &model, sizeof model, {offsetof(nodus_model_params, read_files)}, 10},
        {"nodus_context_new", new_context, &context, sizeof context, {4}, 6},
        {"nodus_model_forward_windowed", forward_windowed, &window, sizeof window,
         {offsetof(nodus_window_params, output_name), offsetof(nodus_window_params, progress)},
         offsetof(nodus_window_params, output_name) + 4},
        {"nodus_sample", sample, &sampling, sizeof sampling,
         {offsetof(nodus_sample_params, context), offsetof(nodus_sample_params, image_latents),
          offsetof(nodus_sample_params, adapter_schedule)},
         offsetof(nodus_sample_params, init_noise) + 4},
        {"nodus_tokenizer_encode_prompt", encode_prompt, &prompt, sizeof prompt,
         {4, offsetof(nodus_prompt_params, max_chunks)}, 6},
        {"nodus_pipeline_generate", generate, &generating, sizeof generating,
         {offsetof(nodus_generate_params, mask), offsetof(nodus_generate_params, image)},
         offsetof(nodus_generate_params, prompts) + 4},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) run(f, &cases[index]);
}
