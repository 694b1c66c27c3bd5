/// Drops the nodes no output depends on (an exported graph's unused branches,
/// the shape arithmetic left behind by folding), renumbering nothing else:
/// values keep their ids, so names and constants stay where they were.
public struct DeadCodeElimination: GraphPass {
    public init() {}

    public func apply(to graph: Graph) -> Graph {
        var live = Set(graph.outputs.map(\.value))
        var kept = [Bool](repeating: false, count: graph.nodes.count)
        for (index, node) in graph.nodes.enumerated().reversed() where live.contains(node.output) {
            kept[index] = true
            live.formUnion(node.inputs.compactMap { $0 })
        }
        guard kept.contains(false) else { return graph }
        var result = graph
        result.nodes = []
        for (index, node) in graph.nodes.enumerated() where kept[index] {
            result.values[node.output.index].origin = .node(result.nodes.count)
            result.nodes.append(node)
        }
        return result
    }
}
