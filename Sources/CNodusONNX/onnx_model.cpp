// The ONNX ModelProto reader behind include/nodus_onnx.h.
//
// Links Debian's shared libonnx / libonnx_proto (package libonnx-dev, runtime
// package libonnx1) and libprotobuf (libprotobuf-dev, runtime libprotobuf32).
// A C host of libnodus.so therefore needs those two Debian runtime packages
// installed; protobuf is not linked statically, because libonnx_proto.so
// already links the shared libprotobuf and two copies would register the ONNX
// descriptors twice.
//
// Debian builds ONNX with ONNX_ML=1 and ONNX_NAMESPACE=onnx (see
// /usr/lib/x86_64-linux-gnu/cmake/ONNX/ONNXTargets.cmake): only onnx-ml.pb.h
// is installed, and the classes live in namespace onnx. Package.swift defines
// both macros for this target.

#include "nodus_onnx.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>
#include <google/protobuf/unknown_field_set.h>
#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/onnx_pb.h>

// Hidden, like the C functions: nothing of the reader is exported from libnodus.so.
struct __attribute__((visibility("hidden"))) nodus_onnx_model {
    onnx::ModelProto proto;
    // The folder of the file, for the checker's external-data checks ("." for a bare name).
    std::string folder;
    // NodeProto.metadata_props (field 9, added in ONNX 1.16; the dynamo exporter's name scopes):
    // ONNX 1.12's classes do not know the field and keep it among the unknown fields, so it is
    // decoded from there once, at open.
    std::vector<std::vector<onnx::StringStringEntryProto>> node_metadata;
};

