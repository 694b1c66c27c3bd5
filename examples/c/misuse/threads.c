/*
 * Threads. One model handle and one scheduler handle used by 4 threads at once
 * (forward and sample): the calls take turns, and every result equals the one
 * made by a single thread, bit for bit. One thread switching a model's adapters
 * while 3 others run it: every output is exactly the output with or the output
 * without the adapter, never a mix. 4 run contexts of one model, one per
 * thread, running at the same time (with different adapter strengths): each
 * equals the same work done by one thread, bit for bit. A model handle freed
 * by one thread while another samples with it: the running call finishes with
 * the same result, and the handle is then a freed one.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "misuse.h"

#define THREADS 4
#define ROUNDS 3
#define STEPS 4
#define OUTPUT_FLOATS (2 * 8 * 8 * 8)
#define LATENT_FLOATS (2 * 4 * 8 * 8)

typedef struct work {
    nodus_model *model;
    nodus_scheduler *scheduler;
    nodus_context *context;  /* NULL: the model's own calls */
    const float *expected_forward;
    const float *expected_sample;
    int forward_ok, sample_ok;
} work;

static nodus_status forward(nodus_model *model, nodus_context *context, float *values) {
    dit_inputs in;
    dit_inputs_init(&in);
    nodus_tensor output = {.data = values, .size_bytes = OUTPUT_FLOATS * sizeof(float)};
    if (context != NULL) return nodus_context_forward_all(context, in.tensors, 3, &output, 1);
    return nodus_model_forward(model, in.tensors, 3, &output);
}

static nodus_status sample(nodus_model *model, nodus_scheduler *scheduler, nodus_context *context, float *values) {
    float noise_values[LATENT_FLOATS];
    nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){2, 4, 8, 8});
    if (nodus_randn(21, &noise) != NODUS_OK) return NODUS_ERROR_INTERNAL;
    int64_t labels[2] = {2, 7};
    nodus_tensor output = float_tensor(values, 4, (int64_t[]){2, 4, 8, 8});
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = STEPS;
    params.init_noise = &noise;
    params.class_labels = labels;
    params.class_label_count = 2;
    params.context = context;
    return nodus_sample(model, scheduler, &params, &output);
}

static void *run_work(void *argument) {
    work *w = argument;
    float forward_values[OUTPUT_FLOATS], sample_values[LATENT_FLOATS];
    w->forward_ok = w->sample_ok = 1;
    for (int round = 0; round < ROUNDS; round++) {
        if (forward(w->model, w->context, forward_values) != NODUS_OK ||
            memcmp(forward_values, w->expected_forward, sizeof forward_values) != 0) w->forward_ok = 0;
        if (sample(w->model, w->scheduler, w->context, sample_values) != NODUS_OK ||
            memcmp(sample_values, w->expected_sample, sizeof sample_values) != 0) w->sample_ok = 0;
    }
    return NULL;
}

static void run_threads(work *works, int count) {
    pthread_t threads[THREADS];
    for (int index = 0; index < count; index++) {
        if (pthread_create(&threads[index], NULL, run_work, &works[index]) != 0) CHECK(!"pthread_create");
    }
    for (int index = 0; index < count; index++) pthread_join(threads[index], NULL);
}

static void one_handle(fixtures *f) {
    static float expected_forward[OUTPUT_FLOATS], expected_sample[LATENT_FLOATS];
    CHECK(forward(f->dit, NULL, expected_forward) == NODUS_OK);
    CHECK(sample(f->dit, f->scheduler, NULL, expected_sample) == NODUS_OK);
    work works[THREADS];
    for (int index = 0; index < THREADS; index++) {
        works[index] = (work){.model = f->dit, .scheduler = f->scheduler, .expected_forward = expected_forward,
                              .expected_sample = expected_sample};
    }
    run_threads(works, THREADS);
    for (int index = 0; index < THREADS; index++) {
        misuse_case(works[index].forward_ok, "one model from 4 threads: forward equals one thread's", __FILE__, __LINE__);
        misuse_case(works[index].sample_ok, "one model and scheduler from 4 threads: sample equals one thread's",
                    __FILE__, __LINE__);
    }
}

