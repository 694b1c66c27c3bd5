/// Scaled dot-product attention over heads packed in the feature dimension, as
/// diffusers' `Attention` lays them out: q [B, Nq, H*D], k and v [B, Nk, H*D].
/// Queries are processed in blocks so memory is `blockRows * Nk` floats,
/// never Nq x Nk.
public struct AttentionShape: Sendable {
    public var batch: Int
    public var queryTokens: Int
    public var keyTokens: Int
    public var heads: Int
    public var headWidth: Int
    /// Floats between consecutive tokens of q, k, v and the output.
    public var queryStride: Int
    public var keyStride: Int
    public var valueStride: Int
    public var outputStride: Int

    public init(batch: Int, queryTokens: Int, keyTokens: Int, heads: Int, headWidth: Int) {
        self.batch = batch
        self.queryTokens = queryTokens
        self.keyTokens = keyTokens
        self.heads = heads
        self.headWidth = headWidth
        let width = heads * headWidth
        (queryStride, keyStride, valueStride, outputStride) = (width, width, width, width)
    }

    /// Floats the score block of one step may take (16 MB by default).
    public var scoreBudget = 4 << 20

    /// Query rows per block: enough for efficient GEMMs, bounded so the score
    /// block stays small for long sequences.
    public var blockRows: Int { min(queryTokens, max(1, scoreBudget / max(keyTokens, 1))) }

    /// Scratch floats `AttentionKernel.run` needs.
    public var scratchCount: Int { blockRows * keyTokens }
}

public enum AttentionKernel {
    public static func run(shape: AttentionShape, query: UnsafePointer<Float>, key: UnsafePointer<Float>,
                           value: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                           scratch: UnsafeMutablePointer<Float>, scale: Float) {
        let blockRows = shape.blockRows
        let keys = shape.keyTokens
        for item in 0..<shape.batch {
            for head in 0..<shape.heads {
                let headOffset = head * shape.headWidth
                let keyBase = key + item * keys * shape.keyStride + headOffset
                let valueBase = value + item * keys * shape.valueStride + headOffset
                var start = 0
                while start < shape.queryTokens {
                    let rows = min(blockRows, shape.queryTokens - start)
                    let queryBase = query + (item * shape.queryTokens + start) * shape.queryStride + headOffset
                    let outputBase = output + (item * shape.queryTokens + start) * shape.outputStride + headOffset
                    Gemm.multiply(transposeA: false, transposeB: true, m: rows, n: keys, k: shape.headWidth,
                                  alpha: scale, a: queryBase, lda: shape.queryStride, b: keyBase, ldb: shape.keyStride,
                                  c: scratch, ldc: keys)
                    Softmax.rows(scratch, rows: rows, width: keys)
                    Gemm.multiply(transposeA: false, transposeB: false, m: rows, n: shape.headWidth, k: keys,
                                  a: scratch, lda: keys, b: valueBase, ldb: shape.valueStride,
                                  c: outputBase, ldc: shape.outputStride)
                    start += rows
                }
            }
        }
    }
}
