import NodusCore

/// The tile loop of diffusers' `AutoencoderKL._tiled_encode` and `tiled_decode`.
///
/// Matches diffusers 0.42: tiles of `inputTile` start every
/// `int(inputTile * 0.75)` along each axis (`range(0, size, overlap)`, the last
/// ones cut at the edge); each is mapped on its own; then, in row-major order
/// and in place, each output tile is blended with the (already blended) tile
/// above over `int(outputTile * 0.25)` rows (`blend_v`) and the one to its
/// left over as many columns (`blend_h`), cropped to its first
/// `outputTile - blend` rows and columns, and the crops are concatenated.
///
/// Tiles of one shape are mapped together, one shape at a time, so only one
/// plan (and its activation arena) is alive at once.
public struct TileGrid: Sendable {
    public let inputTile: Int
    public let outputTile: Int

    /// The step between tile starts (`overlap_size`).
    public var overlap: Int { Int(Double(inputTile) * (1 - VAETiling.overlapFactor)) }
    /// Rows (columns) blended with the neighbouring tile (`blend_extent`).
    public var blendExtent: Int { Int(Double(outputTile) * VAETiling.overlapFactor) }
    /// Rows (columns) of each output tile kept (`row_limit`).
    public var rowLimit: Int { outputTile - blendExtent }

    /// Tile starts along an axis of `size`.
    public func starts(_ size: Int) -> [Int] { Array(stride(from: 0, to: size, by: overlap)) }

    /// Maps every tile of `input` [B, C, H, W] and assembles the blended result.
    /// - Parameter mapper: for a tile shape, the function that maps tiles of that
    ///   shape (built once per shape, dropped before the next shape's).
    func run(_ input: Tensor, mapper: ([Int]) throws -> (Tensor) throws -> Tensor) throws -> Tensor {
        let shape = input.shape
        let rows = starts(shape[2]), columns = starts(shape[3])
        var groups: [(shape: [Int], tiles: [(row: Int, column: Int)])] = []
        for (row, top) in rows.enumerated() {
            for (column, left) in columns.enumerated() {
                let tileShape = [shape[0], shape[1], min(inputTile, shape[2] - top), min(inputTile, shape[3] - left)]
                if let index = groups.firstIndex(where: { $0.shape == tileShape }) {
                    groups[index].tiles.append((row, column))
                } else {
                    groups.append((tileShape, [(row, column)]))
                }
            }
        }
        var outputs = [[Tensor?]](repeating: [Tensor?](repeating: nil, count: columns.count), count: rows.count)
        for group in groups {
            let map = try mapper(group.shape)
            for (row, column) in group.tiles {
                let tile = try Tensor(zeros: group.shape)
                TileGrid.copyWindow(from: input, top: rows[row], left: columns[column], to: tile, top: 0, left: 0,
                                    height: group.shape[2], width: group.shape[3])
                outputs[row][column] = try map(tile)
            }
        }
        let tiles = try outputs.map { try $0.map { tile -> Tensor in
            guard let tile, tile.shape.count == 4, tile.shape[0] == shape[0] else {
                throw NodusError(.internal, "a VAE tile produced no [B, C, h, w] output")
            }
            return tile
        } }
        for row in tiles.indices {
            for column in tiles[row].indices {
                if row > 0 { blend(tiles[row - 1][column], into: tiles[row][column], vertical: true) }
                if column > 0 { blend(tiles[row][column - 1], into: tiles[row][column], vertical: false) }
            }
        }
        return try assemble(tiles)
    }

    /// `blend_v` (vertical) or `blend_h`: the first rows (columns) of `tile` fade in
    /// from the last ones of `previous`, `b = a * (1 - y / e) + b * (y / e)` in float32.
    func blend(_ previous: Tensor, into tile: Tensor, vertical: Bool) {
        let axis = vertical ? 2 : 3
        let extent = min(previous.shape[axis], tile.shape[axis], blendExtent)
        let planes = tile.shape[0] * tile.shape[1]
        let (height, width) = (tile.shape[2], tile.shape[3])
        let (previousHeight, previousWidth) = (previous.shape[2], previous.shape[3])
        for step in 0..<extent {
            let fraction = Double(step) / Double(extent)
            let keep = Float(1 - fraction), take = Float(fraction)
            for plane in 0..<planes {
                let a = previous.floats + plane * previousHeight * previousWidth
                let b = tile.floats + plane * height * width
                if vertical {
                    let source = a + (previousHeight - extent + step) * previousWidth, target = b + step * width
                    for x in 0..<width { target[x] = source[x] * keep + target[x] * take }
                } else {
                    let sourceColumn = previousWidth - extent + step
                    for y in 0..<height {
                        b[y * width + step] = a[y * previousWidth + sourceColumn] * keep + b[y * width + step] * take
                    }
                }
            }
        }
    }

    /// Concatenates each tile's first `rowLimit` rows and columns (`torch.cat` of the crops).
    private func assemble(_ tiles: [[Tensor]]) throws -> Tensor {
        let first = tiles[0][0].shape
        let heights = tiles.map { min(rowLimit, $0[0].shape[2]) }
        let widths = tiles[0].map { min(rowLimit, $0.shape[3]) }
        let result = try Tensor(zeros: [first[0], first[1], heights.reduce(0, +), widths.reduce(0, +)])
        var top = 0
        for (row, height) in heights.enumerated() {
            var left = 0
            for (column, width) in widths.enumerated() {
                TileGrid.copyWindow(from: tiles[row][column], top: 0, left: 0, to: result, top: top, left: left,
                                    height: height, width: width)
                left += width
            }
            top += height
        }
        return result
    }

    /// Copies a `height` x `width` window of every plane of one NCHW tensor into another.
    static func copyWindow(from source: Tensor, top sourceTop: Int, left sourceLeft: Int, to target: Tensor,
                           top targetTop: Int, left targetLeft: Int, height: Int, width: Int) {
        let planes = source.shape[0] * source.shape[1]
        let (sourceHeight, sourceWidth) = (source.shape[2], source.shape[3])
        let (targetHeight, targetWidth) = (target.shape[2], target.shape[3])
        for plane in 0..<planes {
            for y in 0..<height {
                let from = source.floats + (plane * sourceHeight + sourceTop + y) * sourceWidth + sourceLeft
                let to = target.floats + (plane * targetHeight + targetTop + y) * targetWidth + targetLeft
                to.update(from: from, count: width)
            }
        }
    }
}
