import NodusCore

extension ONNXGraph {
    /// Checks that every value has one producer and returns the indices of `nodes` in topological order.
    ///
    /// Producers are the graph inputs, the initializers and the node outputs (`""`, an absent
    /// optional output, produces nothing). Each failure is `NodusError.format` starting with
    /// `context`: a value produced twice, a node input that nothing produces, a graph output
    /// that nothing produces ("missing output"), a cycle (naming a node on it).
    ///
    /// The sort is Kahn's algorithm taking the ready node that comes first in the file, so a
    /// file already in topological order keeps its order.
    static func topologicalOrder(_ nodes: [ONNXNode], inputs: [ONNXValueInfo], initializerNames: [String],
                                 outputs: [ONNXValueInfo], context: String) throws -> [Int] {
        enum Producer {
            case input, initializer, node(Int)
        }
        func describe(_ producer: Producer) -> String {
            switch producer {
            case .input: "the graph input"
            case .initializer: "the initializer"
            case .node(let index): "node \(ONNXGraph.describe(nodes[index]))"
            }
        }
        var producers: [String: Producer] = [:]
        func add(_ name: String, _ producer: Producer) throws {
            if let earlier = producers[name] {
                throw NodusError.format("\(context): value '\(name)' is produced twice: by \(describe(earlier)) and by \(describe(producer))")
            }
            producers[name] = producer
        }
        for input in inputs { try add(input.name, .input) }
        for name in initializerNames { try add(name, .initializer) }
        for (index, node) in nodes.enumerated() {
            for output in node.outputs where !output.isEmpty { try add(output, .node(index)) }
        }

        // Edges: producer node -> consumer node, once per input.
        var pending = [Int](repeating: 0, count: nodes.count)
        var consumers = [[Int]](repeating: [], count: nodes.count)
        for (index, node) in nodes.enumerated() {
            for input in node.inputs where !input.isEmpty {
                guard let producer = producers[input] else {
                    throw NodusError.format("\(context): node \(ONNXGraph.describe(node)) reads '\(input)', which no node, initializer or graph input produces")
                }
                if case .node(let source) = producer {
                    pending[index] += 1
                    consumers[source].append(index)
                }
            }
        }
        for output in outputs where producers[output.name] == nil {
            throw NodusError.format("\(context): missing output: graph output '\(output.name)' is produced by no node, initializer or graph input")
        }

        var ready = MinimumHeap()
        for index in nodes.indices where pending[index] == 0 { ready.insert(index) }
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        while let index = ready.removeMinimum() {
            order.append(index)
            for consumer in consumers[index] {
                pending[consumer] -= 1
                if pending[consumer] == 0 { ready.insert(consumer) }
            }
        }
        guard order.count == nodes.count else {
            let node = ONNXGraph.nodeOnCycle(nodes: nodes, pending: pending, producers: producers.compactMapValues {
                if case .node(let index) = $0 { index } else { nil }
            })
            throw NodusError.format("\(context): the graph has a cycle through node \(ONNXGraph.describe(nodes[node]))")
        }
        return order
    }

    /// `'name' (OpType)`, or `#index (OpType)` style text for unnamed nodes.
    static func describe(_ node: ONNXNode) -> String {
        node.name.isEmpty ? "(unnamed \(node.opType) writing '\(node.outputs.first ?? "")')" : "'\(node.name)' (\(node.opType))"
    }

    /// A node that lies on a cycle. Every node left unsorted waits on another unsorted node, so
    /// walking from one to an unsorted producer must come back to a node already seen.
    private static func nodeOnCycle(nodes: [ONNXNode], pending: [Int], producers: [String: Int]) -> Int {
        var current = pending.firstIndex(where: { $0 > 0 }) ?? 0
        var seen = Set<Int>()
        while seen.insert(current).inserted {
            let next = nodes[current].inputs.lazy.compactMap { producers[$0] }.first { pending[$0] > 0 }
            guard let next else { break }
            current = next
        }
        return current
    }
}

/// A binary min-heap of node indices (Kahn's ready set, first in file order first).
private struct MinimumHeap {
    private var items: [Int] = []

    mutating func insert(_ value: Int) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeMinimum() -> Int? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        guard !items.isEmpty else { return first }
        items[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count && items[left] < items[smallest] { smallest = left }
            if right < items.count && items[right] < items[smallest] { smallest = right }
            guard smallest != parent else { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}
