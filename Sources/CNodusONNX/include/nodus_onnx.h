/* A read-only view of an ONNX ModelProto (`.onnx` file), parsed with the
 * protobuf classes of Debian's libonnx (ONNX 1.12, `onnx/onnx-ml.pb.h`).
 * Internal to Nodus: NodusFormats' ONNXModel reads it; it is not part of the
 * public ABI in include/nodus.h.
 *
 * Ownership: everything a getter returns (strings, dims, data pointers) is owned
 * by the `nodus_onnx_model` and stays valid until nodus_onnx_model_free.
 * Strings are byte ranges, not NUL-terminated: protobuf strings may hold NULs.
 * Getters take an index and return 1 when it is in range, else 0 (and leave
 * the out-parameter zeroed). No function throws or aborts: every C++
 * exception is caught at this boundary.
 *
 * Enum values are ONNX's own numbers (TensorProto.DataType for element types,
 * AttributeProto.AttributeType for attribute types), so the Swift side maps
 * them by name. */
#ifndef NODUS_ONNX_H
#define NODUS_ONNX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NODUS_ONNX_INTERNAL __attribute__((visibility("hidden")))

/* A parsed model. Opaque; created by nodus_onnx_model_open, freed by nodus_onnx_model_free. */
typedef struct nodus_onnx_model nodus_onnx_model;

/* `size` bytes at `data` (data may be NULL when size is 0). Owned by the model. */
typedef struct nodus_onnx_string {
    const char *data;
    size_t size;
} nodus_onnx_string;

/* Status of nodus_onnx_model_open. */
typedef enum nodus_onnx_status {
    NODUS_ONNX_OK = 0,
    NODUS_ONNX_IO = 1,      /* cannot open, stat or read the file, or it is not a regular file */
    NODUS_ONNX_FORMAT = 2,  /* not a valid protobuf ModelProto (truncated, garbled, over 2 GB) */
    NODUS_ONNX_INTERNAL_ERROR = 3 /* out of memory, or an unexpected C++ exception */
} nodus_onnx_status;

/* Which field of a TensorProto holds its elements. */
typedef enum nodus_onnx_data_kind {
    NODUS_ONNX_DATA_NONE = 0,     /* no field holds data (an empty tensor, or the data is missing) */
    NODUS_ONNX_DATA_RAW = 1,      /* raw_data: `count` little-endian bytes at `data` */
    NODUS_ONNX_DATA_FLOAT = 2,    /* float_data: `count` floats at `data` */
    NODUS_ONNX_DATA_INT32 = 3,    /* int32_data: `count` int32 at `data` (also holds the 8/16-bit types) */
    NODUS_ONNX_DATA_INT64 = 4,    /* int64_data: `count` int64 at `data` */
    NODUS_ONNX_DATA_DOUBLE = 5,   /* double_data: `count` doubles at `data` */
    NODUS_ONNX_DATA_UINT64 = 6,   /* uint64_data: `count` uint64 at `data` */
    NODUS_ONNX_DATA_STRING = 7,   /* string_data: `count` strings, read with nodus_onnx_tensor_string */
    NODUS_ONNX_DATA_EXTERNAL = 8  /* data_location EXTERNAL: read nodus_onnx_tensor_external_entry */
} nodus_onnx_data_kind;

/* One TensorProto (an initializer, or the value of a TENSOR attribute). */
typedef struct nodus_onnx_tensor {
    nodus_onnx_string name;
    int32_t elem_type;         /* TensorProto.DataType: 1 FLOAT, 7 INT64, 10 FLOAT16, 16 BFLOAT16, ... */
    int32_t rank;              /* number of dims */
    const int64_t *dims;       /* `rank` values as stored (not checked: may be negative) */
    int32_t data_kind;         /* nodus_onnx_data_kind of the field that holds the data */
    uint32_t data_fields;      /* bit (1u << kind) for every data field that is set (RAW when raw_data
                                  is present even if empty; typed fields when non-empty; EXTERNAL when
                                  data_location is EXTERNAL): more than one bit is a conflict */
    const void *data;          /* RAW and typed kinds: the first byte / element; else NULL */
    size_t count;              /* RAW: bytes; typed kinds and STRING: elements; else 0 */
    size_t external_count;     /* number of external_data key/value entries */
    int32_t has_segment;       /* 1 when the tensor is a segment of a larger tensor (unsupported) */
    const void *proto;         /* the TensorProto, for the nodus_onnx_tensor_* getters below */
} nodus_onnx_tensor;

