import CNodus

/// VAE tiling from the command line: `--tiled` and `--tile-size`, shared by the
/// commands that encode or decode.
extension ModelHandle {
    static let tilingOptions: [OptionSpec] = [
        .flag("tiled", "encode / decode in blended tiles (diffusers' vae.enable_tiling()): bounded memory"),
        .value("tile-size", "PIXELS", "tile side, implies --tiled (default: the VAE config's sample_size)"),
    ]

    /// Whether the arguments ask for tiling.
    static func wantsTiling(_ arguments: ParsedArguments) -> Bool {
        arguments.flag("tiled") || arguments.value("tile-size") != nil
    }

    /// `nodus_model_set_vae_tiling` as `--tiled` / `--tile-size` ask (nothing when neither is given).
    func setTiling(from arguments: ParsedArguments) throws {
        guard ModelHandle.wantsTiling(arguments) else { return }
        let size = try arguments.integer("tile-size", default: 0, in: 1...65_536)
        try check(nodus_model_set_vae_tiling(pointer, 1, Int32(size)), "cannot tile the VAE '\(path)'")
    }
}
