/// Raises each `linear` that only a `geglu` reads, and that no output names, to one
/// `gegluProjection`, which computes the projection a chunk of rows at a time. The
/// projection is the widest activation of a transformer block's feed-forward (8x the
/// block's width: 84 MB in SD-1.5's UNet at 64 x 64, batch 2, over half its arena);
/// fused, it never exists whole. diffusers offers the same saving as an option
/// (`enable_forward_chunking`); here it costs nothing, so it is always on.
///
/// The planner runs it last, after the LoRA side paths are in: a projection with a
/// side path (`linear` -> `lowRankUpdate` -> `geglu`) keeps its `linear`, and LoRA
/// matching still sees every Linear.
public struct GEGLUProjectionFusion: GraphPass {
    public init() {}

    public func apply(to graph: Graph) -> Graph {
        var readers = [Int](repeating: 0, count: graph.values.count)
        for node in graph.nodes {
            for input in node.inputs.compactMap({ $0 }) { readers[input.index] += 1 }
        }
        for output in graph.outputs { readers[output.value.index] += 1 }
        var fused: [Int: Node] = [:]  // by the geglu's node index
        var absorbed = Set<Int>()  // the linears' node indices
        for (index, node) in graph.nodes.enumerated() {
            guard case .geglu = node.operation, let projection = node.inputs.first ?? nil,
                  readers[projection.index] == 1, case .node(let producer) = graph[projection].origin,
                  case .linear(let layout) = graph.nodes[producer].operation else { continue }
            fused[index] = Node(operation: .gegluProjection(layout), inputs: graph.nodes[producer].inputs,
                                output: node.output)
            absorbed.insert(producer)
        }
        guard !fused.isEmpty else { return graph }
        // As `DeadCodeElimination`: values keep their ids; the absorbed projections' values are read by no node.
        var result = graph
        result.nodes = []
        for (index, node) in graph.nodes.enumerated() where !absorbed.contains(index) {
            let kept = fused[index] ?? node
            result.values[kept.output.index].origin = .node(result.nodes.count)
            result.nodes.append(kept)
        }
        return result
    }
}
