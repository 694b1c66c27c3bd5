import NodusCore
import NodusModels

/// What a sliding-window run calls per window: a VAE's decode, or a model with
/// one input (an exported 3D decoder or encoder), picking one of its outputs.
public struct WindowPredictor {
    private let predict: (Tensor) throws -> Tensor
    private let shape: ([Int]) throws -> [Int]

    /// - Parameter outputName: for a model with several outputs (an encoder's `z_mu`, `z_sigma`); nil: the first.
    /// - Throws: `NodusError.invalidArgument` for a model that takes more than one input, or an unknown output.
    public init(model: any DiffusionModel, outputName: String?) throws {
        if let decoder = model as? LatentDecoder, outputName == nil {
            predict = { try decoder.decode($0) }
            shape = { try decoder.decodedShape(forLatent: $0) }
            return
        }
        let inputs = model.inputSignatures, outputs = model.outputSignatures
        if model is LatentDecoder, inputs.isEmpty, let outputName {
            throw NodusError.invalidArgument("output_name '\(outputName)': a \(model.kind.name) decodes to one output; give no output name")
        }
        guard inputs.count == 1, let input = inputs.first?.name else {
            throw NodusError.invalidArgument("a windowed run needs a model with one input (a decoder or an encoder); this \(model.kind.name) model takes \(inputs.map(\.name).joined(separator: ", "))")
        }
        let index: Int
        if let outputName {
            guard let found = outputs.firstIndex(where: { $0.name == outputName }) else {
                throw NodusError.invalidArgument("the model has no output '\(outputName)' (it has \(outputs.map(\.name).joined(separator: ", ")))")
            }
            index = found
        } else {
            index = 0
        }
        predict = { try model.forwardAll([input: $0])[index] }
        shape = { try model.outputShapes(for: [input: Tensor(zeros: $0)])[index] }
    }

    public func callAsFunction(_ window: Tensor) throws -> Tensor { try predict(window) }

    /// The output shape for a window of this shape.
    public func outputShape(for window: [Int]) throws -> [Int] { try shape(window) }
}
