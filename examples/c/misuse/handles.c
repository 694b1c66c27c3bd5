/*
 * Handles used wrongly: after their free, freed twice, forged (values the
 * library never gave out), and of the wrong kind. The library keeps a table of
 * the handles it gave out (a slot and a generation per handle), so each of
 * these is NODUS_ERROR_INVALID_ARGUMENT naming the parameter ("a freed handle",
 * "not a handle this library gave out", "not a nodus_model"), a destructor
 * given one leaves a message and changes nothing, and no freed memory is read.
 */
#include <string.h>

#include "misuse.h"

/* A free that must refuse `handle` with a message holding `words`, harming nothing. */
#define EXPECT_FREE_REFUSED(free_function, handle, words)                        \
    do {                                                                        \
        misuse_mark();                                                          \
        free_function(handle);                                                  \
        CHECK(!misuse_marked() && strstr(nodus_last_error(), #free_function) && \
              strstr(nodus_last_error(), words));                               \
    } while (0)

static void freed_models(fixtures *f) {
    nodus_model *model = NULL;
    CHECK(nodus_model_load(f->dit_path, NULL, &model) == NODUS_OK);
    nodus_model *stale = model;
    nodus_model_free(model);
    dit_inputs in;
    dit_inputs_init(&in);
    nodus_tensor output = {0};
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "`model` is a freed handle", nodus_model_forward,
           nodus_model_forward(stale, in.tensors, 3, &output));
    EXPECT_FAILURE(nodus_model_kind, result == -1, "freed handle", nodus_model_get_kind, nodus_model_get_kind(stale));
    EXPECT_FAILURE(const char *, result == NULL, "freed handle", nodus_model_config_json,
                   nodus_model_config_json(stale));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "freed handle", nodus_model_load_lora,
           nodus_model_load_lora(stale, f->lora_a_path, "a"));
    nodus_context *context = NULL;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "freed handle", nodus_context_new, nodus_context_new(stale, NULL, &context));
    CHECK(context == NULL);
    EXPECT_FREE_REFUSED(nodus_model_free, stale, "freed handle"); /* a double free */

    /* A new model may take the freed one's slot: the old value still names the freed model. */
    nodus_model *fresh = NULL;
    CHECK(nodus_model_load(f->dit_path, NULL, &fresh) == NODUS_OK);
    CHECK(fresh != stale);
    EXPECT_FAILURE(nodus_model_kind, result == -1, "freed handle", nodus_model_get_kind, nodus_model_get_kind(stale));
    EXPECT_FREE_REFUSED(nodus_model_free, stale, "freed handle");
    CHECK(nodus_model_get_kind(fresh) == NODUS_MODEL_DIT); /* the refused frees left it alone */
    output.data = NULL;
    CHECK(nodus_model_forward(fresh, in.tensors, 3, &output) == NODUS_OK);
    nodus_model_free(fresh);
}

static void freed_other_kinds(fixtures *f) {
    nodus_scheduler *scheduler = NULL;
    CHECK(nodus_scheduler_load(f->scheduler_path, &scheduler) == NODUS_OK);
    nodus_scheduler_free(scheduler);
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "`scheduler` is a freed handle", nodus_scheduler_set_timesteps,
           nodus_scheduler_set_timesteps(scheduler, 5));
    EXPECT_FREE_REFUSED(nodus_scheduler_free, scheduler, "freed handle");

    nodus_tokenizer *tokenizer = NULL;
    CHECK(nodus_tokenizer_load(f->tokenizer_path, &tokenizer) == NODUS_OK);
    nodus_tokenizer_free(tokenizer);
    EXPECT_FAILURE(int32_t, result == -1, "`tokenizer` is a freed handle", nodus_tokenizer_max_length,
                   nodus_tokenizer_max_length(tokenizer));
    EXPECT_FREE_REFUSED(nodus_tokenizer_free, tokenizer, "freed handle");

    nodus_context *context = NULL;
    CHECK(nodus_context_new(f->dit, NULL, &context) == NODUS_OK);
    nodus_context_free(context);
    EXPECT_FAILURE(int32_t, result == -1, "`context` is a freed handle", nodus_context_threads,
                   nodus_context_threads(context));
    EXPECT_FREE_REFUSED(nodus_context_free, context, "freed handle");

    /* A pipeline's component handles are handles of their own: freeing one leaves the pipeline. */
    nodus_model *unet = NULL;
    CHECK(nodus_pipeline_model(f->pipeline, "unet", &unet) == NODUS_OK);
    nodus_model_free(unet);
    EXPECT_FAILURE(nodus_model_kind, result == -1, "freed handle", nodus_model_get_kind, nodus_model_get_kind(unet));
    nodus_tokenizer *component = NULL;
    CHECK(nodus_pipeline_tokenizer(f->pipeline, &component) == NODUS_OK);
    nodus_tokenizer_free(component);
    EXPECT_FREE_REFUSED(nodus_tokenizer_free, component, "freed handle");
    nodus_model *still = NULL;
    CHECK(nodus_pipeline_model(f->pipeline, "unet", &still) == NODUS_OK);
    CHECK(nodus_model_get_kind(still) == NODUS_MODEL_UNET);
    nodus_model_free(still);

    /* A context outlives its model's handle (the header's rule); its model's handle is freed. */
    nodus_model *model = NULL;
    CHECK(nodus_model_load(f->dit_path, NULL, &model) == NODUS_OK);
    CHECK(nodus_context_new(model, NULL, &context) == NODUS_OK);
    nodus_model_free(model);
    dit_inputs in;
    dit_inputs_init(&in);
    nodus_tensor output = {0};
    CHECK(nodus_context_forward_all(context, in.tensors, 3, &output, 1) == NODUS_OK);
    EXPECT_FAILURE(nodus_model_kind, result == -1, "freed handle", nodus_model_get_kind, nodus_model_get_kind(model));
    nodus_context_free(context);

    nodus_pipeline *pipeline = NULL;
    CHECK(nodus_pipeline_load(f->pipeline_path, NULL, &pipeline) == NODUS_OK);
    nodus_pipeline_free(pipeline);
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "`pipeline` is a freed handle", nodus_pipeline_tokenizer,
           nodus_pipeline_tokenizer(pipeline, &component));
    EXPECT_FREE_REFUSED(nodus_pipeline_free, pipeline, "freed handle");
}