/* Which list of graph values nodus_onnx_model_value_info reads. */
typedef enum nodus_onnx_value_list {
    NODUS_ONNX_GRAPH_INPUTS = 0,
    NODUS_ONNX_GRAPH_OUTPUTS = 1
} nodus_onnx_value_list;

/* One graph input or output (ValueInfoProto). */
typedef struct nodus_onnx_value_info {
    nodus_onnx_string name;
    int32_t is_tensor;   /* 1 when the type is a tensor type; 0 when absent or another kind (sequence, map, ...) */
    int32_t elem_type;   /* TensorProto.DataType, 0 when unknown */
    int64_t rank;        /* -1 when no shape is known */
} nodus_onnx_value_info;

/* One NodeProto. */
typedef struct nodus_onnx_node {
    nodus_onnx_string name;
    nodus_onnx_string op_type;
    nodus_onnx_string domain;   /* "" (or "ai.onnx") for the default domain */
    size_t input_count;
    size_t output_count;
    size_t attribute_count;
    size_t metadata_count;
} nodus_onnx_node;

/* One AttributeProto. Which fields mean something depends on `type`. */
typedef struct nodus_onnx_attribute {
    nodus_onnx_string name;
    int32_t type;              /* AttributeProto.AttributeType: 1 FLOAT, 2 INT, 3 STRING, 4 TENSOR, 5 GRAPH,
                                  6 FLOATS, 7 INTS, 8 STRINGS, 9 SPARSE_TENSOR, 10 GRAPHS, ...; 0 UNDEFINED */
    int64_t i;                 /* INT */
    float f;                   /* FLOAT */
    nodus_onnx_string s;       /* STRING */
    const int64_t *ints;       /* INTS: `count` values */
    const float *floats;       /* FLOATS: `count` values */
    size_t count;              /* INTS / FLOATS / STRINGS: number of elements */
    nodus_onnx_string ref_attr_name; /* set when the attribute refers to a function's attribute */
} nodus_onnx_attribute;

/* Constructor. Parses the ModelProto at `path`, streaming it from the file
 * (opened with O_NONBLOCK, so a FIFO never blocks; anything but a regular file
 * is refused). Returns NODUS_ONNX_OK and sets *out_model, or another status,
 * sets *out_model to NULL and writes a NUL-terminated message (at most
 * error_capacity bytes) into `error` (which may be NULL when error_capacity is 0). */
NODUS_ONNX_INTERNAL int nodus_onnx_model_open(const char *path, nodus_onnx_model **out_model,
                                              char *error, size_t error_capacity);

/* Destructor. NULL is a no-op. */
NODUS_ONNX_INTERNAL void nodus_onnx_model_free(nodus_onnx_model *model);

/* Runs ONNX 1.12's checker (the steps of onnx::checker::check_model, with the
 * model's folder set so external data files are looked up beside the model)
 * when it knows every version the model uses: ir_version <= 8 and no opset
 * import newer than the schemas it has (ai.onnx 17, ai.onnx.ml 3, ...).
 * It requires the nodes in topological order. Returns 1 when it ran and the
 * model passed, 0 when it was skipped (the reason is written to `error`), -1
 * when the model failed (the checker's message is written to `error`). */
NODUS_ONNX_INTERNAL int nodus_onnx_model_check(const nodus_onnx_model *model, char *error, size_t error_capacity);

