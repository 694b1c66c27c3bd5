/// Element-wise arithmetic for residual connections and modulation.
public enum Elementwise {
    /// output = a + b (all `count` long). `output` may alias `a` or `b`.
    public static func add(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                           count: Int) {
        Parallel.forEach(count) { range in
            for index in range { output[index] = a[index] + b[index] }
        }
    }

    /// output[r, :] = a[r, :] + row[r / rowsPerItem % rowCount... ]: adds one
    /// [rowsPerItem, width] block to each of `batch` items ([batch, rowsPerItem, width]).
    public static func addBroadcast(_ a: UnsafePointer<Float>, _ block: UnsafePointer<Float>,
                                    _ output: UnsafeMutablePointer<Float>, batch: Int, blockCount: Int) {
        Parallel.forEach(batch, costPerItem: blockCount) { range in
            for item in range {
                let offset = item * blockCount
                for index in 0..<blockCount { output[offset + index] = a[offset + index] + block[index] }
            }
        }
    }

    /// output[p, :] = input[p, :] + values[p] for each of `planes` planes of
    /// `planeSize` floats. `output` may alias `input`.
    public static func addPerPlane(_ input: UnsafePointer<Float>, _ values: UnsafePointer<Float>,
                                   _ output: UnsafeMutablePointer<Float>, planes: Int, planeSize: Int) {
        Parallel.forEach(planes, costPerItem: planeSize) { range in
            for plane in range {
                let offset = plane * planeSize, value = values[plane]
                for index in 0..<planeSize { output[offset + index] = input[offset + index] + value }
            }
        }
    }

    /// DiT's gated residual: output = residual + gate[b] * update, with
    /// [batch, tokens, width] tensors and a gate row per batch item read at
    /// `gateStride` floats apart. `output` may alias `residual`.
    public static func gatedResidual(residual: UnsafePointer<Float>, update: UnsafePointer<Float>,
                                     gate: UnsafePointer<Float>, gateStride: Int,
                                     output: UnsafeMutablePointer<Float>, batch: Int, tokens: Int, width: Int) {
        Parallel.forEach(batch * tokens, costPerItem: width) { range in
            for row in range {
                let gateRow = gate + (row / tokens) * gateStride
                let offset = row * width
                for index in 0..<width {
                    output[offset + index] = residual[offset + index] + gateRow[index] * update[offset + index]
                }
            }
        }
    }

    /// output = input * factor.
    public static func scale(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int,
                             factor: Float) {
        Parallel.forEach(count) { range in
            for index in range { output[index] = input[index] * factor }
        }
    }
}
