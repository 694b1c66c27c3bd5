import NodusCore
import NodusGraph

/// Tiling: diffusers 0.42 `enable_tiling()` / `disable_tiling()` and the tiled
/// paths of `_encode` (`_tiled_encode`) and `_decode` (`tiled_decode`); see
/// `VAETiling` and `TileGrid`. Each tile shape gets its own plan, built for the
/// call and released after it, so a tiled call holds one tile's activations.
extension AutoencoderKLModel {
    /// `vae.enable_tiling()` with `tile_sample_min_size = sampleTileSize` (0: the
    /// config's `sample_size`), or `vae.disable_tiling()` when `enabled` is false.
    /// - Throws: `NodusError.invalidArgument` for a tile size `VAETiling` rejects.
    public func setTiling(enabled: Bool, sampleTileSize: Int = 0) throws {
        let tiling = try enabled ? tilingSettings(sampleTileSize: sampleTileSize) : nil
        structure.writing { self.tiling = tiling }
    }

    private func tilingSettings(sampleTileSize: Int) throws -> VAETiling {
        guard sampleTileSize >= 0 else {
            throw NodusError.invalidArgument("the VAE tile size (tile_sample_size) must be positive (0: the config's sample_size), got \(sampleTileSize)")
        }
        let size = sampleTileSize == 0 ? settings.sampleSize : sampleTileSize
        do {
            return try VAETiling(sampleTileSize: size, downscale: settings.downscale)
        } catch let error as NodusError where sampleTileSize == 0 {
            throw NodusError(error.code, "config.json of '\(directory)': sample_size \(size) cannot be the tile size: \(error.message)")
        }
    }

    /// `tiled_decode(z).sample`; each tile's plan within `budget`.
    func tiledDecode(_ latent: Tensor, tiling: VAETiling, budget: MemoryBudget) throws -> Tensor {
        try tiling.decodeGrid.run(latent) { shape in
            let executable = try Executable(graph: buildDecoder(latentShape: shape),
                                            packedWeights: packedWeights, budget: budget)
            return { tile in try executable.run(["latent": tile]) }
        }
    }

    /// `_tiled_encode(x)`: the blended moments; each tile's plan within `budget`.
    func tiledEncode(_ image: Tensor, tiling: VAETiling, budget: MemoryBudget) throws -> Tensor {
        try tiling.encodeGrid.run(image) { shape in
            let executable = try Executable(graph: buildEncoder(imageShape: shape),
                                            packedWeights: packedWeights, budget: budget)
            return { tile in try executable.run(["image": tile]) }
        }
    }
}
