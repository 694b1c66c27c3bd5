/*
 * NaN and infinity wherever a number goes in. The header's policy: every float
 * or double argument and every value of a floating-point input tensor must be
 * finite; NaN or an infinity is NODUS_ERROR_INVALID_ARGUMENT, the message
 * naming the function and the parameter (and the element of a tensor), and
 * nothing changes: the LoRA model's output is compared bit for bit before and
 * after.
 */
#include <math.h>
#include <string.h>

#include "misuse.h"

static const float bad_floats[] = {NAN, INFINITY, -INFINITY};
#define BAD_COUNT 3

/* The DiT forward of `model` on seeded inputs into `values` (2 x 8 x 8 x 8 floats). */
static nodus_status forward(nodus_model *model, float *values) {
    dit_inputs in;
    dit_inputs_init(&in);
    nodus_tensor output = {.data = values, .size_bytes = 2 * 8 * 8 * 8 * sizeof(float)};
    return nodus_model_forward(model, in.tensors, 3, &output);
}

static void tensors_into_models(fixtures *f) {
    static float values[2 * 8 * 8 * 8];
    nodus_tensor output = {.data = values, .size_bytes = sizeof values};
    for (int kind = 0; kind < BAD_COUNT; kind++) {
        dit_inputs in;
        dit_inputs_init(&in);
        in.sample[37] = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'sample'", nodus_model_forward,
               nodus_model_forward(f->dit, in.tensors, 3, &output));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "element 37", nodus_model_forward_all,
               nodus_model_forward_all(f->dit, in.tensors, 3, &output, 1));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'sample'", nodus_context_forward_all,
               nodus_context_forward_all(f->context, in.tensors, 3, &output, 1));
        const char *json = NULL;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'sample'", nodus_model_profile,
               nodus_model_profile(f->dit, in.tensors, 3, 1, &json));
        dit_inputs_init(&in);
        float timestep[2] = {10.0f, bad_floats[kind]};
        in.tensors[1].dtype = NODUS_DTYPE_FLOAT32;
        in.tensors[1].data = timestep;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'timestep'", nodus_model_forward,
               nodus_model_forward(f->dit, in.tensors, 3, &output));
        dit_inputs_init(&in);
        float labels[2] = {1.0f, bad_floats[kind]};
        in.tensors[2].dtype = NODUS_DTYPE_FLOAT32;
        in.tensors[2].data = labels;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'class_labels'", nodus_model_forward,
               nodus_model_forward(f->dit, in.tensors, 3, &output));
        /* float64 and float16 inputs too (0x7E00: a float16 NaN, 0x7C00: infinity). */
        dit_inputs_init(&in);
        double wide[2] = {10.0, (double)bad_floats[kind]};
        in.tensors[1].dtype = NODUS_DTYPE_FLOAT64;
        in.tensors[1].data = wide;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'timestep'", nodus_model_forward,
               nodus_model_forward(f->dit, in.tensors, 3, &output));
        uint16_t half[2] = {0x4900, kind == 0 ? 0x7E00 : kind == 1 ? 0x7C00 : 0xFC00};
        in.tensors[1].dtype = NODUS_DTYPE_FLOAT16;
        in.tensors[1].data = half;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'timestep'", nodus_model_forward,
               nodus_model_forward(f->dit, in.tensors, 3, &output));
        uint16_t brain[2] = {0x4120, kind == 0 ? 0x7FC0 : kind == 1 ? 0x7F80 : 0xFF80};
        in.tensors[1].dtype = NODUS_DTYPE_BFLOAT16;
        in.tensors[1].data = brain;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "'timestep'", nodus_model_forward,
               nodus_model_forward(f->dit, in.tensors, 3, &output));

        /* The VAE and the sliding window. */
        float latent_values[1 * 4 * 4 * 4] = {0}, image_values[1 * 3 * 8 * 8] = {0};
        latent_values[5] = bad_floats[kind];
        image_values[9] = bad_floats[kind];
        nodus_tensor latent = float_tensor(latent_values, 4, (int64_t[]){1, 4, 4, 4});
        nodus_tensor image = float_tensor(image_values, 4, (int64_t[]){1, 3, 8, 8});
        nodus_tensor decoded = {0}, mean = {0}, logvar = {0};
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "latent", nodus_model_decode, nodus_model_decode(f->vae, &latent, &decoded));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "image", nodus_model_encode,
               nodus_model_encode(f->vae, &image, &mean, &logvar));
        image_values[9] = 0;
        float noise_values[1 * 4 * 4 * 4] = {0};
        noise_values[3] = bad_floats[kind];
        nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 4, 4});
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "noise", nodus_model_encode_latent,
               nodus_model_encode_latent(f->vae, &image, &noise, &mean));
        nodus_window_params window;
        nodus_window_params_init(&window);
        window.ndim = 2;
        window.window_size[0] = window.window_size[1] = 2;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "input", nodus_model_forward_windowed,
               nodus_model_forward_windowed(f->vae, &latent, &window, &decoded));
        latent_values[5] = 0;
        window.overlap = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "overlap", nodus_model_forward_windowed,
               nodus_model_forward_windowed(f->vae, &latent, &window, &decoded));
        window.overlap = 0.25f;
        window.sigma_scale = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "sigma_scale", nodus_model_forward_windowed,
               nodus_model_forward_windowed(f->vae, &latent, &window, &decoded));

        float samples_values[2 * 3] = {0, 1, 2, 3, 4, 5};
        samples_values[4] = bad_floats[kind];
        nodus_tensor samples = float_tensor(samples_values, 2, (int64_t[]){2, 3});
        nodus_tensor statistics_mean = {0}, statistics_variance = {0};
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "samples", nodus_batch_statistics,
               nodus_batch_statistics(&samples, 1, &statistics_mean, &statistics_variance));
    }
}

