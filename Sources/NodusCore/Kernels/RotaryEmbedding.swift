/// Rotary position embedding (RoPE) on interleaved channel pairs, as Flux,
/// Wan and MedSyn2's 3D variant apply it: in each head, the pair
/// (x[2i], x[2i + 1]) of token n becomes (x[2i] cos a - x[2i + 1] sin a,
/// x[2i] sin a + x[2i + 1] cos a) with a = angles[n, i], in float32.
public enum RotaryEmbedding {
    /// - Parameters:
    ///   - input, output: [batch, tokens, heads x headWidth] (they may be the same buffer).
    ///   - angles: [tokens, headWidth]: cos a in the first half of each row, sin a in the second.
    public static func apply(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
                             angles: UnsafePointer<Float>, batch: Int, tokens: Int, heads: Int, headWidth: Int) {
        let half = headWidth / 2, width = heads * headWidth
        Parallel.forEach(batch * tokens, costPerItem: 4 * width) { rows in
            for row in rows {
                let table = angles + (row % tokens) * headWidth
                let source = input + row * width, target = output + row * width
                for head in 0..<heads {
                    let x = source + head * headWidth, y = target + head * headWidth
                    for pair in 0..<half {
                        let cosine = table[pair], sine = table[half + pair]
                        let real = x[2 * pair], imaginary = x[2 * pair + 1]
                        y[2 * pair] = real * cosine - imaginary * sine
                        y[2 * pair + 1] = real * sine + imaginary * cosine
                    }
                }
            }
        }
    }
}
