/*
 * Malformed nodus_tensor arguments, as inputs and as outputs. The header's
 * rule: an ndim outside 0...NODUS_MAX_DIMS, a negative dimension, a byte size
 * that overflows, a shape the call cannot take, the wrong dtype, or an output
 * buffer too small is NODUS_ERROR_SHAPE; an unknown dtype value, NULL data
 * with elements to read, a NULL, repeated, unknown or missing input name is
 * NODUS_ERROR_INVALID_ARGUMENT. Every message names the tensor, and a failed
 * call writes nothing into any output buffer.
 */
#include <stdio.h>
#include <string.h>

#include "misuse.h"

#define PATTERN 0x5A

static int untouched(const void *buffer, size_t bytes) {
    const unsigned char *byte = buffer;
    for (size_t index = 0; index < bytes; index++) {
        if (byte[index] != PATTERN) return 0;
    }
    return 1;
}

/* nodus_model_forward with input `index` of `in` replaced by `bad`: `expected`, naming `words`,
 * the output buffer untouched. */
static void forward_with(fixtures *f, int index, nodus_tensor bad, nodus_status expected, const char *words,
                         int line) {
    dit_inputs in;
    dit_inputs_init(&in);
    in.tensors[index] = bad;
    static float values[2 * 8 * 8 * 8];
    memset(values, PATTERN, sizeof values);
    nodus_tensor output = {.data = values, .size_bytes = sizeof values};
    misuse_mark();
    nodus_status status = nodus_model_forward(f->dit, in.tensors, 3, &output);
    char what[160];
    snprintf(what, sizeof what, "nodus_model_forward with a bad input %d (%s)", index, words);
    misuse_status(status, expected, "nodus_model_forward", words, what, __FILE__, line);
    misuse_case(untouched(values, sizeof values), "the output is untouched after a failure", __FILE__, line);
}

static void forward_inputs(fixtures *f) {
    dit_inputs base;
    dit_inputs_init(&base);
    nodus_tensor sample = base.tensors[0], timestep = base.tensors[1], labels = base.tensors[2], bad;

    bad = sample, bad.ndim = 0;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.ndim = NODUS_MAX_DIMS + 1;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "ndim 9", __LINE__);
    bad = sample, bad.ndim = -1;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "ndim -1", __LINE__);
    bad = sample, bad.ndim = INT32_MIN;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.shape[1] = -4;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "negative", __LINE__);
    bad = sample, bad.shape[0] = INT64_MIN;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "negative", __LINE__);
    bad = sample, bad.shape[0] = bad.shape[1] = bad.shape[2] = INT64_C(1) << 40;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "too large", __LINE__);
    bad = sample, bad.shape[0] = INT64_MAX;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.shape[2] = INT64_MAX / 2, bad.shape[3] = 3;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.shape[0] = 0;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.shape[2] = 0;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.shape[1] = 3;
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.shape[2] = 7; /* not a multiple of the patch size */
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "'sample'", __LINE__);
    bad = sample, bad.name = NULL;
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "inputs[0].name", __LINE__);
    bad = sample, bad.data = NULL;
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "data is NULL", __LINE__);
    bad = sample, bad.dtype = 99;
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "dtype", __LINE__);
    bad = sample, bad.dtype = -1;
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "dtype", __LINE__);
    bad = sample, bad.dtype = NODUS_DTYPE_INT64, bad.shape[0] = 1; /* the same bytes as int64 */
    forward_with(f, 0, bad, NODUS_ERROR_SHAPE, "floating point", __LINE__);
    bad = sample, bad.name = "timestep"; /* given twice */
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "twice", __LINE__);
    bad = sample, bad.name = "noise"; /* unknown; "sample" is then missing */
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "'noise'", __LINE__);
    bad = sample, bad.name = "";
    forward_with(f, 0, bad, NODUS_ERROR_INVALID_ARGUMENT, "''", __LINE__);
    bad = timestep, bad.ndim = 2, bad.shape[1] = 1;
    forward_with(f, 1, bad, NODUS_ERROR_SHAPE, "'timestep'", __LINE__);
    bad = timestep, bad.shape[0] = 0;
    forward_with(f, 1, bad, NODUS_ERROR_SHAPE, "'timestep'", __LINE__);
    bad = timestep, bad.shape[0] = 3;
    forward_with(f, 1, bad, NODUS_ERROR_SHAPE, "'timestep'", __LINE__);
    bad = labels, bad.shape[0] = 5;
    forward_with(f, 2, bad, NODUS_ERROR_SHAPE, "'class_labels'", __LINE__);
    float fractional[2] = {1.5f, 2.0f};
    bad = labels, bad.dtype = NODUS_DTYPE_FLOAT32, bad.data = fractional;
    forward_with(f, 2, bad, NODUS_ERROR_SHAPE, "'class_labels'", __LINE__);

    /* Counts. */
    static float values[2 * 8 * 8 * 8];
    nodus_tensor output = {.data = values, .size_bytes = sizeof values};
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'sample'", nodus_model_forward, nodus_model_forward(f->dit, NULL, 0, &output));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'class_labels'", nodus_model_forward,
           nodus_model_forward(f->dit, base.tensors, 2, &output));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "input_count", nodus_model_forward,
           nodus_model_forward(f->dit, base.tensors, SIZE_MAX, &output));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "input_count", nodus_model_forward,
           nodus_model_forward(f->dit, base.tensors, (size_t)1 << 40, &output));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "output_count", nodus_model_forward_all,
           nodus_model_forward_all(f->dit, base.tensors, 3, &output, 0));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "output_count", nodus_model_forward_all,
           nodus_model_forward_all(f->dit, base.tensors, 3, &output, SIZE_MAX));
}

