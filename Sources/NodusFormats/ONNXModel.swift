import CNodusONNX
import NodusCore

/// An ONNX model file (`.onnx`), parsed and validated: the frontend's view of a
/// `torch.onnx.export` output, for the graph importer.
///
/// `load` parses the protobuf with Debian's libonnx (C++, through `CNodusONNX`), reads the
/// main graph into value types and validates it (every failure is a `NodusError` whose message
/// names the file and the tensor, node or value concerned):
/// * the file: a regular file (a FIFO or directory is refused without blocking), a complete
///   protobuf (not truncated or garbled), a ModelProto with an `ir_version` and a graph;
/// * tensors (initializers and `Constant` values): a supported element type, non-negative dims
///   whose element count does not overflow, exactly one data field and the right one for the
///   dtype, and as many bytes / values as dims and dtype need (see `ONNXTensorReader`, which
///   also maps and checks external data);
/// * graph inputs and outputs: tensor types of a supported element type; a graph input that is
///   also an initializer must agree with it in dtype and shape (it is then the initializer);
/// * the graph: one producer per value, every node input and graph output produced, no cycle;
///   the nodes are returned in topological order;
/// * last, ONNX's own checker (`onnx::checker::check_model`, ONNX 1.12), where it knows the
///   model's IR and opset versions (IR <= 8, ai.onnx <= 17; opset-18 graphs skip it) and the
///   file's nodes are already in topological order (it requires that order; graphs sorted here
///   skip it).
///
/// Limitations: graph-valued attributes (`If` / `Loop` bodies), sparse initializers and segmented
/// tensors are refused; model-local functions are counted (`functionCount`) but not read;
/// intermediate `value_info` shapes are not read.
public struct ONNXModel: Sendable {
    public var irVersion: Int64
    /// Operator set versions by domain (`""` for ai.onnx).
    public var opsetImports: [String: Int64]
    /// `producer_name` and `producer_version` joined by a space (`"pytorch 2.13.0"`).
    public var producer: String
    public var graph: ONNXGraph
    /// The path the model was loaded from.
    public var path: String
    /// The number of model-local functions (`ModelProto.functions`); nodes calling them have
    /// the function's domain and name as domain and op type.
    public var functionCount: Int
    /// Whether ONNX's checker ran (and passed); false when the model's versions are newer than it knows.
    public var checkedByONNXChecker: Bool

