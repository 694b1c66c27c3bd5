import NodusCore

/// Raises each `linear` whose output only one node reads, and that no output names, into
/// one op with that reader:
/// * a `geglu` reader: `gegluProjection`, which computes the projection a chunk of rows at
///   a time. The projection is the widest activation of a transformer block's feed-forward
///   (8x the block's width: 84 MB in SD-1.5's UNet at 64 x 64, batch 2, over half its
///   arena); fused, it never exists whole. diffusers offers the same saving as an option
///   (`enable_forward_chunking`); here it costs nothing, so it is always on.
/// * a `geluTanh`, `silu` or `quickGELU` reader: `activatedLinear`, whose product applies
///   the activation as it stores each tile (DiT's and PixArt's feed-forward, the time
///   embedding's MLP): the activation's own pass over the output, 9 MB per DiT-XL/2
///   block, is gone.
///
/// The planner runs it last, after the LoRA side paths are in: a Linear with a side path
/// (`linear` -> `lowRankUpdate` -> reader) keeps its `linear`, and LoRA matching still
/// sees every Linear.
public struct LinearReaderFusion: GraphPass {
    public init() {}

    public func apply(to graph: Graph) -> Graph {
        var readers = [Int](repeating: 0, count: graph.values.count)
        for node in graph.nodes {
            for input in node.inputs.compactMap({ $0 }) { readers[input.index] += 1 }
        }
        for output in graph.outputs { readers[output.value.index] += 1 }
        var fused: [Int: Node] = [:]  // by the reader's node index
        var absorbed = Set<Int>()  // the linears' node indices
        for (index, node) in graph.nodes.enumerated() {
            guard let projection = node.inputs.first ?? nil, readers[projection.index] == 1,
                  case .node(let producer) = graph[projection].origin,
                  case .linear(let layout) = graph.nodes[producer].operation,
                  let operation = Self.fused(layout, readBy: node.operation) else { continue }
            fused[index] = Node(operation: operation, inputs: graph.nodes[producer].inputs, output: node.output)
            absorbed.insert(producer)
        }
        guard !fused.isEmpty else { return graph }
        // As `DeadCodeElimination`: values keep their ids; the absorbed linears' values are read by no node.
        var result = graph
        result.nodes = []
        for (index, node) in graph.nodes.enumerated() where !absorbed.contains(index) {
            let kept = fused[index] ?? node
            result.values[kept.output.index].origin = .node(result.nodes.count)
            result.nodes.append(kept)
        }
        return result
    }

    /// The one op a Linear (weights laid out as `layout`) and its only reader become, if any.
    private static func fused(_ layout: WeightLayout, readBy reader: Operation) -> Operation? {
        switch reader {
        case .geglu: .gegluProjection(layout)
        case .geluTanh: .activatedLinear(layout, .geluTanh)
        case .silu: .activatedLinear(layout, .silu)
        case .quickGELU: .activatedLinear(layout, .quickGELU)
        default: nil
        }
    }
}
