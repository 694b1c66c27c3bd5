/*
 * Progress callbacks that cancel at the first, a middle and the last step of
 * nodus_sample, nodus_pipeline_generate and nodus_model_forward_windowed:
 * NODUS_ERROR_CANCELLED, the output (and a sample's trajectory) untouched, the
 * scheduler handle as it was, and the handles still usable: the next full run
 * is bit-identical to one made before. Also callbacks that call back into the
 * model being run, which the header allows: the run's result must not change.
 */
#include <string.h>

#include "misuse.h"

#define PATTERN 0x5A
#define STEPS 5

static int untouched(const void *buffer, size_t bytes) {
    const unsigned char *byte = buffer;
    for (size_t index = 0; index < bytes; index++) {
        if (byte[index] != PATTERN) return 0;
    }
    return 1;
}

typedef struct progress_state {
    int32_t cancel_at;  /* the `done` value to cancel at; 0: never  */
    int32_t calls;
    int32_t last_done;
    int32_t total;
    int ordered;        /* every call had done = previous + 1 */
    nodus_model *model; /* a model to run a forward on from the callback, or NULL */
    int nested_ok;
} progress_state;

static int32_t on_progress(int32_t done, int32_t total, void *user_data) {
    progress_state *state = user_data;
    if (done != state->last_done + 1) state->ordered = 0;
    state->calls++;
    state->last_done = done;
    state->total = total;
    if (state->model != NULL) {
        dit_inputs in;
        dit_inputs_init(&in);
        static float values[2 * 8 * 8 * 8];
        nodus_tensor output = {.data = values, .size_bytes = sizeof values};
        if (nodus_model_forward(state->model, in.tensors, 3, &output) != NODUS_OK) state->nested_ok = 0;
    }
    return done == state->cancel_at;
}

/* One DDIM sample of the DiT (STEPS steps, guidance on), its trajectory recorded. */
typedef struct sample_run {
    float noise[2 * 4 * 8 * 8];
    int64_t labels[2];
    float output[2 * 4 * 8 * 8];
    float trajectory[STEPS * 2 * 4 * 8 * 8];
} sample_run;

static nodus_status run_sample(nodus_model *model, nodus_scheduler *scheduler, sample_run *run,
                               progress_state *state) {
    nodus_tensor noise = float_tensor(run->noise, 4, (int64_t[]){2, 4, 8, 8});
    nodus_tensor output = float_tensor(run->output, 4, (int64_t[]){2, 4, 8, 8});
    nodus_tensor trajectory = float_tensor(run->trajectory, 5, (int64_t[]){STEPS, 2, 4, 8, 8});
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = STEPS;
    params.init_noise = &noise;
    params.class_labels = run->labels;
    params.class_label_count = 2;
    params.trajectory = &trajectory;
    params.progress = on_progress;
    params.progress_user_data = state;
    return nodus_sample(model, scheduler, &params, &output);
}

static void sample_run_init(sample_run *run) {
    memset(run, PATTERN, sizeof *run);
    nodus_tensor noise = float_tensor(run->noise, 4, (int64_t[]){2, 4, 8, 8});
    if (nodus_randn(11, &noise) != NODUS_OK) CHECK(0);
    run->labels[0] = 4;
    run->labels[1] = 9;
}

static size_t timestep_count(nodus_scheduler *scheduler) {
    size_t count = 0;
    int32_t is_integer;
    if (nodus_scheduler_timesteps(scheduler, NULL, 0, &count, &is_integer) != NODUS_OK) return 0;
    return count;
}

static void sampling(fixtures *f) {
    static sample_run reference, run;
    sample_run_init(&reference);
    progress_state state = {.ordered = 1};
    CHECK(run_sample(f->dit, f->scheduler, &reference, &state) == NODUS_OK);
    CHECK(state.calls == STEPS && state.total == STEPS && state.ordered);

    int32_t cancel_at[] = {1, (STEPS + 1) / 2, STEPS};
    for (size_t index = 0; index < 3; index++) {
        CHECK(nodus_scheduler_set_timesteps(f->scheduler, 7) == NODUS_OK);
        sample_run_init(&run);
        state = (progress_state){.cancel_at = cancel_at[index], .ordered = 1};
        EXPECT(NODUS_ERROR_CANCELLED, "cancelled", nodus_sample, run_sample(f->dit, f->scheduler, &run, &state));
        CHECK(state.calls == cancel_at[index] && state.ordered);
        CHECK(untouched(run.output, sizeof run.output));
        CHECK(untouched(run.trajectory, sizeof run.trajectory));
        CHECK(timestep_count(f->scheduler) == 7); /* the scheduler handle kept its state */
        /* Still usable, and the same. */
        state = (progress_state){.ordered = 1};
        CHECK(run_sample(f->dit, f->scheduler, &run, &state) == NODUS_OK);
        CHECK(memcmp(run.output, reference.output, sizeof run.output) == 0);
        CHECK(memcmp(run.trajectory, reference.trajectory, sizeof run.trajectory) == 0);
    }

    /* In a run context, cancelled in the middle: the context runs on unchanged. */
    sample_run_init(&run);
    state = (progress_state){.cancel_at = 2, .ordered = 1};
    nodus_tensor noise = float_tensor(run.noise, 4, (int64_t[]){2, 4, 8, 8});
    nodus_tensor output = float_tensor(run.output, 4, (int64_t[]){2, 4, 8, 8});
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = STEPS;
    params.init_noise = &noise;
    params.class_labels = run.labels;
    params.class_label_count = 2;
    params.progress = on_progress;
    params.progress_user_data = &state;
    params.context = f->context;
    EXPECT(NODUS_ERROR_CANCELLED, "cancelled", nodus_sample, nodus_sample(f->dit, f->scheduler, &params, &output));
    CHECK(untouched(run.output, sizeof run.output));
    params.progress = NULL;
    CHECK(nodus_sample(f->dit, f->scheduler, &params, &output) == NODUS_OK);
    CHECK(memcmp(run.output, reference.output, sizeof run.output) == 0);

    /* A callback running a forward on the model being sampled (allowed): the same result. */
    sample_run_init(&run);
    state = (progress_state){.ordered = 1, .model = f->dit, .nested_ok = 1};
    CHECK(run_sample(f->dit, f->scheduler, &run, &state) == NODUS_OK);
    CHECK(state.nested_ok);
    CHECK(memcmp(run.output, reference.output, sizeof run.output) == 0);
}

