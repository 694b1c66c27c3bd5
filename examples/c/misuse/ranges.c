/*
 * Counts and values out of range: size_t counts of SIZE_MAX (which a binding
 * that converts -1 produces), steps, threads, rounds, sizes, flags and enum
 * values beyond what each call takes. Each is NODUS_ERROR_INVALID_ARGUMENT
 * naming the parameter, never "none" or "all", and changes nothing: the LoRA
 * model's adapter state is compared before and after.
 */
#include <stdio.h>
#include <string.h>

#include "misuse.h"

static void counts(fixtures *f) {
    const char *a[] = {"a"};
    char before[4096];
    const char *state = nodus_model_lora_state_json(f->dit_lora);
    snprintf(before, sizeof before, "%s", state ? state : "");
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_model_set_adapters,
           nodus_model_set_adapters(f->dit_lora, a, NULL, SIZE_MAX));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_model_set_adapters,
           nodus_model_set_adapters(f->dit_lora, a, NULL, (size_t)1 << 40));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_model_delete_adapters,
           nodus_model_delete_adapters(f->dit_lora, a, SIZE_MAX));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_model_fuse_lora,
           nodus_model_fuse_lora(f->dit_lora, a, SIZE_MAX, 1.0f));
    state = nodus_model_lora_state_json(f->dit_lora);
    CHECK(state != NULL && strcmp(state, before) == 0);
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_context_set_adapters,
           nodus_context_set_adapters(f->context, a, NULL, SIZE_MAX));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_pipeline_set_adapters,
           nodus_pipeline_set_adapters(f->pipeline, a, NULL, SIZE_MAX));
    nodus_tensor_info info;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "index", nodus_model_input_info, nodus_model_input_info(f->dit, 3, &info));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "index", nodus_model_input_info,
           nodus_model_input_info(f->dit, SIZE_MAX, &info));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "index", nodus_model_output_info,
           nodus_model_output_info(f->dit, SIZE_MAX, &info));

    int64_t ids[80];
    size_t count;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "text", nodus_tokenizer_encode,
           nodus_tokenizer_encode(f->tokenizer, "a", SIZE_MAX, 0, ids, 80, &count));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "text", nodus_tokenizer_encode_prompt,
           nodus_tokenizer_encode_prompt(f->tokenizer, "a", SIZE_MAX, NULL, ids, NULL, 80, &count));
    EXPECT(NODUS_OK, NULL, nodus_tokenizer_encode, /* a capacity above INT64_MAX: room for all */
           nodus_tokenizer_encode(f->tokenizer, "a", 1, 0, ids, SIZE_MAX, &count));
    char text[16];
    size_t length;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "count", nodus_tokenizer_decode,
           nodus_tokenizer_decode(f->tokenizer, ids, SIZE_MAX, 0, text, sizeof text, &length));

    const char *prompts[] = {"a chest x-ray"};
    nodus_generate_params generating;
    nodus_generate_params_init(&generating);
    generating.prompts = prompts;
    generating.prompt_count = SIZE_MAX;
    nodus_tensor output = {0};
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.prompts", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));
    generating.prompt_count = 1;
    generating.negative_prompts = prompts;
    generating.negative_prompt_count = SIZE_MAX;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.negative_prompts", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));

    float noise_values[1 * 4 * 8 * 8] = {0};
    nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8});
    int64_t label = 1;
    nodus_sample_params sampling;
    nodus_sample_params_init(&sampling);
    sampling.steps = 2;
    sampling.init_noise = &noise;
    sampling.class_labels = &label;
    sampling.class_label_count = 1;
    nodus_adapter_schedule_entry entry = {.step = 0, .count = SIZE_MAX, .names = a, .weights = NULL};
    sampling.adapter_schedule = &entry;
    sampling.adapter_schedule_count = 1;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.adapter_schedule[0].count", nodus_sample,
           nodus_sample(f->dit_lora, f->scheduler, &sampling, &output));
}

