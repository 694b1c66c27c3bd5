/*
 * nodus.h: the C interface of Nodus, an embeddable diffusion inference runtime.
 *
 * Conventions (they hold for every function below):
 *   - Objects are opaque handles created by a constructor (`*_load`, `*_create`)
 *     and released by a destructor (`*_free`). Passing NULL to a destructor is a
 *     no-op.
 *   - A handle is a value from the library's table of live handles, not an
 *     address. A freed handle (used after its `*_free`, or freed twice), a value
 *     the library never gave out, and a handle of another kind are
 *     NODUS_ERROR_INVALID_ARGUMENT naming the parameter ("a freed handle");
 *     a destructor given one frees nothing and leaves the message. Nothing is
 *     read through such a value. A handle's value comes back only after its
 *     table slot has been reused 2^32 times. A handle freed while another
 *     thread's call is using it lives until that call returns.
 *   - Every fallible call returns a nodus_status. NODUS_OK (0) means success;
 *     any other value means the call failed, changed nothing that the caller
 *     can observe (unless the function says otherwise) and left a message for
 *     nodus_last_error() that starts with the function's name and names the
 *     parameter at fault.
 *   - No call aborts the process on bad input: NULL pointers, wrong shapes,
 *     malformed files all come back as a status code.
 *   - Numbers: every float or double argument and every value of a
 *     floating-point input tensor must be finite. NaN or an infinity is
 *     NODUS_ERROR_INVALID_ARGUMENT naming the parameter (and the element of a
 *     tensor), also where the value would be ignored (a strength without an
 *     image). A count beyond what a call takes, SIZE_MAX included, is out of
 *     range (NODUS_ERROR_INVALID_ARGUMENT), never "none" or "all".
 *   - Memory: a pointer the library returns stays owned by the library (and
 *     says how long it is valid); a buffer the caller passes stays owned by the
 *     caller. Nothing needs to be freed with free().
 *   - Params structs start with `struct_size`, must be filled by their
 *     `*_params_init()` function first, and only ever grow at the end. A
 *     struct_size below 4, beyond the struct this library knows (a newer
 *     header) or ending inside a field is NODUS_ERROR_INVALID_ARGUMENT; an
 *     older header's size (the struct cut at a field) is read with the later
 *     fields at their defaults.
 *   - Functions are safe to call from any thread. Calls on one handle take
 *     turns: each holds the handles it is given for the whole call, so two
 *     threads sharing a model (or scheduler, pipeline) get correct results, one
 *     after the other (load one model per thread to run in parallel). A progress
 *     callback may call into the handle running it. A model's `threads` holds
 *     for its own calls only.
 */
#ifndef NODUS_H
#define NODUS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#    define NODUS_API __attribute__((visibility("default")))
#    define NODUS_NODISCARD __attribute__((warn_unused_result))
#else
#    define NODUS_API
#    define NODUS_NODISCARD
#endif

/* ---- Version ------------------------------------------------------------ */

/* X.Y.Z is encoded as X*1000000 + Y*1000 + Z. */
#define NODUS_VERSION_STRING "0.1.0"
#define NODUS_VERSION_NUMBER 1000

/* The version of the library actually loaded (compare with the macro). */
NODUS_API int32_t nodus_version_number(void);
/* "X.Y.Z"; a static string. */
NODUS_API const char *nodus_version(void);

/* ---- Status and errors -------------------------------------------------- */

typedef int32_t nodus_status;

enum {
    NODUS_OK = 0,
    NODUS_ERROR_INVALID_ARGUMENT = 1, /* NULL pointer, out-of-range value, wrong name  */
    NODUS_ERROR_IO = 2,               /* a file could not be opened, read or written  */
    NODUS_ERROR_FORMAT = 3,           /* a file or JSON document is malformed          */
    NODUS_ERROR_UNSUPPORTED = 4,      /* valid, but a feature Nodus does not implement */
    NODUS_ERROR_SHAPE = 5,            /* a tensor's shape or dtype does not fit        */
    NODUS_ERROR_CANCELLED = 6,        /* a progress callback asked to stop             */
    NODUS_ERROR_OUT_OF_MEMORY = 7,
    NODUS_ERROR_INTERNAL = 8          /* a bug in Nodus: please report it              */
};

/* "ok", "invalid_argument", ...; a static string ("unknown" for other values). */
NODUS_API const char *nodus_status_name(nodus_status status);

/* The message of the last failed call on this thread, or "" if none failed yet.
 * Valid until the next failing call on the same thread. Never NULL. */
NODUS_API const char *nodus_last_error(void);

/* ---- Tensors ------------------------------------------------------------ */

typedef int32_t nodus_dtype;

enum {
    NODUS_DTYPE_FLOAT32 = 0,
    NODUS_DTYPE_FLOAT16 = 1,
    NODUS_DTYPE_BFLOAT16 = 2,
    NODUS_DTYPE_INT64 = 3,
    NODUS_DTYPE_INT32 = 4,
    NODUS_DTYPE_UINT8 = 5,
    NODUS_DTYPE_BOOL = 6,
    NODUS_DTYPE_FLOAT64 = 7
};

/* "float32", "float16", ...; a static string, or NULL for an unknown value. */
NODUS_API const char *nodus_dtype_name(nodus_dtype dtype);
/* Parses a name made by nodus_dtype_name(). NODUS_ERROR_INVALID_ARGUMENT if unknown. */
NODUS_API NODUS_NODISCARD nodus_status nodus_dtype_from_name(const char *name, nodus_dtype *out_dtype);
/* Bytes per element, or 0 for an unknown value. */
NODUS_API size_t nodus_dtype_size(nodus_dtype dtype);

/* ---- CPU level ---------------------------------------------------------- */

/* The instruction sets the kernels use, lowest first. Each hot kernel has a
 * form per level; the level is chosen once per process, at the first call that
 * needs it, from what the CPU supports. The environment variable NODUS_CPU
 * (one of the names below) lowers it for testing or comparison; asking for a
 * level the CPU lacks, or an unknown name, keeps the highest supported level
 * and says why once on stderr (and in nodus_cpu_level_note()). */
typedef int32_t nodus_isa_level;

enum {
    NODUS_ISA_BASELINE = 0,   /* any x86-64                                     */
    NODUS_ISA_AVX2 = 1,       /* AVX2 + FMA (Haswell and later, AMD Zen 1-3)    */
    NODUS_ISA_AVX512 = 2,     /* AVX-512F (Skylake-SP and later, AMD Zen 4/5)   */
    NODUS_ISA_AVX512_BF16 = 3 /* AVX-512 with bf16 dot products (Zen 4/5, SPR)  */
};

/* The level in use by this process (fixed once chosen). */
NODUS_API nodus_isa_level nodus_cpu_level(void);
/* The highest level this CPU supports (what NODUS_CPU may lower from). */
NODUS_API nodus_isa_level nodus_cpu_level_supported(void);
/* Why NODUS_CPU was not honoured as written, or "" when it was (or is unset).
 * A static string. */
NODUS_API const char *nodus_cpu_level_note(void);
/* "baseline", "avx2", "avx512", "avx512_bf16"; a static string, or NULL for an unknown value. */
NODUS_API const char *nodus_isa_level_name(nodus_isa_level level);
/* Parses a name made by nodus_isa_level_name(). NODUS_ERROR_INVALID_ARGUMENT if unknown. */
NODUS_API NODUS_NODISCARD nodus_status nodus_isa_level_from_name(const char *name, nodus_isa_level *out_level);