/* Values the library never gave out: small integers, a stack address, a heap-like
 * address, all bits set. Each is refused without being read. */
static void forged(fixtures *f) {
    int local = 0;
    void *forgeries[] = {(void *)(uintptr_t)1, (void *)(uintptr_t)0x1000, &local,
                         (void *)(uintptr_t)0x00007f0000001000ull, (void *)(uintptr_t)UINTPTR_MAX,
                         (void *)(((uintptr_t)0x7fffffff << 32) | 1)};
    for (size_t index = 0; index < sizeof forgeries / sizeof forgeries[0]; index++) {
        nodus_model *model = forgeries[index];
        EXPECT_FAILURE(nodus_model_kind, result == -1, "`model` is not a handle this library gave out",
                       nodus_model_get_kind, nodus_model_get_kind(model));
        EXPECT_FREE_REFUSED(nodus_model_free, model, "not a handle");
        nodus_scheduler *scheduler = forgeries[index];
        EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "`scheduler` is not a handle", nodus_scheduler_set_timesteps,
               nodus_scheduler_set_timesteps(scheduler, 5));
        EXPECT_FREE_REFUSED(nodus_scheduler_free, scheduler, "not a handle");
        nodus_context *context = forgeries[index];
        EXPECT_FREE_REFUSED(nodus_context_free, context, "not a handle");
    }
    CHECK(nodus_model_get_kind(f->dit) == NODUS_MODEL_DIT);
}

/* Each handle passed as every other kind: refused by name, never used as the other kind,
 * and a destructor of the wrong kind frees nothing. */
static void wrong_kinds(fixtures *f) {
    void *model = f->dit, *scheduler = f->scheduler, *tokenizer = f->tokenizer, *pipeline = f->pipeline,
         *context = f->context;
    EXPECT_FAILURE(nodus_model_kind, result == -1, "is not a nodus_model (it is a nodus_scheduler)",
                   nodus_model_get_kind, nodus_model_get_kind(scheduler));
    EXPECT_FAILURE(nodus_model_kind, result == -1, "is not a nodus_model (it is a nodus_context)",
                   nodus_model_get_kind, nodus_model_get_kind(context));
    EXPECT_FAILURE(nodus_model_kind, result == -1, "is not a nodus_model (it is a nodus_pipeline)",
                   nodus_model_get_kind, nodus_model_get_kind(pipeline));
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "`scheduler` is not a nodus_scheduler (it is a nodus_model)",
           nodus_scheduler_set_timesteps, nodus_scheduler_set_timesteps(model, 5));
    EXPECT_FAILURE(int32_t, result == -1, "is not a nodus_tokenizer (it is a nodus_model)",
                   nodus_tokenizer_max_length, nodus_tokenizer_max_length(model));
    EXPECT_FAILURE(int32_t, result == -1, "is not a nodus_context (it is a nodus_tokenizer)", nodus_context_threads,
                   nodus_context_threads(tokenizer));
    nodus_tokenizer *out = NULL;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "is not a nodus_pipeline (it is a nodus_model)", nodus_pipeline_tokenizer,
           nodus_pipeline_tokenizer(model, &out));
    float noise[1 * 4 * 8 * 8] = {0};
    nodus_tensor noise_tensor = float_tensor(noise, 4, (int64_t[]){1, 4, 8, 8}), output = {0};
    int64_t label = 1;
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.init_noise = &noise_tensor;
    params.class_labels = &label;
    params.class_label_count = 1;
    params.steps = 1;
    params.context = (nodus_context *)scheduler;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "`params.context` is not a nodus_context", nodus_sample,
           nodus_sample(f->dit, f->scheduler, &params, &output));
    EXPECT_FREE_REFUSED(nodus_model_free, scheduler, "is not a nodus_model");
    EXPECT_FREE_REFUSED(nodus_scheduler_free, model, "is not a nodus_scheduler");
    EXPECT_FREE_REFUSED(nodus_tokenizer_free, pipeline, "is not a nodus_tokenizer");
    EXPECT_FREE_REFUSED(nodus_pipeline_free, tokenizer, "is not a nodus_pipeline");
    EXPECT_FREE_REFUSED(nodus_context_free, model, "is not a nodus_context");
    /* All still alive. */
    CHECK(nodus_model_get_kind(f->dit) == NODUS_MODEL_DIT);
    CHECK(nodus_scheduler_get_kind(f->scheduler) == NODUS_SCHEDULER_DDIM);
    CHECK(nodus_tokenizer_max_length(f->tokenizer) == 77);
    CHECK(nodus_context_threads(f->context) == 1);
    CHECK(nodus_pipeline_tokenizer(f->pipeline, &out) == NODUS_OK);
    nodus_tokenizer_free(out);

    /* A context of another model. */
    params.context = f->context;
    EXPECT(NODUS_ERROR_INVALID_ARGUMENT, "params.context is a context of another model", nodus_sample,
           nodus_sample(f->dit_lora, f->scheduler, &params, &output));
}

void misuse_handles(fixtures *f) {
    freed_models(f);
    freed_other_kinds(f);
    forged(f);
    wrong_kinds(f);
}
