import NodusCore
import NodusFormats

/// An exported denoiser in the sampling loops: what it is conditioned on, read
/// off its graph, so `nodus.sample` runs ONNX DiTs and UNets as it runs native ones.
extension ONNXGraphModel {
    /// How the samplers feed an export: DiT-style class labels (with the
    /// guidance null class) or UNet-style encoder hidden states.
    public enum Conditioning: Sendable, Equatable {
        /// `class_labels`; the null class is the last row of the table the labels index
        /// (a DiT's `num_embeds_ada_norm + 1` rows).
        case classes(nullLabel: Int64)
        /// `encoder_hidden_states` of `width` per token.
        case context(width: Int)
    }

    /// The conditioning of a graph with inputs `sample`, `timestep` and either
    /// `class_labels` (gathered from a table) or `encoder_hidden_states` (a fixed
    /// last axis), as diffusers' modules export; nil for any other graph.
    public var conditioning: Conditioning? {
        let names = Set(file.graph.inputs.map(\.name))
        guard names.contains("sample"), names.contains("timestep") else { return nil }
        if names.contains("class_labels") {
            let table = file.graph.nodes.first { node in
                node.opType == "Gather" && node.inputs.count == 2 && node.inputs[1] == "class_labels"
            }
            guard let table, let rows = file.graph.initializers[table.inputs[0]]?.shape.first, rows > 1 else { return nil }
            return .classes(nullLabel: Int64(rows - 1))
        }
        if names.contains("encoder_hidden_states"),
           case .fixed(let width)? = file.graph.inputs.first(where: { $0.name == "encoder_hidden_states" })?.shape?.last {
            return .context(width: width)
        }
        return nil
    }
}
