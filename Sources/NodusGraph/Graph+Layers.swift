/// Which module of the source model each node belongs to, named as diffusers
/// names its modules, so profiles can be read against the model's code.
extension Graph {
    /// One module name per node, in node order:
    /// 1. A node reading constants belongs to the module they share: a weight's
    ///    name without its last part (`transformer_blocks.3.attn1.to_q.weight`
    ///    -> `transformer_blocks.3.attn1.to_q`, the GroupNorm of
    ///    `up_blocks.1.resnets.0.norm1`; a LoRA side path's A and B ->
    ///    the Linear they update).
    /// 2. Otherwise, the deepest module holding the modules of the nodes that
    ///    produce its inputs (attention after `attn1.to_q`, `to_k`, `to_v` ->
    ///    `attn1`; a GELU after `ff.net.0.proj` -> `ff.net.0.proj`; a DiT
    ///    block's gated residual of `attn1.to_out.0` with `norm1.linear`'s
    ///    gate -> `transformer_blocks.3`), leaving out the inputs that share
    ///    with the input computed last no module but the whole model or a list
    ///    of numbered blocks (the residual stream from the previous block, a
    ///    UNet skip: a residual add of `resnets.0.conv2` to the block's input ->
    ///    `resnets.0.conv2`).
    /// 3. A node fed by graph inputs only (patchify, the timestep sinusoids)
    ///    belongs to the module of the first node that reads its output; a node
    ///    no rule names is named by its operation.
    public var layerNames: [String] {
        var layers = [String?](repeating: nil, count: nodes.count)
        for (index, node) in nodes.enumerated() {
            var constants: [String] = []
            var producers: [Int] = []
            for value in node.inputs.compactMap({ $0 }) {
                switch self[value].origin {
                case .constant(let name, _): constants.append(Graph.module(ofConstant: name))
                case .node(let producer): producers.append(producer)
                case .input: break
                }
            }
            if let first = constants.first {
                layers[index] = Graph.sharedModule(constants) ?? first
            } else {
                let named = producers.sorted().compactMap { layers[$0] }
                guard let latest = named.last else { continue }
                let related = named.filter { Graph.sharedModule([latest, $0]) != nil }
                layers[index] = Graph.sharedModule(related) ?? latest
            }
        }
        var firstReader = [Int?](repeating: nil, count: values.count)
        for (index, node) in nodes.enumerated() {
            for value in node.inputs.compactMap({ $0 }) where firstReader[value.index] == nil {
                firstReader[value.index] = index
            }
        }
        for index in nodes.indices.reversed() where layers[index] == nil {
            layers[index] = firstReader[nodes[index].output.index].flatMap { layers[$0] }
        }
        return nodes.indices.map { layers[$0] ?? nodes[$0].operation.name }
    }

    /// The module a constant belongs to: its name without the last part.
    static func module(ofConstant name: String) -> String {
        guard let dot = name.lastIndex(of: ".") else { return name }
        return String(name[..<dot])
    }

    /// The deepest module holding every module in `modules`, or nil when that
    /// is the whole model or a list of numbered blocks.
    static func sharedModule(_ modules: [String]) -> String? {
        let paths = modules.map { $0.split(separator: ".") }
        guard let first = paths.first else { return nil }
        var depth = 0
        while depth < first.count, paths.allSatisfy({ depth < $0.count && $0[depth] == first[depth] }) {
            depth += 1
        }
        let isList = paths.contains { depth < $0.count && $0[depth].allSatisfy(\.isNumber) }
        guard depth > 0, !isList else { return nil }
        return first.prefix(depth).joined(separator: ".")
    }
}