namespace {

void write_message(char *error, size_t capacity, const std::string &message) {
    if (error == nullptr || capacity == 0) return;
    size_t length = message.size() < capacity - 1 ? message.size() : capacity - 1;
    std::memcpy(error, message.data(), length);
    error[length] = '\0';
}

nodus_onnx_string view(const std::string &text) { return {text.data(), text.size()}; }

const onnx::GraphProto *graph_of(const nodus_onnx_model *model) {
    if (model == nullptr || !model->proto.has_graph()) return nullptr;
    return &model->proto.graph();
}

const onnx::NodeProto *node_at(const nodus_onnx_model *model, size_t index) {
    const onnx::GraphProto *graph = graph_of(model);
    if (graph == nullptr || index >= static_cast<size_t>(graph->node_size())) return nullptr;
    return &graph->node(static_cast<int>(index));
}

constexpr int node_metadata_props_field = 9;

// Decodes every node's metadata_props from its unknown fields; false when an entry is garbled.
bool decode_node_metadata(nodus_onnx_model &model, std::string &problem) {
    if (!model.proto.has_graph()) return true;
    const onnx::GraphProto &graph = model.proto.graph();
    model.node_metadata.resize(static_cast<size_t>(graph.node_size()));
    for (int index = 0; index < graph.node_size(); index++) {
        const google::protobuf::UnknownFieldSet &unknown = graph.node(index).unknown_fields();
        for (int field = 0; field < unknown.field_count(); field++) {
            const google::protobuf::UnknownField &entry = unknown.field(field);
            if (entry.number() != node_metadata_props_field) continue;
            onnx::StringStringEntryProto decoded;
            if (entry.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED ||
                !decoded.ParseFromString(entry.length_delimited())) {
                problem = "node " + std::to_string(index) + " ('" + graph.node(index).name() +
                          "') has a garbled metadata_props entry";
                return false;
            }
            model.node_metadata[static_cast<size_t>(index)].push_back(std::move(decoded));
        }
        // The encoded copy goes: the metadata (stack traces among it) is most of a dynamo export's .onnx.
        model.proto.mutable_graph()->mutable_node(index)->mutable_unknown_fields()->Clear();
    }
    return true;
}

const onnx::AttributeProto *attribute_at(const nodus_onnx_model *model, size_t node, size_t index) {
    const onnx::NodeProto *proto = node_at(model, node);
    if (proto == nullptr || index >= static_cast<size_t>(proto->attribute_size())) return nullptr;
    return &proto->attribute(static_cast<int>(index));
}

const google::protobuf::RepeatedPtrField<onnx::ValueInfoProto> *value_list(const nodus_onnx_model *model,
                                                                           int32_t list) {
    const onnx::GraphProto *graph = graph_of(model);
    if (graph == nullptr) return nullptr;
    if (list == NODUS_ONNX_GRAPH_INPUTS) return &graph->input();
    if (list == NODUS_ONNX_GRAPH_OUTPUTS) return &graph->output();
    return nullptr;
}

void describe_tensor(const onnx::TensorProto &tensor, nodus_onnx_tensor *out) {
    *out = nodus_onnx_tensor{};
    out->name = view(tensor.name());
    out->elem_type = tensor.data_type();
    out->rank = tensor.dims_size();
    out->dims = tensor.dims().data();
    out->has_segment = tensor.has_segment() ? 1 : 0;
    out->external_count = static_cast<size_t>(tensor.external_data_size());
    out->proto = &tensor;

    uint32_t fields = 0;
    auto mark = [&fields](nodus_onnx_data_kind kind) { fields |= 1u << kind; };
    if (tensor.has_raw_data()) mark(NODUS_ONNX_DATA_RAW);
    if (tensor.float_data_size() > 0) mark(NODUS_ONNX_DATA_FLOAT);
    if (tensor.int32_data_size() > 0) mark(NODUS_ONNX_DATA_INT32);
    if (tensor.int64_data_size() > 0) mark(NODUS_ONNX_DATA_INT64);
    if (tensor.double_data_size() > 0) mark(NODUS_ONNX_DATA_DOUBLE);
    if (tensor.uint64_data_size() > 0) mark(NODUS_ONNX_DATA_UINT64);
    if (tensor.string_data_size() > 0) mark(NODUS_ONNX_DATA_STRING);
    if (tensor.data_location() == onnx::TensorProto::EXTERNAL) mark(NODUS_ONNX_DATA_EXTERNAL);
    out->data_fields = fields;

    // The kind reported: external first (it says where the bytes are), then raw, then typed.
    if (fields & (1u << NODUS_ONNX_DATA_EXTERNAL)) {
        out->data_kind = NODUS_ONNX_DATA_EXTERNAL;
    } else if (fields & (1u << NODUS_ONNX_DATA_RAW)) {
        out->data_kind = NODUS_ONNX_DATA_RAW;
        out->data = tensor.raw_data().data();
        out->count = tensor.raw_data().size();
    } else if (fields & (1u << NODUS_ONNX_DATA_FLOAT)) {
        out->data_kind = NODUS_ONNX_DATA_FLOAT;
        out->data = tensor.float_data().data();
        out->count = static_cast<size_t>(tensor.float_data_size());
    } else if (fields & (1u << NODUS_ONNX_DATA_INT32)) {
        out->data_kind = NODUS_ONNX_DATA_INT32;
        out->data = tensor.int32_data().data();
        out->count = static_cast<size_t>(tensor.int32_data_size());
    } else if (fields & (1u << NODUS_ONNX_DATA_INT64)) {
        out->data_kind = NODUS_ONNX_DATA_INT64;
        out->data = tensor.int64_data().data();
        out->count = static_cast<size_t>(tensor.int64_data_size());
    } else if (fields & (1u << NODUS_ONNX_DATA_DOUBLE)) {
        out->data_kind = NODUS_ONNX_DATA_DOUBLE;
        out->data = tensor.double_data().data();
        out->count = static_cast<size_t>(tensor.double_data_size());
    } else if (fields & (1u << NODUS_ONNX_DATA_UINT64)) {
        out->data_kind = NODUS_ONNX_DATA_UINT64;
        out->data = tensor.uint64_data().data();
        out->count = static_cast<size_t>(tensor.uint64_data_size());
    } else if (fields & (1u << NODUS_ONNX_DATA_STRING)) {
        out->data_kind = NODUS_ONNX_DATA_STRING;
        out->count = static_cast<size_t>(tensor.string_data_size());
    } else {
        out->data_kind = NODUS_ONNX_DATA_NONE;
    }
}

// onnx::checker::check_model(const ModelProto&) of ONNX 1.12, with the model's folder set: the
// public overload leaves it empty, and then checks external data files against the working
// directory (so every valid model with external data fails). The same steps as the library's
// internal check_model(model, ctx).
void check_model_in_folder(const onnx::ModelProto &model, const std::string &folder) {
    namespace checker = onnx::checker;
    if (!model.ir_version()) fail_check("The model does not have an ir_version set properly.");
    if (model.ir_version() > onnx::IR_VERSION) fail_check("Your model ir_version is higher than the checker's.");
    if (model.metadata_props_size() > 1) {
        std::unordered_set<std::string> keys;
        for (const onnx::StringStringEntryProto &entry : model.metadata_props()) {
            if (!keys.insert(entry.key()).second) fail_check("Your model has duplicate keys in metadata_props.");
        }
    }
    checker::CheckerContext context;
    context.set_ir_version(static_cast<int>(model.ir_version()));
    context.set_model_dir(folder);
    std::unordered_map<std::string, int> opsets;
    for (const onnx::OperatorSetIdProto &opset : model.opset_import()) {
        opsets[opset.domain()] = static_cast<int>(opset.version());
    }
    if (model.ir_version() >= 3) {
        if (opsets.empty()) fail_check("model with IR version >= 3 must specify opset_import for ONNX");
    } else if (opsets.empty()) {
        opsets[onnx::ONNX_DOMAIN] = 1;
    } else {
        fail_check("model with IR version < 3 cannot have opset_import specified");
    }
    context.set_opset_imports(opsets);
    checker::LexicalScopeContext lexical;
    checker::check_graph(model.graph(), context, lexical);
    if (context.get_ir_version() >= 8) checker::check_model_local_functions(model, context, lexical);
}

int parse(const char *path, nodus_onnx_model **out_model, char *error, size_t error_capacity) {
    const std::string name = path;
    int descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (descriptor < 0) {
        write_message(error, error_capacity, "cannot open '" + name + "': " + std::strerror(errno));
        return NODUS_ONNX_IO;
    }
    struct Closer {
        int descriptor;
        ~Closer() { close(descriptor); }
    } closer{descriptor};

    struct stat status;
    if (fstat(descriptor, &status) != 0) {
        write_message(error, error_capacity, "cannot stat '" + name + "': " + std::strerror(errno));
        return NODUS_ONNX_IO;
    }
    if (!S_ISREG(status.st_mode)) {
        write_message(error, error_capacity, "'" + name + "' is not a regular file");
        return NODUS_ONNX_IO;
    }
    if (status.st_size > INT_MAX) {
        write_message(error, error_capacity,
                      "'" + name + "' is " + std::to_string(status.st_size) +
                          " bytes; a protobuf holds at most 2 GB (2147483647 bytes), so larger models must keep "
                          "their weights in external data files");
        return NODUS_ONNX_FORMAT;
    }

    std::unique_ptr<nodus_onnx_model> model(new nodus_onnx_model);
    google::protobuf::io::FileInputStream input(descriptor);
    bool parsed;
    {
        google::protobuf::io::CodedInputStream coded(&input);
        coded.SetTotalBytesLimit(static_cast<int>(status.st_size));
        parsed = model->proto.ParseFromCodedStream(&coded) && coded.ConsumedEntireMessage();
    }
    if (input.GetErrno() != 0) {
        write_message(error, error_capacity, "cannot read '" + name + "': " + std::strerror(input.GetErrno()));
        return NODUS_ONNX_IO;
    }
    if (!parsed) {
        write_message(error, error_capacity,
                      "'" + name + "' is not an ONNX model: its protobuf is truncated or garbled (" +
                          std::to_string(status.st_size) + " bytes)");
        return NODUS_ONNX_FORMAT;
    }
    std::string problem;
    if (!decode_node_metadata(*model, problem)) {
        write_message(error, error_capacity, "'" + name + "' is not a valid ONNX model: " + problem);
        return NODUS_ONNX_FORMAT;
    }
    size_t slash = name.rfind('/');
    model->folder = slash == std::string::npos ? "." : slash == 0 ? "/" : name.substr(0, slash);
    *out_model = model.release();
    return NODUS_ONNX_OK;
}

}  // namespace

