/// Row-wise softmax in place.
public enum Softmax {
    public static func rows(_ values: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        Parallel.forEach(rows, costPerItem: width * 8) { range in
            for row in range {
                let x = values + row * width
                var maximum = -Float.infinity
                for index in 0..<width { maximum = max(maximum, x[index]) }
                var sum: Float = 0
                var index = 0
                let shift = VectorMath.Vector(repeating: maximum)
                var sums = VectorMath.Vector(repeating: 0)
                while index + 8 <= width {
                    let pointer = UnsafeMutableRawPointer(x + index)
                    let e = VectorMath.exp(pointer.loadUnaligned(as: VectorMath.Vector.self) - shift)
                    pointer.storeBytes(of: e, as: VectorMath.Vector.self)
                    sums += e
                    index += 8
                }
                sum = sums.sum()
                while index < width {
                    let e = VectorMath.exp(x[index] - maximum)
                    x[index] = e
                    sum += e
                    index += 1
                }
                let inverse = 1 / sum
                for index in 0..<width { x[index] *= inverse }
            }
        }
    }
}