static void schedulers_and_sampling(fixtures *f) {
    CHECK(nodus_scheduler_set_timesteps(f->scheduler, 5) == NODUS_OK);
    float noise_values[1 * 4 * 8 * 8] = {0}, model_values[1 * 4 * 8 * 8] = {0};
    int64_t label = 1;
    nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_tensor model_output = float_tensor(model_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_tensor previous = {0}, output = {0};
    for (int kind = 0; kind < BAD_COUNT; kind++) {
        double bad = (double)bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "timestep", nodus_scheduler_step,
               nodus_scheduler_step(f->scheduler, &model_output, bad, &noise, NULL, &previous));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "timestep", nodus_scheduler_scale_model_input,
               nodus_scheduler_scale_model_input(f->scheduler, &noise, bad, &previous));
        model_values[11] = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "model_output", nodus_scheduler_step,
               nodus_scheduler_step(f->scheduler, &model_output, 801, &noise, NULL, &previous));
        model_values[11] = 0;
        noise_values[13] = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "sample", nodus_scheduler_step,
               nodus_scheduler_step(f->scheduler, &model_output, 801, &noise, NULL, &previous));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "noise", nodus_scheduler_step,
               nodus_scheduler_step(f->scheduler, &model_output, 801, &model_output, &noise, &previous));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "sample", nodus_scheduler_scale_model_input,
               nodus_scheduler_scale_model_input(f->scheduler, &noise, 801, &previous));

        nodus_sample_params params;
        nodus_sample_params_init(&params);
        params.steps = 2;
        params.init_noise = &noise;
        params.class_labels = &label;
        params.class_label_count = 1;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.init_noise", nodus_sample,
               nodus_sample(f->dit, f->scheduler, &params, &output));
        noise_values[13] = 0;
        params.guidance_scale = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.guidance_scale", nodus_sample,
               nodus_sample(f->dit, f->scheduler, &params, &output));
        params.guidance_scale = 4.0f;
        params.strength = bad;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.strength", nodus_sample,
               nodus_sample(f->dit, f->scheduler, &params, &output));
        params.strength = 1.0;
        float steps_noise_values[2 * 1 * 4 * 8 * 8] = {0};
        steps_noise_values[300] = bad_floats[kind];
        nodus_tensor step_noise = float_tensor(steps_noise_values, 5, (int64_t[]){2, 1, 4, 8, 8});
        params.step_noise = &step_noise;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.step_noise", nodus_sample,
               nodus_sample(f->dit, f->scheduler, &params, &output));
        params.step_noise = NULL;
        const char *a[] = {"a"};
        float weight = bad_floats[kind];
        nodus_adapter_schedule_entry entry = {.step = 1, .count = 1, .names = a, .weights = &weight};
        params.adapter_schedule = &entry;
        params.adapter_schedule_count = 1;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.adapter_schedule[0].weights", nodus_sample,
               nodus_sample(f->dit_lora, f->scheduler, &params, &output));
    }
}

