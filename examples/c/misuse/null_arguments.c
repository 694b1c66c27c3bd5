/*
 * NULL for every pointer argument of every export in nodus.h, one at a time,
 * the other arguments valid (so the NULL is what the call meets). Each call
 * must return NODUS_ERROR_INVALID_ARGUMENT (or the failure value of a function
 * that returns no status) with a new message naming the function and the
 * parameter, in backquotes as the library quotes parameters. Where the header
 * allows NULL (defaults, size queries, optional inputs) the call must succeed.
 * Destructors and params initialisers take NULL as a no-op and leave no
 * message. Exports without pointer arguments are called with values out of
 * range and must give their documented answers.
 *
 * Every export named here is recorded (misuse_cover); main.c fails the run for
 * any NODUS_API function of nodus.h this file never calls.
 */
#include <math.h>
#include <string.h>

#include "misuse.h"

#define COVER(function) misuse_cover(#function)
/* `function args` must fail with NODUS_ERROR_INVALID_ARGUMENT naming `parameter`. */
#define NULL_STATUS(parameter, function, args) \
    do { COVER(function); EXPECT(NODUS_ERROR_INVALID_ARGUMENT, parameter, function, function args); } while (0)
/* A NULL the header allows: the call succeeds. */
#define NULL_ALLOWED(function, args) \
    do { COVER(function); EXPECT(NODUS_OK, NULL, function, function args); } while (0)
/* A function returning a value: `failed` (over `result`) holds and the message names `parameter`. */
#define NULL_VALUE(type, failed, parameter, function, args) \
    do { COVER(function); EXPECT_FAILURE(type, failed, parameter, function, function args); } while (0)
/* A destructor or params initialiser given NULL: nothing happens and no message is left. */
#define NULL_NOOP(function) \
    do { COVER(function); misuse_mark(); function(NULL); CHECK(misuse_marked()); } while (0)
/* An export without pointer arguments: `condition` is its documented answer. */
#define NO_POINTER(function, condition) do { COVER(function); CHECK(condition); } while (0)

static void names_and_versions(void) {
    NO_POINTER(nodus_version_number, nodus_version_number() == NODUS_VERSION_NUMBER);
    NO_POINTER(nodus_version, strcmp(nodus_version(), NODUS_VERSION_STRING) == 0);
    NO_POINTER(nodus_status_name, strcmp(nodus_status_name(-1), "unknown") == 0 &&
                                      strcmp(nodus_status_name(1 << 30), "unknown") == 0);
    NO_POINTER(nodus_last_error, nodus_last_error() != NULL);
    NO_POINTER(nodus_dtype_name, nodus_dtype_name(-1) == NULL && nodus_dtype_name(99) == NULL);
    NO_POINTER(nodus_dtype_size, nodus_dtype_size(-1) == 0 && nodus_dtype_size(99) == 0);
    NO_POINTER(nodus_cpu_level, nodus_cpu_level() >= NODUS_ISA_BASELINE && nodus_cpu_level() <= NODUS_ISA_AVX512_BF16);
    NO_POINTER(nodus_cpu_level_supported, nodus_cpu_level_supported() >= nodus_cpu_level());
    NO_POINTER(nodus_cpu_level_note, nodus_cpu_level_note() != NULL);
    NO_POINTER(nodus_isa_level_name, nodus_isa_level_name(-1) == NULL && nodus_isa_level_name(4) == NULL);
    NO_POINTER(nodus_model_kind_name, nodus_model_kind_name(-1) == NULL && nodus_model_kind_name(99) == NULL);
    NO_POINTER(nodus_scheduler_kind_name, nodus_scheduler_kind_name(-1) == NULL && nodus_scheduler_kind_name(99) == NULL);
    NO_POINTER(nodus_pipeline_output_name, nodus_pipeline_output_name(-1) == NULL && nodus_pipeline_output_name(2) == NULL);

    nodus_dtype dtype;
    NULL_STATUS("`name`", nodus_dtype_from_name, (NULL, &dtype));
    NULL_STATUS("`out_dtype`", nodus_dtype_from_name, ("float32", NULL));
    nodus_isa_level level;
    NULL_STATUS("`name`", nodus_isa_level_from_name, (NULL, &level));
    NULL_STATUS("`out_level`", nodus_isa_level_from_name, ("avx2", NULL));
    nodus_model_kind model_kind;
    NULL_STATUS("`name`", nodus_model_kind_from_name, (NULL, &model_kind));
    NULL_STATUS("`out_kind`", nodus_model_kind_from_name, ("dit", NULL));
    nodus_scheduler_kind scheduler_kind;
    NULL_STATUS("`name`", nodus_scheduler_kind_from_name, (NULL, &scheduler_kind));
    NULL_STATUS("`out_kind`", nodus_scheduler_kind_from_name, ("DDIMScheduler", NULL));
    nodus_pipeline_output output;
    NULL_STATUS("`name`", nodus_pipeline_output_from_name, (NULL, &output));
    NULL_STATUS("`out_output`", nodus_pipeline_output_from_name, ("image", NULL));
}

