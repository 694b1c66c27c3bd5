import NodusGraph

/// Volumes as token sequences, written with the IR's primitive reshape and
/// transpose: the 3-D patchify of a Conv3d with kernel = stride = patch, and
/// its inverse.
extension GraphBuilder {
    /// [B, C, D, H, W] -> [B, (D/p)(H/p)(W/p), C p p p], tokens in (depth, row, column)
    /// order and each patch's values in a Conv3d weight's (channel, z, y, x) order.
    mutating func patchifyVolume(_ x: ValueID, patch: Int) throws -> ValueID {
        let s = shape(of: x)
        let grid = [s[2] / patch, s[3] / patch, s[4] / patch]
        let split = try reshape(x, to: [s[0], s[1], grid[0], patch, grid[1], patch, grid[2], patch])
        let patches = try transpose(split, permutation: [0, 2, 4, 6, 1, 3, 5, 7])
        return try reshape(patches, to: [s[0], grid.reduce(1, *), s[1] * patch * patch * patch])
    }

    /// [B, N, p p p C] -> [B, C, D, H, W] for a token grid `grid` (D/p, H/p, W/p): each token's
    /// values in (z, y, x, channel) order, as DiT-style final projections write them.
    mutating func unpatchifyVolume(_ tokens: ValueID, patch: Int, grid: [Int], channels: Int) throws -> ValueID {
        let batch = shape(of: tokens)[0]
        let split = try reshape(tokens, to: [batch, grid[0], grid[1], grid[2], patch, patch, patch, channels])
        let volume = try transpose(split, permutation: [0, 7, 1, 4, 2, 5, 3, 6])
        return try reshape(volume, to: [batch, channels, grid[0] * patch, grid[1] * patch, grid[2] * patch])
    }
}
