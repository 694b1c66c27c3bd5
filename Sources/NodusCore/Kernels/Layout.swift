import CNodusKernels

/// Data movement between the layouts models use: NCHW images, token rows,
/// patches.
public enum Layout {
    /// [B, C, H, W] -> [B, (H/p)*(W/p), C*p*p], each token's features ordered
    /// (c, py, px) like a PyTorch conv weight, so a patch-embedding conv
    /// becomes one GEMM with the weight seen as [D, C*p*p].
    public static func patchify(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                batch: Int, channels: Int, height: Int, width: Int, patch: Int) {
        let rows = height / patch, columns = width / patch
        let features = channels * patch * patch
        Parallel.forEach(batch * rows, costPerItem: columns * features) { range in
            for unit in range {
                let item = unit / rows, row = unit % rows
                for column in 0..<columns {
                    var target = output + ((item * rows + row) * columns + column) * features
                    for channel in 0..<channels {
                        let plane = input + (item * channels + channel) * height * width
                        for py in 0..<patch {
                            let line = plane + (row * patch + py) * width + column * patch
                            target.update(from: line, count: patch)
                            target += patch
                        }
                    }
                }
            }
        }
    }

    /// [B, h*w, p*p*C] -> [B, C, h*p, w*p], features ordered (py, px, c) as
    /// diffusers' DiT unpatchify (`einsum("nhwpqc->nchpwq")`) reads them.
    public static func unpatchify(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                  batch: Int, channels: Int, rows: Int, columns: Int, patch: Int) {
        let height = rows * patch, width = columns * patch
        let features = patch * patch * channels
        Parallel.forEach(batch * channels, costPerItem: height * width) { range in
            for unit in range {
                let item = unit / channels, channel = unit % channels
                let plane = output + unit * height * width
                for y in 0..<height {
                    let row = y / patch, py = y % patch
                    for x in 0..<width {
                        let column = x / patch, px = x % patch
                        let token = (item * rows + row) * columns + column
                        plane[y * width + x] = input[token * features + (py * patch + px) * channels + channel]
                    }
                }
            }
        }
    }

    /// Whether `transpose` runs the AVX-512 or AVX2 kernel (`Sources/CNodusKernels/layout.c`).
    static let hasVectorTranspose = nodus_layout_supported() != 0

    /// Transposes each of `batch` matrices [rows, columns] to [columns, rows]:
    /// NCHW [B, C, HW] <-> tokens [B, HW, C].
    public static func transpose(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                 batch: Int, rows: Int, columns: Int) {
        if hasVectorTranspose {
            // Runs of 64 rows: four 16 x 16 register blocks per column block.
            let runs = (rows + 63) / 64
            Parallel.forEach(batch * runs, costPerItem: 64 * columns) { range in
                for unit in range {
                    let item = unit / runs, first = (unit % runs) * 64
                    _ = nodus_transpose_rows(input + item * rows * columns, output + item * rows * columns,
                                             Int64(rows), Int64(columns), Int64(first), Int64(min(rows, first + 64)))
                }
            }
            return
        }
        let block = 32
        let rowBlocks = (rows + block - 1) / block
        Parallel.forEach(batch * rowBlocks, costPerItem: block * columns) { range in
            for unit in range {
                let item = unit / rowBlocks
                let rowStart = (unit % rowBlocks) * block
                let rowEnd = min(rows, rowStart + block)
                let source = input + item * rows * columns
                let target = output + item * rows * columns
                var columnStart = 0
                while columnStart < columns {
                    let columnEnd = min(columns, columnStart + block)
                    for row in rowStart..<rowEnd {
                        for column in columnStart..<columnEnd {
                            target[column * rows + row] = source[row * columns + column]
                        }
                    }
                    columnStart = columnEnd
                }
            }
        }
    }

    /// Nearest-neighbour 2x upsampling of NCHW planes ([planes, H, W] -> [planes, 2H, 2W]).
    public static func upsampleNearest2x(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                         planes: Int, height: Int, width: Int) {
        Parallel.forEach(planes * height, costPerItem: width * 4) { range in
            for unit in range {
                let source = input + unit * width
                let plane = unit / height, y = unit % height
                let firstLine = output + (plane * 2 * height + 2 * y) * 2 * width
                for x in 0..<width {
                    firstLine[2 * x] = source[x]
                    firstLine[2 * x + 1] = source[x]
                }
                (firstLine + 2 * width).update(from: firstLine, count: 2 * width)
            }
        }
    }

    /// Nearest-neighbour resize of [planes, height, width] to [planes, outHeight, outWidth]
    /// as `F.interpolate(mode="nearest", size=...)`: source index floor(dst * in / out).
    public static func resizeNearest(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, planes: Int,
                                     height: Int, width: Int, outHeight: Int, outWidth: Int) {
        Parallel.forEach(planes * outHeight, costPerItem: outWidth * 2) { range in
            for unit in range {
                let plane = unit / outHeight, y = unit % outHeight
                let source = input + (plane * height + y * height / outHeight) * width
                let line = output + unit * outWidth
                for x in 0..<outWidth { line[x] = source[x * width / outWidth] }
            }
        }
    }

    /// Copies columns `start ..< start + count` of a [rows, width] matrix.
    public static func sliceColumns(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                                    rows: Int, width: Int, start: Int, count: Int) {
        for row in 0..<rows {
            (output + row * count).update(from: input + row * width + start, count: count)
        }
    }

    /// Concatenates NCHW tensors along channels: each part is [B, C_i, spatial].
    public static func concatChannels(_ parts: [(pointer: UnsafePointer<Float>, channels: Int)],
                                      _ output: UnsafeMutablePointer<Float>, batch: Int, spatial: Int) {
        let total = parts.reduce(0) { $0 + $1.channels }
        for item in 0..<batch {
            var target = output + item * total * spatial
            for part in parts {
                let count = part.channels * spatial
                target.update(from: part.pointer + item * count, count: count)
                target += count
            }
        }
    }
}