static void forward_outputs(fixtures *f) {
    dit_inputs in;
    dit_inputs_init(&in);
    static float values[2 * 8 * 8 * 8];
    memset(values, PATTERN, sizeof values);
    nodus_tensor output = {.data = values, .size_bytes = sizeof values - 1};
    EXPECT(NODUS_ERROR_SHAPE, "needs 4096", nodus_model_forward, nodus_model_forward(f->dit, in.tensors, 3, &output));
    output.size_bytes = 0;
    EXPECT(NODUS_ERROR_SHAPE, "output", nodus_model_forward, nodus_model_forward(f->dit, in.tensors, 3, &output));
    CHECK(untouched(values, sizeof values));
    /* The output's dtype, ndim and shape are written, not read: garbage there is fine. */
    output = (nodus_tensor){.dtype = 99, .ndim = -7, .shape = {-1, -1}, .data = values, .size_bytes = sizeof values};
    EXPECT(NODUS_OK, NULL, nodus_model_forward, nodus_model_forward(f->dit, in.tensors, 3, &output));
    CHECK(output.dtype == NODUS_DTYPE_FLOAT32 && output.ndim == 4 && output.shape[1] == 8 && output.shape[4] == 0);
    /* size_bytes above INT64_MAX means "more than enough". */
    output.size_bytes = SIZE_MAX;
    EXPECT(NODUS_OK, NULL, nodus_model_forward, nodus_model_forward(f->dit, in.tensors, 3, &output));
}

