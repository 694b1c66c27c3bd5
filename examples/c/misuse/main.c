/*
 * misuse: the C ABI's misuse matrix, run from C (issue 18). Every case is a call
 * a careless or hostile host could make: NULL for every pointer argument of
 * every export; freed, double-freed, forged and wrong-kind handles; every params
 * struct's struct_size at 0, too small, older, newer and garbage; malformed
 * tensors; NaN and infinity wherever a number goes in; progress callbacks that
 * cancel at the first, middle and last step; one handle from 4 threads; 4 run
 * contexts of one model from 4 threads. Each must return its documented status
 * with a message naming the function and the parameter, never crash, and leave
 * the handles as they were (later results are compared bit for bit).
 *
 *     misuse FIXTURES_DIR HEADER    run every case; the last line is
 *                                   "misuse: N cases, F failed"
 *     misuse --covered FIXTURES_DIR HEADER
 *                                   the same, then the exports the NULL matrix called
 *
 * Every NODUS_API function of HEADER must be in the NULL matrix: a function added
 * to nodus.h and not to null_arguments.c is a failed case. MISUSE_SECTIONS=a,b
 * runs only those sections after the NULL matrix (handles, params, tensors,
 * ranges, non-finite, cancel, threads). Exit codes: 0 every case passed, 1 some
 * case failed (each is printed), 2 usage or setup error.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "misuse.h"

/* ---- Counting ------------------------------------------------------------------ */

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static int cases = 0;
static int failures = 0;

void misuse_case(int passed, const char *what, const char *file, int line) {
    pthread_mutex_lock(&counter_lock);
    cases++;
    if (!passed) {
        failures++;
        printf("FAIL %s:%d: %s (last error: \"%s\")\n", file, line, what, nodus_last_error());
        fflush(stdout);
    }
    pthread_mutex_unlock(&counter_lock);
}

int misuse_case_count(void) { return cases; }
int misuse_failure_count(void) { return failures; }

static const char marker[] = "misuse-marker";

void misuse_mark(void) {
    nodus_dtype ignored;
    /* Fails by design: its message quotes the marker. */
    if (nodus_dtype_from_name(marker, &ignored) == NODUS_OK) abort();
}

int misuse_marked(void) { return strstr(nodus_last_error(), marker) != NULL; }

static int names_both(const char *message, const char *function, const char *parameter) {
    return (function == NULL || strstr(message, function) != NULL) &&
           (parameter == NULL || strstr(message, parameter) != NULL);
}

void misuse_status(nodus_status status, nodus_status expected, const char *function, const char *parameter,
                   const char *call, const char *file, int line) {
    char what[1024];
    const char *message = nodus_last_error();
    if (status != expected) {
        snprintf(what, sizeof what, "%s returned %s, expected %s", call, nodus_status_name(status),
                 nodus_status_name(expected));
        misuse_case(0, what, file, line);
    } else if (status != NODUS_OK && (misuse_marked() || !names_both(message, function, parameter))) {
        snprintf(what, sizeof what, "%s: the message must be new and name %s and `%s`", call, function,
                 parameter ? parameter : "");
        misuse_case(0, what, file, line);
    } else {
        misuse_case(1, call, file, line);
    }
}

void misuse_failed(int failed, const char *function, const char *parameter, const char *call, const char *file,
                   int line) {
    char what[1024];
    if (!failed) {
        snprintf(what, sizeof what, "%s did not return its failure value", call);
        misuse_case(0, what, file, line);
    } else if (misuse_marked() || !names_both(nodus_last_error(), function, parameter)) {
        snprintf(what, sizeof what, "%s: the message must be new and name %s and `%s`", call, function,
                 parameter ? parameter : "");
        misuse_case(0, what, file, line);
    } else {
        misuse_case(1, call, file, line);
    }
}

/* ---- Coverage of the NULL matrix ---------------------------------------------- */

#define MAX_FUNCTIONS 512
static const char *covered[MAX_FUNCTIONS];
static int covered_count = 0;

static int is_covered(const char *function, size_t length) {
    for (int index = 0; index < covered_count; index++) {
        if (strlen(covered[index]) == length && strncmp(covered[index], function, length) == 0) return 1;
    }
    return 0;
}

void misuse_cover(const char *function) {
    if (!is_covered(function, strlen(function)) && covered_count < MAX_FUNCTIONS) covered[covered_count++] = function;
}

