/// Where each non-constant value lives in one arena, decided from value
/// lifetimes: a buffer is reused as soon as its last consumer has run, and an
/// element-wise op writes in place over an input it is the last reader of.
/// Graph inputs and the output are pinned (live for the whole run).
public struct MemoryPlan: Sendable, CustomStringConvertible {
    /// Byte offset of each value in the arena (nil for constants).
    public let offsets: [Int?]
    public let arenaByteCount: Int
    private let graph: Graph

    static let alignment = 64

    public init(graph: Graph) {
        self.graph = graph
        let valueCount = graph.values.count
        // Last node index reading each value; pinned values never die.
        var lastUse = [Int](repeating: -1, count: valueCount)
        for (index, node) in graph.nodes.enumerated() {
            for input in node.inputs.compactMap({ $0 }) { lastUse[input.index] = index }
        }
        let pinned = Set(graph.inputs.values.map(\.index) + graph.outputs.map(\.value.index))
        for index in pinned { lastUse[index] = Int.max }

        var allocator = ArenaAllocator()
        var offsets = [Int?](repeating: nil, count: valueCount)
        for value in graph.inputs.values.sorted(by: { $0.index < $1.index }) {
            offsets[value.index] = allocator.allocate(MemoryPlan.aligned(graph[value].byteCount))
        }
        for (index, node) in graph.nodes.enumerated() {
            let size = MemoryPlan.aligned(graph[node.output].byteCount)
            let outputOffset: Int
            if node.operation.canRunInPlace, let first = node.inputs.first ?? nil,
               lastUse[first.index] == index, let offset = offsets[first.index],
               graph[first].byteCount == graph[node.output].byteCount,  // exactly: a broadcast operand is smaller
               node.inputs.dropFirst().allSatisfy({ $0 != first }) {
                outputOffset = offset
                lastUse[first.index] = -1  // ownership moves to the output
            } else {
                outputOffset = allocator.allocate(size)
            }
            offsets[node.output.index] = outputOffset
            for input in Set(node.inputs.compactMap({ $0 })) where lastUse[input.index] == index {
                if let offset = offsets[input.index] {
                    allocator.release(offset: offset, size: MemoryPlan.aligned(graph[input].byteCount))
                }
            }
            if lastUse[node.output.index] == -1 {  // never read: a dead end, free at once
                allocator.release(offset: outputOffset, size: size)
            }
        }
        self.offsets = offsets
        self.arenaByteCount = allocator.highWater
    }

    static func aligned(_ bytes: Int) -> Int { (max(bytes, 1) + alignment - 1) / alignment * alignment }

    /// One line per node: op, output shape, arena offset and size.
    public var description: String {
        var lines = ["arena \(arenaByteCount) bytes, \(graph.nodes.count) nodes"]
        for (index, node) in graph.nodes.enumerated() {
            let info = graph[node.output]
            let offset = offsets[node.output.index] ?? -1
            lines.append("\(index): \(node.output) = \(node.operation.name)(\(node.inputs.map { $0?.description ?? "-" }.joined(separator: ", "))) \(info.shape) @\(offset) +\(info.byteCount)")
        }
        return lines.joined(separator: "\n")
    }
}

/// First-fit-by-size allocation of byte ranges in a growing arena, with
/// coalescing of freed neighbours.
struct ArenaAllocator {
    /// Free ranges sorted by offset.
    private var free: [(offset: Int, size: Int)] = []
    private(set) var highWater = 0

    mutating func allocate(_ size: Int) -> Int {
        var best: Int?
        for (index, block) in free.enumerated() where block.size >= size {
            if let current = best, free[current].size <= block.size { continue }
            best = index
        }
        if let best {
            let block = free[best]
            if block.size == size {
                free.remove(at: best)
            } else {
                free[best] = (block.offset + size, block.size - size)
            }
            return block.offset
        }
        // Grow the arena, reusing a free block that ends at the top.
        if let last = free.last, last.offset + last.size == highWater {
            free.removeLast()
            highWater = last.offset + size
            return last.offset
        }
        let offset = highWater
        highWater += size
        return offset
    }

    mutating func release(offset: Int, size: Int) {
        let position = free.firstIndex(where: { $0.offset > offset }) ?? free.count
        free.insert((offset, size), at: position)
        // Merge with the following block, then with the preceding one.
        if position + 1 < free.count, free[position].offset + free[position].size == free[position + 1].offset {
            free[position].size += free[position + 1].size
            free.remove(at: position + 1)
        }
        if position > 0, free[position - 1].offset + free[position - 1].size == free[position].offset {
            free[position - 1].size += free[position].size
            free.remove(at: position)
        }
    }
}