/* Adapters switched while 3 threads run the model. */
typedef struct switching {
    nodus_model *model;
    const float *with, *without;
    int torn, failed, stop;
} switching;

static void *switch_adapters(void *argument) {
    switching *s = argument;
    const char *a[] = {"a"};
    for (int round = 0; round < 40; round++) {
        if (nodus_model_set_adapters(s->model, a, NULL, round % 2 == 0 ? 0 : 1) != NODUS_OK) s->failed = 1;
    }
    return NULL;
}

static void *run_switched(void *argument) {
    switching *s = argument;
    float values[OUTPUT_FLOATS];
    for (int round = 0; round < 12; round++) {
        if (forward(s->model, NULL, values) != NODUS_OK) {
            __atomic_store_n(&s->failed, 1, __ATOMIC_RELAXED);
        } else if (memcmp(values, s->with, sizeof values) != 0 && memcmp(values, s->without, sizeof values) != 0) {
            __atomic_store_n(&s->torn, 1, __ATOMIC_RELAXED);
        }
    }
    return NULL;
}

static void adapters_switched(fixtures *f) {
    static float with[OUTPUT_FLOATS], without[OUTPUT_FLOATS];
    const char *a[] = {"a"};
    CHECK(nodus_model_set_adapters(f->dit_lora, a, NULL, 0) == NODUS_OK);
    CHECK(forward(f->dit_lora, NULL, without) == NODUS_OK);
    CHECK(nodus_model_set_adapters(f->dit_lora, a, NULL, 1) == NODUS_OK);
    CHECK(forward(f->dit_lora, NULL, with) == NODUS_OK);
    CHECK(memcmp(with, without, sizeof with) != 0);
    switching s = {.model = f->dit_lora, .with = with, .without = without};
    pthread_t threads[THREADS];
    pthread_create(&threads[0], NULL, switch_adapters, &s);
    for (int index = 1; index < THREADS; index++) pthread_create(&threads[index], NULL, run_switched, &s);
    for (int index = 0; index < THREADS; index++) pthread_join(threads[index], NULL);
    CHECK(!s.failed);
    misuse_case(!s.torn, "forward while another thread switches adapters: with or without, never torn", __FILE__,
                __LINE__);
    CHECK(nodus_model_set_adapters(f->dit_lora, a, NULL, 1) == NODUS_OK);
}

static void contexts(fixtures *f) {
    /* Contexts of the LoRA model: two with adapter "a" at 1, two at 0.5. */
    nodus_context *context[THREADS];
    nodus_context_params params;
    nodus_context_params_init(&params);
    params.threads = 1;
    const char *a[] = {"a"};
    float half = 0.5f;
    for (int index = 0; index < THREADS; index++) {
        CHECK(nodus_context_new(f->dit_lora, &params, &context[index]) == NODUS_OK);
        if (index % 2 == 1) CHECK(nodus_context_set_adapters(context[index], a, &half, 1) == NODUS_OK);
    }
    nodus_scheduler *schedulers[THREADS];
    for (int index = 0; index < THREADS; index++) {
        CHECK(nodus_scheduler_load(f->scheduler_path, &schedulers[index]) == NODUS_OK);
    }
    /* One thread's results, for each strength, made in the first two contexts. */
    static float expected_forward[2][OUTPUT_FLOATS], expected_sample[2][LATENT_FLOATS];
    for (int strength = 0; strength < 2; strength++) {
        CHECK(forward(f->dit_lora, context[strength], expected_forward[strength]) == NODUS_OK);
        CHECK(sample(f->dit_lora, schedulers[strength], context[strength], expected_sample[strength]) == NODUS_OK);
    }
    CHECK(memcmp(expected_forward[0], expected_forward[1], sizeof expected_forward[0]) != 0);
    /* A context at the model's strength computes what the model's own calls do. */
    static float model_forward[OUTPUT_FLOATS];
    CHECK(forward(f->dit_lora, NULL, model_forward) == NODUS_OK);
    CHECK(memcmp(model_forward, expected_forward[0], sizeof model_forward) == 0);

    work works[THREADS];
    for (int index = 0; index < THREADS; index++) {
        works[index] = (work){.model = f->dit_lora, .scheduler = schedulers[index], .context = context[index],
                              .expected_forward = expected_forward[index % 2],
                              .expected_sample = expected_sample[index % 2]};
    }
    run_threads(works, THREADS);
    for (int index = 0; index < THREADS; index++) {
        misuse_case(works[index].forward_ok, "4 contexts from 4 threads: forward equals one thread's", __FILE__,
                    __LINE__);
        misuse_case(works[index].sample_ok, "4 contexts from 4 threads: sample equals one thread's", __FILE__,
                    __LINE__);
        CHECK(nodus_context_threads(context[index]) == 1);
    }
    for (int index = 0; index < THREADS; index++) {
        nodus_context_free(context[index]);
        nodus_scheduler_free(schedulers[index]);
    }
}

