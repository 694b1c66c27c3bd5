/// The loops of an N-D elementwise operation: the output's shape walked in
/// row-major order, with each operand's element strides (0 along the axes it is
/// broadcast over; any strides for transposed or sliced views). Adjacent axes
/// that every operand walks contiguously are merged, so a same-shape operation
/// is one long run.
public struct BroadcastWalk: Sendable {
    /// The merged output shape (at least one axis).
    public let shape: [Int]
    /// strides[operand][axis]; operand 0 is the output.
    public let strides: [[Int]]

    /// A walk over `output` elements for operands of `shapes`, broadcast numpy-style.
    /// - Throws: `NodusError.shape` when a shape does not broadcast to `output`.
    public init(output: [Int], operands shapes: [[Int]]) throws {
        var strides = [BroadcastWalk.contiguousStrides(output)]
        for shape in shapes {
            guard shape.count <= output.count else {
                throw NodusError.shape("\(shape) does not broadcast to \(output)")
            }
            let padded = [Int](repeating: 1, count: output.count - shape.count) + shape
            let own = BroadcastWalk.contiguousStrides(padded)
            strides.append(try padded.indices.map { axis in
                if padded[axis] == output[axis] { return padded[axis] == 1 ? 0 : own[axis] }
                guard padded[axis] == 1 else { throw NodusError.shape("\(shape) does not broadcast to \(output)") }
                return 0
            })
        }
        self.init(shape: output, strides: strides)
    }

    /// A walk with explicit strides (operand 0 is the output).
    public init(shape: [Int], strides: [[Int]]) {
        var mergedShape: [Int] = []
        var mergedStrides = [[Int]](repeating: [], count: strides.count)
        for axis in shape.indices where shape[axis] != 1 {
            if let last = mergedShape.last,
               strides.indices.allSatisfy({ strides[$0][axis] * shape[axis] == mergedStrides[$0].last! }) {
                mergedShape[mergedShape.count - 1] = last * shape[axis]
                for operand in strides.indices { mergedStrides[operand][mergedStrides[operand].count - 1] = strides[operand][axis] }
            } else {
                mergedShape.append(shape[axis])
                for operand in strides.indices { mergedStrides[operand].append(strides[operand][axis]) }
            }
        }
        if mergedShape.isEmpty || shape.contains(0) {
            mergedShape = [shape.contains(0) ? 0 : 1]
            mergedStrides = strides.map { _ in [1] }
        }
        self.shape = mergedShape
        self.strides = mergedStrides
    }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for axis in shape.indices.reversed() {
            strides[axis] = running
            running *= shape[axis]
        }
        return strides
    }

    /// The number of output elements.
    public var count: Int { shape.reduce(1, *) }

    /// Calls `body(offsets, runLength, innerStrides)` for each run along the
    /// last axis, in order: `offsets[i]` is operand i's first element of the run.
    public func forEachRun(_ body: (UnsafePointer<Int>, Int, UnsafePointer<Int>) -> Void) {
        forEachRun(elements: 0..<count, body)
    }

    /// `forEachRun` over the elements `elements` (in row-major output order) only:
    /// runs are cut at the range's ends, so disjoint ranges can go to different threads.
    public func forEachRun(elements: Range<Int>, _ body: (UnsafePointer<Int>, Int, UnsafePointer<Int>) -> Void) {
        let rank = shape.count, operands = strides.count, last = rank - 1
        var remaining = elements.count
        guard remaining > 0 else { return }
        var index = [Int](repeating: 0, count: rank)
        var rest = elements.lowerBound
        for axis in (0..<rank).reversed() {
            index[axis] = rest % shape[axis]
            rest /= shape[axis]
        }
        var offsets = (0..<operands).map { operand in (0..<rank).reduce(0) { $0 + index[$1] * strides[operand][$1] } }
        let innerStrides = strides.map { $0[last] }
        innerStrides.withUnsafeBufferPointer { innerPointer in
            while true {
                let length = min(shape[last] - index[last], remaining)
                offsets.withUnsafeBufferPointer { body($0.baseAddress!, length, innerPointer.baseAddress!) }
                remaining -= length
                if remaining == 0 { return }
                // Back to the start of the last axis, then the odometer over the outer axes.
                for operand in 0..<operands { offsets[operand] -= strides[operand][last] * index[last] }
                index[last] = 0
                var axis = last - 1
                while axis >= 0 {
                    index[axis] += 1
                    for operand in 0..<operands { offsets[operand] += strides[operand][axis] }
                    if index[axis] < shape[axis] { break }
                    for operand in 0..<operands { offsets[operand] -= strides[operand][axis] * shape[axis] }
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }

    /// `forEachRun` split over the worker threads by element ranges; `body`
    /// must only write the elements of its runs.
    public func forEachRunInParallel(_ body: (UnsafePointer<Int>, Int, UnsafePointer<Int>) -> Void) {
        Parallel.forEach(count, costPerItem: 2) { range in forEachRun(elements: range, body) }
    }

    /// Copies elements of `elementType` from `source` (operand 1) to `target`
    /// (operand 0) along the walk: transposes, slices, broadcasts.
    public func copy<Element>(_ source: UnsafePointer<Element>, to target: UnsafeMutablePointer<Element>) {
        forEachRunInParallel { offsets, length, steps in
            let (to, from, step) = (target + offsets[0], source + offsets[1], steps[1])
            if step == 1 && steps[0] == 1 {
                to.update(from: from, count: length)
            } else {
                for element in 0..<length { to[element * steps[0]] = from[element * step] }
            }
        }
    }
}