#define NODUS_MAX_DIMS 8

/* A dense, C-contiguous tensor crossing the ABI. The caller owns `data`.
 * As an input: `name` (where the call takes named inputs), `dtype`, `ndim`,
 * `shape` and `data` are read; `size_bytes` is ignored.
 * As an output: the library writes `dtype`, `ndim` and `shape`; if `data` is
 * NULL it only reports them (and the bytes needed in `size_bytes`) and returns
 * NODUS_OK, otherwise it writes the values into `data`, which must hold
 * `size_bytes` >= the bytes needed (else NODUS_ERROR_SHAPE, nothing written).
 * An input with ndim outside 0...NODUS_MAX_DIMS, a negative dimension, a byte
 * size that overflows, or a shape or dtype the call cannot take is
 * NODUS_ERROR_SHAPE; an unknown dtype value, NULL data with elements to read,
 * or a NaN or infinity is NODUS_ERROR_INVALID_ARGUMENT. A failed call leaves
 * the data of every output tensor untouched. */
typedef struct nodus_tensor {
    const char *name;
    nodus_dtype dtype;
    int32_t ndim;
    int64_t shape[NODUS_MAX_DIMS];
    void *data;
    size_t size_bytes;
} nodus_tensor;

/* ---- Progress ----------------------------------------------------------- */

/* Called after each unit of a long call (a sampling step). Return non-zero to
 * cancel: the call then stops and returns NODUS_ERROR_CANCELLED. */
typedef int32_t (*nodus_progress_callback)(int32_t done, int32_t total, void *user_data);

/* ---- Models ------------------------------------------------------------- */

typedef struct nodus_model nodus_model;

typedef int32_t nodus_model_kind;

enum {
    NODUS_MODEL_DIT = 0,       /* diffusers DiTTransformer2DModel */
    NODUS_MODEL_UNET = 1,      /* diffusers UNet2DConditionModel  */
    NODUS_MODEL_VAE = 2,       /* diffusers AutoencoderKL         */
    NODUS_MODEL_CLIP_TEXT = 3, /* transformers CLIPTextModel      */
    NODUS_MODEL_ONNX = 4,      /* an ONNX graph                   */
    NODUS_MODEL_DIT3D = 5      /* a DiT over 3-D latent patches (MedSyn2Transformer3DModel) */
};

/* "dit", "unet", "vae", "clip_text", "onnx", "dit3d"; static, or NULL for an unknown value. */
NODUS_API const char *nodus_model_kind_name(nodus_model_kind kind);
NODUS_API NODUS_NODISCARD nodus_status nodus_model_kind_from_name(const char *name, nodus_model_kind *out_kind);

typedef struct nodus_model_params {
    uint32_t struct_size;  /* sizeof(nodus_model_params), set by nodus_model_params_init */
    int32_t threads;       /* worker threads for this model; 0 = all cores (default)     */
    nodus_dtype dtype;     /* compute precision of Linears and convolutions:             */
                           /* NODUS_DTYPE_FLOAT32 (default), or NODUS_DTYPE_BFLOAT16:    */
                           /* weights rounded to bf16 once (half the memory), bf16       */
                           /* products summed in float32 (torch's bf16 autocast; below   */
                           /* 3e-2 of float32), the rest float32; any other dtype is     */
                           /* NODUS_ERROR_UNSUPPORTED at load                            */
    /* 0 (default): weight files (and LoRA files loaded into the model) are memory-mapped: instant
     * loads, weights in the page cache. But a mapped file truncated or dropped while the model
     * runs (another process rewrites it; a network or shared file system) raises SIGBUS in the
     * host, as SQLite documents for its mmap mode. 1: each file is read into private memory at
     * load; slower loads and the weights count in the RSS, but nothing done to the files
     * afterwards reaches the model. Use 1 for weights on network or shared file systems. */
    int32_t read_files;
} nodus_model_params;

/* Fills `params` with the defaults. */
NODUS_API void nodus_model_params_init(nodus_model_params *params);

/* Loads a diffusers model folder (config.json + safetensors weights, possibly
 * sharded), or an ONNX file (a path ending in ".onnx", from torch.onnx.export:
 * either exporter, external data beside it; its kind is "onnx", its
 * inputs and outputs in nodus_model_input_info() / nodus_model_output_info()).
 * Weights are memory-mapped. `params` may be NULL for the defaults.
 * An ONNX op Nodus does not run is NODUS_ERROR_UNSUPPORTED, naming the op,
 * its node and the opset; a malformed file is NODUS_ERROR_FORMAT.
 * On success *out_model is a new model the caller frees with nodus_model_free();
 * on failure it is set to NULL. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_load(const char *path, const nodus_model_params *params,
                                                        nodus_model **out_model);
NODUS_API void nodus_model_free(nodus_model *model);

/* The model's kind; -1 (and a message) if `model` is NULL. */
NODUS_API nodus_model_kind nodus_model_get_kind(const nodus_model *model);

/* The model's config.json as a JSON string, owned by the model and valid until
 * it is freed; NULL if `model` is NULL. */
NODUS_API const char *nodus_model_config_json(const nodus_model *model);

/* One forward pass, `output = model(**inputs).sample` as in diffusers.
 * DiT inputs: "sample" float32 [B, C, H, W]; "timestep" int64 or float32 [B]
 * (or one value, broadcast); "class_labels" int64 [B].
 * UNet inputs: "sample" float32 [B, in_channels, H, W]; "timestep" as for DiT;
 * "encoder_hidden_states" float32 [B, tokens, cross_attention_dim], any number
 * of tokens.
 * See nodus_tensor for how `output` is filled (call with output->data = NULL
 * to learn the shape). NODUS_ERROR_SHAPE names the input that does not fit. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_forward(nodus_model *model, const nodus_tensor *inputs,
                                                           size_t input_count, nodus_tensor *output);

/* Every output of one forward pass, in nodus_model_output_info() order: an
 * ONNX model's graph outputs (one or several), or a native model's "sample".
 * `outputs` holds `output_count` tensors (exactly nodus_model_output_count()),
 * each filled as nodus_model_forward's output; while any output's data is
 * NULL the call only reports shapes and dtypes (to those outputs) and computes
 * nothing. An ONNX model takes the graph's input names, converted to the
 * declared dtype when nothing is lost (int32 -> int64, float64 -> float32).
 * NODUS_ERROR_INVALID_ARGUMENT: a wrong output_count, a missing or unknown
 * input; NODUS_ERROR_SHAPE: an input that contradicts the graph. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_forward_all(nodus_model *model, const nodus_tensor *inputs,
                                                               size_t input_count, nodus_tensor *outputs,
                                                               size_t output_count);

/* A model's input or output as the model declares it. */
typedef struct nodus_tensor_info {
    const char *name;                /* owned by the model, valid until nodus_model_free() */
    nodus_dtype dtype;
    int32_t ndim;                    /* -1 when even the rank is open */
    int64_t shape[NODUS_MAX_DIMS];   /* -1 for an axis of any size (a dynamic batch) */
} nodus_tensor_info;

