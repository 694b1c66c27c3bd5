/*
 * soak: the model life cycle over and over on 4 threads, watching for leaks.
 * Each cycle loads a model, loads a LoRA into it, fuses it, runs a forward
 * (compared bit for bit with the first cycle's), unfuses it and frees the
 * model. Opt-in (`make soak`), not part of `make test`.
 *
 *     soak DIT_DIR LORA_FILE [CYCLES]     CYCLES: all threads together, default 10000
 *
 * RSS (from /proc/self/statm) is taken twice with every thread idle at a barrier
 * and no model loaded: "before", once each thread has run a tenth of its cycles
 * (so the allocator's per-thread arenas, the Swift runtime's metadata and
 * libdispatch's caches near their working size), and "after", once every cycle
 * is done. Each time the free pages malloc holds are returned first
 * (malloc_trim), so the figure is live memory; the RSS as the allocator held it
 * is printed beside it, and along the way. The run fails if a cycle fails, a
 * forward differs, the open file descriptors grow, or RSS grows by more than
 * RSS_BOUND_KB: 4 MB. That is 0.4 kB a cycle over 10,000 cycles: any object
 * left behind by every cycle (a model handle, its config string, a LoRA's
 * tensors, a mapping of the weights) exceeds it. What does grow is bounded:
 * libdispatch's worker pool (19 threads at "before", 22 at "after" in one run)
 * with each thread's continuation cache (about 1,000 blocks of 64 bytes, full
 * after some 3,000 fuses), and the arenas' layout: 0.5 to 1.5 MB here, after
 * 10,000 cycles or 100,000 alike.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodus.h"

#define THREADS 4
#define RSS_BOUND_KB 4096
#define OUTPUT_FLOATS (2 * 8 * 8 * 8)

static const char *model_path, *lora_path;
static int total_cycles;
static int warmup_cycles; /* per thread, before "before" */
static pthread_barrier_t warmed_up, measured, finished, measured_after;
static int completed = 0; /* atomic */
static int failed = 0;    /* atomic */
static float reference[OUTPUT_FLOATS];