static void params_initialisers(void) {
    NULL_NOOP(nodus_model_params_init);
    NULL_NOOP(nodus_context_params_init);
    NULL_NOOP(nodus_window_params_init);
    NULL_NOOP(nodus_sample_params_init);
    NULL_NOOP(nodus_prompt_params_init);
    NULL_NOOP(nodus_generate_params_init);
}

static void models(fixtures *f) {
    nodus_model *model = NULL;
    NULL_STATUS("`path`", nodus_model_load, (NULL, NULL, &model));
    NULL_STATUS("`out_model`", nodus_model_load, (f->dit_path, NULL, NULL));
    NULL_ALLOWED(nodus_model_load, (f->dit_path, NULL, &model)); /* params NULL: the defaults */
    nodus_model_free(model);
    NULL_NOOP(nodus_model_free);
    NULL_VALUE(nodus_model_kind, result == -1, "`model`", nodus_model_get_kind, (NULL));
    NULL_VALUE(const char *, result == NULL, "`model`", nodus_model_config_json, (NULL));

    dit_inputs in;
    dit_inputs_init(&in);
    float values[2 * 8 * 8 * 8];
    nodus_tensor output = {.data = values, .size_bytes = sizeof values};
    NULL_STATUS("`model`", nodus_model_forward, (NULL, in.tensors, 3, &output));
    NULL_STATUS("`inputs`", nodus_model_forward, (f->dit, NULL, 3, &output));
    NULL_STATUS("`output`", nodus_model_forward, (f->dit, in.tensors, 3, NULL));
    NULL_STATUS("`model`", nodus_model_forward_all, (NULL, in.tensors, 3, &output, 1));
    NULL_STATUS("`inputs`", nodus_model_forward_all, (f->dit, NULL, 3, &output, 1));
    NULL_STATUS("`outputs`", nodus_model_forward_all, (f->dit, in.tensors, 3, NULL, 1));
    NULL_VALUE(size_t, result == 0, "`model`", nodus_model_input_count, (NULL));
    NULL_VALUE(size_t, result == 0, "`model`", nodus_model_output_count, (NULL));
    nodus_tensor_info info;
    NULL_STATUS("`model`", nodus_model_input_info, (NULL, 0, &info));
    NULL_STATUS("`out_info`", nodus_model_input_info, (f->dit, 0, NULL));
    NULL_STATUS("`model`", nodus_model_output_info, (NULL, 0, &info));
    NULL_STATUS("`out_info`", nodus_model_output_info, (f->dit, 0, NULL));
    const char *json = NULL;
    NULL_STATUS("`model`", nodus_model_profile, (NULL, in.tensors, 3, 1, &json));
    NULL_STATUS("`inputs`", nodus_model_profile, (f->dit, NULL, 3, 1, &json));
    NULL_STATUS("`out_json`", nodus_model_profile, (f->dit, in.tensors, 3, 1, NULL));
    NULL_STATUS("`model`", nodus_model_save, (NULL, f->scratch));
    NULL_STATUS("`directory`", nodus_model_save, (f->dit, NULL));
}