static void values(fixtures *f) {
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "steps", nodus_scheduler_set_timesteps,
           nodus_scheduler_set_timesteps(f->scheduler, 0));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "steps", nodus_scheduler_set_timesteps,
           nodus_scheduler_set_timesteps(f->scheduler, -1));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "steps", nodus_scheduler_set_timesteps,
           nodus_scheduler_set_timesteps(f->scheduler, INT32_MAX));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "spatial_size", nodus_scheduler_set_timesteps_sized,
           nodus_scheduler_set_timesteps_sized(f->scheduler, 5, 0));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "spatial_size", nodus_scheduler_set_timesteps_sized,
           nodus_scheduler_set_timesteps_sized(f->scheduler, 5, INT64_MAX));
    dit_inputs in;
    dit_inputs_init(&in);
    const char *json = NULL;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "rounds", nodus_model_profile,
           nodus_model_profile(f->dit, in.tensors, 3, 0, &json));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "rounds", nodus_model_profile,
           nodus_model_profile(f->dit, in.tensors, 3, INT32_MIN, &json));
    /* The message says "tile size", not `tile_sample_size` (VAEFunctions.swift, left to its owner). */
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "tile size", nodus_model_set_vae_tiling,
           nodus_model_set_vae_tiling(f->vae, 1, 7));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "tile size", nodus_model_set_vae_tiling,
           nodus_model_set_vae_tiling(f->vae, 1, -32));
    float samples_values[2 * 3] = {0, 1, 2, 3, 4, 5}, out_values[6];
    nodus_tensor samples = float_tensor(samples_values, 2, (int64_t[]){2, 3});
    nodus_tensor mean = float_tensor(out_values, 1, (int64_t[]){3}), variance = float_tensor(out_values + 3, 1,
                                                                                             (int64_t[]){3});
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "correction", nodus_batch_statistics,
           nodus_batch_statistics(&samples, 2, &mean, &variance));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "correction", nodus_batch_statistics,
           nodus_batch_statistics(&samples, -1, &mean, &variance));
    int64_t ids[80];
    size_t count;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "flags", nodus_tokenizer_encode,
           nodus_tokenizer_encode(f->tokenizer, "a", 1, 8, ids, 80, &count));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "flags", nodus_tokenizer_encode,
           nodus_tokenizer_encode(f->tokenizer, "a", 1, -1, ids, 80, &count));
    int64_t id;
    char text[16];
    size_t length;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "id", nodus_tokenizer_id_to_token,
           nodus_tokenizer_id_to_token(f->tokenizer, -1, text, sizeof text, &length));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "id", nodus_tokenizer_id_to_token,
           nodus_tokenizer_id_to_token(f->tokenizer, INT64_MAX, text, sizeof text, &length));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "vocabulary", nodus_tokenizer_token_to_id,
           nodus_tokenizer_token_to_id(f->tokenizer, "no-such-token", &id));
}

