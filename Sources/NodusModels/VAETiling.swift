import NodusCore

/// The settings of diffusers' `AutoencoderKL` tiling (`vae.enable_tiling()`):
/// images larger than a tile are encoded, and latents larger than a tile
/// decoded, in overlapping tiles that are blended together, so memory stays
/// bounded by the tile size.
///
/// Matches diffusers 0.42: `tile_sample_min_size` (the config's
/// `sample_size` by default), `tile_latent_min_size = tile_sample_min_size /
/// 2^(levels - 1)`, `tile_overlap_factor` 0.25; `_encode` tiles when the
/// image's width or height exceeds the sample tile, `_decode` when the latent's
/// exceeds the latent tile.
///
/// Limitations: setting the tile size sets both diffusers attributes (users of
/// diffusers set `tile_latent_min_size` themselves when they change
/// `tile_sample_min_size`), and it must be a multiple of 4 * 2^(levels - 1)
/// (32 for the SD VAE), so that every tile boundary and blend falls on whole
/// latent cells; the tiles then assemble to exactly H / 2^(levels - 1).
public struct VAETiling: Sendable, Equatable {
    /// `tile_sample_min_size`: a tile's image side, in pixels.
    public let sampleTileSize: Int
    /// `tile_latent_min_size`: a tile's latent side.
    public let latentTileSize: Int

    /// `tile_overlap_factor`.
    static let overlapFactor = 0.25

    /// - Parameters:
    ///   - sampleTileSize: pixels per tile side.
    ///   - downscale: pixels per latent cell, 2^(levels - 1).
    /// - Throws: `NodusError.invalidArgument` when the size is not a positive multiple of 4 * downscale.
    public init(sampleTileSize: Int, downscale: Int) throws {
        let unit = 4 * downscale
        guard sampleTileSize > 0, sampleTileSize % unit == 0 else {
            throw NodusError.invalidArgument(
                "the VAE tile size (tile_sample_size) must be a positive multiple of \(unit) pixels (4 latent cells of \(downscale) pixels), got \(sampleTileSize)")
        }
        self.sampleTileSize = sampleTileSize
        latentTileSize = sampleTileSize / downscale
    }

    /// Whether `_encode` tiles an image of `shape` [B, C, H, W].
    func tilesImage(_ shape: [Int]) -> Bool { shape[3] > sampleTileSize || shape[2] > sampleTileSize }

    /// Whether `_decode` tiles a latent of `shape` [B, C, h, w].
    func tilesLatent(_ shape: [Int]) -> Bool { shape[3] > latentTileSize || shape[2] > latentTileSize }

    /// The grid of `_tiled_encode`: image tiles in, latent moments out.
    public var encodeGrid: TileGrid { TileGrid(inputTile: sampleTileSize, outputTile: latentTileSize) }

    /// The grid of `tiled_decode`: latent tiles in, image tiles out.
    public var decodeGrid: TileGrid { TileGrid(inputTile: latentTileSize, outputTile: sampleTileSize) }
}