static long rss_kb(void) {
    FILE *file = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (file == NULL) return -1;
    if (fscanf(file, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(file);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static int open_files(void) {
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) return -1;
    int count = 0;
    while (readdir(directory) != NULL) count++;
    closedir(directory);
    return count - 3; /* ".", ".." and the directory itself */
}

static double now(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec + (double)time.tv_nsec * 1e-9;
}

static void fail(const char *what, int cycle) {
    if (__atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED) < 10) {
        fprintf(stderr, "soak: cycle %d: %s: %s\n", cycle, what, nodus_last_error());
    }
}

/* One cycle; `output` receives the forward. 0 on success. */
static int cycle(float *output, int number) {
    nodus_model_params params;
    nodus_model_params_init(&params);
    params.threads = 1; /* 4 threads on the machine's cores, one each */
    nodus_model *model = NULL;
    if (nodus_model_load(model_path, &params, &model) != NODUS_OK) return fail("load", number), 1;
    int status = 1;
    float sample[2 * 4 * 8 * 8];
    int64_t timestep[2] = {10, 500}, labels[2] = {1, 2};
    nodus_tensor inputs[3] = {
        {.name = "sample", .dtype = NODUS_DTYPE_FLOAT32, .ndim = 4, .shape = {2, 4, 8, 8}, .data = sample,
         .size_bytes = sizeof sample},
        {.name = "timestep", .dtype = NODUS_DTYPE_INT64, .ndim = 1, .shape = {2}, .data = timestep},
        {.name = "class_labels", .dtype = NODUS_DTYPE_INT64, .ndim = 1, .shape = {2}, .data = labels},
    };
    nodus_tensor result = {.data = output, .size_bytes = OUTPUT_FLOATS * sizeof(float)};
    if (nodus_randn(7, &inputs[0]) != NODUS_OK) fail("randn", number);
    else if (nodus_model_load_lora(model, lora_path, "soak") != NODUS_OK) fail("LoRA load", number);
    else if (nodus_model_fuse_lora(model, NULL, 0, 1.0f) != NODUS_OK) fail("fuse", number);
    else if (nodus_model_forward(model, inputs, 3, &result) != NODUS_OK) fail("forward", number);
    else if (nodus_model_unfuse_lora(model) != NODUS_OK) fail("unfuse", number);
    else status = 0;
    nodus_model_free(model);
    return status;
}

static void *worker(void *argument) {
    int index = (int)(intptr_t)argument;
    int share = total_cycles / THREADS + (index < total_cycles % THREADS ? 1 : 0);
    float output[OUTPUT_FLOATS];
    for (int number = 0; number < share; number++) {
        if (number == warmup_cycles) {
            pthread_barrier_wait(&warmed_up); /* "before" is measured between the barriers */
            pthread_barrier_wait(&measured);
        }
        if (cycle(output, number) == 0 && memcmp(output, reference, sizeof output) != 0) fail("forward differs", number);
        __atomic_fetch_add(&completed, 1, __ATOMIC_RELAXED);
    }
    if (share <= warmup_cycles) {
        pthread_barrier_wait(&warmed_up);
        pthread_barrier_wait(&measured);
    }
    pthread_barrier_wait(&finished); /* "after" is measured here, the threads idle as for "before" */
    pthread_barrier_wait(&measured_after);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s DIT_DIR LORA_FILE [CYCLES]\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    lora_path = argv[2];
    total_cycles = argc > 3 ? atoi(argv[3]) : 10000;
    if (total_cycles < THREADS) {
        fprintf(stderr, "soak: CYCLES must be at least %d\n", THREADS);
        return 2;
    }
    warmup_cycles = total_cycles / THREADS / 10 > 10 ? total_cycles / THREADS / 10 : 10;
    long start_kb = rss_kb();
    if (cycle(reference, -1) != 0) return 1; /* the reference forward, on this thread */

    printf("soak: %d cycles (load, LoRA load, fuse, forward, unfuse, free) on %d threads\n", total_cycles, THREADS);
    fflush(stdout);
    pthread_barrier_init(&warmed_up, NULL, THREADS + 1);
    pthread_barrier_init(&measured, NULL, THREADS + 1);
    pthread_barrier_init(&finished, NULL, THREADS + 1);
    pthread_barrier_init(&measured_after, NULL, THREADS + 1);
    pthread_t threads[THREADS];
    double started = now();
    for (int index = 0; index < THREADS; index++) {
        if (pthread_create(&threads[index], NULL, worker, (void *)(intptr_t)index) != 0) {
            fprintf(stderr, "soak: pthread_create failed\n");
            return 2;
        }
    }
    pthread_barrier_wait(&warmed_up);
    long before_raw_kb = rss_kb();
    malloc_trim(0);
    long before_kb = rss_kb();
    int files_before = open_files();
    int warmed = __atomic_load_n(&completed, __ATOMIC_RELAXED);
    printf("soak: RSS at start %.1f MB; before (after %d warm-up cycles, threads idle) %.1f MB, %.1f MB trimmed\n",
           start_kb / 1024.0, warmed, before_raw_kb / 1024.0, before_kb / 1024.0);
    fflush(stdout);
    pthread_barrier_wait(&measured);

    long peak_kb = before_kb;
    int reported = 0;
    for (;;) {
        int done = __atomic_load_n(&completed, __ATOMIC_RELAXED);
        long current = rss_kb();
        if (current > peak_kb) peak_kb = current;
        if (done * 10 / total_cycles > reported || done == total_cycles) {
            reported = done * 10 / total_cycles;
            printf("soak: %5d/%d cycles, RSS %.1f MB, %.0f s\n", done, total_cycles, current / 1024.0, now() - started);
            fflush(stdout);
        }
        if (done == total_cycles) break;
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    }
    pthread_barrier_wait(&finished);
    double seconds = now() - started;
    long after_raw_kb = rss_kb();
    malloc_trim(0);
    long after_kb = rss_kb();
    int files_after = open_files();
    pthread_barrier_wait(&measured_after);
    for (int index = 0; index < THREADS; index++) pthread_join(threads[index], NULL);
    long growth_kb = after_kb - before_kb;
    printf("soak: RSS before %.1f MB, after %.1f MB (as the allocator holds it: %.1f -> %.1f MB); growth %+.2f MB "
           "(bound %.0f MB); peak %.1f MB; open files %d -> %d; %d cycles in %.0f s (%.1f ms a cycle, %d threads)\n",
           before_kb / 1024.0, after_kb / 1024.0, before_raw_kb / 1024.0, after_raw_kb / 1024.0, growth_kb / 1024.0,
           RSS_BOUND_KB / 1024.0, peak_kb / 1024.0, files_before, files_after, total_cycles, seconds,
           seconds * 1000.0 * THREADS / total_cycles, THREADS);
    int ok = failed == 0 && growth_kb <= RSS_BOUND_KB && files_after <= files_before;
    printf("soak: %s (%d failed cycles)\n", ok ? "ok" : "FAILED", failed);
    return ok ? 0 : 1;
}