static void vaes(fixtures *f) {
    /* vae-tiny: 2 levels, so images are 2x their latents. */
    float latent_values[1 * 4 * 4 * 4] = {0}, image_values[1 * 3 * 8 * 8] = {0};
    float mean_values[1 * 4 * 4 * 4], logvar_values[1 * 4 * 4 * 4];
    nodus_tensor latent = float_tensor(latent_values, 4, (int64_t[]){1, 4, 4, 4});
    nodus_tensor image = float_tensor(image_values, 4, (int64_t[]){1, 3, 8, 8});
    nodus_tensor decoded = float_tensor(image_values, 4, (int64_t[]){1, 3, 8, 8});
    nodus_tensor mean = float_tensor(mean_values, 4, (int64_t[]){1, 4, 4, 4});
    nodus_tensor logvar = float_tensor(logvar_values, 4, (int64_t[]){1, 4, 4, 4});
    NULL_STATUS("`model`", nodus_model_decode, (NULL, &latent, &decoded));
    NULL_STATUS("`latent`", nodus_model_decode, (f->vae, NULL, &decoded));
    NULL_STATUS("`output`", nodus_model_decode, (f->vae, &latent, NULL));
    NULL_STATUS("`model`", nodus_model_encode, (NULL, &image, &mean, &logvar));
    NULL_STATUS("`image`", nodus_model_encode, (f->vae, NULL, &mean, &logvar));
    NULL_STATUS("`mean`", nodus_model_encode, (f->vae, &image, NULL, &logvar));
    NULL_STATUS("`logvar`", nodus_model_encode, (f->vae, &image, &mean, NULL));
    NULL_STATUS("`model`", nodus_model_encode_latent, (NULL, &image, NULL, &mean));
    NULL_STATUS("`image`", nodus_model_encode_latent, (f->vae, NULL, NULL, &mean));
    NULL_STATUS("`latent`", nodus_model_encode_latent, (f->vae, &image, NULL, NULL));
    NULL_ALLOWED(nodus_model_encode_latent, (f->vae, &image, NULL, &mean)); /* noise NULL: the mode */
    NULL_STATUS("`model`", nodus_model_set_vae_tiling, (NULL, 0, 0));

    nodus_context *context = NULL;
    CHECK(nodus_context_new(f->vae, NULL, &context) == NODUS_OK);
    NULL_STATUS("`context`", nodus_context_decode, (NULL, &latent, &decoded));
    NULL_STATUS("`latent`", nodus_context_decode, (context, NULL, &decoded));
    NULL_STATUS("`output`", nodus_context_decode, (context, &latent, NULL));
    NULL_STATUS("`context`", nodus_context_encode, (NULL, &image, &mean, &logvar));
    NULL_STATUS("`image`", nodus_context_encode, (context, NULL, &mean, &logvar));
    NULL_STATUS("`mean`", nodus_context_encode, (context, &image, NULL, &logvar));
    NULL_STATUS("`logvar`", nodus_context_encode, (context, &image, &mean, NULL));
    NULL_STATUS("`context`", nodus_context_encode_latent, (NULL, &image, NULL, &mean));
    NULL_STATUS("`image`", nodus_context_encode_latent, (context, NULL, NULL, &mean));
    NULL_STATUS("`latent`", nodus_context_encode_latent, (context, &image, NULL, NULL));
    NULL_ALLOWED(nodus_context_encode_latent, (context, &image, NULL, &mean));
    nodus_context_free(context);

    nodus_window_params window;
    nodus_window_params_init(&window);
    window.ndim = 2;
    window.window_size[0] = window.window_size[1] = 4;
    nodus_tensor windowed = {0};
    NULL_STATUS("`model`", nodus_model_forward_windowed, (NULL, &latent, &window, &windowed));
    NULL_STATUS("`input`", nodus_model_forward_windowed, (f->vae, NULL, &window, &windowed));
    NULL_STATUS("`params`", nodus_model_forward_windowed, (f->vae, &latent, NULL, &windowed));
    NULL_STATUS("`output`", nodus_model_forward_windowed, (f->vae, &latent, &window, NULL));
}