/* The number of inputs forward takes (0 for a VAE, which decodes and encodes
 * instead, and for NULL). */
NODUS_API size_t nodus_model_input_count(const nodus_model *model);
/* Input `index` (< nodus_model_input_count()). NODUS_ERROR_INVALID_ARGUMENT
 * for NULL or an index out of range; NODUS_ERROR_UNSUPPORTED for a declared
 * rank above NODUS_MAX_DIMS. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_input_info(const nodus_model *model, size_t index,
                                                              nodus_tensor_info *out_info);
/* The number of outputs of nodus_model_forward_all() (0 for NULL). */
NODUS_API size_t nodus_model_output_count(const nodus_model *model);
/* Output `index`, as nodus_model_input_info(). */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_output_info(const nodus_model *model, size_t index,
                                                               nodus_tensor_info *out_info);

/* VAE decode, `image = vae.decode(latent).sample` as in diffusers: the latent is
 * z = latent / scaling_factor, float32 [B, latent_channels, h, w]; the image is
 * float32 [B, out_channels, 8h, 8w] in about [-1, 1]. Output as in nodus_model_forward. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_decode(nodus_model *model, const nodus_tensor *latent,
                                                          nodus_tensor *output);

/* Profiles one forward pass step by step: the inputs of nodus_model_forward
 * (a VAE takes one input, "latent" to profile its decoder or "image" for its
 * encoder, untiled). Runs one untimed warm-up (the first forward for a shape
 * also builds its plan and packs weights), then `rounds` (>= 1) timed runs;
 * each step's time is its median over the rounds. *out_json receives, as JSON:
 *   {"rounds", "round_seconds": [wall time of each round], "seconds": their
 *    median, "step_seconds": sum of the steps' medians, "flops", "steps",
 *    "kinds": [{"kind", "seconds", "calls", "share", "flops", "gflops"}],
 *    "layers": [{"layer", "kind", "seconds", "calls", "share", "flops", "gflops"}]}
 * kinds are kernel names ("linear", "conv2d", "attention", "group_norm", ...);
 * a layer is a module as diffusers names it: a weight's name without ".weight"
 * ("transformer_blocks.3.attn1.to_q", "up_blocks.1.resnets.0.conv1"); for a
 * step without weights, the module shared by the steps producing its inputs
 * (attention: "...attn1"; a residual stream from another block left out), or
 * of its first reader when only model inputs feed it. Kinds and layers are sorted
 * slowest first; shares are of step_seconds and sum to 1; flops count 2 per
 * multiply-add, for linear, conv2d, attention and low_rank_update steps (0 for
 * the others); gflops = flops / seconds / 1e9.
 * The string is owned by the model and valid until the next call on it; on
 * failure *out_json is NULL. NODUS_ERROR_INVALID_ARGUMENT: `model` or
 * `out_json` is NULL, `inputs` is NULL with input_count > 0, rounds < 1, an
 * input is unknown or missing; NODUS_ERROR_SHAPE: an input does not fit. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_profile(nodus_model *model, const nodus_tensor *inputs,
                                                           size_t input_count, int32_t rounds,
                                                           const char **out_json);

/* ---- VAE encoding and tiling -------------------------------------------- */

/* VAE encode, `vae.encode(image).latent_dist` as in diffusers: `image` is float32
 * [B, in_channels, H, W] in about [-1, 1], H and W multiples of 2^(levels - 1)
 * (8 for the SD VAE); `mean` and `logvar` receive float32 [B, latent_channels,
 * H/8, W/8], logvar clamped to [-30, 20] (std = exp(0.5 * logvar)). Outputs as
 * in nodus_model_forward; while either output's data is NULL the call only
 * reports shapes (to the outputs whose data is NULL) and computes nothing.
 * NODUS_ERROR_UNSUPPORTED: the folder cannot encode (no encoder weights: a
 * decoder-only export, which still decodes); NODUS_ERROR_SHAPE: the image does
 * not fit; NODUS_ERROR_INVALID_ARGUMENT: it holds NaN or infinity, or `model`
 * is not a VAE. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_encode(nodus_model *model, const nodus_tensor *image,
                                                          nodus_tensor *mean, nodus_tensor *logvar);

/* The latent a pipeline feeds the denoiser, float32 [B, latent_channels, H/8, W/8]:
 * (latent_dist.sample() - shift_factor) * scaling_factor with `noise` (float32,
 * that same shape) as the normal draw, i.e. (mean + exp(0.5 * logvar) * noise
 * - shift_factor) * scaling_factor; with `noise` NULL, latent_dist.mode(), i.e.
 * (mean - shift_factor) * scaling_factor. shift_factor is 0 unless config.json
 * sets it. diffusers draws that noise as torch.randn(shape, generator): pass
 * nodus_randn's. Errors as nodus_model_encode; output as in nodus_model_forward. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_encode_latent(nodus_model *model, const nodus_tensor *image,
                                                                 const nodus_tensor *noise, nodus_tensor *latent);

/* Tiled VAE encoding and decoding: diffusers' vae.enable_tiling() (enabled
 * non-zero) or vae.disable_tiling() (0, the default). While enabled, an image
 * wider or higher than `tile_sample_size` pixels (a latent beyond
 * tile_sample_size / 8) is processed in overlapping tiles blended at the seams,
 * so memory is bounded by the tile size; the result differs slightly from an
 * untiled one, exactly as in diffusers. `tile_sample_size` is diffusers'
 * tile_sample_min_size (tile_latent_min_size = tile_sample_size / 8 follows):
 * 0 for the config's sample_size; otherwise a multiple of 4 * 2^(levels - 1)
 * (32 for the SD VAE), else NODUS_ERROR_INVALID_ARGUMENT and the setting is
 * unchanged. NODUS_ERROR_INVALID_ARGUMENT also when `model` is not a VAE. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_set_vae_tiling(nodus_model *model, int32_t enabled,
                                                                  int32_t tile_sample_size);

/* ---- LoRA adapters ------------------------------------------------------ */
/* The semantics of diffusers' PEFT integration: for every Linear an adapter
 * targets, y = W x + b + sum_i w_i s_i B_i (A_i x), with s_i = alpha / rank per
 * layer and w_i the adapter's weight. Adapters stay unfused (side paths whose
 * weights change for free between calls) until nodus_model_fuse_lora merges
 * them into copies of the weights. DiT, UNet and ONNX models take adapters
 * (an ONNX export's Linears, MatMul or Gemm by a weight, are matched through
 * their module paths; NODUS_ERROR_UNSUPPORTED for a VAE). */

/* Loads a LoRA as adapter `adapter_name`: a .safetensors file in diffusers/PEFT
 * (lora_A/lora_B) or kohya (lora_down/lora_up/alpha) form, or a PEFT adapter
 * folder (adapter_config.json + adapter_model.safetensors). The new adapter
 * becomes the only active one, at weight 1. Fails (changing nothing) when the
 * name is taken, the file is not a LoRA, matches no layer of the model, or a
 * layer's shapes do not fit; the message names the layer. The match report is
 * in nodus_model_lora_state_json(). */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_load_lora(nodus_model *model, const char *path,
                                                             const char *adapter_name);

