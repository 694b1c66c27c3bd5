#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// The 2-D sin-cos position embedding of diffusers' `PatchEmbed`
/// (`get_2d_sincos_pos_embed`), which DiT computes rather than stores.
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
}