static void adapters(fixtures *f) {
    const char *a[] = {"a"}, *none[] = {NULL};
    float one[] = {1.0f};
    NULL_STATUS("`model`", nodus_model_load_lora, (NULL, f->lora_a_path, "c"));
    NULL_STATUS("`path`", nodus_model_load_lora, (f->dit_lora, NULL, "c"));
    NULL_STATUS("`adapter_name`", nodus_model_load_lora, (f->dit_lora, f->lora_a_path, NULL));
    NULL_STATUS("`model`", nodus_model_set_adapters, (NULL, a, one, 1));
    NULL_STATUS("`names`", nodus_model_set_adapters, (f->dit_lora, NULL, one, 1));
    NULL_STATUS("`names[0]`", nodus_model_set_adapters, (f->dit_lora, none, one, 1));
    NULL_ALLOWED(nodus_model_set_adapters, (f->dit_lora, a, NULL, 1)); /* weights NULL: 1.0 each */
    NULL_STATUS("`model`", nodus_model_fuse_lora, (NULL, NULL, 0, 1.0f));
    NULL_STATUS("`names`", nodus_model_fuse_lora, (f->dit_lora, NULL, 1, 1.0f));
    NULL_ALLOWED(nodus_model_fuse_lora, (f->dit_lora, NULL, 0, 1.0f)); /* names NULL: the active ones */
    NULL_STATUS("`model`", nodus_model_unfuse_lora, (NULL));
    CHECK(nodus_model_unfuse_lora(f->dit_lora) == NODUS_OK);
    NULL_STATUS("`model`", nodus_model_enable_lora, (NULL, 1));
    NULL_STATUS("`model`", nodus_model_delete_adapters, (NULL, a, 1));
    NULL_STATUS("`names`", nodus_model_delete_adapters, (f->dit_lora, NULL, 1));
    NULL_VALUE(const char *, result == NULL, "`model`", nodus_model_lora_state_json, (NULL));
    NULL_VALUE(const char *, result == NULL, "`model`", nodus_model_lora_compare_json, (NULL, "a", "b"));
    NULL_VALUE(const char *, result == NULL, "`a`", nodus_model_lora_compare_json, (f->dit_lora, NULL, "b"));
    NULL_VALUE(const char *, result == NULL, "`b`", nodus_model_lora_compare_json, (f->dit_lora, "a", NULL));
}

static void contexts(fixtures *f) {
    nodus_context *context = NULL;
    NULL_STATUS("`model`", nodus_context_new, (NULL, NULL, &context));
    NULL_STATUS("`out_context`", nodus_context_new, (f->dit, NULL, NULL));
    NULL_ALLOWED(nodus_context_new, (f->dit, NULL, &context)); /* params NULL: the defaults */
    nodus_context_free(context);
    NULL_NOOP(nodus_context_free);
    dit_inputs in;
    dit_inputs_init(&in);
    nodus_tensor output = {0};
    NULL_STATUS("`context`", nodus_context_forward_all, (NULL, in.tensors, 3, &output, 1));
    NULL_STATUS("`inputs`", nodus_context_forward_all, (f->context, NULL, 3, &output, 1));
    NULL_STATUS("`outputs`", nodus_context_forward_all, (f->context, in.tensors, 3, NULL, 1));
    const char *a[] = {"a"};
    NULL_STATUS("`context`", nodus_context_set_adapters, (NULL, a, NULL, 1));
    NULL_STATUS("`names`", nodus_context_set_adapters, (f->context, NULL, NULL, 1));
    NULL_VALUE(int32_t, result == -1, "`context`", nodus_context_threads, (NULL));
}