static void other_calls(fixtures *f) {
    /* nodus_sample's init_noise (into a real buffer: a shape query checks less). */
    float noise_values[1 * 4 * 8 * 8] = {0}, sampled[1 * 4 * 8 * 8];
    memset(sampled, PATTERN, sizeof sampled);
    int64_t label = 1;
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = 1;
    params.class_labels = &label;
    params.class_label_count = 1;
    nodus_tensor output = float_tensor(sampled, 4, (int64_t[]){1, 4, 8, 8}), noise;
    params.init_noise = &noise;
    noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8}), noise.ndim = 12;
    EXPECT(NODUS_ERROR_SHAPE, "params.init_noise", nodus_sample, nodus_sample(f->dit, f->scheduler, &params, &output));
    noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8}), noise.shape[3] = -8;
    EXPECT(NODUS_ERROR_SHAPE, "params.init_noise", nodus_sample, nodus_sample(f->dit, f->scheduler, &params, &output));
    noise = float_tensor(NULL, 4, (int64_t[]){1, 4, 8, 8});
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.init_noise", nodus_sample,
           nodus_sample(f->dit, f->scheduler, &params, &output));
    noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8}), noise.dtype = 42;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.init_noise", nodus_sample,
           nodus_sample(f->dit, f->scheduler, &params, &output));
    noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8}), noise.shape[0] = 0;
    EXPECT(NODUS_ERROR_SHAPE, "init_noise", nodus_sample, nodus_sample(f->dit, f->scheduler, &params, &output));
    noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8});
    params.class_label_count = SIZE_MAX;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "class_label_count", nodus_sample,
           nodus_sample(f->dit, f->scheduler, &params, &output));
    params.class_label_count = 1;
    params.adapter_schedule_count = SIZE_MAX;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "adapter_schedule_count", nodus_sample,
           nodus_sample(f->dit, f->scheduler, &params, &output));
    CHECK(untouched(sampled, sizeof sampled));

    /* nodus_scheduler_step: model_output and sample must agree. */
    CHECK(nodus_scheduler_set_timesteps(f->scheduler, 5) == NODUS_OK);
    float sample_values[1 * 4 * 8 * 8] = {0}, small_values[4] = {0}, previous_values[1 * 4 * 8 * 8];
    memset(previous_values, PATTERN, sizeof previous_values);
    nodus_tensor sample = float_tensor(sample_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_tensor small = float_tensor(small_values, 1, (int64_t[]){4});
    nodus_tensor previous = float_tensor(previous_values, 4, (int64_t[]){1, 4, 8, 8});
    EXPECT(NODUS_ERROR_SHAPE, "nodus_scheduler_step", nodus_scheduler_step,
           nodus_scheduler_step(f->scheduler, &small, 801, &sample, NULL, &previous));
    nodus_tensor scalar = float_tensor(small_values, 0, NULL);
    EXPECT(NODUS_ERROR_SHAPE, "nodus_scheduler_step", nodus_scheduler_step,
           nodus_scheduler_step(f->scheduler, &scalar, 801, &scalar, NULL, &previous));
    EXPECT(NODUS_ERROR_SHAPE, "sample", nodus_scheduler_scale_model_input,
           nodus_scheduler_scale_model_input(f->scheduler, &scalar, 801, &previous));
    CHECK(untouched(previous_values, sizeof previous_values));

    /* nodus_randn and nodus_batch_statistics. */
    float values[6];
    memset(values, PATTERN, sizeof values);
    nodus_tensor random = float_tensor(values, 2, (int64_t[]){2, 3});
    random.ndim = -2;
    EXPECT(NODUS_ERROR_SHAPE, "output", nodus_randn, nodus_randn(1, &random));
    random = float_tensor(values, 2, (int64_t[]){2, 3}), random.size_bytes = 8;
    EXPECT(NODUS_ERROR_SHAPE, "output", nodus_randn, nodus_randn(1, &random));
    random = float_tensor(values, 2, (int64_t[]){0, 3});
    EXPECT(NODUS_OK, NULL, nodus_randn, nodus_randn(1, &random)); /* no elements: nothing to write */
    CHECK(untouched(values, sizeof values));
    nodus_tensor mean = float_tensor(values, 1, (int64_t[]){3}), variance = float_tensor(values + 3, 1, (int64_t[]){3});
    float one_sample[3] = {0};
    nodus_tensor samples = float_tensor(one_sample, 2, (int64_t[]){1, 3});
    EXPECT(NODUS_ERROR_SHAPE, "K >= 2", nodus_batch_statistics, nodus_batch_statistics(&samples, 1, &mean, &variance));
    samples = float_tensor(one_sample, 0, NULL);
    EXPECT(NODUS_ERROR_SHAPE, "samples", nodus_batch_statistics, nodus_batch_statistics(&samples, 1, &mean, &variance));
    CHECK(untouched(values, sizeof values));

    /* VAE decode. */
    float latent_values[1 * 4 * 4 * 4] = {0};
    nodus_tensor latent = float_tensor(latent_values, 4, (int64_t[]){1, 4, 4, 4}), image = {0};
    latent.shape[1] = 3;
    EXPECT(NODUS_ERROR_SHAPE, "latent", nodus_model_decode, nodus_model_decode(f->vae, &latent, &image));
    latent.shape[1] = 4, latent.ndim = 3;
    EXPECT(NODUS_ERROR_SHAPE, "latent", nodus_model_decode, nodus_model_decode(f->vae, &latent, &image));
    latent.ndim = NODUS_MAX_DIMS + 100;
    EXPECT(NODUS_ERROR_SHAPE, "latent", nodus_model_decode, nodus_model_decode(f->vae, &latent, &image));
}

void misuse_tensors(fixtures *f) {
    forward_inputs(f);
    forward_outputs(f);
    other_calls(f);
}