/* Activates exactly the `count` adapters in `names` with `weights` (NULL: 1.0
 * each); count 0 deactivates every adapter. Costs no rebuild. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_set_adapters(nodus_model *model, const char *const *names,
                                                                const float *weights, size_t count);

/* Merges lora_scale * w_i * s_i * B_i A_i of the named adapters (names NULL and
 * count 0: the active ones) into copies of the weights; those Linears then run
 * no side paths. Fails if adapters are already fused. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_fuse_lora(nodus_model *model, const char *const *names, size_t count,
                                                             float lora_scale);

/* Drops the fused copies: the weights are the file's again, bit for bit. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_unfuse_lora(nodus_model *model);

/* enabled = 0: run the base model (diffusers disable_lora); 1: the active
 * adapters again (enable_lora). Fused weights stay fused. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_enable_lora(nodus_model *model, int32_t enabled);

/* Removes adapters (a fused adapter must be unfused first). */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_delete_adapters(nodus_model *model, const char *const *names,
                                                                   size_t count);

/* The adapter state as JSON: {"enabled": bool, "active": {name: weight},
 * "adapters": [names], "fused": [names], "reports": {name: {"format",
 * "layers", "matched": [...], "unmatched": [...]}}}. Owned by the model, valid
 * until the next call on it; NULL (and a message) if `model` is NULL or takes
 * no adapters. */
NODUS_API const char *nodus_model_lora_state_json(nodus_model *model);

/* Per Linear changed by adapter `a` or `b`, how their updates dW = s B A relate,
 * as JSON: [{"module", "interference": ||dW_a dW_b^T||_F, "cosine": cosine of
 * the flattened updates, "norm_a", "norm_b"}] (adapter weights not applied).
 * Owned by the model, valid until the next call on it; NULL and a message on
 * failure (an unknown name). */
NODUS_API const char *nodus_model_lora_compare_json(nodus_model *model, const char *a, const char *b);

/* Writes the model as a new diffusers folder (config.json and
 * diffusion_pytorch_model.safetensors; the folder is created if needed), with
 * fused adapters baked into the weights: load, set_adapters, fuse_lora, save. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_save(nodus_model *model, const char *directory);

/* ---- Run contexts ------------------------------------------------------- */

/* A run context of a model, as llama.cpp separates a context from its model:
 * its own activation arenas and plans, thread count and unfused-adapter
 * strengths, over the model's weights (stored once, shared by every context).
 * Several contexts of one model run at the same time from different threads;
 * the calls of one context take turns. A model's own calls
 * (nodus_model_forward, nodus_sample without a context, ...) run in its default
 * context. A new context starts with the adapters active in the model's default
 * context; nodus_context_set_adapters changes its strengths only. Loading,
 * deleting, fusing and unfusing adapters (on the model) wait for every running
 * call of every context, and each context runs the new weights from its next
 * call on: no call sees a weight half fused. The context holds its model: the
 * model handle may be freed first. Every kind of model has contexts; a VAE's
 * run nodus_context_decode / _encode / _encode_latent (its tiling setting is
 * the model's, and changing it waits for running calls).
 *
 * Memory: a call whose plan (the activation arena and scratch for its input
 * shapes) would exceed the memory the machine has left (MemAvailable, or a
 * cgroup's memory.max) fails with NODUS_ERROR_OUT_OF_MEMORY before it
 * allocates, in any context, the default one included. A context's
 * memory_budget bounds the activations its cached plans hold together: a new
 * plan first drops the cached ones to make room, and one that alone exceeds the
 * budget is NODUS_ERROR_OUT_OF_MEMORY (the message gives both sizes). Weights and
 * their packed copies belong to the model and are not counted. */
typedef struct nodus_context nodus_context;

typedef struct nodus_context_params {
    uint32_t struct_size;  /* sizeof(nodus_context_params), set by nodus_context_params_init */
    int32_t threads;       /* worker threads of this context's calls; 0 = all cores (default) */
    int64_t memory_budget; /* bytes of activations this context's plans may hold; 0 = no budget */
                           /* beyond the machine's available memory (default); < 0 is an error */
} nodus_context_params;

NODUS_API void nodus_context_params_init(nodus_context_params *params);
/* `params` may be NULL (defaults). *out_context is NULL on failure. */
NODUS_API NODUS_NODISCARD nodus_status nodus_context_new(nodus_model *model, const nodus_context_params *params,
                                                         nodus_context **out_context);
NODUS_API void nodus_context_free(nodus_context *context);
/* nodus_model_forward_all in this context (outputs: nodus_model_output_count() of its model). */
NODUS_API NODUS_NODISCARD nodus_status nodus_context_forward_all(nodus_context *context, const nodus_tensor *inputs,
                                                                 size_t input_count, nodus_tensor *outputs,
                                                                 size_t output_count);
/* nodus_model_set_adapters for this context only (weights NULL: 1.0 each). */
NODUS_API NODUS_NODISCARD nodus_status nodus_context_set_adapters(nodus_context *context, const char *const *names,
                                                                  const float *weights, size_t count);
/* The context's thread count (0 = all cores); -1 (and a message) for NULL. */
NODUS_API int32_t nodus_context_threads(const nodus_context *context);
/* nodus_model_decode, nodus_model_encode and nodus_model_encode_latent in this
 * context of a VAE (NODUS_ERROR_INVALID_ARGUMENT for another model's context). */
NODUS_API NODUS_NODISCARD nodus_status nodus_context_decode(nodus_context *context, const nodus_tensor *latent,
                                                            nodus_tensor *output);
NODUS_API NODUS_NODISCARD nodus_status nodus_context_encode(nodus_context *context, const nodus_tensor *image,
                                                            nodus_tensor *mean, nodus_tensor *logvar);
NODUS_API NODUS_NODISCARD nodus_status nodus_context_encode_latent(nodus_context *context, const nodus_tensor *image,
                                                                   const nodus_tensor *noise, nodus_tensor *latent);

/* ---- Sliding-window runs (volumes) -------------------------------------- */

enum {
    NODUS_BLEND_GAUSSIAN = 0,  /* MONAI mode="gaussian": less weight near window edges */
    NODUS_BLEND_CONSTANT = 1   /* MONAI mode="constant": every window weighs the same   */
};

typedef struct nodus_window_params {
    uint32_t struct_size;      /* sizeof(nodus_window_params), set by nodus_window_params_init   */
    int32_t ndim;              /* spatial axes in window_size: 1 to 3 (required)                  */
    int64_t window_size[3];    /* the window per spatial axis, in input voxels (MONAI roi_size);
                                  clamped to the input where it is larger                          */
    float overlap;             /* fraction of a window shared with the next, [0, 1); default 0.25  */
    int32_t blend;             /* NODUS_BLEND_GAUSSIAN (default) or NODUS_BLEND_CONSTANT           */
    float sigma_scale;         /* Gaussian sigma = window x sigma_scale; default 0.125             */
    const char *output_name;   /* which output of a several-output model (an encoder's "z_mu");
                                  NULL: the first                                                  */
    nodus_progress_callback progress; /* after each window; may be NULL                           */
    void *progress_user_data;
} nodus_window_params;

NODUS_API void nodus_window_params_init(nodus_window_params *params);