/* Model fields. */
NODUS_ONNX_INTERNAL int64_t nodus_onnx_model_ir_version(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL nodus_onnx_string nodus_onnx_model_producer_name(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL nodus_onnx_string nodus_onnx_model_producer_version(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL size_t nodus_onnx_model_opset_count(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL int nodus_onnx_model_opset(const nodus_onnx_model *model, size_t index,
                                               nodus_onnx_string *domain, int64_t *version);
/* Model-local functions (ModelProto.functions), counted so a caller can refuse them. */
NODUS_ONNX_INTERNAL size_t nodus_onnx_model_function_count(const nodus_onnx_model *model);

/* Graph fields. A model without a graph has an empty name and no values. */
NODUS_ONNX_INTERNAL int nodus_onnx_model_has_graph(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL nodus_onnx_string nodus_onnx_graph_name(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL size_t nodus_onnx_graph_sparse_initializer_count(const nodus_onnx_model *model);

/* Graph inputs (including any that are also initializers) and outputs. */
NODUS_ONNX_INTERNAL size_t nodus_onnx_graph_value_count(const nodus_onnx_model *model, int32_t list);
NODUS_ONNX_INTERNAL int nodus_onnx_graph_value(const nodus_onnx_model *model, int32_t list, size_t index,
                                               nodus_onnx_value_info *out);
/* Dimension `dim` of a value's shape: *value is dim_value, or -1 when the dimension
 * is symbolic or unknown; *param is its dim_param ("" when none). */
NODUS_ONNX_INTERNAL int nodus_onnx_graph_value_dim(const nodus_onnx_model *model, int32_t list, size_t index,
                                                   size_t dim, int64_t *value, nodus_onnx_string *param);

/* Initializers. */
NODUS_ONNX_INTERNAL size_t nodus_onnx_graph_initializer_count(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL int nodus_onnx_graph_initializer(const nodus_onnx_model *model, size_t index,
                                                     nodus_onnx_tensor *out);

/* A tensor's string_data element `index`. */
NODUS_ONNX_INTERNAL int nodus_onnx_tensor_string(const nodus_onnx_tensor *tensor, size_t index,
                                                 nodus_onnx_string *out);
/* A tensor's external_data entry `index` ("location", "offset", "length", "checksum"). */
NODUS_ONNX_INTERNAL int nodus_onnx_tensor_external_entry(const nodus_onnx_tensor *tensor, size_t index,
                                                         nodus_onnx_string *key, nodus_onnx_string *value);

/* Nodes, in file order. */
NODUS_ONNX_INTERNAL size_t nodus_onnx_graph_node_count(const nodus_onnx_model *model);
NODUS_ONNX_INTERNAL int nodus_onnx_graph_node(const nodus_onnx_model *model, size_t node, nodus_onnx_node *out);
/* Input or output `index` of a node; "" is an absent optional input. */
NODUS_ONNX_INTERNAL int nodus_onnx_node_input(const nodus_onnx_model *model, size_t node, size_t index,
                                              nodus_onnx_string *out);
NODUS_ONNX_INTERNAL int nodus_onnx_node_output(const nodus_onnx_model *model, size_t node, size_t index,
                                               nodus_onnx_string *out);
NODUS_ONNX_INTERNAL int nodus_onnx_node_metadata(const nodus_onnx_model *model, size_t node, size_t index,
                                                 nodus_onnx_string *key, nodus_onnx_string *value);
/* Frees every node's metadata once read: later nodus_onnx_node_metadata calls find none. */
NODUS_ONNX_INTERNAL void nodus_onnx_model_release_node_metadata(nodus_onnx_model *model);
NODUS_ONNX_INTERNAL int nodus_onnx_node_attribute(const nodus_onnx_model *model, size_t node, size_t index,
                                                  nodus_onnx_attribute *out);
/* Element `index` of a STRINGS attribute. */
NODUS_ONNX_INTERNAL int nodus_onnx_node_attribute_string(const nodus_onnx_model *model, size_t node,
                                                         size_t attribute, size_t index, nodus_onnx_string *out);
/* The value of a TENSOR attribute (a Constant node's `value`). */
NODUS_ONNX_INTERNAL int nodus_onnx_node_attribute_tensor(const nodus_onnx_model *model, size_t node,
                                                         size_t attribute, nodus_onnx_tensor *out);

#ifdef __cplusplus
}
#endif

#endif /* NODUS_ONNX_H */