static void adapters(fixtures *f) {
    static float before[2 * 8 * 8 * 8], after[2 * 8 * 8 * 8];
    const char *a[] = {"a"}, *both[] = {"a", "b"};
    CHECK(nodus_model_set_adapters(f->dit_lora, a, NULL, 1) == NODUS_OK);
    CHECK(forward(f->dit_lora, before) == NODUS_OK);
    nodus_context *context = NULL;
    CHECK(nodus_context_new(f->dit_lora, NULL, &context) == NODUS_OK);
    for (int kind = 0; kind < BAD_COUNT; kind++) {
        float weights[2] = {0.5f, bad_floats[kind]};
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "weights", nodus_model_set_adapters,
               nodus_model_set_adapters(f->dit_lora, both, weights, 2));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "weights", nodus_context_set_adapters,
               nodus_context_set_adapters(context, both, weights, 2));
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "lora_scale", nodus_model_fuse_lora,
               nodus_model_fuse_lora(f->dit_lora, NULL, 0, bad_floats[kind]));
        const char *x[] = {"x"};
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "weights", nodus_pipeline_set_adapters,
               nodus_pipeline_set_adapters(f->pipeline, x, weights + 1, 1));
    }
    nodus_context_free(context);
    CHECK(forward(f->dit_lora, after) == NODUS_OK);
    CHECK(memcmp(before, after, sizeof before) == 0);
    const char *state = nodus_model_lora_state_json(f->dit_lora);
    CHECK(state != NULL && strstr(state, "\"fused\":[]") != NULL);
}

static void pipelines(fixtures *f) {
    const char *prompts[] = {"a chest x-ray"};
    float image_values[1 * 16 * 16 * 3] = {0}, mask_values[1 * 16 * 16] = {0};
    nodus_tensor image = float_tensor(image_values, 4, (int64_t[]){1, 16, 16, 3});
    nodus_tensor mask = float_tensor(mask_values, 3, (int64_t[]){1, 16, 16});
    nodus_tensor output = {0};
    for (int kind = 0; kind < BAD_COUNT; kind++) {
        nodus_generate_params params;
        nodus_generate_params_init(&params);
        params.prompts = prompts;
        params.prompt_count = 1;
        params.steps = 2;
        params.guidance_scale = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.guidance_scale", nodus_pipeline_generate,
               nodus_pipeline_generate(f->pipeline, &params, &output));
        params.guidance_scale = 7.5f;
        params.strength = (double)bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.strength", nodus_pipeline_generate,
               nodus_pipeline_generate(f->pipeline, &params, &output));
        params.image = &image;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.strength", nodus_pipeline_generate,
               nodus_pipeline_generate(f->pipeline, &params, &output));
        params.strength = 0.5;
        image_values[40] = bad_floats[kind];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.image", nodus_pipeline_generate,
               nodus_pipeline_generate(f->pipeline, &params, &output));
        image_values[40] = 0;
        mask_values[17] = bad_floats[kind];
        params.mask = &mask;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.mask", nodus_pipeline_generate,
               nodus_pipeline_generate(f->pipeline, &params, &output));
        mask_values[17] = 0;
    }
}

void misuse_non_finite(fixtures *f) {
    tensors_into_models(f);
    schedulers_and_sampling(f);
    adapters(f);
    pipelines(f);
}