/* Runs a one-input model (an ONNX 3D VAE decoder or encoder; or a VAE's decode)
 * window by window over `input` [B, C, spatial...] and blends the overlapping
 * outputs, as MONAI's SlidingWindowInferer(sw_batch_size=1) does (MAISI decodes
 * whole CT volumes so). The model may change the size (a decoder's 4x): the
 * output is [B, C', spatial x zoom...]. Memory beyond input and output is one
 * window. As nodus_model_forward: with output->data NULL only the shape is
 * reported. NODUS_ERROR_INVALID_ARGUMENT for a model with other inputs, bad
 * params or a non-finite input; NODUS_ERROR_CANCELLED from the callback. */
NODUS_API NODUS_NODISCARD nodus_status nodus_model_forward_windowed(nodus_model *model, const nodus_tensor *input,
                                                                    const nodus_window_params *params,
                                                                    nodus_tensor *output);

/* ---- Schedulers --------------------------------------------------------- */

typedef struct nodus_scheduler nodus_scheduler;

typedef int32_t nodus_scheduler_kind;

enum {
    NODUS_SCHEDULER_DDIM = 0,              /* DDIMScheduler                   */
    NODUS_SCHEDULER_DDPM = 1,              /* DDPMScheduler                   */
    NODUS_SCHEDULER_FLOW_MATCH_EULER = 2,  /* FlowMatchEulerDiscreteScheduler */
    NODUS_SCHEDULER_EULER = 3,             /* EulerDiscreteScheduler          */
    NODUS_SCHEDULER_EULER_ANCESTRAL = 4,   /* EulerAncestralDiscreteScheduler */
    NODUS_SCHEDULER_DPM_SOLVER_MULTISTEP = 5, /* DPMSolverMultistepScheduler  */
    NODUS_SCHEDULER_PNDM = 6,              /* PNDMScheduler                   */
    NODUS_SCHEDULER_UNIPC_MULTISTEP = 7,   /* UniPCMultistepScheduler         */
    NODUS_SCHEDULER_HEUN = 8,              /* HeunDiscreteScheduler           */
    NODUS_SCHEDULER_LMS = 9,               /* LMSDiscreteScheduler            */
    NODUS_SCHEDULER_LCM = 10,              /* LCMScheduler                    */
    NODUS_SCHEDULER_FLOW_MATCH_HEUN = 11   /* FlowMatchHeunDiscreteScheduler  */
};

/* The diffusers class name ("DDIMScheduler", ...); static, or NULL if unknown. */
NODUS_API const char *nodus_scheduler_kind_name(nodus_scheduler_kind kind);
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_kind_from_name(const char *name,
                                                                      nodus_scheduler_kind *out_kind);

/* Creates a scheduler from a diffusers scheduler_config.json: a path to the file
 * or to a folder holding it. The class comes from `_class_name`. */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_load(const char *path, nodus_scheduler **out_scheduler);
/* The same from the JSON text itself. */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_from_json(const char *json, nodus_scheduler **out_scheduler);
NODUS_API void nodus_scheduler_free(nodus_scheduler *scheduler);

/* The scheduler's kind; -1 (and a message) if `scheduler` is NULL. */
NODUS_API nodus_scheduler_kind nodus_scheduler_get_kind(const nodus_scheduler *scheduler);

/* Prepares `steps` inference steps (diffusers `set_timesteps`). */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_set_timesteps(nodus_scheduler *scheduler, int32_t steps);
/* The same for a latent of `spatial_size` elements per channel (depth x height x
 * width; MONAI's `input_img_size_numel`): flow-matching configs with MONAI's
 * `use_timestep_transform` shift their schedule by it, and nodus_scheduler_set_timesteps
 * fails for them; other schedulers ignore it. nodus_sample passes it itself. */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_set_timesteps_sized(nodus_scheduler *scheduler, int32_t steps,
                                                                           int64_t spatial_size);

/* Copies up to `capacity` timesteps into `out` (may be NULL when capacity is 0)
 * and stores their total number in *out_count. *out_is_integer is set to 1 when
 * the model takes them as int64 (DDIM, DDPM, DPM-Solver, UniPC, PNDM, LCM), 0 for
 * float32 (flow matching, Euler, Euler ancestral, Heun, LMS). As in diffusers,
 * Heun has 2N - 1 timesteps for N steps (one model call each) and PNDM N + 1
 * (skip_prk_steps) or N + 9.
 * `out_count` and `out_is_integer` must not be NULL. */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_timesteps(const nodus_scheduler *scheduler, double *out,
                                                                 size_t capacity, size_t *out_count,
                                                                 int32_t *out_is_integer);

/* The standard deviation the initial noise is scaled by (init_noise_sigma, as
 * diffusers computes it after set_timesteps: 1, or the largest sigma, or
 * sqrt(max sigma^2 + 1) for Euler / Euler ancestral / Heun / LMS with "leading"
 * spacing); NaN (and a message) if `scheduler` is NULL. */
NODUS_API float nodus_scheduler_init_noise_sigma(const nodus_scheduler *scheduler);
/* 1 when the scheduler's step uses noise that diffusers draws inside it (DDPM;
 * DDIM with eta > 0; Euler ancestral; LCM; Euler with s_churn > 0; the SDE
 * variants of DPM-Solver): pass one noise tensor per step (step's `noise`,
 * nodus_sample_params.step_noise). 0 otherwise; -1 (and a message) if NULL. */
NODUS_API int32_t nodus_scheduler_draws_noise(const nodus_scheduler *scheduler);
/* diffusers' class attribute `order`: model calls per inference step (2 for Heun,
 * else 1), by which img2img start indices are multiplied; -1 (and a message) if NULL. */
NODUS_API int32_t nodus_scheduler_order(const nodus_scheduler *scheduler);

/* One step: prev_sample from `model_output` ([B, C or 2C, ...]) and `sample`
 * ([B, C, ...]) at `timestep`. `noise` (same shape as `sample`, may be NULL) is
 * the noise diffusers would draw inside step (DDPM, DDIM with eta > 0, Euler
 * ancestral, LCM, the SDE variants of DPM-Solver); a step that needs it fails
 * with NODUS_ERROR_INVALID_ARGUMENT when it is NULL. Multistep schedulers (DPM,
 * UniPC, LMS, PNDM, Heun) keep what they need of the call; step the timesteps in
 * order. Output as in nodus_model_forward. */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_step(nodus_scheduler *scheduler,
                                                            const nodus_tensor *model_output, double timestep,
                                                            const nodus_tensor *sample, const nodus_tensor *noise,
                                                            nodus_tensor *prev_sample);

/* diffusers scale_model_input: the model input for `sample` ([B, C, ...]) at
 * `timestep`, float32, written to `scaled` (as in nodus_model_forward: with
 * scaled->data NULL only the shape is reported). sample / sqrt(sigma^2 + 1) for
 * Euler, Euler ancestral, Heun and LMS (sigma of the current step: before the
 * first step, of `timestep`'s place in the schedule); a copy of `sample` for the
 * others. The scheduler does not move. Codes: NODUS_ERROR_INVALID_ARGUMENT for a
 * NULL argument, a non-finite timestep or one not in the schedule (Euler family,
 * before the first step); NODUS_ERROR_SHAPE when `scaled` does not fit. */
NODUS_API NODUS_NODISCARD nodus_status nodus_scheduler_scale_model_input(const nodus_scheduler *scheduler,
                                                                         const nodus_tensor *sample, double timestep,
                                                                         nodus_tensor *scaled);