/* The handle of a model freed by the main thread while a sample runs on it. */
typedef struct freeing {
    nodus_model *model;
    nodus_scheduler *scheduler;
    float values[LATENT_FLOATS];
    nodus_status status;
    int started, freed; /* atomic */
} freeing;

static int32_t wait_for_free(int32_t done, int32_t total, void *user_data) {
    freeing *state = user_data;
    (void)total;
    if (done == 1) {
        __atomic_store_n(&state->started, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&state->freed, __ATOMIC_ACQUIRE)) {
            nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
        }
    }
    return 0;
}

static void *sample_while_freed(void *argument) {
    freeing *state = argument;
    float noise_values[LATENT_FLOATS];
    nodus_tensor noise = float_tensor(noise_values, 4, (int64_t[]){2, 4, 8, 8});
    if (nodus_randn(21, &noise) != NODUS_OK) return NULL;
    int64_t labels[2] = {2, 7};
    nodus_tensor output = float_tensor(state->values, 4, (int64_t[]){2, 4, 8, 8});
    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = STEPS;
    params.init_noise = &noise;
    params.class_labels = labels;
    params.class_label_count = 2;
    params.progress = wait_for_free;
    params.progress_user_data = state;
    state->status = nodus_sample(state->model, state->scheduler, &params, &output);
    return NULL;
}

static void freed_while_running(fixtures *f) {
    static freeing state;
    static float expected[LATENT_FLOATS];
    memset(&state, 0, sizeof state);
    CHECK(nodus_model_load(f->dit_path, NULL, &state.model) == NODUS_OK);
    CHECK(nodus_scheduler_load(f->scheduler_path, &state.scheduler) == NODUS_OK);
    CHECK(sample(state.model, state.scheduler, NULL, expected) == NODUS_OK);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, sample_while_freed, &state) == 0);
    while (!__atomic_load_n(&state.started, __ATOMIC_ACQUIRE)) nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    nodus_model_free(state.model); /* while the sample runs */
    __atomic_store_n(&state.freed, 1, __ATOMIC_RELEASE);
    pthread_join(thread, NULL);
    misuse_case(state.status == NODUS_OK && memcmp(state.values, expected, sizeof expected) == 0,
                "a model freed during a sample on another thread: the sample finishes, unchanged", __FILE__, __LINE__);
    EXPECT_FAILURE(nodus_model_kind, result == -1, "freed handle", nodus_model_get_kind,
                   nodus_model_get_kind(state.model));
    nodus_scheduler_free(state.scheduler);
}

void misuse_threads(fixtures *f) {
    one_handle(f);
    adapters_switched(f);
    contexts(f);
    freed_while_running(f);
}
