#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Sin-cos position embeddings that models compute rather than store: the 2-D
/// one of diffusers' `PatchEmbed` (`get_2d_sincos_pos_embed`, DiT) and a 3-D one
/// for volumes (MedSyn2).
enum PositionEmbedding {
    /// [rows * columns, width] for a grid of patches; `baseSize` is
    /// sample_size / patch_size, interpolation scale 1. Token n = r * columns + c
    /// gets [sincos(column position), sincos(row position)], computed in float64
    /// like diffusers and rounded to float32.
    static func sinCos2D(width: Int, rows: Int, columns: Int, baseSize: Int) throws -> Tensor {
        let quarter = width / 4
        // omega_k = 1 / 10000^(k / (width / 4)) over the 1-D half width.
        let omega = (0..<quarter).map { 1 / pow(10_000.0, Double($0) / (Double(width / 2) / 2)) }
        func coordinates(_ count: Int) -> [Double] {
            let step = Float(Double(count) / Double(baseSize))
            return (0..<count).map { Double(Float($0) / step) }
        }
        let rowPositions = coordinates(rows), columnPositions = coordinates(columns)
        let result = try Tensor(zeros: [rows * columns, width])
        let values = result.floats
        let half = width / 2
        for row in 0..<rows {
            for column in 0..<columns {
                let line = values + (row * columns + column) * width
                for k in 0..<quarter {
                    let columnAngle = columnPositions[column] * omega[k]
                    let rowAngle = rowPositions[row] * omega[k]
                    line[k] = Float(sin(columnAngle))
                    line[quarter + k] = Float(cos(columnAngle))
                    line[half + k] = Float(sin(rowAngle))
                    line[half + quarter + k] = Float(cos(rowAngle))
                }
            }
        }
        return result
    }

    /// The angles of 3-D rotary embeddings [depth * rows * columns, headWidth]: cos in the first half
    /// of each row, sin in the second (`rotaryEmbedding`'s table). The head's pairs are split as Wan's
    /// `WanRotaryPosEmbed` splits them: depth headWidth - 4 (headWidth / 6) channels, rows and columns
    /// 2 (headWidth / 6) each; per axis the frequencies theta^(-2j / axis channels) times the token's
    /// integer index, in float64, then cos and sin rounded to float32.
    static func rotary3D(headWidth: Int, grid: [Int], theta: Double) throws -> Tensor {
        let side = 2 * (headWidth / 6)
        let parts = [headWidth - 2 * side, side, side]
        let frequencies = parts.map { part in stride(from: 0, to: part, by: 2).map { 1 / pow(theta, Double($0) / Double(part)) } }
        let half = headWidth / 2
        let result = try Tensor(zeros: [grid.reduce(1, *), headWidth])
        var token = 0
        for depth in 0..<grid[0] {
            for row in 0..<grid[1] {
                for column in 0..<grid[2] {
                    let line = result.floats + token * headWidth
                    var pair = 0
                    for (axis, position) in [depth, row, column].enumerated() {
                        for frequency in frequencies[axis] {
                            let angle = Double(position) * frequency
                            line[pair] = Float(cos(angle))
                            line[half + pair] = Float(sin(angle))
                            pair += 1
                        }
                    }
                    token += 1
                }
            }
        }
        return result
    }

    /// [depth * rows * columns, width] for a 3-D grid of patches, tokens in (depth, row, column)
    /// order: each third of the width is diffusers' `get_1d_sincos_pos_embed_from_grid` (sines,
    /// then cosines) of the token's depth, row and column index, computed in float64 and
    /// rounded to float32. `width` must be a multiple of 6.
    static func sinCos3D(width: Int, grid: [Int]) throws -> Tensor {
        let third = width / 3, half = third / 2
        let omega = (0..<half).map { 1 / pow(10_000.0, Double($0) / Double(half)) }
        let result = try Tensor(zeros: [grid.reduce(1, *), width])
        let values = result.floats
        var token = 0
        for depth in 0..<grid[0] {
            for row in 0..<grid[1] {
                for column in 0..<grid[2] {
                    let line = values + token * width
                    for (axis, position) in [depth, row, column].enumerated() {
                        for k in 0..<half {
                            let angle = Double(position) * omega[k]
                            line[axis * third + k] = Float(sin(angle))
                            line[axis * third + half + k] = Float(cos(angle))
                        }
                    }
                    token += 1
                }
            }
        }
        return result
    }
}
