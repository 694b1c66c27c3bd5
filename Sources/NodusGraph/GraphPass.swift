/// A transformation of a built graph before it is planned (LoRA side paths,
/// fusions, casts). Passes run in order; each returns a new graph.
public protocol GraphPass {
    func apply(to graph: Graph) throws -> Graph
}