    /// Loads and validates the model at `path`; external data is mapped from beside it.
    /// - Throws: `NodusError.io` (cannot read the file or its external data), `NodusError.format`
    ///   (not valid ONNX, or the model fails a check above), `NodusError.unsupported` (an element
    ///   type, attribute type or tensor layout Nodus does not handle).
    /// - Parameter access: how external data files are held (mapped, or read into memory).
    public static func load(_ path: String, access: FileAccess = .mapped) throws -> ONNXModel {
        let proto = try ONNXModelProto(path: path)
        let handle = proto.handle
        let reader = ONNXTensorReader(proto: proto, access: access)
        let context = reader.context

        let irVersion = nodus_onnx_model_ir_version(handle)
        guard irVersion > 0, nodus_onnx_model_has_graph(handle) == 1 else {
            throw NodusError.format("\(context) is not an ONNX model: it has \(irVersion > 0 ? "no graph" : "no ir_version")")
        }
        var opsetImports: [String: Int64] = [:]
        for index in 0..<nodus_onnx_model_opset_count(handle) {
            var domain = nodus_onnx_string()
            var version: Int64 = 0
            guard nodus_onnx_model_opset(handle, index, &domain, &version) == 1 else { continue }
            let name = domain.string == "ai.onnx" ? "" : domain.string
            if let earlier = opsetImports[name], earlier != version {
                throw NodusError.format("\(context) imports opset domain '\(name)' twice (versions \(earlier) and \(version))")
            }
            opsetImports[name] = version
        }
        guard !opsetImports.isEmpty else {
            throw NodusError.format("\(context) is not a valid ONNX model: it imports no operator set (opset_import)")
        }
        guard nodus_onnx_graph_sparse_initializer_count(handle) == 0 else {
            throw NodusError.unsupported("\(context) has sparse initializers, which Nodus does not support")
        }

        // Initializers.
        var initializers: [String: Tensor] = [:]
        var initializerNames: [String] = []
        for index in 0..<nodus_onnx_graph_initializer_count(handle) {
            var description = nodus_onnx_tensor()
            guard nodus_onnx_graph_initializer(handle, index, &description) == 1 else { continue }
            let name = description.name.string
            if initializers[name] != nil {
                throw NodusError.format("\(context): value '\(name)' is produced twice: by two initializers")
            }
            initializers[name] = try reader.tensor(description, subject: "initializer '\(name)'")
            initializerNames.append(name)
        }

        // Graph inputs and outputs; inputs that are initializers are constants with a default.
        let declaredInputs = try readValues(handle, list: NODUS_ONNX_GRAPH_INPUTS, kind: "graph input", context: context)
        let outputs = try readValues(handle, list: NODUS_ONNX_GRAPH_OUTPUTS, kind: "graph output", context: context)
        var inputs: [ONNXValueInfo] = []
        for input in declaredInputs {
            guard let initializer = initializers[input.name] else {
                inputs.append(input)
                continue
            }
            guard agrees(input, with: initializer) else {
                throw NodusError.format("\(context): graph input '\(input.name)' (\(describe(input))) and the initializer of the same name (\(DType.onnxElementTypeName(initializer.dtype.onnxElementType)) \(initializer.shape)) disagree")
            }
        }

        var nodes: [ONNXNode] = []
        let nodeCount = nodus_onnx_graph_node_count(handle)
        nodes.reserveCapacity(nodeCount)
        for index in 0..<nodeCount {
            nodes.append(try readNode(handle, index: index, reader: reader))
        }
        nodus_onnx_model_release_node_metadata(handle)  // the nodes hold their own copies now
        let order = try ONNXGraph.topologicalOrder(nodes, inputs: inputs, initializerNames: initializerNames,
                                                   outputs: outputs, context: context)
        let graph = ONNXGraph(name: nodus_onnx_graph_name(handle).string, inputs: inputs, outputs: outputs,
                              initializers: initializers, nodes: order.map { nodes[$0] })
        // ONNX's checker requires the file's node order to be topological; a graph sorted here skips it.
        let checked = order.elementsEqual(order.indices) ? try proto.check() : false
        let producer = [nodus_onnx_model_producer_name(handle).string, nodus_onnx_model_producer_version(handle).string]
            .filter { !$0.isEmpty }.joined(separator: " ")
        return ONNXModel(irVersion: irVersion, opsetImports: opsetImports, producer: producer, graph: graph, path: path,
                         functionCount: nodus_onnx_model_function_count(handle), checkedByONNXChecker: checked)
    }

    // MARK: - Reading the protobuf

    private static func readValues(_ handle: OpaquePointer, list: nodus_onnx_value_list, kind: String,
                                   context: String) throws -> [ONNXValueInfo] {
        let listNumber = Int32(list.rawValue)
        var values: [ONNXValueInfo] = []
        for index in 0..<nodus_onnx_graph_value_count(handle, listNumber) {
            var info = nodus_onnx_value_info()
            guard nodus_onnx_graph_value(handle, listNumber, index, &info) == 1 else { continue }
            let name = info.name.string
            guard info.is_tensor == 1 else {
                throw NodusError.unsupported("\(context): \(kind) '\(name)' is not a tensor (sequences, maps and optionals are not supported)")
            }
            var dtype: DType? = nil
            if info.elem_type != 0 {
                guard let known = DType(onnxElementType: info.elem_type) else {
                    throw NodusError.unsupported("\(context): \(kind) '\(name)' has element type \(DType.onnxElementTypeName(info.elem_type)), which Nodus does not support")
                }
                dtype = known
            }
            var shape: [ONNXDimension]? = nil
            if info.rank >= 0 {
                var dimensions: [ONNXDimension] = []
                for dimension in 0..<Int(info.rank) {
                    var value: Int64 = -1
                    var parameter = nodus_onnx_string()
                    _ = nodus_onnx_graph_value_dim(handle, listNumber, index, dimension, &value, &parameter)
                    if value >= 0 {
                        guard value < (1 << 40) else {
                            throw NodusError.format("\(context): \(kind) '\(name)' has dimension \(value), too large")
                        }
                        dimensions.append(.fixed(Int(value)))
                    } else {
                        dimensions.append(.symbolic(parameter.string))
                    }
                }
                shape = dimensions
            }
            values.append(ONNXValueInfo(name: name, dtype: dtype, shape: shape))
        }
        return values
    }

