import NodusCore
import NodusFormats
import NodusGraph

/// An ONNX model's initializers under the names the importer gives them: a
/// Linear's weight as `<module path>.weight` (the dynamo exporter leaves it
/// anonymous, `val_51`; the module path survives in the node's name scopes or,
/// from the TorchScript exporter, its name), every other initializer under its
/// own name. What LoRA adapters target: a MatMul's weight, stored [in, out],
/// and a Gemm's, [out, in] or [in, out] by its transB.
final class ONNXWeightSource: WeightSource {
    let location: String
    private let initializers: [String: Tensor]
    /// Importer name -> initializer name, and its Linear layout.
    private let sources: [String: (initializer: String, layout: WeightLayout?)]
    /// Initializer name -> importer name.
    let importerNames: [String: String]

    init(model: ONNXModel) {
        location = model.path
        initializers = model.graph.initializers
        var sources: [String: (initializer: String, layout: WeightLayout?)] = [:]
        var importerNames: [String: String] = [:]
        for node in model.graph.nodes where node.domain.isEmpty || node.domain == "ai.onnx" {
            guard node.inputs.count > 1, let weight = model.graph.initializers[node.inputs[1]], weight.rank == 2,
                  importerNames[node.inputs[1]] == nil else { continue }
            let layout: WeightLayout
            switch node.opType {
            case "MatMul": layout = .inputsByOutputs
            case "Gemm":
                let transposed = node.attributes["transB"].flatMap { if case .int(let value) = $0 { value != 0 } else { nil } }
                layout = transposed == true ? .outputsByInputs : .inputsByOutputs
            default: continue
            }
            var name = node.inputs[1]
            if node.opType == "MatMul", let module = node.modulePath, sources[module + ".weight"] == nil,
               model.graph.initializers[module + ".weight"] == nil {
                name = module + ".weight"
            }
            sources[name] = (node.inputs[1], layout)
            importerNames[node.inputs[1]] = name
        }
        for name in model.graph.initializers.keys where importerNames[name] == nil {
            sources[name] = (name, nil)
            importerNames[name] = name
        }
        self.sources = sources
        self.importerNames = importerNames
    }

    var names: [String] { sources.keys.sorted() }

    func contains(_ name: String) -> Bool { sources[name] != nil }

    func tensor(_ name: String) throws -> Tensor {
        guard let source = sources[name], let tensor = initializers[source.initializer] else {
            throw NodusError.format("'\(location)' has no initializer '\(name)'")
        }
        return tensor
    }

    func float32(_ name: String) throws -> Tensor { try tensor(name).asFloat32() }

    func layout(of name: String) -> WeightLayout { sources[name]?.layout ?? .outputsByInputs }

    /// The Linears LoRA adapters can target: name -> [out, in].
    var linearTargets: [String: [Int]] {
        var targets: [String: [Int]] = [:]
        for (name, source) in sources {
            guard let layout = source.layout, let shape = initializers[source.initializer]?.shape else { continue }
            let features = layout.features(of: shape)
            targets[name] = [features.outFeatures, features.inFeatures]
        }
        return targets
    }
}