/* ---- Sampling ----------------------------------------------------------- */

/* One change of the active adapters during sampling. */
typedef struct nodus_adapter_schedule_entry {
    int32_t step;              /* the step (0-based) this set applies from */
    size_t count;              /* adapters in the set (0: none active)     */
    const char *const *names;
    const float *weights;      /* NULL: 1.0 each                           */
} nodus_adapter_schedule_entry;

typedef struct nodus_sample_params {
    uint32_t struct_size;      /* sizeof(nodus_sample_params), set by nodus_sample_params_init     */
    int32_t steps;             /* inference steps (default 50)                                     */
    float guidance_scale;      /* classifier-free guidance; <= 1 disables it (default 4.0)         */
    /* The starting noise [B, C, H, W], or [B, C, D, H, W] for a volume model
     * (MedSyn2), float32 (required), UNSCALED: nodus_sample
     * multiplies it by the scheduler's init_noise_sigma after set_timesteps, as
     * diffusers pipelines do (1 for DDIM, DDPM, flow matching, DPM, UniPC, PNDM,
     * LCM). */
    const nodus_tensor *init_noise;
    /* DiT: class labels, int64. With guidance: B labels (the null class
     * num_embeds_ada_norm is added) or 2B labels [cond..., null...]. */
    const int64_t *class_labels;
    size_t class_label_count;
    /* Noise for steps that draw it (DDPM, Euler ancestral, LCM, SDE DPM-Solver):
     * [T, B, C, H, W] float32, or NULL: one per entry of the schedule. T is the
     * number of timesteps nodus_scheduler_timesteps() reports after
     * set_timesteps(steps): `steps`, or steps + 1 for the few trailing-spacing
     * schedules where diffusers produces one more, 2 steps - 1 for Heun, steps + 1
     * or steps + 9 for PNDM; fewer by strength (below). */
    const nodus_tensor *step_noise;
    /* If not NULL: receives the latent after every timestep, [T, B, C, H, W]
     * float32; must hold that many bytes (size_bytes). */
    nodus_tensor *trajectory;
    nodus_progress_callback progress; /* may be NULL */
    void *progress_user_data;
    /* LoRA per step (sliders, switching): before step `entries[i].step` runs,
     * its adapters become the active set (nodus_model_set_adapters). Steps
     * count from 0; entries in increasing step order. NULL for none. The
     * model keeps the last set after sampling. */
    const struct nodus_adapter_schedule_entry *adapter_schedule;
    size_t adapter_schedule_count;
    /* Channels concatenated after the noisy latent at every step, [B, C', H, W]
     * (or [B, C', D, H, W]) float32 (the mask and masked-image latent of an
     * inpainting-style model, MedSyn2's mask latent; the model's in_channels must
     * be C + C'), or NULL. With guidance it may have 2B rows, one per model-batch
     * row in the guidance order (SD: [uncond..., cond...]), so the unconditional
     * half can see other channels (an empty mask latent). */
    const nodus_tensor *conditioning;
    /* UNet: the context, float32 [N, tokens, cross_attention_dim] in Stable
     * Diffusion order: with guidance N = 2B ([uncond..., cond...], e = e_uncond +
     * g (e_cond - e_uncond)) or N = 2 (one uncond and one cond row shared by the
     * batch); without guidance N = B or 1. NULL for DiT. A batch of K latents is
     * a K-sample ensemble (see nodus_batch_statistics). */
    const nodus_tensor *encoder_hidden_states;
    /* img2img and inpainting: the known image's latent [B, C, H, W] (times the
     * VAE's scaling factor), or NULL. With it, init_noise is the UNSCALED noise
     * and the run starts as diffusers' img2img / inpainting pipelines do: the
     * last int(steps * strength) steps run (times the scheduler's order: two
     * timesteps a step for Heun), from scheduler add_noise(
     * image_latents, init_noise, first timestep) (from init_noise *
     * init_noise_sigma when inpainting at strength 1). */
    const nodus_tensor *image_latents;
    double strength;            /* in [0, 1]; default 1.0; below 1 needs image_latents */
    /* Latent-blending inpainting for models without mask channels: float32
     * [B or 1, 1, H, W], 1 where the latent is generated. After every step the
     * rest is image_latents noised to the next timestep (clean after the last).
     * Needs image_latents. Inpainting models with mask channels take the mask
     * and masked-image latent through `conditioning` instead. NULL for none. */
    const nodus_tensor *mask;
    /* The run context of `model` to sample in (its arenas, threads and adapter
     * strengths; the adapter schedule sets its strengths), or NULL: the model's
     * default context. */
    nodus_context *context;
} nodus_sample_params;

NODUS_API void nodus_sample_params_init(nodus_sample_params *params);

/* Runs the denoising loop of diffusers' pipelines with classifier-free guidance
 * (DiT batch order [cond, null], e = e_null + g (e_cond - e_null); UNet order
 * [uncond, cond] as above); calls nodus_scheduler_set_timesteps_sized(scheduler,
 * params->steps, init_noise's elements per channel) first, multiplies init_noise by init_noise_sigma, and runs the
 * model once per timestep on the scheduler's scale_model_input of the latent. Writes the final latent [B, C, H, W] to `output` (as in
 * nodus_model_forward: with output->data NULL it only reports the shape and
 * samples nothing). The trajectory and step_noise have one entry per timestep
 * that runs (fewer with strength < 1). The loop steps a copy of the scheduler,
 * which the handle takes when the call returns: the progress callback may read
 * or change the scheduler handle, and such changes are overwritten then. */
NODUS_API NODUS_NODISCARD nodus_status nodus_sample(nodus_model *model, nodus_scheduler *scheduler,
                                                    const nodus_sample_params *params, nodus_tensor *output);

/* Pixel-wise statistics of an ensemble: for samples [K, ...] float32 (K >= 2),
 * mean[...] and variance[...] over the first axis, variance = sum (x - mean)^2 /
 * (K - correction), as torch.var(samples, dim=0, correction=correction)
 * (1: unbiased, torch's default; 0: population). Outputs as in nodus_model_forward. */
NODUS_API NODUS_NODISCARD nodus_status nodus_batch_statistics(const nodus_tensor *samples, int32_t correction,
                                                              nodus_tensor *mean, nodus_tensor *variance);

/* ---- CLIP tokenizer ----------------------------------------------------- */

/* Text to token ids as transformers 5's CLIPTokenizer (= CLIPTokenizerFast)
 * encodes them, id for id: NFC, white space collapsed, lower case, CLIP's
 * pre-split regex, byte-level BPE with `</w>`, BOS/EOS, padding, truncation.
 * A tokenizer is immutable after loading and may be used by several threads. */
typedef struct nodus_tokenizer nodus_tokenizer;

/* Loads a tokenizer: a diffusers `tokenizer/` folder (vocab.json + merges.txt,
 * with special_tokens_map.json and tokenizer_config.json when present: pad
 * token, model_max_length), a folder holding a Hugging Face tokenizer.json
 * (used first when both are there, as transformers does), or the path of a
 * tokenizer.json. NODUS_ERROR_IO: the path does not exist, or vocab.json /
 * merges.txt is missing (the message names which); NODUS_ERROR_FORMAT: a
 * malformed file, or a vocabulary and merges that disagree (the message names
 * the merge); NODUS_ERROR_UNSUPPORTED: a tokenizer.json that is not CLIP's
 * (model, normalizer or pre-tokenizer). On success *out_tokenizer is a new
 * tokenizer the caller frees with nodus_tokenizer_free(); on failure NULL. */
