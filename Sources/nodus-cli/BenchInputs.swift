import NodusCore
import NodusFormats

/// The inputs `nodus bench` runs a model on when none are given: random ones
/// of the shapes its config.json describes, as a benchmark of its pipeline would.
enum BenchInputs {
    /// DiT: sample [2, in_channels, sample_size, sample_size], timestep 500 and class
    /// labels [0, null class] (a guidance batch); UNet: the same sample and timestep,
    /// encoder_hidden_states [2, 77, cross_attention_dim]; VAE: a latent
    /// [1, latent_channels, s, s] for its decoder, s = sample_size / 2^(levels - 1);
    /// ONNX: every graph input at its declared shape (dynamic axes 1), float inputs
    /// random, integer ones 1.
    static func make(for model: ModelHandle) throws -> [(name: String, tensor: Tensor)] {
        let config = try model.config()
        func integer(_ key: String) throws -> Int {
            guard let value = config[key]?.intValue, value > 0 else {
                throw CLIError.failure("the config of '\(model.path)' has no positive integer '\(key)': give --input")
            }
            return value
        }
        let timestep = try Tensor(shape: [2], int64s: [500, 500])
        switch model.kindName {
        case "dit":
            let side = try integer("sample_size")
            return [
                ("sample", try RandnCommand.randn(shape: [2, try integer("in_channels"), side, side], seed: 0)),
                ("timestep", timestep),
                ("class_labels", try Tensor(shape: [2], int64s: [0, Int64(try integer("num_embeds_ada_norm"))])),
            ]
        case "unet":
            let side = try integer("sample_size")
            return [
                ("sample", try RandnCommand.randn(shape: [2, try integer("in_channels"), side, side], seed: 0)),
                ("timestep", timestep),
                ("encoder_hidden_states", try RandnCommand.randn(shape: [2, 77, try integer("cross_attention_dim")],
                                                                 seed: 1)),
            ]
        case "vae":
            let levels = config["block_out_channels"]?.arrayValue?.count ?? 0
            guard levels > 0 else {
                throw CLIError.failure("the config of '\(model.path)' has no block_out_channels: give --input")
            }
            let side = max(1, try integer("sample_size") >> (levels - 1))
            return [("latent", try RandnCommand.randn(shape: [1, try integer("latent_channels"), side, side], seed: 0))]
        case "onnx":
            return try model.signatures(input: true).enumerated().map { index, input in
                guard let declared = input.shape else {
                    throw CLIError.usage("input '\(input.name)' of '\(model.path)' has no declared shape: give --input")
                }
                let shape = declared.map { max($0, 1) }
                switch input.dtype {
                case "float32": return (input.name, try RandnCommand.randn(shape: shape, seed: UInt64(index)))
                case "int64": return (input.name, try Tensor(shape: shape, int64s: .init(repeating: 1, count: shape.reduce(1, *))))
                default: throw CLIError.usage("input '\(input.name)' of '\(model.path)' is \(input.dtype): give --input")
                }
            }
        default:
            throw CLIError.usage("no default inputs for a '\(model.kindName)' model: give --input")
        }
    }
}