void misuse_print_covered(void) {
    for (int index = 0; index < covered_count; index++) printf("%s\n", covered[index]);
}

/* The name before the first '(' after each "NODUS_API" (the export macro's own
 * definition, whose '(' follows __attribute__, is skipped by the nodus_ prefix). */
int misuse_check_coverage(const char *header) {
    FILE *file = fopen(header, "rb");
    if (file == NULL) {
        misuse_case(0, "the header opens", __FILE__, __LINE__);
        return 0;
    }
    static char text[1 << 20];
    size_t length = fread(text, 1, sizeof text - 1, file);
    fclose(file);
    text[length] = '\0';
    int exports = 0;
    for (const char *at = strstr(text, "NODUS_API"); at != NULL; at = strstr(at + 1, "NODUS_API")) {
        const char *parenthesis = strchr(at, '(');
        if (parenthesis == NULL) break;
        const char *end = parenthesis;
        while (end > at && end[-1] == ' ') end--;
        const char *start = end;
        while (start > at && (start[-1] == '_' || (start[-1] >= 'a' && start[-1] <= 'z') ||
                              (start[-1] >= '0' && start[-1] <= '9'))) start--;
        size_t name_length = (size_t)(end - start);
        if (name_length < 7 || strncmp(start, "nodus_", 6) != 0) continue;
        exports++;
        if (!is_covered(start, name_length)) {
            char what[256];
            snprintf(what, sizeof what, "%.*s is in the NULL matrix (null_arguments.c)", (int)name_length, start);
            misuse_case(0, what, __FILE__, __LINE__);
        }
    }
    return exports;
}

/* ---- Fixtures ------------------------------------------------------------------- */

void dit_inputs_init(dit_inputs *inputs) {
    memset(inputs, 0, sizeof *inputs);
    nodus_tensor noise = {.dtype = NODUS_DTYPE_FLOAT32, .ndim = 4, .shape = {2, 4, 8, 8}, .data = inputs->sample,
                          .size_bytes = sizeof inputs->sample};
    if (nodus_randn(7, &noise) != NODUS_OK) abort();
    inputs->timestep[0] = 10;
    inputs->timestep[1] = 500;
    inputs->labels[0] = 1;
    inputs->labels[1] = 2;
    inputs->tensors[0] = noise;
    inputs->tensors[0].name = "sample";
    inputs->tensors[1] = (nodus_tensor){.name = "timestep", .dtype = NODUS_DTYPE_INT64, .ndim = 1, .shape = {2},
                                        .data = inputs->timestep, .size_bytes = sizeof inputs->timestep};
    inputs->tensors[2] = (nodus_tensor){.name = "class_labels", .dtype = NODUS_DTYPE_INT64, .ndim = 1, .shape = {2},
                                        .data = inputs->labels, .size_bytes = sizeof inputs->labels};
}

nodus_tensor float_tensor(float *data, int32_t ndim, const int64_t *shape) {
    nodus_tensor tensor = {.dtype = NODUS_DTYPE_FLOAT32, .ndim = ndim, .data = data};
    size_t elements = 1;
    for (int32_t axis = 0; axis < ndim; axis++) {
        tensor.shape[axis] = shape[axis];
        elements *= (size_t)shape[axis];
    }
    tensor.size_bytes = elements * sizeof(float);
    return tensor;
}

size_t tensor_elements(const nodus_tensor *tensor) {
    size_t elements = 1;
    for (int32_t axis = 0; axis < tensor->ndim; axis++) elements *= (size_t)tensor->shape[axis];
    return elements;
}

