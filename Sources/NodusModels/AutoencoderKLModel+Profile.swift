import NodusCore
import NodusGraph

/// Profiling the VAE: its decoder (input "latent", as `decode`) or its encoder
/// (input "image", as `encode`), untiled whatever `tiling` says (one plan for
/// the whole input).
extension AutoencoderKLModel {
    public func profile(_ inputs: [String: Tensor], rounds: Int) throws -> ExecutionProfile {
        let checked = try ModelInputs(inputs, known: ["latent", "image"])
        guard inputs.count == 1 else {
            throw NodusError.invalidArgument("a VAE profiles its decoder ('latent') or its encoder ('image'): give one of them")
        }
        return try defaultContext.run(structure: structure) { plans in
            if inputs["latent"] != nil {
                let z = try checked.image("latent", channels: settings.latentChannels, multiple: 1)
                let executable = try plans.executable(for: z.shape, graph: Self.decoderGraph) {
                    try buildDecoder(latentShape: z.shape)
                }
                return try executable.profile(["latent": z], rounds: rounds)
            }
            _ = try encodedShape(forImage: try checked.required("image").shape)  // a folder that cannot encode says why
            let x = try checked.image("image", channels: settings.inChannels, multiple: settings.downscale)
            let executable = try plans.executable(for: x.shape, graph: Self.encoderGraph) {
                try buildEncoder(imageShape: x.shape)
            }
            return try executable.profile(["image": x], rounds: rounds)
        }
    }
}