static void params(fixtures *f) {
    nodus_model *model = NULL;
    nodus_model_params model_params;
    int32_t bad_threads[] = {-1, INT32_MIN, 1025, INT32_MAX};
    for (size_t index = 0; index < 4; index++) {
        nodus_model_params_init(&model_params);
        model_params.threads = bad_threads[index];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "threads", nodus_model_load,
               nodus_model_load(f->dit_path, &model_params, &model));
        CHECK(model == NULL);
        nodus_context_params context_params;
        nodus_context_params_init(&context_params);
        context_params.threads = bad_threads[index];
        nodus_context *context = NULL;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "threads", nodus_context_new,
               nodus_context_new(f->dit, &context_params, &context));
        CHECK(context == NULL);
    }
    int64_t bad_budgets[] = {-1, INT64_MIN};
    for (size_t index = 0; index < 2; index++) {
        nodus_context_params context_params;
        nodus_context_params_init(&context_params);
        context_params.memory_budget = bad_budgets[index];
        nodus_context *context = NULL;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "memory_budget", nodus_context_new,
               nodus_context_new(f->dit, &context_params, &context));
        CHECK(context == NULL);
    }
    nodus_model_params_init(&model_params);
    model_params.dtype = 99;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "dtype", nodus_model_load, nodus_model_load(f->dit_path, &model_params, &model));
    model_params.dtype = NODUS_DTYPE_INT64;
    EXPECT(NODUS_ERROR_UNSUPPORTED, "int64", nodus_model_load, nodus_model_load(f->dit_path, &model_params, &model));
    nodus_model_params_init(&model_params);
    model_params.read_files = 2;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "read_files", nodus_model_load,
           nodus_model_load(f->dit_path, &model_params, &model));

    float noise_values[1 * 4 * 8 * 8] = {0};
    nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8}), output = {0};
    int64_t label = 1;
    int32_t bad_steps[] = {0, -5, INT32_MIN, 1000000, INT32_MAX};
    for (size_t index = 0; index < 5; index++) {
        nodus_sample_params sampling;
        nodus_sample_params_init(&sampling);
        sampling.steps = bad_steps[index];
        sampling.init_noise = &noise;
        sampling.class_labels = &label;
        sampling.class_label_count = 1;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "steps", nodus_sample, nodus_sample(f->dit, f->scheduler, &sampling, &output));
    }
    nodus_sample_params sampling;
    nodus_sample_params_init(&sampling);
    sampling.steps = 2;
    sampling.init_noise = &noise;
    sampling.class_labels = &label;
    sampling.class_label_count = 1;
    sampling.strength = 1.5;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "strength", nodus_sample, nodus_sample(f->dit, f->scheduler, &sampling, &output));
    sampling.strength = -0.5;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "strength", nodus_sample, nodus_sample(f->dit, f->scheduler, &sampling, &output));

    const char *prompts[] = {"a chest x-ray"};
    nodus_generate_params generating;
    nodus_generate_params_init(&generating);
    generating.prompts = prompts;
    generating.prompt_count = 1;
    generating.steps = 0;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "steps", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));
    generating.steps = 2;
    generating.height = 12;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "height", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));
    generating.height = -16;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "height", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));
    generating.height = 0;
    generating.images_per_prompt = 0;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "images_per_prompt", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));
    generating.images_per_prompt = 1;
    generating.output = 5;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.output", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));
    generating.output = NODUS_PIPELINE_OUTPUT_IMAGE;
    generating.clip_skip = -1;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "clip_skip", nodus_pipeline_generate,
           nodus_pipeline_generate(f->pipeline, &generating, &output));

    float latent_values[1 * 4 * 8 * 8] = {0};
    nodus_tensor latent = float_tensor(latent_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_window_params window;
    int32_t bad_ndim[] = {0, 4, -1};
    for (size_t index = 0; index < 3; index++) {
        nodus_window_params_init(&window);
        window.ndim = bad_ndim[index];
        window.window_size[0] = window.window_size[1] = window.window_size[2] = 4;
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "ndim", nodus_model_forward_windowed,
               nodus_model_forward_windowed(f->vae, &latent, &window, &output));
    }
    nodus_window_params_init(&window);
    window.ndim = 2;
    window.window_size[0] = -4, window.window_size[1] = 4;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "window", nodus_model_forward_windowed,
           nodus_model_forward_windowed(f->vae, &latent, &window, &output));
    window.window_size[0] = 4;
    window.blend = 7;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "blend", nodus_model_forward_windowed,
           nodus_model_forward_windowed(f->vae, &latent, &window, &output));
    window.blend = NODUS_BLEND_GAUSSIAN;
    window.overlap = 1.0f;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "overlap", nodus_model_forward_windowed,
           nodus_model_forward_windowed(f->vae, &latent, &window, &output));
    window.overlap = 0.25f;
    window.output_name = "no-such-output";
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "no-such-output", nodus_model_forward_windowed,
           nodus_model_forward_windowed(f->vae, &latent, &window, &output));

    nodus_prompt_params prompt;
    nodus_prompt_params_init(&prompt);
    prompt.comma_backtrack = -1;
    int64_t ids[80];
    size_t count;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "comma_backtrack", nodus_tokenizer_encode_prompt,
           nodus_tokenizer_encode_prompt(f->tokenizer, "a", 1, &prompt, ids, NULL, 80, &count));
    nodus_prompt_params_init(&prompt);
    prompt.max_chunks = -1;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "max_chunks", nodus_tokenizer_encode_prompt,
           nodus_tokenizer_encode_prompt(f->tokenizer, "a", 1, &prompt, ids, NULL, 80, &count));
}

void misuse_ranges(fixtures *f) {
    counts(f);
    values(f);
    params(f);
}
