import CNodusKernels

/// Nodus' own matrix product (`Sources/CNodusKernels/gemm.c`), in an AVX-512
/// form (12 x 32 register tiles) and an AVX2 + FMA form (6 x 16), chosen by
/// `CPULevel.inUse`. It packs blocks of A and B into register-tile panels as it
/// goes, reads B straight from the image for a convolution (no im2col buffer),
/// and adds biases and the old C as it stores a tile. OpenBLAS is the path
/// below AVX2. Panel widths (and so packed weights) are those of the level in
/// use, asked from C once.
enum PackedGemm {
    static let isSupported = nodus_gemm_supported() != 0

    static let tileRows = Int(nodus_gemm_tile_rows())
    static let tileColumns = Int(nodus_gemm_tile_columns())

    /// `C [m, n] = A [m, k] B [k, n]`, with B, biases and accumulation to be set.
    static func problem(m: Int, n: Int, k: Int, a: nodus_gemm_matrix, c: UnsafeMutablePointer<Float>,
                        ldc: Int) -> nodus_gemm_problem {
        var problem = nodus_gemm_problem()
        (problem.m, problem.n, problem.k, problem.a) = (Int64(m), Int64(n), Int64(k), a)
        (problem.c, problem.ldc, problem.scale) = (c, Int64(ldc), 1)
        return problem
    }

    /// A matrix read through strides, element (i, j) at `i * rowStride + j * columnStride`.
    static func matrix(_ data: UnsafePointer<Float>, rowStride: Int, columnStride: Int) -> nodus_gemm_matrix {
        nodus_gemm_matrix(data: data, row_stride: Int64(rowStride), column_stride: Int64(columnStride))
    }

    /// Floats A [m, k] takes packed, or nil on CPUs the packed product does not run on.
    static func packedCount(m: Int, k: Int) -> Int? {
        isSupported ? Int(nodus_gemm_packed_a_count(Int64(m), Int64(k))) : nil
    }

    /// Floats B [k, n] takes packed, or nil on CPUs the packed product does not run on.
    static func packedCount(k: Int, n: Int) -> Int? {
        isSupported ? Int(nodus_gemm_packed_b_count(Int64(k), Int64(n))) : nil
    }

    /// Packs A [m, k] (a constant operand) into `target` (`packedCount(m:k:)` floats).
    static func pack(a: nodus_gemm_matrix, m: Int, k: Int, into target: UnsafeMutablePointer<Float>) {
        withUnsafePointer(to: a) { a in
            Parallel.forEach((m + tileRows - 1) / tileRows, costPerItem: tileRows * k) { tiles in
                _ = nodus_gemm_pack_a(a, Int64(m), Int64(k), Int64(tiles.lowerBound * tileRows),
                                      Int64(min(m, tiles.upperBound * tileRows)), target)
            }
        }
    }

    /// Packs B [k, n] (a constant operand) into `target` (`packedCount(k:n:)` floats).
    static func pack(b: nodus_gemm_matrix, k: Int, n: Int, into target: UnsafeMutablePointer<Float>) {
        withUnsafePointer(to: b) { b in
            Parallel.forEach((n + tileColumns - 1) / tileColumns, costPerItem: tileColumns * k) { tiles in
                _ = nodus_gemm_pack_b(b, Int64(k), Int64(n), Int64(tiles.lowerBound * tileColumns),
                                      Int64(min(n, tiles.upperBound * tileColumns)), target)
            }
        }
    }

    /// Runs the product on the workers. Each packs all of the operand the split
    /// does not divide, so the split divides the larger one: runs of whole tile
    /// columns (each worker packs its part of B, all of A) when C is wider than
    /// tall, else runs of tile rows, or whichever gives every worker a share.
    static func run(_ problem: nodus_gemm_problem) {
        let (rows, columns) = (Int(problem.m), Int(problem.n))
        let columnTiles = (columns + tileColumns - 1) / tileColumns
        let rowTiles = (rows + tileRows - 1) / tileRows
        let depth = max(1, Int(problem.k))
        withUnsafePointer(to: problem) { problem in
            let byColumns = columnTiles >= rowTiles || (columns >= rows && columnTiles >= Parallel.threads)
            if byColumns {
                Parallel.forEach(columnTiles, costPerItem: rows * depth * tileColumns) { tiles in
                    _ = nodus_gemm_block(problem, 0, Int64(rows), Int64(tiles.lowerBound * tileColumns),
                                         Int64(min(columns, tiles.upperBound * tileColumns)))
                }
            } else {
                Parallel.forEach(rowTiles, costPerItem: tileRows * depth * columns) { tiles in
                    _ = nodus_gemm_block(problem, Int64(tiles.lowerBound * tileRows),
                                         Int64(min(rows, tiles.upperBound * tileRows)), 0, Int64(columns))
                }
            }
        }
    }
}
