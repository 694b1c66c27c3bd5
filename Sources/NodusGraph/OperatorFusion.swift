import NodusCore

/// Raises the primitive patterns of an exported graph to the fused ops the
/// native builders write, so an ONNX model runs on the same kernels:
/// * `linear`: MatMul by a constant matrix, plus a constant bias;
/// * `attention`: the head split (reshape / transpose), q kᵀ with its scales,
///   softmax, the product with v and the head merge, as one streaming
///   attention that never holds the N x N scores;
/// * activations: an elementwise subgraph of one variable that computes GELU
///   (erf or tanh) or SiLU, recognised by its values, whatever the order its
///   exporter wrote the arithmetic in; GEGLU (a halves split, one half times
///   the GELU of the other);
/// * `group_norm`: reshape to groups, InstanceNormalization (scale 1, bias 0),
///   reshape back, per-channel scale and shift; and the SiLU after it;
/// * `rms_norm` (also a q / k norm over each head inside attention), AdaLN
///   modulation (`modulated_layer_norm`) and `gated_residual`;
/// * `token_depthwise_convolution` (+ a pointwise `linear`): tokens moved to a volume for a
///   depthwise-separable convolution and back, run where they are.
///
/// The rules live in `FusionRewriter+Activations`, `+Norms`, `+Attention` and `+Convolutions`.
///
/// Each rule only takes intermediate values no other node reads, and checks
/// layouts and constants exactly, so a graph that differs in any way keeps its
/// primitives (and stays right).
public struct OperatorFusion: GraphPass {
    public init() {}

    public func apply(to graph: Graph) throws -> Graph { try fuse(graph).graph }

    /// The fused graph and how many times each rule fired (by fused op name).
    /// Rounds repeat until no rule rewrites: a fusion can leave a value with one
    /// reader where it had several (SiLU after a group norm, GELU inside GEGLU),
    /// and a fused op can take in its bias or weight in the next round.
    ///
    /// Fallback forms (attention over heads that no layout chain leads back to, which moves q, k
    /// and v) wait for a round in which no exact rule fired, or for the fourth round at the
    /// latest: a q / k norm fused in one round leaves its input one reader, and only then does
    /// the chain through it match.
    public func fuse(_ graph: Graph) throws -> (graph: Graph, fused: [String: Int]) {
        var current = graph
        var total: [String: Int] = [:]
        var settled = false
        for round in 0..<6 {
            var rewriter = FusionRewriter(current, fallbacks: settled || round >= 3)
            for node in current.nodes { try rewriter.visit(node) }
            current = DeadCodeElimination().apply(to: rewriter.finish())
            total.merge(rewriter.fused, uniquingKeysWith: +)
            if rewriter.rewrites == 0 {
                if rewriter.fallbacks { break }
                settled = true
            }
        }
        return (current, total.filter { $0.value != 0 })
    }
}