NODUS_API NODUS_NODISCARD nodus_status nodus_tokenizer_load(const char *path, nodus_tokenizer **out_tokenizer);
NODUS_API void nodus_tokenizer_free(nodus_tokenizer *tokenizer);

/* Flags of nodus_tokenizer_encode(), combined with `|`. */
enum {
    /* Exactly nodus_tokenizer_max_length() ids: the content truncated to leave
     * room for BOS/EOS, then pad ids (transformers' tokenizer(text,
     * padding="max_length", max_length=77, truncation=True)). Truncation stops
     * reading the text once enough tokens exist. */
    NODUS_TOKENIZE_PAD_TO_MAX_LENGTH = 1,
    /* No BOS/EOS (add_special_tokens=False). */
    NODUS_TOKENIZE_NO_SPECIAL_TOKENS = 2
};

/* Encodes `text_length` bytes of UTF-8 at `text` (NUL bytes are text; `text`
 * may be NULL when text_length is 0). flags 0: [BOS] ids [EOS], untruncated.
 * Stores the number of ids in *out_count and, when it fits in `capacity`,
 * writes them to `out_ids` (which may be NULL when capacity is 0: a size
 * query, NODUS_OK). NODUS_ERROR_INVALID_ARGUMENT: NULL tokenizer, text or
 * out_count, unknown flags, invalid UTF-8 (the message gives the byte
 * offset), or capacity below the count (then *out_count holds the count and
 * out_ids is untouched). Without padding, text_length + 2 ids are nearly
 * always enough, but lower-casing can lengthen text ("Ⱥ", 2 bytes, becomes
 * "ⱥ", 3 bytes and 3 ids): size with a query when it must never fail. */
NODUS_API NODUS_NODISCARD nodus_status nodus_tokenizer_encode(const nodus_tokenizer *tokenizer, const char *text,
                                                              size_t text_length, int32_t flags, int64_t *out_ids,
                                                              size_t capacity, size_t *out_count);

/* Long prompts and prompt weighting (opt-in), as AUTOMATIC1111's webui:
 * `(text)` x1.1, `[text]` /1.1, `(text:1.3)`, `\(` for a literal bracket,
 * `BREAK` to end a chunk; the tokens fill chunks of max_length - 2 (75),
 * moving the words after a comma at most comma_backtrack tokens back to the
 * next chunk; each chunk is [BOS] tokens [EOS] pad... (max_length ids, the pad
 * after the EOS as transformers pads). The exact rule: README, section "CLIP
 * tokenizer, long prompts and prompt weighting". */
typedef struct nodus_prompt_params {
    uint32_t struct_size;      /* sizeof(nodus_prompt_params), set by nodus_prompt_params_init    */
    int32_t parse_weights;     /* 1 (default): parse the weighting syntax; 0: plain text, weight 1 */
    int32_t comma_backtrack;   /* A1111's comma_padding_backtrack; default 20, 0 turns it off      */
    int32_t max_chunks;        /* keep at most this many chunks; 0 (default): all                  */
} nodus_prompt_params;

NODUS_API void nodus_prompt_params_init(nodus_prompt_params *params);

/* Encodes a long, weighted prompt (`text` as in nodus_tokenizer_encode;
 * `params` NULL for the defaults) into chunks: *out_count = chunks *
 * max_length ids written to `out_ids`, and the weight of each id to
 * `out_weights` (1 for BOS, EOS and padding; may be NULL). Size query and
 * errors as nodus_tokenizer_encode; also NODUS_ERROR_INVALID_ARGUMENT for a
 * weight that is not a number, as in "(a:1.2.3)" (the message quotes it), for
 * brackets nested so deeply that the weights need over 100 million products,
 * and for a negative comma_backtrack or max_chunks. */
NODUS_API NODUS_NODISCARD nodus_status nodus_tokenizer_encode_prompt(const nodus_tokenizer *tokenizer, const char *text,
                                                                     size_t text_length,
                                                                     const nodus_prompt_params *params,
                                                                     int64_t *out_ids, float *out_weights,
                                                                     size_t capacity, size_t *out_count);

/* model_max_length (77 for CLIP; also when the files give none); -1 (and a
 * message) if `tokenizer` is NULL. */
NODUS_API int32_t nodus_tokenizer_max_length(const nodus_tokenizer *tokenizer);
/* The ids of the BOS (<|startoftext|>), EOS (<|endoftext|>) and pad tokens
 * (SD-1.5: <|endoftext|>, SD-2: "!"); -1 (and a message) if `tokenizer` is NULL. */
NODUS_API int64_t nodus_tokenizer_bos_id(const nodus_tokenizer *tokenizer);
NODUS_API int64_t nodus_tokenizer_eos_id(const nodus_tokenizer *tokenizer);
NODUS_API int64_t nodus_tokenizer_pad_id(const nodus_tokenizer *tokenizer);
/* Number of ids (vocabulary plus added tokens; 49408 for CLIP); -1 if NULL. */
NODUS_API int64_t nodus_tokenizer_vocab_size(const nodus_tokenizer *tokenizer);
/* The id of one token string (as in vocab.json, e.g. "photo</w>"), as
 * transformers' convert_tokens_to_ids. NODUS_ERROR_INVALID_ARGUMENT for NULL
 * arguments or a token that is not in the vocabulary (*out_id is then -1). */
NODUS_API NODUS_NODISCARD nodus_status nodus_tokenizer_token_to_id(const nodus_tokenizer *tokenizer, const char *token,
                                                                   int64_t *out_id);
/* The token string of `id` (as in vocab.json, e.g. "photo</w>"; transformers'
 * convert_ids_to_tokens) as UTF-8: *out_length = its length in bytes (without
 * the NUL); when length + 1 <= capacity it is copied to `out_token` with a NUL.
 * `out_token` may be NULL when capacity is 0 (a size query).
 * NODUS_ERROR_INVALID_ARGUMENT: NULL tokenizer or out_length, an id that is
 * not a token, or capacity too small (then *out_length holds the length and
 * out_token is untouched). */
NODUS_API NODUS_NODISCARD nodus_status nodus_tokenizer_id_to_token(const nodus_tokenizer *tokenizer, int64_t id,
                                                                   char *out_token, size_t capacity,
                                                                   size_t *out_length);
/* Text from `count` ids, as transformers' decode(ids, skip_special_tokens):
 * byte-level decoding (invalid UTF-8 becomes U+FFFD), `</w>` as a space, the
 * ends stripped; special tokens left out when skip_special_tokens is nonzero;
 * unknown ids skipped (as tokenizers does). Output, size query and errors as
 * nodus_tokenizer_id_to_token (the text may hold NUL bytes: use *out_length);
 * `ids` may be NULL when count is 0. */
NODUS_API NODUS_NODISCARD nodus_status nodus_tokenizer_decode(const nodus_tokenizer *tokenizer, const int64_t *ids,
                                                              size_t count, int32_t skip_special_tokens,
                                                              char *out_text, size_t capacity, size_t *out_length);

/* ---- Pipelines ---------------------------------------------------------- */

