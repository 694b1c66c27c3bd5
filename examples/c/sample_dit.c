/*
 * sample_dit: samples a DiT with classifier-free guidance and prints statistics
 * of the final latent.
 *
 *     sample_dit DIT_DIR SCHEDULER_DIR [CLASS_LABEL [SEED]]
 *
 * The initial noise is torch.randn(shape, generator=torch.Generator().manual_seed(SEED)),
 * scaled by the scheduler's init_noise_sigma, as diffusers pipelines do.
 * Exit codes: 0 success, 1 a call failed, 2 usage error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nodus.h"

enum { STEPS = 10 };

/* Reports a failed call and returns 1 (for `return fail(...)`). */
static int fail(const char *what, nodus_status status) {
    fprintf(stderr, "%s failed (%s): %s\n", what, nodus_status_name(status), nodus_last_error());
    return 1;
}

/* An integer field of a flat config.json ("key":value); -1 when absent.
 * (A real host would use its JSON parser.) */
static long config_int(const char *json, const char *key) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *found = strstr(json, pattern);
    return found != NULL ? (long)strtod(found + strlen(pattern), NULL) : -1;
}

/* Prints "step i/n" on one line; returning 0 continues. */
static int32_t on_progress(int32_t done, int32_t total, void *user_data) {
    (void)user_data;
    fprintf(stderr, "\rstep %d/%d", (int)done, (int)total);
    if (done == total) fputc('\n', stderr);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s DIT_DIR SCHEDULER_DIR [CLASS_LABEL [SEED]]\n", argv[0]);
        return 2;
    }
    int64_t label = argc > 3 ? strtoll(argv[3], NULL, 10) : 0;
    uint64_t seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;

    int result = 1;
    nodus_model *model = NULL;
    nodus_scheduler *scheduler = NULL;
    float *noise = NULL, *latent = NULL;
    nodus_status status;

    if ((status = nodus_model_load(argv[1], NULL, &model)) != NODUS_OK) {
        result = fail("nodus_model_load", status);
        goto done;
    }
    if (nodus_model_get_kind(model) != NODUS_MODEL_DIT) {
        fprintf(stderr, "%s is a '%s' model, not a DiT\n", argv[1], nodus_model_kind_name(nodus_model_get_kind(model)));
        goto done;
    }
    if ((status = nodus_scheduler_load(argv[2], &scheduler)) != NODUS_OK) {
        result = fail("nodus_scheduler_load", status);
        goto done;
    }

    /* The latent shape comes from the model's config: [1, in_channels, sample_size, sample_size]. */
    const char *config = nodus_model_config_json(model);
    long channels = config_int(config, "in_channels"), size = config_int(config, "sample_size");
    if (channels <= 0 || size <= 0) {
        fprintf(stderr, "config.json lacks in_channels or sample_size\n");
        goto done;
    }
    size_t count = (size_t)(channels * size * size);
    noise = malloc(count * sizeof *noise);
    latent = malloc(count * sizeof *latent);
    if (noise == NULL || latent == NULL) {
        fprintf(stderr, "out of memory\n");
        goto done;
    }

    /* Initial noise: randn; nodus_sample multiplies it by init_noise_sigma after set_timesteps, as diffusers does. */
    nodus_tensor init = {.name = "init_noise", .dtype = NODUS_DTYPE_FLOAT32, .ndim = 4,
                         .shape = {1, channels, size, size}, .data = noise, .size_bytes = count * sizeof *noise};
    if ((status = nodus_randn(seed, &init)) != NODUS_OK) {
        result = fail("nodus_randn", status);
        goto done;
    }
    if ((status = nodus_scheduler_set_timesteps(scheduler, STEPS)) != NODUS_OK) {
        result = fail("nodus_scheduler_set_timesteps", status);
        goto done;
    }

    nodus_sample_params params;
    nodus_sample_params_init(&params);
    params.steps = STEPS;
    params.guidance_scale = 4.0f;
    params.init_noise = &init;
    params.class_labels = &label; /* one label: the null class is added for guidance */
    params.class_label_count = 1;
    params.progress = on_progress;

    nodus_tensor output = {.data = latent, .size_bytes = count * sizeof *latent};
    if ((status = nodus_sample(model, scheduler, &params, &output)) != NODUS_OK) {
        result = fail("nodus_sample", status);
        goto done;
    }

    double sum = 0, squares = 0, low = INFINITY, high = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        sum += latent[i];
        squares += (double)latent[i] * latent[i];
        low = fmin(low, latent[i]);
        high = fmax(high, latent[i]);
    }
    double mean = sum / (double)count;
    printf("final latent [%lld, %lld, %lld, %lld]: mean %.6f std %.6f min %.6f max %.6f\n",
           (long long)output.shape[0], (long long)output.shape[1], (long long)output.shape[2],
           (long long)output.shape[3], mean, sqrt(fmax(squares / (double)count - mean * mean, 0.0)), low, high);
    result = 0;

done:
    free(noise);
    free(latent);
    nodus_scheduler_free(scheduler); /* NULL is a no-op */
    nodus_model_free(model);
    return result;
}