static void schedulers(fixtures *f) {
    nodus_scheduler *scheduler = NULL;
    const char *json = "{\"_class_name\": \"DDIMScheduler\"}";
    NULL_STATUS("`path`", nodus_scheduler_load, (NULL, &scheduler));
    NULL_STATUS("`out_scheduler`", nodus_scheduler_load, (f->scheduler_path, NULL));
    NULL_STATUS("`json`", nodus_scheduler_from_json, (NULL, &scheduler));
    NULL_STATUS("`out_scheduler`", nodus_scheduler_from_json, (json, NULL));
    NULL_NOOP(nodus_scheduler_free);
    NULL_VALUE(nodus_scheduler_kind, result == -1, "`scheduler`", nodus_scheduler_get_kind, (NULL));
    NULL_STATUS("`scheduler`", nodus_scheduler_set_timesteps, (NULL, 5));
    NULL_STATUS("`scheduler`", nodus_scheduler_set_timesteps_sized, (NULL, 5, 64));
    CHECK(nodus_scheduler_set_timesteps(f->scheduler, 5) == NODUS_OK);
    double timesteps[8];
    size_t count;
    int32_t is_integer;
    NULL_STATUS("`scheduler`", nodus_scheduler_timesteps, (NULL, timesteps, 8, &count, &is_integer));
    NULL_STATUS("`out`", nodus_scheduler_timesteps, (f->scheduler, NULL, 8, &count, &is_integer));
    NULL_STATUS("`out_count`", nodus_scheduler_timesteps, (f->scheduler, timesteps, 8, NULL, &is_integer));
    NULL_STATUS("`out_is_integer`", nodus_scheduler_timesteps, (f->scheduler, timesteps, 8, &count, NULL));
    NULL_ALLOWED(nodus_scheduler_timesteps, (f->scheduler, NULL, 0, &count, &is_integer)); /* a size query */
    CHECK(nodus_scheduler_timesteps(f->scheduler, timesteps, 8, &count, &is_integer) == NODUS_OK && count == 5);
    NULL_VALUE(float, isnan(result), "`scheduler`", nodus_scheduler_init_noise_sigma, (NULL));
    NULL_VALUE(int32_t, result == -1, "`scheduler`", nodus_scheduler_draws_noise, (NULL));
    NULL_VALUE(int32_t, result == -1, "`scheduler`", nodus_scheduler_order, (NULL));

    float sample_values[1 * 4 * 8 * 8] = {0}, output_values[1 * 4 * 8 * 8] = {0};
    nodus_tensor sample = float_tensor(sample_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_tensor model_output = float_tensor(output_values, 4, (int64_t[]){1, 4, 8, 8});
    nodus_tensor previous = {0}; /* data NULL: a shape query, the scheduler does not step */
    double t = timesteps[0];
    NULL_STATUS("`scheduler`", nodus_scheduler_step, (NULL, &model_output, t, &sample, NULL, &previous));
    NULL_STATUS("`model_output`", nodus_scheduler_step, (f->scheduler, NULL, t, &sample, NULL, &previous));
    NULL_STATUS("`sample`", nodus_scheduler_step, (f->scheduler, &model_output, t, NULL, NULL, &previous));
    NULL_STATUS("`prev_sample`", nodus_scheduler_step, (f->scheduler, &model_output, t, &sample, NULL, NULL));
    NULL_ALLOWED(nodus_scheduler_step, (f->scheduler, &model_output, t, &sample, NULL, &previous)); /* DDIM: no noise */
    nodus_tensor scaled = {0};
    NULL_STATUS("`scheduler`", nodus_scheduler_scale_model_input, (NULL, &sample, t, &scaled));
    NULL_STATUS("`sample`", nodus_scheduler_scale_model_input, (f->scheduler, NULL, t, &scaled));
    NULL_STATUS("`scaled`", nodus_scheduler_scale_model_input, (f->scheduler, &sample, t, NULL));
}

static void sampling(fixtures *f) {
    float noise_values[1 * 4 * 8 * 8] = {0};
    nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){1, 4, 8, 8});
    int64_t labels[] = {3};
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = 2;
    params.init_noise = &noise;
    params.class_labels = labels;
    params.class_label_count = 1;
    nodus_tensor output = {0};
    NULL_STATUS("`model`", nodus_sample, (NULL, f->scheduler, &params, &output));
    NULL_STATUS("`scheduler`", nodus_sample, (f->dit, NULL, &params, &output));
    NULL_STATUS("`params`", nodus_sample, (f->dit, f->scheduler, NULL, &output));
    NULL_STATUS("`output`", nodus_sample, (f->dit, f->scheduler, &params, NULL));
    nodus_sample_params broken = params;
    broken.init_noise = NULL;
    NULL_STATUS("`params.init_noise`", nodus_sample, (f->dit, f->scheduler, &broken, &output));
    broken = params;
    broken.class_labels = NULL;
    NULL_STATUS("`params.class_labels`", nodus_sample, (f->dit, f->scheduler, &broken, &output));
    broken = params;
    broken.adapter_schedule_count = 1;
    NULL_STATUS("`params.adapter_schedule`", nodus_sample, (f->dit, f->scheduler, &broken, &output));
    nodus_adapter_schedule_entry entry = {.step = 0, .count = 1, .names = NULL, .weights = NULL};
    broken.adapter_schedule = &entry;
    NULL_STATUS("`params.adapter_schedule[0].names`", nodus_sample, (f->dit, f->scheduler, &broken, &output));
    nodus_tensor trajectory = {0};
    broken = params;
    broken.trajectory = &trajectory;
    NULL_STATUS("params.trajectory", nodus_sample, (f->dit, f->scheduler, &broken, &output));

    float samples_values[2 * 3] = {0}, mean_values[3], variance_values[3];
    nodus_tensor samples = float_tensor(samples_values, 2, (int64_t[]){2, 3});
    nodus_tensor mean = float_tensor(mean_values, 1, (int64_t[]){3});
    nodus_tensor variance = float_tensor(variance_values, 1, (int64_t[]){3});
    NULL_STATUS("`samples`", nodus_batch_statistics, (NULL, 1, &mean, &variance));
    NULL_STATUS("`mean`", nodus_batch_statistics, (&samples, 1, NULL, &variance));
    NULL_STATUS("`variance`", nodus_batch_statistics, (&samples, 1, &mean, NULL));

    NULL_STATUS("`output`", nodus_randn, (0, NULL));
    nodus_tensor no_data = float_tensor(NULL, 1, (int64_t[]){3});
    NULL_STATUS("data", nodus_randn, (0, &no_data));
}

