import Synchronization
import CNodusKernels

/// Scaled dot-product attention over heads packed in the feature dimension, as
/// diffusers' `Attention` lays them out: q [B, Nq, H*D], k and v [B, Nk, H*D].
/// At the AVX2 level and up it streams keys with an online softmax (tiles of query
/// rows over blocks of keys, threads taking tiles); elsewhere queries are
/// processed in blocks through GEMM so memory is `blockRows * Nk` floats.
/// Neither materialises Nq x Nk.
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
    /// Query i sees keys 0 ... i only (torch's `is_causal`; CLIP's text encoder).
    public var causal: Bool

    public init(batch: Int, queryTokens: Int, keyTokens: Int, heads: Int, headWidth: Int, causal: Bool = false) {
        self.causal = causal
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
        if streamingSupported && streaming(shape: shape, query: query, key: key, value: value, output: output,
                                           scale: scale) {
            return
        }
        blocked(shape: shape, query: query, key: key, value: value, output: output, scratch: scratch, scale: scale)
    }

    static let streamingSupported = nodus_attention_supported() != 0

    /// The streaming kernel over tiles split between the workers; false if it could not run.
    static func streaming(shape: AttentionShape, query: UnsafePointer<Float>, key: UnsafePointer<Float>,
                          value: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, scale: Float) -> Bool {
        let description = nodus_attention_shape(
            batch: Int64(shape.batch), query_tokens: Int64(shape.queryTokens), key_tokens: Int64(shape.keyTokens),
            heads: Int64(shape.heads), head_width: Int64(shape.headWidth), query_stride: Int64(shape.queryStride),
            key_stride: Int64(shape.keyStride), value_stride: Int64(shape.valueStride),
            output_stride: Int64(shape.outputStride), causal: shape.causal ? 1 : 0)
        return withUnsafePointer(to: description) { description in
            let tiles = Int(nodus_attention_tile_count(description))
            let completed = Atomic<Int>(0)
            Parallel.forEach(tiles, costPerItem: Int(nodus_attention_tile_rows()) * shape.keyTokens * shape.headWidth) { range in
                if nodus_attention_tiles(description, query, key, value, output, scale, Int64(range.lowerBound),
                                         Int64(range.upperBound)) != 0 {
                    completed.add(range.count, ordering: .relaxed)
                }
            }
            return completed.load(ordering: .relaxed) == tiles
        }
    }

    /// Sets the scores of keys after each query row's own token to `fill`
    /// (-inf before the softmax; 0 after it, exactly, whatever exp gave).
    static func hideFutureKeys(_ scores: UnsafeMutablePointer<Float>, firstRow: Int, rows: Int, keys: Int, fill: Float) {
        for row in 0..<rows where firstRow + row + 1 < keys {
            (scores + row * keys + firstRow + row + 1).update(repeating: fill, count: keys - firstRow - row - 1)
        }
    }

    /// Query blocks through GEMM: scores, a row softmax, and the weighted values.
    static func blocked(shape: AttentionShape, query: UnsafePointer<Float>, key: UnsafePointer<Float>,
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
                    if shape.causal { hideFutureKeys(scratch, firstRow: start, rows: rows, keys: keys, fill: -.infinity) }
                    Softmax.rows(scratch, rows: rows, width: keys)
                    if shape.causal { hideFutureKeys(scratch, firstRow: start, rows: rows, keys: keys, fill: 0) }
                    Gemm.multiply(transposeA: false, transposeB: false, m: rows, n: shape.headWidth, k: keys,
                                  a: scratch, lda: keys, b: valueBase, ldb: shape.valueStride,
                                  c: outputBase, ldc: shape.outputStride)
                    start += rows
                }
            }
        }
    }
}
