/*
 * The misuse matrix's shared pieces: how a case is counted and checked, and
 * the handles every section calls into (loaded once from the test fixtures).
 *
 * A case is one call a careless or hostile host could make. It passes when the
 * call returns its documented status and, on failure, leaves a fresh message
 * (nodus_last_error) naming the function and the parameter at fault. Before a
 * checked call the thread's message is set to a marker, so an old message is
 * never taken for the call's own.
 */
#ifndef MISUSE_H
#define MISUSE_H

#include <stddef.h>
#include <stdint.h>

#include "nodus.h"

/* ---- Counting and checking ------------------------------------------------ */

/* Counts one case; prints it when it failed. Thread-safe. */
void misuse_case(int passed, const char *what, const char *file, int line);
/* Counted cases and failures so far. */
int misuse_case_count(void);
int misuse_failure_count(void);

/* Leaves the marker message as this thread's last error. */
void misuse_mark(void);
/* Whether the last error is still the marker (no call failed since misuse_mark). */
int misuse_marked(void);

/* A status call must return `expected`; a failure must leave a fresh message holding
 * `function` and `parameter` (either may be NULL: not checked). */
void misuse_status(nodus_status status, nodus_status expected, const char *function, const char *parameter,
                   const char *call, const char *file, int line);
/* A non-status call failed as documented (`failed`): a fresh message holding both names. */
void misuse_failed(int failed, const char *function, const char *parameter, const char *call, const char *file,
                   int line);

/* `call` must return `expected` and, when it fails, name `parameter` in its message. */
#define EXPECT(expected, parameter, function, call) \
    (misuse_mark(), misuse_status((call), (expected), #function, (parameter), #call, __FILE__, __LINE__))
/* A call of a function that returns a value, which must fail as `failed` says (an
 * expression of `result`), naming `parameter`. */
#define EXPECT_FAILURE(type, failed, parameter, function, call) \
    do {                                                        \
        misuse_mark();                                          \
        type result = (call);                                   \
        misuse_failed((failed), #function, (parameter), #call, __FILE__, __LINE__); \
        (void)result;                                           \
    } while (0)
/* A plain condition. */
#define CHECK(condition) misuse_case((condition) ? 1 : 0, #condition, __FILE__, __LINE__)

/* ---- The NULL matrix's coverage ------------------------------------------- */

/* Records that the NULL matrix called `function`. */
void misuse_cover(const char *function);
/* Adds a failed case for each NODUS_API function of `header` the matrix never called;
 * returns the number of exports found. */
int misuse_check_coverage(const char *header);
/* Prints the covered functions, one a line. */
void misuse_print_covered(void);

/* ---- Fixtures ------------------------------------------------------------- */

/* Paths under the fixtures folder and the handles the sections share. */
typedef struct fixtures {
    char dit_path[1024];            /* Tests/Fixtures/dit-tiny                      */
    char lora_a_path[1024];         /* dit-tiny-lora-A.safetensors (diffusers form)  */
    char lora_b_path[1024];         /* dit-tiny-lora-B (a PEFT folder)               */
    char scheduler_path[1024];      /* scheduler-ddim                               */
    char vae_path[1024];            /* vae-tiny                                     */
    char tokenizer_path[1024];      /* clip-tokenizer                               */
    char pipeline_path[1024];       /* sd-tiny                                      */
    char pipeline_lora_path[1024];  /* sd-tiny-lora.safetensors                     */
    char scratch[1024];             /* a private temporary folder (model_save)      */
    nodus_model *dit;               /* no adapters                                  */
    nodus_model *dit_lora;          /* adapters "a" and "b" loaded, "a" active       */
    nodus_model *vae;
    nodus_scheduler *scheduler;
    nodus_tokenizer *tokenizer;
    nodus_pipeline *pipeline;
    nodus_context *context;         /* of `dit`                                     */
} fixtures;

/* The DiT's forward inputs: sample [2, 4, 8, 8] (seeded noise), timestep [2], class_labels [2]. */
typedef struct dit_inputs {
    float sample[2 * 4 * 8 * 8];
    int64_t timestep[2];
    int64_t labels[2];
    nodus_tensor tensors[3];
} dit_inputs;

void dit_inputs_init(dit_inputs *inputs);
/* A float32 tensor over `data` of `ndim` dimensions. */
nodus_tensor float_tensor(float *data, int32_t ndim, const int64_t *shape);
/* Elements of a tensor's shape. */
size_t tensor_elements(const nodus_tensor *tensor);

/* ---- Sections --------------------------------------------------------------- */

void misuse_null_arguments(fixtures *f);
void misuse_handles(fixtures *f);
void misuse_params(fixtures *f);
void misuse_tensors(fixtures *f);
void misuse_ranges(fixtures *f);
void misuse_non_finite(fixtures *f);
void misuse_cancel(fixtures *f);
void misuse_threads(fixtures *f);

#endif /* MISUSE_H */
