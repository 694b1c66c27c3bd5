/// Fusing LoRA updates into a weight: `W' = W + sum_i f_i B_i A_i` with
/// B_i [rows, r_i] and A_i [r_i, columns], as PEFT's merge computes it.
/// Rows are processed in blocks that stay in the last-level cache between the
/// copy of W and the GEMM that adds onto it (one block for a DiT-XL/2 weight:
/// fewer, larger GEMMs measured faster than 256 KB blocks).
public enum LowRankMerge {
    public typealias Term = (down: UnsafePointer<Float>, up: UnsafePointer<Float>, rank: Int, factor: Float)

    /// target = weight + sum of the terms (target and weight must not overlap),
    /// in blocks of about `blockBytes` of target.
    public static func merge(_ weight: UnsafePointer<Float>, _ terms: [Term], into target: UnsafeMutablePointer<Float>,
                             rows: Int, columns: Int, blockBytes: Int = 8 << 20) {
        let blockRows = max(1, blockBytes / max(columns * 4, 1))
        var start = 0
        while start < rows {
            let count = min(blockRows, rows - start)
            (target + start * columns).update(from: weight + start * columns, count: count * columns)
            addBlock(terms, into: target, firstRow: start, rows: count, columns: columns)
            start += count
        }
    }

    /// target += sum of the terms.
    public static func add(_ terms: [Term], into target: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        addBlock(terms, into: target, firstRow: 0, rows: rows, columns: columns)
    }

    private static func addBlock(_ terms: [Term], into target: UnsafeMutablePointer<Float>, firstRow: Int, rows: Int,
                                 columns: Int) {
        for term in terms {
            Gemm.multiply(transposeA: false, transposeB: false, m: rows, n: columns, k: term.rank, alpha: term.factor,
                          a: term.up + firstRow * term.rank, lda: term.rank, b: term.down, ldb: columns, beta: 1,
                          c: target + firstRow * columns, ldc: columns)
        }
    }
}
