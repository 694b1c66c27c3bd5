import NodusCore
import NodusModels

/// What the denoising model is conditioned on, laid out for the model batch
/// of a sampling run, with the guidance order of its pipeline family.
enum ModelConditioning {
    /// DiT class labels [modelBatch]: [cond..., null...] under guidance (DiTPipeline).
    case classes(Tensor)
    /// UNet encoder hidden states [modelBatch, L, W]: [uncond..., cond...] under guidance
    /// (StableDiffusionPipeline).
    case context(Tensor)

    /// Whether the conditional half comes first in a guided model batch.
    var conditionalFirst: Bool {
        if case .classes = self { return true }
        return false
    }

    /// The model's named inputs for one step.
    func inputs(sample: Tensor, timestep: Tensor) -> [String: Tensor] {
        switch self {
        case .classes(let labels): ["sample": sample, "timestep": timestep, "class_labels": labels]
        case .context(let states): ["sample": sample, "timestep": timestep, "encoder_hidden_states": states]
        }
    }

    /// The conditioning a request gives `model`, for `batch` latents.
    static func make(model: any DiffusionModel, request: SamplingRequest, batch: Int,
                     guided: Bool) throws -> ModelConditioning {
        switch model {
        case let conditioned as any ClassConditionedModel:
            return try classes(request, model: model, batch: batch, guided: guided, nullLabel: conditioned.nullClassLabel)
        case let conditioned as any ContextConditionedModel:
            return try context(request, model: model, batch: batch, guided: guided, width: conditioned.contextWidth)
        case let exported as ONNXGraphModel:
            switch exported.conditioning {
            case .classes(let nullLabel)?:
                return try classes(request, model: model, batch: batch, guided: guided, nullLabel: nullLabel)
            case .context(let width)?:
                return try context(request, model: model, batch: batch, guided: guided, width: width)
            case nil:
                throw NodusError.unsupported("sampling needs a denoiser whose inputs are sample, timestep and class_labels or encoder_hidden_states; this ONNX graph takes \(exported.inputSignatures.map(\.name).joined(separator: ", "))")
            }
        default:
            throw NodusError.unsupported("sampling needs a denoising model (DiT or UNet), not \(model.kind.name)")
        }
    }

    private static func classes(_ request: SamplingRequest, model: any DiffusionModel, batch: Int, guided: Bool,
                                nullLabel: Int64) throws -> ModelConditioning {
        guard request.encoderHiddenStates == nil else {
            throw NodusError.invalidArgument("encoder_hidden_states was given, but a \(model.kind.name) model takes class_labels")
        }
        let labels = try classLabels(request.classLabels, batch: batch, guided: guided, nullLabel: nullLabel)
        return .classes(try Tensor(shape: [labels.count], int64s: labels))
    }

    private static func context(_ request: SamplingRequest, model: any DiffusionModel, batch: Int, guided: Bool,
                                width: Int) throws -> ModelConditioning {
        guard request.classLabels.isEmpty else {
            throw NodusError.invalidArgument("class_labels was given, but a \(model.kind.name) model takes encoder_hidden_states")
        }
        guard let states = request.encoderHiddenStates else {
            throw NodusError.invalidArgument("a \(model.kind.name) model needs encoder_hidden_states")
        }
        return .context(try context(states, batch: batch, guided: guided, width: width))
    }

    /// The labels of the model batch: [cond..., null...] under guidance.
    static func classLabels(_ labels: [Int64], batch: Int, guided: Bool, nullLabel: Int64) throws -> [Int64] {
        switch (guided, labels.count) {
        case (true, batch): return labels + Array(repeating: nullLabel, count: batch)
        case (true, 2 * batch): return labels
        case (false, batch): return labels
        default:
            let expected = guided ? "\(batch) or \(2 * batch)" : "\(batch)"
            throw NodusError.invalidArgument("class_labels has \(labels.count) labels; expected \(expected) for a batch of \(batch)\(guided ? " with guidance" : "")")
        }
    }

    /// The context of the model batch; a shared (uncond, cond) pair or a single
    /// cond row is repeated over the batch, as `num_images_per_prompt` does.
    static func context(_ states: Tensor, batch: Int, guided: Bool, width: Int) throws -> Tensor {
        let shape = states.shape
        let rows = guided ? [2 * batch, 2] : [batch, 1]
        guard shape.count == 3, rows.contains(shape[0]), shape[1] > 0, shape[2] == width else {
            let expected = guided ? "[\(2 * batch) or 2, tokens, \(width)] ([uncond..., cond...])"
                : "[\(batch) or 1, tokens, \(width)]"
            throw NodusError.shape("encoder_hidden_states must be \(expected) for a batch of \(batch)\(guided ? " with guidance" : "") (the model's cross_attention_dim is \(width)), got \(shape)")
        }
        let floats = try states.asFloat32()
        guard shape[0] != rows[0] else { return floats }
        // One row per group (uncond, cond or just cond), repeated `batch` times.
        let rowFloats = shape[1] * shape[2]
        let result = try Tensor(zeros: [rows[0], shape[1], shape[2]])
        for group in 0..<shape[0] {
            for item in 0..<batch {
                (result.floats + (group * batch + item) * rowFloats).update(from: floats.floats + group * rowFloats,
                                                                            count: rowFloats)
            }
        }
        return result
    }
}
