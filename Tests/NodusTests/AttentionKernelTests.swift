import XCTest
@testable import NodusCore

/// The streaming (online-softmax) attention kernel against the formula in
/// float64, on shapes that cross its tiles (64 query rows; 32 at a time on
/// AVX-512), key blocks (128 on AVX2, 144 on AVX-512), key and column panels
/// (12 or 10 on AVX-512) and register groups: odd token counts, narrow, odd
/// and wide heads.
final class AttentionKernelTests: XCTestCase {
    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    private func reference(_ shape: AttentionShape, _ query: [Float], _ key: [Float], _ value: [Float],
                           scale: Double) -> [Float] {
        let (nq, nk, d, width) = (shape.queryTokens, shape.keyTokens, shape.headWidth, shape.heads * shape.headWidth)
        var expected = [Float](repeating: 0, count: shape.batch * nq * width)
        for b in 0..<shape.batch { for h in 0..<shape.heads { for i in 0..<nq {
            // Causal: query i sees keys 0 ... i.
            let seen = shape.causal ? min(nk, i + 1) : nk
            var scores = [Double](repeating: 0, count: seen)
            for j in 0..<seen {
                for c in 0..<d { scores[j] += Double(query[(b * nq + i) * width + h * d + c]) * Double(key[(b * nk + j) * width + h * d + c]) }
                scores[j] *= scale
            }
            let top = scores.max() ?? 0
            let weights = scores.map { Foundation.exp($0 - top) }
            let total = weights.reduce(0, +)
            for c in 0..<d {
                var sum = 0.0
                for j in 0..<seen { sum += weights[j] * Double(value[(b * nk + j) * width + h * d + c]) }
                expected[(b * nq + i) * width + h * d + c] = Float(sum / total)
            }
        } } }
        return expected
    }

    func testStreamingAttentionMatchesTheFormula() throws {
        XCTAssertEqual(AttentionKernel.streamingSupported, CPULevel.inUse >= .avx2, "level \(CPULevel.inUse.name)")
        try XCTSkipUnless(AttentionKernel.streamingSupported, "below AVX2: the blocked path runs instead")
        let cases = [(batch: 2, queries: 70, keys: 77, heads: 3, width: 40),   // cross-attention-like, 2 tiles
                     (batch: 1, queries: 130, keys: 300, heads: 2, width: 17),  // odd width, 3 key blocks
                     (batch: 1, queries: 5, keys: 129, heads: 1, width: 80),    // 64 + 16 columns
                     (batch: 1, queries: 64, keys: 64, heads: 1, width: 160),   // wide head
                     (batch: 1, queries: 67, keys: 33, heads: 2, width: 72),    // DiT-XL/2: 3 runs of 24 at AVX2
                     (batch: 1, queries: 9, keys: 7, heads: 3, width: 20),      // 8 + 8 + 4 at AVX2, keys < 8
                     (batch: 1, queries: 90, keys: 150, heads: 2, width: 24)]   // 26 queries in a last half, 144 + 6 keys
        for (index, c) in cases.enumerated() {
            let shape = AttentionShape(batch: c.batch, queryTokens: c.queries, keyTokens: c.keys, heads: c.heads,
                                       headWidth: c.width)
            let width = c.heads * c.width
            // Large scores test the running maximum: softmax must not overflow.
            let query = random(c.batch * c.queries * width, seed: UInt64(10 + index)).map { $0 * 4 }
            let key = random(c.batch * c.keys * width, seed: UInt64(20 + index))
            let value = random(c.batch * c.keys * width, seed: UInt64(30 + index))
            var output = [Float](repeating: .nan, count: query.count)
            XCTAssertTrue(AttentionKernel.streaming(shape: shape, query: query, key: key, value: value, output: &output,
                                                    scale: 0.7))
            let expected = reference(shape, query, key, value, scale: 0.7)
            // Scores reach about 50 here: float32 rounding of a score of that size moves its
            // weight by about 5e-6 relative, in any float32 implementation.
            XCTAssertLessThan(relativeError(output, expected), 2e-5, "case \(index) \(c)")
        }
    }

    /// The causal mask (CLIP's text encoder) on the path of the CPU level in use, streaming
    /// or blocked: tiles that end before a key block, blocks cut by the diagonal, a
    /// last partial tile, and query rows the blocked path splits into small blocks.
    func testCausalAttentionSeesOnlyEarlierKeys() throws {
        let cases = [(batch: 2, tokens: 77, heads: 2, width: 40, blockBudget: 4 << 20),  // CLIP's 77 tokens
                     (batch: 1, tokens: 200, heads: 1, width: 24, blockBudget: 4 << 20),  // 2 key blocks, 4 tiles
                     (batch: 1, tokens: 70, heads: 3, width: 8, blockBudget: 700)]        // blocks of 10 query rows
        for (index, c) in cases.enumerated() {
            var shape = AttentionShape(batch: c.batch, queryTokens: c.tokens, keyTokens: c.tokens, heads: c.heads,
                                       headWidth: c.width, causal: true)
            shape.scoreBudget = c.blockBudget
            let width = c.heads * c.width
            let query = random(c.batch * c.tokens * width, seed: UInt64(40 + index)).map { $0 * 3 }
            let key = random(c.batch * c.tokens * width, seed: UInt64(50 + index))
            let value = random(c.batch * c.tokens * width, seed: UInt64(60 + index))
            var output = [Float](repeating: .nan, count: query.count)
            var scratch = [Float](repeating: 0, count: shape.scratchCount)
            AttentionKernel.run(shape: shape, query: query, key: key, value: value, output: &output, scratch: &scratch,
                                scale: 0.5)
            let expected = reference(shape, query, key, value, scale: 0.5)
            XCTAssertLessThan(relativeError(output, expected), 2e-5, "case \(index) \(c) at \(CPULevel.inUse.name)")
            // The first token sees only itself: its output is its own value row, exactly as weighted.
            for column in 0..<width {
                XCTAssertEqual(output[column], value[column], accuracy: 1e-6, "case \(index): token 0, column \(column)")
            }
        }
    }

    private func relativeError(_ output: [Float], _ expected: [Float]) -> Float {
        var worst: Float = 0
        for i in 0..<expected.count { worst = max(worst, abs(output[i] - expected[i])) }
        return worst / (expected.map(abs).max() ?? 1)
    }
}
