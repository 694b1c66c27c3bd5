#if canImport(Glibc)
import Glibc
#endif

/// Timestep and label embeddings.
public enum Embedding {
    /// diffusers' `get_timestep_embedding`: [B] timesteps -> [B, dim] sinusoids,
    /// computed in float32 as torch does. Odd `dim` gets a zero last column.
    public static func sinusoidal(timesteps: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, batch: Int,
                                  dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float,
                                  maxPeriod: Float) {
        let half = dim / 2
        let logPeriod = -Float(log(Double(maxPeriod)))
        var frequencies = [Float](repeating: 0, count: half)
        for index in 0..<half {
            frequencies[index] = expf(logPeriod * Float(index) / (Float(half) - downscaleFreqShift))
        }
        for item in 0..<batch {
            let row = output + item * dim
            for index in 0..<half {
                let angle = scale * (timesteps[item] * frequencies[index])
                let (first, second) = flipSinToCos ? (cosf(angle), sinf(angle)) : (sinf(angle), cosf(angle))
                row[index] = first
                row[half + index] = second
            }
            if dim % 2 == 1 { row[dim - 1] = 0 }
        }
    }

    /// Gathers rows of a [rows, width] table. Returns the first index out of
    /// range, or nil when every index is valid (nothing is written then only
    /// for the rows before it).
    public static func lookup(table: UnsafePointer<Float>, rows: Int, width: Int, indices: UnsafePointer<Int64>,
                              count: Int, output: UnsafeMutablePointer<Float>) -> Int64? {
        for item in 0..<count {
            let index = indices[item]
            guard index >= 0 && index < rows else { return index }
            (output + item * width).update(from: table + Int(index) * width, count: width)
        }
        return nil
    }
}