/* The same with a multistep scheduler, which keeps past model outputs across steps, and no
 * guidance: the model's raw outputs are what it keeps. */
static void multistep(fixtures *f) {
    nodus_scheduler *scheduler = NULL;
    CHECK(nodus_scheduler_from_json("{\"_class_name\": \"DPMSolverMultistepScheduler\"}", &scheduler) == NODUS_OK);
    static sample_run reference, run;
    sample_run_init(&reference);
    nodus_tensor noise = float_tensor(reference.noise, 4, (int64_t[]){2, 4, 8, 8});
    nodus_tensor output = float_tensor(reference.output, 4, (int64_t[]){2, 4, 8, 8});
    progress_state state = {.ordered = 1};
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = STEPS;
    params.guidance_scale = 1.0f;
    params.init_noise = &noise;
    params.class_labels = reference.labels;
    params.class_label_count = 2;
    params.progress = on_progress;
    params.progress_user_data = &state;
    CHECK(nodus_sample(f->dit, scheduler, &params, &output) == NODUS_OK);
    sample_run_init(&run);
    output.data = run.output;
    state = (progress_state){.ordered = 1, .model = f->dit, .nested_ok = 1};
    CHECK(nodus_sample(f->dit, scheduler, &params, &output) == NODUS_OK);
    CHECK(state.nested_ok);
    CHECK(memcmp(run.output, reference.output, sizeof run.output) == 0);
    nodus_scheduler_free(scheduler);
}

static void generating(fixtures *f) {
    static float reference[1 * 16 * 16 * 3], image[1 * 16 * 16 * 3];
    const char *prompts[] = {"a chest x-ray"};
    nodus_generate_params params;
    nodus_generate_params_init(&params);
    params.prompts = prompts;
    params.prompt_count = 1;
    params.steps = 3;
    params.seed = 5;
    progress_state state = {.ordered = 1};
    params.progress = on_progress;
    params.progress_user_data = &state;
    nodus_tensor output = float_tensor(reference, 4, (int64_t[]){1, 16, 16, 3});
    CHECK(nodus_pipeline_generate(f->pipeline, &params, &output) == NODUS_OK);
    int32_t total = state.calls; /* the timesteps: PNDM runs steps + 1 */
    CHECK(total >= 3 && state.total == total && state.ordered);
    int32_t cancel_at[] = {1, total / 2, total};
    for (size_t index = 0; index < 3; index++) {
        memset(image, PATTERN, sizeof image);
        output = float_tensor(image, 4, (int64_t[]){1, 16, 16, 3});
        state = (progress_state){.cancel_at = cancel_at[index], .ordered = 1};
        EXPECT(NODUS_ERROR_CANCELLED, "cancelled", nodus_pipeline_generate,
               nodus_pipeline_generate(f->pipeline, &params, &output));
        CHECK(state.calls == cancel_at[index]);
        CHECK(untouched(image, sizeof image));
        state = (progress_state){.ordered = 1};
        CHECK(nodus_pipeline_generate(f->pipeline, &params, &output) == NODUS_OK);
        CHECK(memcmp(image, reference, sizeof image) == 0);
    }
}

static void windows(fixtures *f) {
    float latent_values[1 * 4 * 8 * 8];
    static float reference[1 * 3 * 16 * 16], image[1 * 3 * 16 * 16];
    nodus_tensor latent = float_tensor(latent_values, 4, (int64_t[]){1, 4, 8, 8});
    CHECK(nodus_randn(3, &latent) == NODUS_OK);
    nodus_window_params params;
    nodus_window_params_init(&params);
    params.ndim = 2;
    params.window_size[0] = params.window_size[1] = 4;
    progress_state state = {.ordered = 1};
    params.progress = on_progress;
    params.progress_user_data = &state;
    nodus_tensor output = float_tensor(reference, 4, (int64_t[]){1, 3, 16, 16});
    CHECK(nodus_model_forward_windowed(f->vae, &latent, &params, &output) == NODUS_OK);
    int32_t windows = state.calls;
    CHECK(windows >= 3 && state.total == windows && state.ordered);
    int32_t cancel_at[] = {1, windows / 2, windows};
    for (size_t index = 0; index < 3; index++) {
        memset(image, PATTERN, sizeof image);
        output = float_tensor(image, 4, (int64_t[]){1, 3, 16, 16});
        state = (progress_state){.cancel_at = cancel_at[index], .ordered = 1};
        EXPECT(NODUS_ERROR_CANCELLED, "cancel", nodus_model_forward_windowed,
               nodus_model_forward_windowed(f->vae, &latent, &params, &output));
        CHECK(untouched(image, sizeof image));
        state = (progress_state){.ordered = 1};
        CHECK(nodus_model_forward_windowed(f->vae, &latent, &params, &output) == NODUS_OK);
        CHECK(memcmp(image, reference, sizeof image) == 0);
    }
}

void misuse_cancel(fixtures *f) {
    sampling(f);
    multistep(f);
    generating(f);
    windows(f);
}
