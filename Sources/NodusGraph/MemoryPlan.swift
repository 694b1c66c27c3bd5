/// Where each non-constant value lives in one arena, decided from value
/// lifetimes: a buffer is reused as soon as its last consumer has run, and an
/// element-wise op writes in place over an input it is the last reader of.
/// Graph inputs and the outputs are pinned (live for the whole run). A node's
/// scratch (its kernel's working memory) is live while the node runs only, so it
/// takes memory the values leave free there, as ggml-alloc plans a node's work buffer.
///
/// Buffers are placed largest first, each at the lowest offset clear of those
/// already placed that are live at the same time ("greedy by size", as
/// TensorFlow Lite's arena planner). Placing them in execution order instead
/// scatters the live ones, so a large scratch found no gap: it put the SD-1.5
/// UNet's 88 MB Winograd scratch on top of its 116 MB peak of values.
public struct MemoryPlan: Sendable, CustomStringConvertible {
    /// Byte offset of each value in the arena (nil for constants).
    public let offsets: [Int?]
    /// Byte offset of each node's scratch in the arena (nil for a node without scratch).
    public let scratchOffsets: [Int?]
    public let arenaByteCount: Int
    private let graph: Graph
    private let scratchByteCounts: [Int]

    static let alignment = 64

    /// Arena bytes live from the node `first` writes them to the last node that reads
    /// them (node indices, inclusive): the values that share one buffer in place, or a
    /// node's scratch.
    private struct Buffer {
        let size: Int
        let first: Int
        var last: Int

        func overlaps(_ other: Buffer) -> Bool { first <= other.last && other.first <= last }
    }

    /// - Parameter scratchByteCounts: each node's scratch bytes, by node index (missing: none).
    public init(graph: Graph, scratchByteCounts: [Int] = []) {
        self.graph = graph
        let valueCount = graph.values.count
        // Last node index reading each value; pinned values never die.
        var lastUse = [Int](repeating: -1, count: valueCount)
        for (index, node) in graph.nodes.enumerated() {
            for input in node.inputs.compactMap({ $0 }) { lastUse[input.index] = index }
        }
        for value in graph.inputs.values.map(\.index) + graph.outputs.map(\.value.index) { lastUse[value] = Int.max }

        var buffers: [Buffer] = []
        var bufferOfValue = [Int?](repeating: nil, count: valueCount)
        for value in graph.inputs.values.sorted(by: { $0.index < $1.index }) {
            bufferOfValue[value.index] = buffers.count
            buffers.append(Buffer(size: MemoryPlan.aligned(graph[value].byteCount), first: -1, last: Int.max))
        }
        var bufferOfScratch = [Int?](repeating: nil, count: graph.nodes.count)
        for (index, node) in graph.nodes.enumerated() {
            let last = max(index, lastUse[node.output.index])  // never read: a dead end, live while written
            if node.operation.canRunInPlace, let first = node.inputs.first ?? nil,
               lastUse[first.index] == index, let buffer = bufferOfValue[first.index],
               graph[first].byteCount == graph[node.output].byteCount,  // exactly: a broadcast operand is smaller
               node.inputs.dropFirst().allSatisfy({ $0 != first }) {
                bufferOfValue[node.output.index] = buffer
                buffers[buffer].last = last
            } else {
                bufferOfValue[node.output.index] = buffers.count
                buffers.append(Buffer(size: MemoryPlan.aligned(graph[node.output].byteCount), first: index, last: last))
            }
            if let bytes = scratchByteCounts[safe: index], bytes > 0 {
                bufferOfScratch[index] = buffers.count
                buffers.append(Buffer(size: MemoryPlan.aligned(bytes), first: index, last: index))
            }
        }
        let (bufferOffsets, byteCount) = MemoryPlan.place(buffers)
        self.offsets = bufferOfValue.map { $0.map { bufferOffsets[$0] } }
        self.scratchOffsets = bufferOfScratch.map { $0.map { bufferOffsets[$0] } }
        self.scratchByteCounts = scratchByteCounts
        self.arenaByteCount = byteCount
    }

    /// Offsets of `buffers`, largest first, each at the lowest offset clear of the
    /// placed ones it overlaps in time; and the arena's size.
    private static func place(_ buffers: [Buffer]) -> (offsets: [Int], byteCount: Int) {
        let order = buffers.indices.sorted { buffers[$0].size != buffers[$1].size ? buffers[$0].size > buffers[$1].size : $0 < $1 }
        var offsets = [Int](repeating: 0, count: buffers.count)
        var placed: [Int] = []  // buffer indices by offset
        var byteCount = 0
        for index in order {
            let buffer = buffers[index]
            var offset = 0
            for other in placed where buffers[other].overlaps(buffer) {
                if offsets[other] >= offset + buffer.size { break }  // the gap before `other` fits
                offset = max(offset, offsets[other] + buffers[other].size)
            }
            offsets[index] = offset
            let position = placed.firstIndex { offsets[$0] > offset } ?? placed.count
            placed.insert(index, at: position)
            byteCount = max(byteCount, offset + buffer.size)
        }
        return (offsets, byteCount)
    }

    static func aligned(_ bytes: Int) -> Int { (max(bytes, 1) + alignment - 1) / alignment * alignment }

    /// One line per node: op, output shape, arena offset and size.
    public var description: String {
        var lines = ["arena \(arenaByteCount) bytes, \(graph.nodes.count) nodes"]
        for (index, node) in graph.nodes.enumerated() {
            let info = graph[node.output]
            let offset = offsets[node.output.index] ?? -1
            let scratch = scratchOffsets[index].map { " scratch @\($0) +\(scratchByteCounts[index])" } ?? ""
            lines.append("\(index): \(node.output) = \(node.operation.name)(\(node.inputs.map { $0?.description ?? "-" }.joined(separator: ", "))) \(info.shape) @\(offset) +\(info.byteCount)" + scratch)
        }
        return lines.joined(separator: "\n")
    }
}