/* A diffusers Stable Diffusion pipeline folder loaded as one object: model_index.json
 * with tokenizer/ (CLIPTokenizer), text_encoder/ (CLIPTextModel), unet/, vae/ and
 * scheduler/ (any class nodus_scheduler_load reads). safety_checker and
 * feature_extractor are not run. Its calls take turns as any handle's; a
 * component handle (below) is a handle of its own: do not use it while the
 * pipeline runs. */
typedef struct nodus_pipeline nodus_pipeline;

/* Loads the folder at `path` with `params` (threads and dtype for every model; NULL
 * for the defaults). On success *out_pipeline is a new pipeline the caller frees
 * with nodus_pipeline_free(); on failure NULL. NODUS_ERROR_IO for a folder without
 * model_index.json, NODUS_ERROR_UNSUPPORTED naming a component class Nodus lacks,
 * and the errors of loading each component. */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_load(const char *path, const nodus_model_params *params,
                                                           nodus_pipeline **out_pipeline);
NODUS_API void nodus_pipeline_free(nodus_pipeline *pipeline);

/* A new handle on the component "unet", "vae" or "text_encoder": the same weights
 * and LoRA state as the pipeline's (no copy). The caller frees it with
 * nodus_model_free(); the pipeline stays valid, and the model lives while either
 * handle does. NODUS_ERROR_INVALID_ARGUMENT for another name. */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_model(nodus_pipeline *pipeline, const char *component,
                                                            nodus_model **out_model);
/* A new handle on the pipeline's tokenizer, freed with nodus_tokenizer_free(). */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_tokenizer(nodus_pipeline *pipeline,
                                                                nodus_tokenizer **out_tokenizer);
/* Replaces the pipeline's scheduler with a copy of `scheduler` (as diffusers users
 * assign pipe.scheduler); later changes to `scheduler` do not reach the pipeline. */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_set_scheduler(nodus_pipeline *pipeline,
                                                                    const nodus_scheduler *scheduler);
/* A new scheduler handle holding a copy of the pipeline's, freed with nodus_scheduler_free(). */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_scheduler(nodus_pipeline *pipeline,
                                                                nodus_scheduler **out_scheduler);

/* Loads a LoRA file or PEFT folder (as nodus_model_load_lora) as adapter
 * `adapter_name` into the UNet and the text encoder: each takes the layers
 * that match it (unet. / lora_unet_ keys, text_encoder. / lora_te_ keys), as
 * diffusers' pipeline.load_lora_weights. NODUS_ERROR_INVALID_ARGUMENT when no
 * layer matches either model; then nothing changed. */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_load_lora(nodus_pipeline *pipeline, const char *path,
                                                                const char *adapter_name);
/* Activates exactly `names` with `weights` (diffusers set_adapters) in each component
 * that holds them. NODUS_ERROR_INVALID_ARGUMENT for a name neither holds. */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_set_adapters(nodus_pipeline *pipeline, const char *const *names,
                                                                   const float *weights, size_t count);

/* What nodus_pipeline_generate returns. */
typedef int32_t nodus_pipeline_output;
enum {
    NODUS_PIPELINE_OUTPUT_IMAGE = 0,  /* float32 [N, H, W, 3] in [0, 1] (diffusers output_type="np") */
    NODUS_PIPELINE_OUTPUT_LATENT = 1  /* float32 [N, C, H/8, W/8] (output_type="latent") */
};
/* "image", "latent"; NULL for an unknown value. */
NODUS_API const char *nodus_pipeline_output_name(nodus_pipeline_output output);
/* Parses a name made by nodus_pipeline_output_name(). NODUS_ERROR_INVALID_ARGUMENT if unknown. */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_output_from_name(const char *name,
                                                                       nodus_pipeline_output *out_output);

/* The arguments of diffusers' StableDiffusionPipeline.__call__. */
typedef struct nodus_generate_params {
    uint32_t struct_size;               /* sizeof(nodus_generate_params), set by nodus_generate_params_init */
    const char *const *prompts;         /* UTF-8, one per batch row (required, at least one)       */
    size_t prompt_count;
    /* 0: the empty prompt for every row (default); 1: that prompt for every row;
     * else one per prompt. Ignored without guidance. */
    const char *const *negative_prompts;
    size_t negative_prompt_count;
    int32_t steps;                      /* inference steps (default 50)                             */
    float guidance_scale;               /* classifier-free guidance; <= 1 disables it (default 7.5) */
    int32_t height, width;              /* pixels, multiples of 8; 0 = the UNet's sample_size * 8   */
    uint64_t seed;                      /* torch.Generator("cpu").manual_seed(seed) (default 0)     */
    int32_t images_per_prompt;          /* default 1                                                */
    int32_t clip_skip;                  /* diffusers' clip_skip on the prompts (default 0 = none)   */
    nodus_pipeline_output output;       /* default NODUS_PIPELINE_OUTPUT_IMAGE                      */
    nodus_progress_callback progress;   /* after each step; may be NULL                             */
    void *progress_user_data;
    /* img2img (diffusers' StableDiffusionImg2ImgPipeline): the starting images, float32
     * [1 or N, H, W, 3] in [0, 1], which set the size (height and width 0 or equal), or NULL.
     * Encoded with the VAE, latent_dist.sample(generator) * scaling_factor, noised to the first
     * of the last int(steps * strength) timesteps, which then run. */
    const nodus_tensor *image;
    double strength;                    /* img2img, inpainting: in [0, 1] (default 0.8)             */
    /* Inpainting (diffusers' StableDiffusionInpaintPipeline), with `image`: float32 [1 or N, H, W]
     * (or [.., 1]), from 0.5 up where the image is repainted, or NULL. A 9-channel inpainting UNet
     * takes the mask and the masked image's latents at every step; a 4-channel UNet has the
     * known region blended back after every step. Inpainting callers usually set strength 1. */
    const nodus_tensor *mask;
} nodus_generate_params;

/* 50 steps, guidance 7.5, default size, seed 0, one image per prompt, images out. */
NODUS_API void nodus_generate_params_init(nodus_generate_params *params);
/* Runs the pipeline from prompts to `output`, whose dtype, ndim, shape, data and
 * size_bytes the caller sets (float32; shape as the output kind above, N =
 * prompt_count * images_per_prompt). With output->data NULL only the shape is
 * reported. The same seed gives the same images as diffusers with
 * generator=torch.Generator("cpu").manual_seed(seed). NODUS_ERROR_INVALID_ARGUMENT
 * for sizes that are not multiples of 8 or bad prompts (invalid UTF-8, no prompt),
 * NODUS_ERROR_CANCELLED when the callback stops it (output untouched). */
NODUS_API NODUS_NODISCARD nodus_status nodus_pipeline_generate(nodus_pipeline *pipeline,
                                                               const nodus_generate_params *params,
                                                               nodus_tensor *output);

/* ---- Noise -------------------------------------------------------------- */

/* Fills a float32 tensor with the values of
 * torch.randn(shape, generator=torch.Generator().manual_seed(seed)) on CPU, bit
 * for bit. `output` must have dtype, ndim, shape, data and size_bytes set. */
NODUS_API NODUS_NODISCARD nodus_status nodus_randn(uint64_t seed, nodus_tensor *output);

#ifdef __cplusplus
}
#endif

#endif /* NODUS_H */