static void tokenizers(fixtures *f) {
    nodus_tokenizer *tokenizer = NULL;
    NULL_STATUS("`path`", nodus_tokenizer_load, (NULL, &tokenizer));
    NULL_STATUS("`out_tokenizer`", nodus_tokenizer_load, (f->tokenizer_path, NULL));
    NULL_NOOP(nodus_tokenizer_free);
    nodus_tokenizer *t = f->tokenizer;
    int64_t ids[80];
    float weights[80];
    size_t count;
    NULL_STATUS("`tokenizer`", nodus_tokenizer_encode, (NULL, "a", 1, 0, ids, 80, &count));
    NULL_STATUS("`text`", nodus_tokenizer_encode, (t, NULL, 1, 0, ids, 80, &count));
    NULL_STATUS("`out_ids`", nodus_tokenizer_encode, (t, "a", 1, 0, NULL, 80, &count));
    NULL_STATUS("`out_count`", nodus_tokenizer_encode, (t, "a", 1, 0, ids, 80, NULL));
    NULL_ALLOWED(nodus_tokenizer_encode, (t, NULL, 0, 0, NULL, 0, &count)); /* empty text, a size query */
    NULL_STATUS("`tokenizer`", nodus_tokenizer_encode_prompt, (NULL, "a", 1, NULL, ids, weights, 80, &count));
    NULL_STATUS("`text`", nodus_tokenizer_encode_prompt, (t, NULL, 1, NULL, ids, weights, 80, &count));
    NULL_STATUS("`out_ids`", nodus_tokenizer_encode_prompt, (t, "a", 1, NULL, NULL, weights, 80, &count));
    NULL_STATUS("`out_count`", nodus_tokenizer_encode_prompt, (t, "a", 1, NULL, ids, weights, 80, NULL));
    NULL_ALLOWED(nodus_tokenizer_encode_prompt, (t, "a", 1, NULL, ids, NULL, 80, &count)); /* defaults, no weights */
    NULL_VALUE(int32_t, result == -1, "`tokenizer`", nodus_tokenizer_max_length, (NULL));
    NULL_VALUE(int64_t, result == -1, "`tokenizer`", nodus_tokenizer_bos_id, (NULL));
    NULL_VALUE(int64_t, result == -1, "`tokenizer`", nodus_tokenizer_eos_id, (NULL));
    NULL_VALUE(int64_t, result == -1, "`tokenizer`", nodus_tokenizer_pad_id, (NULL));
    NULL_VALUE(int64_t, result == -1, "`tokenizer`", nodus_tokenizer_vocab_size, (NULL));
    int64_t id;
    NULL_STATUS("`tokenizer`", nodus_tokenizer_token_to_id, (NULL, "a</w>", &id));
    NULL_STATUS("`token`", nodus_tokenizer_token_to_id, (t, NULL, &id));
    NULL_STATUS("`out_id`", nodus_tokenizer_token_to_id, (t, "a</w>", NULL));
    char text[64];
    size_t length;
    NULL_STATUS("`tokenizer`", nodus_tokenizer_id_to_token, (NULL, 320, text, sizeof text, &length));
    NULL_STATUS("`out_token`", nodus_tokenizer_id_to_token, (t, 320, NULL, sizeof text, &length));
    NULL_STATUS("`out_length`", nodus_tokenizer_id_to_token, (t, 320, text, sizeof text, NULL));
    NULL_ALLOWED(nodus_tokenizer_id_to_token, (t, 320, NULL, 0, &length)); /* a size query */
    int64_t pair[] = {320, 321};
    NULL_STATUS("`tokenizer`", nodus_tokenizer_decode, (NULL, pair, 2, 0, text, sizeof text, &length));
    NULL_STATUS("`ids`", nodus_tokenizer_decode, (t, NULL, 2, 0, text, sizeof text, &length));
    NULL_STATUS("`out_text`", nodus_tokenizer_decode, (t, pair, 2, 0, NULL, sizeof text, &length));
    NULL_STATUS("`out_length`", nodus_tokenizer_decode, (t, pair, 2, 0, text, sizeof text, NULL));
    NULL_ALLOWED(nodus_tokenizer_decode, (t, NULL, 0, 0, NULL, 0, &length)); /* no ids, a size query */
}