    private static func readNode(_ handle: OpaquePointer, index: Int, reader: ONNXTensorReader) throws -> ONNXNode {
        var node = nodus_onnx_node()
        _ = nodus_onnx_graph_node(handle, index, &node)
        let name = node.name.string
        let opType = node.op_type.string
        let domain = node.domain.string == "ai.onnx" ? "" : node.domain.string
        func string(_ read: (UnsafeMutablePointer<nodus_onnx_string>) -> Int32) -> String {
            var value = nodus_onnx_string()
            _ = read(&value)
            return value.string
        }
        let inputs = (0..<node.input_count).map { item in string { nodus_onnx_node_input(handle, index, item, $0) } }
        let outputs = (0..<node.output_count).map { item in string { nodus_onnx_node_output(handle, index, item, $0) } }
        var metadata: [String: String] = [:]
        for item in 0..<node.metadata_count {
            var key = nodus_onnx_string()
            var value = nodus_onnx_string()
            if nodus_onnx_node_metadata(handle, index, item, &key, &value) == 1 { metadata[key.string] = value.string }
        }
        let subject = name.isEmpty ? "node #\(index) (\(opType))" : "node '\(name)' (\(opType))"
        var attributes: [String: ONNXAttribute] = [:]
        for item in 0..<node.attribute_count {
            var attribute = nodus_onnx_attribute()
            guard nodus_onnx_node_attribute(handle, index, item, &attribute) == 1 else { continue }
            let attributeName = attribute.name.string
            let attributeSubject = "\(subject), attribute '\(attributeName)'"
            guard attributes[attributeName] == nil else {
                throw NodusError.format("\(reader.context): \(attributeSubject) appears twice")
            }
            attributes[attributeName] = try readAttribute(attribute, handle: handle, node: index, index: item,
                                                          reader: reader, subject: attributeSubject)
        }
        return ONNXNode(name: name, opType: opType, domain: domain, inputs: inputs, outputs: outputs,
                        attributes: attributes, metadata: metadata)
    }

    private static func readAttribute(_ attribute: nodus_onnx_attribute, handle: OpaquePointer, node: Int, index: Int,
                                      reader: ONNXTensorReader, subject: String) throws -> ONNXAttribute {
        let where_ = "\(reader.context): \(subject)"
        let count = Int(attribute.count)
        switch attribute.type {
        case 1: return .float(attribute.f)
        case 2: return .int(attribute.i)
        case 3: return .string(attribute.s.string)
        case 4:
            var tensor = nodus_onnx_tensor()
            guard nodus_onnx_node_attribute_tensor(handle, node, index, &tensor) == 1 else {
                throw NodusError.format("\(where_) is a TENSOR attribute without a tensor")
            }
            return .tensor(try reader.tensor(tensor, subject: subject))
        case 6:
            return .floats(count == 0 ? [] : Array(UnsafeBufferPointer(start: attribute.floats, count: count)))
        case 7:
            return .ints(count == 0 ? [] : Array(UnsafeBufferPointer(start: attribute.ints, count: count)))
        case 8:
            return .strings((0..<count).map { item in
                var value = nodus_onnx_string()
                _ = nodus_onnx_node_attribute_string(handle, node, index, item, &value)
                return value.string
            })
        default:
            let names = [0: "UNDEFINED", 5: "GRAPH", 9: "SPARSE_TENSOR", 10: "GRAPHS", 11: "TYPE_PROTO",
                         12: "TYPE_PROTOS", 13: "SPARSE_TENSORS"]
            let typeName = names[Int(attribute.type)] ?? "type \(attribute.type)"
            throw NodusError.unsupported("\(where_) has type \(typeName), which Nodus does not support (subgraphs of If / Loop / Scan are not supported)")
        }
    }

    /// Whether a graph input's declared dtype and shape admit `initializer` (symbolic and unknown
    /// dimensions admit any size; no declared dtype or shape admits any).
    private static func agrees(_ input: ONNXValueInfo, with initializer: Tensor) -> Bool {
        if let dtype = input.dtype, dtype != initializer.dtype { return false }
        guard let shape = input.shape else { return true }
        guard shape.count == initializer.shape.count else { return false }
        return zip(shape, initializer.shape).allSatisfy { dimension, size in
            if case .fixed(let declared) = dimension { return declared == size }
            return true
        }
    }

    private static func describe(_ value: ONNXValueInfo) -> String {
        let type = value.dtype.map { DType.onnxElementTypeName($0.onnxElementType) } ?? "?"
        let shape = value.shape.map { "[" + $0.map(\.description).joined(separator: ", ") + "]" } ?? "any shape"
        return "\(type) \(shape)"
    }
}
