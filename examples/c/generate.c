/* Text to image from C: loads a diffusers Stable Diffusion pipeline folder and
 * generates one image for a prompt, printing a progress line per step and the
 * image's mean value (a host would write the float32 [1, H, W, 3] pixels out).
 *
 *   generate PIPELINE_FOLDER "a chest x-ray" [STEPS] [SEED]
 */
#include <nodus.h>

#include <stdio.h>
#include <stdlib.h>

static int32_t report(int32_t done, int32_t total, void *user_data) {
    (void)user_data;
    fprintf(stderr, "\rstep %d/%d", done, total);
    if (done == total) fputc('\n', stderr);
    return 0; /* 0 = go on */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PIPELINE_FOLDER PROMPT [STEPS] [SEED]\n", argv[0]);
        return 2;
    }
    nodus_pipeline *pipeline = NULL;
    if (nodus_pipeline_load(argv[1], NULL, &pipeline) != NODUS_OK) {
        fprintf(stderr, "load: %s\n", nodus_last_error());
        return 1;
    }
    const char *prompts[] = {argv[2]};
    nodus_generate_params params;
    nodus_generate_params_init(&params);
    params.prompts = prompts;
    params.prompt_count = 1;
    params.steps = argc > 3 ? atoi(argv[3]) : 25;
    params.seed = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
    params.progress = report;

    /* First ask for the shape (data NULL), then run into a buffer of that size. */
    nodus_tensor image = {0};
    int status = nodus_pipeline_generate(pipeline, &params, &image);
    float *pixels = status == NODUS_OK ? malloc(image.size_bytes) : NULL;
    if (pixels) {
        image.data = pixels;
        status = nodus_pipeline_generate(pipeline, &params, &image);
    }
    if (status != NODUS_OK || !pixels) {
        fprintf(stderr, "generate: %s\n", pixels ? nodus_last_error() : "out of memory");
        free(pixels);
        nodus_pipeline_free(pipeline);
        return 1;
    }
    size_t count = image.size_bytes / sizeof(float);
    double sum = 0;
    for (size_t i = 0; i < count; i++) sum += pixels[i];
    printf("image %lld x %lld x %lld, mean %.4f\n", (long long)image.shape[1], (long long)image.shape[2],
           (long long)image.shape[3], sum / (double)count);
    free(pixels);
    nodus_pipeline_free(pipeline);
    return 0;
}
