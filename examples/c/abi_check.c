/*
 * abi_check: exercises the error paths of the C ABI from C and prints the
 * layout of the public structs (the Python test compares it with its ctypes
 * mirror).
 *
 *     abi_check [DIT_DIR [SCHEDULER_DIR]]
 *
 * With a DiT folder (and a scheduler folder) it also passes NULL and bad
 * tensors to calls on real handles. Exit codes: 0 every check passed,
 * 1 some check failed (each is printed), 2 usage error.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "nodus.h"

static int failures = 0;

static void check(int ok, const char *what, int line) {
    if (!ok) {
        failures++;
        printf("FAIL line %d: %s (last error: \"%s\")\n", line, what, nodus_last_error());
    }
}
#define CHECK(condition) check((condition), #condition, __LINE__)

/* A call must fail with `expected` and leave a non-empty message. */
#define CHECK_STATUS(call, expected)                                                      \
    do {                                                                                  \
        nodus_status status_ = (call);                                                    \
        check(status_ == (expected), #call " == " #expected, __LINE__);                   \
        check(status_ == NODUS_OK || nodus_last_error()[0] != '\0', "message after " #call, __LINE__); \
    } while (0)

#define LAYOUT(type, field) \
    printf("layout %s.%s offset %zu size %zu\n", #type, #field, offsetof(type, field), sizeof(((type *)0)->field))

static void print_layout(void) {
    printf("sizeof nodus_tensor %zu\n", sizeof(nodus_tensor));
    LAYOUT(nodus_tensor, name);
    LAYOUT(nodus_tensor, dtype);
    LAYOUT(nodus_tensor, ndim);
    LAYOUT(nodus_tensor, shape);
    LAYOUT(nodus_tensor, data);
    LAYOUT(nodus_tensor, size_bytes);
    printf("sizeof nodus_model_params %zu\n", sizeof(nodus_model_params));
    LAYOUT(nodus_model_params, struct_size);
    LAYOUT(nodus_model_params, threads);
    LAYOUT(nodus_model_params, dtype);
    printf("sizeof nodus_sample_params %zu\n", sizeof(nodus_sample_params));
    LAYOUT(nodus_sample_params, struct_size);
    LAYOUT(nodus_sample_params, steps);
    LAYOUT(nodus_sample_params, guidance_scale);
    LAYOUT(nodus_sample_params, init_noise);
    LAYOUT(nodus_sample_params, class_labels);
    LAYOUT(nodus_sample_params, class_label_count);
    LAYOUT(nodus_sample_params, step_noise);
    LAYOUT(nodus_sample_params, trajectory);
    LAYOUT(nodus_sample_params, progress);
    LAYOUT(nodus_sample_params, progress_user_data);
    LAYOUT(nodus_sample_params, adapter_schedule);
    LAYOUT(nodus_sample_params, adapter_schedule_count);
    LAYOUT(nodus_sample_params, conditioning);
    LAYOUT(nodus_sample_params, encoder_hidden_states);
    LAYOUT(nodus_sample_params, image_latents);
    LAYOUT(nodus_sample_params, strength);
    LAYOUT(nodus_sample_params, mask);
    printf("sizeof nodus_adapter_schedule_entry %zu\n", sizeof(nodus_adapter_schedule_entry));
    LAYOUT(nodus_adapter_schedule_entry, step);
    LAYOUT(nodus_adapter_schedule_entry, count);
    LAYOUT(nodus_adapter_schedule_entry, names);
    LAYOUT(nodus_adapter_schedule_entry, weights);
    printf("sizeof nodus_prompt_params %zu\n", sizeof(nodus_prompt_params));
    LAYOUT(nodus_prompt_params, struct_size);
    LAYOUT(nodus_prompt_params, parse_weights);
    LAYOUT(nodus_prompt_params, comma_backtrack);
    LAYOUT(nodus_prompt_params, max_chunks);
}

static void check_version_and_names(void) {
    CHECK(nodus_version_number() == NODUS_VERSION_NUMBER);
    CHECK(strcmp(nodus_version(), NODUS_VERSION_STRING) == 0);
    CHECK(strcmp(nodus_last_error(), "") == 0); /* nothing failed yet on this thread */
    CHECK(strcmp(nodus_status_name(NODUS_OK), "ok") == 0);
    CHECK(strcmp(nodus_status_name(NODUS_ERROR_SHAPE), "shape") == 0);
    CHECK(strcmp(nodus_status_name(12345), "unknown") == 0);
    CHECK(strcmp(nodus_dtype_name(NODUS_DTYPE_BFLOAT16), "bfloat16") == 0);
    CHECK(nodus_dtype_name(99) == NULL);
    CHECK(nodus_dtype_size(NODUS_DTYPE_FLOAT64) == 8);
    CHECK(nodus_dtype_size(-1) == 0);
    CHECK(strcmp(nodus_model_kind_name(NODUS_MODEL_CLIP_TEXT), "clip_text") == 0);
    CHECK(nodus_model_kind_name(-1) == NULL);
    CHECK(strcmp(nodus_scheduler_kind_name(NODUS_SCHEDULER_FLOW_MATCH_EULER), "FlowMatchEulerDiscreteScheduler") == 0);

    nodus_dtype dtype = -1;
    CHECK_STATUS(nodus_dtype_from_name("int32", &dtype), NODUS_OK);
    CHECK(dtype == NODUS_DTYPE_INT32);
    CHECK_STATUS(nodus_dtype_from_name("int128", &dtype), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK(strstr(nodus_last_error(), "int128") != NULL);
    CHECK_STATUS(nodus_dtype_from_name(NULL, &dtype), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_dtype_from_name("float32", NULL), NODUS_ERROR_INVALID_ARGUMENT);
    nodus_model_kind kind;
    CHECK_STATUS(nodus_model_kind_from_name(NULL, &kind), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_model_kind_from_name("dit", NULL), NODUS_ERROR_INVALID_ARGUMENT);
    nodus_scheduler_kind scheduler_kind;
    CHECK_STATUS(nodus_scheduler_kind_from_name(NULL, &scheduler_kind), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_scheduler_kind_from_name("DDPMScheduler", NULL), NODUS_ERROR_INVALID_ARGUMENT);
}

static void check_params_init(void) {
    nodus_model_params model_params;
    memset(&model_params, 0xff, sizeof model_params);
    nodus_model_params_init(&model_params);
    CHECK(model_params.struct_size == sizeof(nodus_model_params));
    CHECK(model_params.threads == 0 && model_params.dtype == NODUS_DTYPE_FLOAT32);
    nodus_sample_params sample_params;
    memset(&sample_params, 0xff, sizeof sample_params);
    nodus_sample_params_init(&sample_params);
    CHECK(sample_params.struct_size == sizeof(nodus_sample_params));
    CHECK(sample_params.steps == 50 && sample_params.guidance_scale == 4.0f);
    CHECK(sample_params.init_noise == NULL && sample_params.progress == NULL && sample_params.trajectory == NULL);
    CHECK(sample_params.encoder_hidden_states == NULL && sample_params.image_latents == NULL &&
          sample_params.mask == NULL && sample_params.strength == 1.0);
    nodus_prompt_params prompt_params;
    memset(&prompt_params, 0xff, sizeof prompt_params);
    nodus_prompt_params_init(&prompt_params);
    CHECK(prompt_params.struct_size == sizeof(nodus_prompt_params));
    CHECK(prompt_params.parse_weights == 1 && prompt_params.comma_backtrack == 20 && prompt_params.max_chunks == 0);
    nodus_model_params_init(NULL); /* no-ops */
    nodus_sample_params_init(NULL);
    nodus_prompt_params_init(NULL);
}

static void check_null_handles(void) {
    nodus_model *model = (nodus_model *)&failures; /* must be reset to NULL on failure */
    CHECK_STATUS(nodus_model_load(NULL, NULL, &model), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK(model == NULL);
    CHECK_STATUS(nodus_model_load("/nonexistent/model", NULL, NULL), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_model_load("/nonexistent/model", NULL, &model), NODUS_ERROR_IO);
    CHECK(strstr(nodus_last_error(), "/nonexistent/model") != NULL);
    nodus_model_params zeroed = {0}; /* not initialised with nodus_model_params_init */
    CHECK_STATUS(nodus_model_load("/nonexistent/model", &zeroed, &model), NODUS_ERROR_INVALID_ARGUMENT);
    nodus_model_free(NULL);
    CHECK(nodus_model_get_kind(NULL) == -1);
    CHECK(nodus_model_config_json(NULL) == NULL);

    nodus_tensor output = {0};
    CHECK_STATUS(nodus_model_forward(NULL, NULL, 0, &output), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_model_decode(NULL, NULL, &output), NODUS_ERROR_INVALID_ARGUMENT);

    nodus_scheduler *scheduler = (nodus_scheduler *)&failures;
    CHECK_STATUS(nodus_scheduler_load(NULL, &scheduler), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK(scheduler == NULL);
    CHECK_STATUS(nodus_scheduler_load("/nonexistent/scheduler", NULL), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_scheduler_from_json(NULL, &scheduler), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_scheduler_from_json("{\"_class_name\": ", &scheduler), NODUS_ERROR_FORMAT);
    CHECK(nodus_scheduler_from_json("{\"_class_name\": \"NoSuchScheduler\"}", &scheduler) != NODUS_OK);
    CHECK(strstr(nodus_last_error(), "NoSuchScheduler") != NULL);
    nodus_scheduler_free(NULL);
    CHECK(nodus_scheduler_get_kind(NULL) == -1);
    CHECK(isnan(nodus_scheduler_init_noise_sigma(NULL)));
    CHECK_STATUS(nodus_scheduler_set_timesteps(NULL, 10), NODUS_ERROR_INVALID_ARGUMENT);
    size_t count;
    int32_t is_integer;
    CHECK_STATUS(nodus_scheduler_timesteps(NULL, NULL, 0, &count, &is_integer), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_scheduler_step(NULL, NULL, 0.0, NULL, NULL, NULL), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_scheduler_scale_model_input(NULL, NULL, 0.0, NULL), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK(strcmp(nodus_scheduler_kind_name(NODUS_SCHEDULER_LCM), "LCMScheduler") == 0);
    CHECK(nodus_scheduler_draws_noise(NULL) == -1);
    CHECK(nodus_scheduler_order(NULL) == -1);

    nodus_pipeline *pipeline = (nodus_pipeline *)1;
    CHECK_STATUS(nodus_pipeline_load("/nonexistent/pipeline", NULL, &pipeline), NODUS_ERROR_IO);
    CHECK(pipeline == NULL);
    nodus_pipeline_free(NULL);
    nodus_model *component = NULL;
    CHECK_STATUS(nodus_pipeline_model(NULL, "unet", &component), NODUS_ERROR_INVALID_ARGUMENT);
    nodus_generate_params generate;
    nodus_generate_params_init(&generate);
    CHECK(generate.steps == 50 && generate.images_per_prompt == 1);
    CHECK_STATUS(nodus_pipeline_generate(NULL, &generate, &output), NODUS_ERROR_INVALID_ARGUMENT);

    nodus_sample_params params;
    nodus_sample_params_init(&params);
    CHECK_STATUS(nodus_sample(NULL, NULL, &params, &output), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_sample(NULL, NULL, NULL, NULL), NODUS_ERROR_INVALID_ARGUMENT);
}

static void check_randn(void) {
    float values[3] = {0};
    nodus_tensor tensor = {.dtype = NODUS_DTYPE_FLOAT32, .ndim = 1, .shape = {3}, .data = values, .size_bytes = sizeof values};
    CHECK_STATUS(nodus_randn(0, &tensor), NODUS_OK);
    /* torch.randn(3, generator=torch.Generator().manual_seed(0)) */
    CHECK(fabsf(values[0] - 1.5410f) < 1e-4f && fabsf(values[1] + 0.2934f) < 1e-4f && fabsf(values[2] + 2.1788f) < 1e-4f);

    CHECK_STATUS(nodus_randn(0, NULL), NODUS_ERROR_INVALID_ARGUMENT);
    nodus_tensor bad = tensor;
    bad.dtype = NODUS_DTYPE_INT64;
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_SHAPE);
    bad = tensor;
    bad.dtype = 99;
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_INVALID_ARGUMENT);
    bad = tensor;
    bad.ndim = NODUS_MAX_DIMS + 1;
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_SHAPE);
    bad = tensor;
    bad.shape[0] = -3;
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_SHAPE);
    bad = tensor;
    bad.shape[0] = 4; /* 16 bytes do not fit in 12 */
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_SHAPE);
    bad = tensor;
    bad.ndim = 3;
    bad.shape[0] = bad.shape[1] = bad.shape[2] = INT64_C(1) << 40; /* the byte size overflows */
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_SHAPE);
    bad = tensor;
    bad.data = NULL;
    CHECK_STATUS(nodus_randn(0, &bad), NODUS_ERROR_INVALID_ARGUMENT);
}

static void check_model(const char *model_path, const char *scheduler_path) {
    nodus_model *model = NULL;
    nodus_status status = nodus_model_load(model_path, NULL, &model);
    CHECK(status == NODUS_OK);
    if (status != NODUS_OK) return;
    CHECK(nodus_model_get_kind(model) == NODUS_MODEL_DIT);
    CHECK(nodus_model_config_json(model) != NULL);

    float sample[2 * 4 * 8 * 8] = {0};
    int64_t timestep[2] = {10, 500}, labels[2] = {1, 2};
    nodus_tensor inputs[3] = {
        {.name = "sample", .dtype = NODUS_DTYPE_FLOAT32, .ndim = 4, .shape = {2, 4, 8, 8}, .data = sample},
        {.name = "timestep", .dtype = NODUS_DTYPE_INT64, .ndim = 1, .shape = {2}, .data = timestep},
        {.name = "class_labels", .dtype = NODUS_DTYPE_INT64, .ndim = 1, .shape = {2}, .data = labels},
    };
    nodus_tensor output = {0};
    CHECK_STATUS(nodus_model_forward(model, inputs, 3, NULL), NODUS_ERROR_INVALID_ARGUMENT);
    CHECK_STATUS(nodus_model_forward(model, NULL, 3, &output), NODUS_ERROR_INVALID_ARGUMENT);
    inputs[0].name = NULL;
    CHECK_STATUS(nodus_model_forward(model, inputs, 3, &output), NODUS_ERROR_INVALID_ARGUMENT);
    inputs[0].name = "sample";
    inputs[0].data = NULL;
    CHECK_STATUS(nodus_model_forward(model, inputs, 3, &output), NODUS_ERROR_INVALID_ARGUMENT);
    inputs[0].data = sample;
    inputs[0].shape[1] = 3; /* wrong channel count: the message names "sample" */
    CHECK_STATUS(nodus_model_forward(model, inputs, 3, &output), NODUS_ERROR_SHAPE);
    CHECK(strstr(nodus_last_error(), "sample") != NULL);
    inputs[0].shape[1] = 4;
    /* data == NULL: only the shape is reported. */
    CHECK_STATUS(nodus_model_forward(model, inputs, 3, &output), NODUS_OK);
    CHECK(output.ndim == 4 && output.shape[0] == 2 && output.size_bytes > 0);
    float too_small[4];
    output.data = too_small;
    output.size_bytes = sizeof too_small;
    CHECK_STATUS(nodus_model_forward(model, inputs, 3, &output), NODUS_ERROR_SHAPE);
    CHECK_STATUS(nodus_model_decode(model, &inputs[0], &output), NODUS_ERROR_INVALID_ARGUMENT); /* a DiT is not a VAE */

    if (scheduler_path != NULL) {
        nodus_scheduler *scheduler = NULL;
        status = nodus_scheduler_load(scheduler_path, &scheduler);
        CHECK(status == NODUS_OK);
        if (status == NODUS_OK) {
            size_t count = 0;
            int32_t is_integer = -1;
            CHECK_STATUS(nodus_scheduler_set_timesteps(scheduler, 0), NODUS_ERROR_INVALID_ARGUMENT);
            CHECK_STATUS(nodus_scheduler_set_timesteps(scheduler, 5), NODUS_OK);
            CHECK_STATUS(nodus_scheduler_timesteps(scheduler, NULL, 5, &count, &is_integer), NODUS_ERROR_INVALID_ARGUMENT);
            CHECK_STATUS(nodus_scheduler_timesteps(scheduler, NULL, 0, NULL, &is_integer), NODUS_ERROR_INVALID_ARGUMENT);
            CHECK_STATUS(nodus_scheduler_timesteps(scheduler, NULL, 0, &count, NULL), NODUS_ERROR_INVALID_ARGUMENT);
            CHECK_STATUS(nodus_scheduler_timesteps(scheduler, NULL, 0, &count, &is_integer), NODUS_OK);
            CHECK(count == 5);
            nodus_tensor latent = {.dtype = NODUS_DTYPE_FLOAT32, .ndim = 4, .shape = {1, 4, 8, 8}, .data = sample,
                                   .size_bytes = sizeof sample / 2};
            nodus_tensor previous = {0};
            CHECK_STATUS(nodus_scheduler_step(scheduler, NULL, 1.0, &latent, NULL, &previous), NODUS_ERROR_INVALID_ARGUMENT);
            CHECK_STATUS(nodus_scheduler_step(scheduler, &latent, 1.0, NULL, NULL, &previous), NODUS_ERROR_INVALID_ARGUMENT);
            CHECK_STATUS(nodus_scheduler_step(scheduler, &latent, 1.0, &latent, NULL, NULL), NODUS_ERROR_INVALID_ARGUMENT);

            nodus_sample_params params;
            nodus_sample_params_init(&params);
            params.steps = 2;
            CHECK_STATUS(nodus_sample(model, scheduler, &params, &output), NODUS_ERROR_INVALID_ARGUMENT); /* no init_noise */
            CHECK_STATUS(nodus_sample(model, scheduler, NULL, &output), NODUS_ERROR_INVALID_ARGUMENT);
            params.init_noise = &latent;
            CHECK_STATUS(nodus_sample(model, scheduler, &params, NULL), NODUS_ERROR_INVALID_ARGUMENT);
            params.class_label_count = 1; /* class_labels is NULL */
            CHECK_STATUS(nodus_sample(model, scheduler, &params, &output), NODUS_ERROR_INVALID_ARGUMENT);
            nodus_scheduler_free(scheduler);
        }
    }
    nodus_model_free(model);
}

int main(int argc, char **argv) {
    if (argc > 3) {
        fprintf(stderr, "usage: %s [DIT_DIR [SCHEDULER_DIR]]\n", argv[0]);
        return 2;
    }
    print_layout();
    check_version_and_names();
    check_params_init();
    check_null_handles();
    check_randn();
    if (argc > 1) check_model(argv[1], argc > 2 ? argv[2] : NULL);
    printf("%s: %d failed check(s)\n", failures == 0 ? "ok" : "FAILED", failures);
    return failures == 0 ? 0 : 1;
}