static int load_fixtures(fixtures *f, const char *root) {
    snprintf(f->dit_path, sizeof f->dit_path, "%s/dit-tiny", root);
    snprintf(f->lora_a_path, sizeof f->lora_a_path, "%s/dit-tiny-lora-A.safetensors", root);
    snprintf(f->lora_b_path, sizeof f->lora_b_path, "%s/dit-tiny-lora-B", root);
    snprintf(f->scheduler_path, sizeof f->scheduler_path, "%s/scheduler-ddim", root);
    snprintf(f->vae_path, sizeof f->vae_path, "%s/vae-tiny", root);
    snprintf(f->tokenizer_path, sizeof f->tokenizer_path, "%s/clip-tokenizer", root);
    snprintf(f->pipeline_path, sizeof f->pipeline_path, "%s/sd-tiny", root);
    snprintf(f->pipeline_lora_path, sizeof f->pipeline_lora_path, "%s/sd-tiny-lora.safetensors", root);
    snprintf(f->scratch, sizeof f->scratch, "/tmp/nodus-misuse-XXXXXX");
    if (mkdtemp(f->scratch) == NULL) {
        perror("mkdtemp");
        return 0;
    }
    nodus_context_params context_params;
    nodus_context_params_init(&context_params);
    context_params.threads = 1;
    const char *failed = NULL;
    if (nodus_model_load(f->dit_path, NULL, &f->dit) != NODUS_OK) failed = "dit-tiny";
    else if (nodus_model_load(f->dit_path, NULL, &f->dit_lora) != NODUS_OK) failed = "dit-tiny (LoRA)";
    else if (nodus_model_load_lora(f->dit_lora, f->lora_b_path, "b") != NODUS_OK) failed = "LoRA b";
    else if (nodus_model_load_lora(f->dit_lora, f->lora_a_path, "a") != NODUS_OK) failed = "LoRA a";
    else if (nodus_model_load(f->vae_path, NULL, &f->vae) != NODUS_OK) failed = "vae-tiny";
    else if (nodus_scheduler_load(f->scheduler_path, &f->scheduler) != NODUS_OK) failed = "scheduler-ddim";
    else if (nodus_tokenizer_load(f->tokenizer_path, &f->tokenizer) != NODUS_OK) failed = "clip-tokenizer";
    else if (nodus_pipeline_load(f->pipeline_path, NULL, &f->pipeline) != NODUS_OK) failed = "sd-tiny";
    else if (nodus_context_new(f->dit, &context_params, &f->context) != NODUS_OK) failed = "a context";
    if (failed != NULL) {
        fprintf(stderr, "misuse: cannot load %s: %s\n", failed, nodus_last_error());
        return 0;
    }
    return 1;
}

static void free_fixtures(fixtures *f) {
    nodus_context_free(f->context);
    nodus_pipeline_free(f->pipeline);
    nodus_tokenizer_free(f->tokenizer);
    nodus_scheduler_free(f->scheduler);
    nodus_model_free(f->vae);
    nodus_model_free(f->dit_lora);
    nodus_model_free(f->dit);
    char command[1100];
    snprintf(command, sizeof command, "rm -rf '%s'", f->scratch);
    if (system(command) != 0) fprintf(stderr, "misuse: could not remove %s\n", f->scratch);
}

/* Whether `name` is an item of the comma-separated `list`. */
static int listed(const char *list, const char *name) {
    size_t length = strlen(name);
    for (const char *at = strstr(list, name); at != NULL; at = strstr(at + 1, name)) {
        if ((at == list || at[-1] == ',') && (at[length] == ',' || at[length] == '\0')) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int print_covered = argc == 4 && strcmp(argv[1], "--covered") == 0;
    if (argc != 3 + print_covered) {
        fprintf(stderr, "usage: %s [--covered] FIXTURES_DIR HEADER\n", argv[0]);
        return 2;
    }
    const char *root = argv[1 + print_covered], *header = argv[2 + print_covered];
    static fixtures f;
    if (!load_fixtures(&f, root)) return 2;

    misuse_null_arguments(&f);
    int null_cases = misuse_case_count();
    int exports = misuse_check_coverage(header);
    printf("misuse: NULL matrix: %d cases over the %d exports of %s (%d missing)\n", null_cases, exports, header,
           misuse_case_count() - null_cases);
    struct { const char *name; void (*run)(fixtures *); } sections[] = {
        {"handles", misuse_handles},       {"params", misuse_params}, {"tensors", misuse_tensors},
        {"ranges", misuse_ranges},         {"non-finite", misuse_non_finite}, {"cancel", misuse_cancel},
        {"threads", misuse_threads},
    };
    const char *only = getenv("MISUSE_SECTIONS");
    for (size_t index = 0; index < sizeof sections / sizeof sections[0]; index++) {
        if (only != NULL && !listed(only, sections[index].name)) continue;
        int before = misuse_case_count();
        sections[index].run(&f);
        printf("misuse: %s: %d cases\n", sections[index].name, misuse_case_count() - before);
        fflush(stdout);
    }
    free_fixtures(&f);
    if (print_covered) misuse_print_covered();
    printf("misuse: %d cases, %d failed\n", misuse_case_count(), misuse_failure_count());
    return misuse_failure_count() == 0 ? 0 : 1;
}