extern "C" {

int nodus_onnx_model_open(const char *path, nodus_onnx_model **out_model, char *error, size_t error_capacity) {
    if (out_model == nullptr) {
        write_message(error, error_capacity, "nodus_onnx_model_open: out_model is NULL");
        return NODUS_ONNX_INTERNAL_ERROR;
    }
    *out_model = nullptr;
    if (path == nullptr) {
        write_message(error, error_capacity, "nodus_onnx_model_open: path is NULL");
        return NODUS_ONNX_IO;
    }
    try {
        return parse(path, out_model, error, error_capacity);
    } catch (const std::bad_alloc &) {
        write_message(error, error_capacity, std::string("out of memory while parsing '") + path + "'");
    } catch (const std::exception &exception) {
        write_message(error, error_capacity, std::string("cannot parse '") + path + "': " + exception.what());
    } catch (...) {
        write_message(error, error_capacity, std::string("cannot parse '") + path + "': unknown C++ exception");
    }
    return NODUS_ONNX_INTERNAL_ERROR;
}

void nodus_onnx_model_free(nodus_onnx_model *model) { delete model; }

int nodus_onnx_model_check(const nodus_onnx_model *model, char *error, size_t error_capacity) {
    if (model == nullptr) {
        write_message(error, error_capacity, "no model");
        return -1;
    }
    try {
        const onnx::ModelProto &proto = model->proto;
        if (proto.ir_version() > onnx::IR_VERSION) {
            write_message(error, error_capacity,
                          "skipped: ir_version " + std::to_string(proto.ir_version()) +
                              " is newer than the checker's " + std::to_string(onnx::IR_VERSION));
            return 0;
        }
        const auto &known = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
        for (const onnx::OperatorSetIdProto &opset : proto.opset_import()) {
            const std::string domain = opset.domain() == "ai.onnx" ? std::string() : opset.domain();
            auto range = known.find(domain);
            if (range != known.end() && opset.version() > range->second.second) {
                write_message(error, error_capacity,
                              "skipped: opset " + std::to_string(opset.version()) + " of domain '" + opset.domain() +
                                  "' is newer than the checker's schemas (" + std::to_string(range->second.second) +
                                  ")");
                return 0;
            }
        }
        check_model_in_folder(proto, model->folder);
        write_message(error, error_capacity, "");
        return 1;
    } catch (const std::exception &exception) {
        write_message(error, error_capacity, exception.what());
    } catch (...) {
        write_message(error, error_capacity, "unknown C++ exception in the ONNX checker");
    }
    return -1;
}

int64_t nodus_onnx_model_ir_version(const nodus_onnx_model *model) {
    return model == nullptr ? 0 : model->proto.ir_version();
}

nodus_onnx_string nodus_onnx_model_producer_name(const nodus_onnx_model *model) {
    return model == nullptr ? nodus_onnx_string{} : view(model->proto.producer_name());
}

nodus_onnx_string nodus_onnx_model_producer_version(const nodus_onnx_model *model) {
    return model == nullptr ? nodus_onnx_string{} : view(model->proto.producer_version());
}

size_t nodus_onnx_model_opset_count(const nodus_onnx_model *model) {
    return model == nullptr ? 0 : static_cast<size_t>(model->proto.opset_import_size());
}

int nodus_onnx_model_opset(const nodus_onnx_model *model, size_t index, nodus_onnx_string *domain,
                           int64_t *version) {
    if (domain != nullptr) *domain = nodus_onnx_string{};
    if (version != nullptr) *version = 0;
    if (model == nullptr || index >= static_cast<size_t>(model->proto.opset_import_size())) return 0;
    const onnx::OperatorSetIdProto &opset = model->proto.opset_import(static_cast<int>(index));
    if (domain != nullptr) *domain = view(opset.domain());
    if (version != nullptr) *version = opset.version();
    return 1;
}

size_t nodus_onnx_model_function_count(const nodus_onnx_model *model) {
    return model == nullptr ? 0 : static_cast<size_t>(model->proto.functions_size());
}

int nodus_onnx_model_has_graph(const nodus_onnx_model *model) { return graph_of(model) != nullptr ? 1 : 0; }

nodus_onnx_string nodus_onnx_graph_name(const nodus_onnx_model *model) {
    const onnx::GraphProto *graph = graph_of(model);
    return graph == nullptr ? nodus_onnx_string{} : view(graph->name());
}

size_t nodus_onnx_graph_sparse_initializer_count(const nodus_onnx_model *model) {
    const onnx::GraphProto *graph = graph_of(model);
    return graph == nullptr ? 0 : static_cast<size_t>(graph->sparse_initializer_size());
}

size_t nodus_onnx_graph_value_count(const nodus_onnx_model *model, int32_t list) {
    const auto *values = value_list(model, list);
    return values == nullptr ? 0 : static_cast<size_t>(values->size());
}

int nodus_onnx_graph_value(const nodus_onnx_model *model, int32_t list, size_t index, nodus_onnx_value_info *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_value_info{};
    out->rank = -1;
    const auto *values = value_list(model, list);
    if (values == nullptr || index >= static_cast<size_t>(values->size())) return 0;
    const onnx::ValueInfoProto &value = values->Get(static_cast<int>(index));
    out->name = view(value.name());
    if (value.has_type() && value.type().has_tensor_type()) {
        const onnx::TypeProto_Tensor &tensor = value.type().tensor_type();
        out->is_tensor = 1;
        out->elem_type = tensor.elem_type();
        out->rank = tensor.has_shape() ? tensor.shape().dim_size() : -1;
    }
    return 1;
}

int nodus_onnx_graph_value_dim(const nodus_onnx_model *model, int32_t list, size_t index, size_t dim,
                               int64_t *value, nodus_onnx_string *param) {
    if (value != nullptr) *value = -1;
    if (param != nullptr) *param = nodus_onnx_string{};
    const auto *values = value_list(model, list);
    if (values == nullptr || index >= static_cast<size_t>(values->size())) return 0;
    const onnx::TypeProto &type = values->Get(static_cast<int>(index)).type();
    if (!type.has_tensor_type() || !type.tensor_type().has_shape()) return 0;
    const onnx::TensorShapeProto &shape = type.tensor_type().shape();
    if (dim >= static_cast<size_t>(shape.dim_size())) return 0;
    const onnx::TensorShapeProto_Dimension &dimension = shape.dim(static_cast<int>(dim));
    if (dimension.has_dim_value() && value != nullptr) *value = dimension.dim_value();
    if (dimension.has_dim_param() && param != nullptr) *param = view(dimension.dim_param());
    return 1;
}

size_t nodus_onnx_graph_initializer_count(const nodus_onnx_model *model) {
    const onnx::GraphProto *graph = graph_of(model);
    return graph == nullptr ? 0 : static_cast<size_t>(graph->initializer_size());
}

int nodus_onnx_graph_initializer(const nodus_onnx_model *model, size_t index, nodus_onnx_tensor *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_tensor{};
    const onnx::GraphProto *graph = graph_of(model);
    if (graph == nullptr || index >= static_cast<size_t>(graph->initializer_size())) return 0;
    describe_tensor(graph->initializer(static_cast<int>(index)), out);
    return 1;
}

int nodus_onnx_tensor_string(const nodus_onnx_tensor *tensor, size_t index, nodus_onnx_string *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_string{};
    if (tensor == nullptr || tensor->proto == nullptr) return 0;
    const auto &proto = *static_cast<const onnx::TensorProto *>(tensor->proto);
    if (index >= static_cast<size_t>(proto.string_data_size())) return 0;
    *out = view(proto.string_data(static_cast<int>(index)));
    return 1;
}

int nodus_onnx_tensor_external_entry(const nodus_onnx_tensor *tensor, size_t index, nodus_onnx_string *key,
                                     nodus_onnx_string *value) {
    if (key != nullptr) *key = nodus_onnx_string{};
    if (value != nullptr) *value = nodus_onnx_string{};
    if (tensor == nullptr || tensor->proto == nullptr) return 0;
    const auto &proto = *static_cast<const onnx::TensorProto *>(tensor->proto);
    if (index >= static_cast<size_t>(proto.external_data_size())) return 0;
    const onnx::StringStringEntryProto &entry = proto.external_data(static_cast<int>(index));
    if (key != nullptr) *key = view(entry.key());
    if (value != nullptr) *value = view(entry.value());
    return 1;
}

size_t nodus_onnx_graph_node_count(const nodus_onnx_model *model) {
    const onnx::GraphProto *graph = graph_of(model);
    return graph == nullptr ? 0 : static_cast<size_t>(graph->node_size());
}

int nodus_onnx_graph_node(const nodus_onnx_model *model, size_t node, nodus_onnx_node *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_node{};
    const onnx::NodeProto *proto = node_at(model, node);
    if (proto == nullptr) return 0;
    out->name = view(proto->name());
    out->op_type = view(proto->op_type());
    out->domain = view(proto->domain());
    out->input_count = static_cast<size_t>(proto->input_size());
    out->output_count = static_cast<size_t>(proto->output_size());
    out->attribute_count = static_cast<size_t>(proto->attribute_size());
    out->metadata_count = node < model->node_metadata.size() ? model->node_metadata[node].size() : 0;
    return 1;
}

int nodus_onnx_node_input(const nodus_onnx_model *model, size_t node, size_t index, nodus_onnx_string *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_string{};
    const onnx::NodeProto *proto = node_at(model, node);
    if (proto == nullptr || index >= static_cast<size_t>(proto->input_size())) return 0;
    *out = view(proto->input(static_cast<int>(index)));
    return 1;
}

int nodus_onnx_node_output(const nodus_onnx_model *model, size_t node, size_t index, nodus_onnx_string *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_string{};
    const onnx::NodeProto *proto = node_at(model, node);
    if (proto == nullptr || index >= static_cast<size_t>(proto->output_size())) return 0;
    *out = view(proto->output(static_cast<int>(index)));
    return 1;
}

int nodus_onnx_node_metadata(const nodus_onnx_model *model, size_t node, size_t index, nodus_onnx_string *key,
                             nodus_onnx_string *value) {
    if (key != nullptr) *key = nodus_onnx_string{};
    if (value != nullptr) *value = nodus_onnx_string{};
    if (node_at(model, node) == nullptr || node >= model->node_metadata.size() ||
        index >= model->node_metadata[node].size())
        return 0;
    const onnx::StringStringEntryProto &entry = model->node_metadata[node][index];
    if (key != nullptr) *key = view(entry.key());
    if (value != nullptr) *value = view(entry.value());
    return 1;
}

void nodus_onnx_model_release_node_metadata(nodus_onnx_model *model) {
    if (model != nullptr) std::vector<std::vector<onnx::StringStringEntryProto>>().swap(model->node_metadata);
}

int nodus_onnx_node_attribute(const nodus_onnx_model *model, size_t node, size_t index, nodus_onnx_attribute *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_attribute{};
    const onnx::AttributeProto *attribute = attribute_at(model, node, index);
    if (attribute == nullptr) return 0;
    out->name = view(attribute->name());
    out->type = attribute->type();
    out->i = attribute->i();
    out->f = attribute->f();
    out->s = view(attribute->s());
    out->ref_attr_name = view(attribute->ref_attr_name());
    switch (attribute->type()) {
    case onnx::AttributeProto::INTS:
        out->ints = attribute->ints().data();
        out->count = static_cast<size_t>(attribute->ints_size());
        break;
    case onnx::AttributeProto::FLOATS:
        out->floats = attribute->floats().data();
        out->count = static_cast<size_t>(attribute->floats_size());
        break;
    case onnx::AttributeProto::STRINGS:
        out->count = static_cast<size_t>(attribute->strings_size());
        break;
    default:
        break;
    }
    return 1;
}

int nodus_onnx_node_attribute_string(const nodus_onnx_model *model, size_t node, size_t attribute, size_t index,
                                     nodus_onnx_string *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_string{};
    const onnx::AttributeProto *proto = attribute_at(model, node, attribute);
    if (proto == nullptr || index >= static_cast<size_t>(proto->strings_size())) return 0;
    *out = view(proto->strings(static_cast<int>(index)));
    return 1;
}

int nodus_onnx_node_attribute_tensor(const nodus_onnx_model *model, size_t node, size_t attribute,
                                     nodus_onnx_tensor *out) {
    if (out == nullptr) return 0;
    *out = nodus_onnx_tensor{};
    const onnx::AttributeProto *proto = attribute_at(model, node, attribute);
    if (proto == nullptr || !proto->has_t()) return 0;
    describe_tensor(proto->t(), out);
    return 1;
}

}  // extern "C"