static void pipelines(fixtures *f) {
    nodus_pipeline *pipeline = NULL;
    NULL_STATUS("`path`", nodus_pipeline_load, (NULL, NULL, &pipeline));
    NULL_STATUS("`out_pipeline`", nodus_pipeline_load, (f->pipeline_path, NULL, NULL));
    NULL_NOOP(nodus_pipeline_free);
    nodus_pipeline *p = f->pipeline;
    nodus_model *model = NULL;
    NULL_STATUS("`pipeline`", nodus_pipeline_model, (NULL, "unet", &model));
    NULL_STATUS("`component`", nodus_pipeline_model, (p, NULL, &model));
    NULL_STATUS("`out_model`", nodus_pipeline_model, (p, "unet", NULL));
    nodus_tokenizer *tokenizer = NULL;
    NULL_STATUS("`pipeline`", nodus_pipeline_tokenizer, (NULL, &tokenizer));
    NULL_STATUS("`out_tokenizer`", nodus_pipeline_tokenizer, (p, NULL));
    nodus_scheduler *scheduler = NULL;
    NULL_STATUS("`pipeline`", nodus_pipeline_set_scheduler, (NULL, f->scheduler));
    NULL_STATUS("`scheduler`", nodus_pipeline_set_scheduler, (p, NULL));
    NULL_STATUS("`pipeline`", nodus_pipeline_scheduler, (NULL, &scheduler));
    NULL_STATUS("`out_scheduler`", nodus_pipeline_scheduler, (p, NULL));
    NULL_STATUS("`pipeline`", nodus_pipeline_load_lora, (NULL, f->pipeline_lora_path, "x"));
    NULL_STATUS("`path`", nodus_pipeline_load_lora, (p, NULL, "x"));
    NULL_STATUS("`adapter_name`", nodus_pipeline_load_lora, (p, f->pipeline_lora_path, NULL));
    const char *x[] = {"x"};
    NULL_STATUS("`pipeline`", nodus_pipeline_set_adapters, (NULL, x, NULL, 1));
    NULL_STATUS("`names`", nodus_pipeline_set_adapters, (p, NULL, NULL, 1));

    const char *prompts[] = {"a chest x-ray"}, *missing[] = {NULL};
    nodus_generate_params params;
    nodus_generate_params_init(&params);
    params.prompts = prompts;
    params.prompt_count = 1;
    params.steps = 2;
    nodus_tensor output = {0};
    NULL_STATUS("`pipeline`", nodus_pipeline_generate, (NULL, &params, &output));
    NULL_STATUS("`params`", nodus_pipeline_generate, (p, NULL, &output));
    NULL_STATUS("`output`", nodus_pipeline_generate, (p, &params, NULL));
    nodus_generate_params broken = params;
    broken.prompts = NULL;
    NULL_STATUS("`params.prompts`", nodus_pipeline_generate, (p, &broken, &output));
    broken.prompts = missing;
    NULL_STATUS("`params.prompts[0]`", nodus_pipeline_generate, (p, &broken, &output));
    broken = params;
    broken.negative_prompt_count = 1;
    NULL_STATUS("`params.negative_prompts`", nodus_pipeline_generate, (p, &broken, &output));
    broken = params;
    NULL_ALLOWED(nodus_pipeline_generate, (p, &broken, &output)); /* image, mask, progress NULL: none; a shape query */
}

void misuse_null_arguments(fixtures *f) {
    names_and_versions();
    params_initialisers();
    models(f);
    vaes(f);
    adapters(f);
    contexts(f);
    schedulers(f);
    sampling(f);
    tokenizers(f);
    pipelines(f);
}
