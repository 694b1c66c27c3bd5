import NodusCore

/// The operations of the IR: high-level, so each lowers to one kernel.
/// Append-only: a new case goes at the end, with its name in `name`.
public enum Operation: Sendable {
    /// x [..., K] · weight + bias [N] -> [..., N], the weight [N, K] or [K, N] by its layout.
    /// Inputs: x, weight, bias?.
    case linear(WeightLayout)
    /// LayerNorm over the last dimension. Inputs: x, weight?, bias?.
    case layerNorm(eps: Float)
    /// AdaLN: layerNorm(x) * (1 + scale) + shift, no affine. Inputs: x [B, N, D],
    /// modulation [B, M] holding scale at columns `scaleColumn..<+D` and shift at `shiftColumn..<+D`.
    case modulatedLayerNorm(eps: Float, scaleColumn: Int, shiftColumn: Int)
    /// residual + gate * update. Inputs: residual [B, N, D], update [B, N, D],
    /// modulation [B, M] holding the gate at columns `gateColumn..<+D`.
    case gatedResidual(gateColumn: Int)
    /// Multi-head scaled dot-product attention. Inputs: q [B, Nq, W], k [B, Nk, W], v [B, Nk, W].
    /// Causal: query i attends to keys 0 ... i only.
    case attention(heads: Int, causal: Bool)
    case geluTanh
    case gelu
    case silu
    /// Inputs: a, b of one shape.
    case add
    /// Inputs: a [B, rest...], b [rest...]: b added to every batch item.
    case addBroadcast
    case scale(Float)
    /// diffusers `get_timestep_embedding`. Input: timesteps float32 [B] -> [B, dim].
    case timestepEmbedding(dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float, maxPeriod: Float)
    /// Row gather. Inputs: table [V, D], indices int64 [B] -> [B, D].
    case embeddingLookup
    /// [B, C, H, W] -> [B, (H/p)(W/p), C p p].
    case patchify(patch: Int)
    /// [B, h w, p p C] -> [B, C, h p, w p].
    case unpatchify(patch: Int, rows: Int, columns: Int)
    /// 2-D convolution, NCHW. Inputs: x, weight [O, I, kh, kw], bias?.
    case conv2d(stride: Int, padding: Int)
    /// GroupNorm (optionally followed by SiLU). Inputs: x [B, C, ...], weight?, bias?.
    case groupNorm(groups: Int, eps: Float, silu: Bool)
    case upsampleNearest2x
    /// [B, C, H, W] -> [B, H W, C].
    case channelsToTokens
    /// [B, H W, C] -> [B, C, H, W].
    case tokensToChannels(height: Int, width: Int)
    /// Concatenation along dimension 1. Inputs: any number of [B, C_i, ...].
    case concatChannels
    /// LoRA side paths of a Linear: y + sum_i weights[slot_i] * scale_i * B_i (A_i x).
    /// Inputs: y [..., N], x [..., K], then A_i [r_i, K] and B_i [N, r_i] per part.
    case lowRankUpdate(parts: [LowRankPart], weights: AdapterWeights)
    /// GEGLU's gating: [..., 2D] -> [..., D], the first half times GELU (erf) of the second.
    case geglu
    /// A per-(batch, channel) value added to a whole plane. Inputs: x [B, C, ...], values [B, C]
    /// (a resnet's projected time embedding).
    case addPerChannel
    /// 2-D convolution, NCHW, zero-padded by `padding` before (top, left) and
    /// `trailingPadding` after (bottom, right): diffusers' `Downsample2D` with
    /// padding 0 (`F.pad(x, (0, 1, 0, 1))`, then a stride-2 conv). Inputs as `conv2d`.
    case conv2dAsymmetric(stride: Int, padding: Int, trailingPadding: Int)
    /// Nearest-neighbour resize of NCHW to `height` x `width` (`F.interpolate(size=...)`).
    case resizeNearest(height: Int, width: Int)

    // MARK: Primitive ops: N-D and typed, as an exported graph states them. The
    // passes raise what they can to the fused ops above; the rest runs as is.
    // Output shapes and dtypes are in the graph's value infos.

    /// Elementwise, numpy broadcasting. Inputs: a, b.
    case binary(BinaryFunction)
    /// Elementwise. Input: x.
    case map(UnaryFunction)
    /// condition ? a : b, broadcasting. Inputs: condition (bool), a, b.
    case select
    /// numpy `matmul`: [..., M, K] x [..., K, N], batch axes broadcast; a rank-1
    /// operand is promoted as numpy does. Inputs: a, b.
    case matMul
    /// The same elements in the output's shape. Input: x.
    case reshape
    /// Output axis i is input axis `permutation[i]`. Input: x.
    case transpose(permutation: [Int])
    /// Per axis: the first index and the step (the output shape gives the count). Input: x.
    case slice(starts: [Int], steps: [Int])
    /// Inputs: the parts, joined along `axis`.
    case concat(axis: Int)
    /// `numpy.take(data, indices, axis)`. Inputs: data, indices (int64).
    case gather(axis: Int)
    /// Broadcast to the output's shape. Input: x.
    case expand
    /// To the output's dtype. Input: x.
    case cast
    /// Input: x.
    case softmax(axis: Int)
    /// Over `axes` (sorted); the output keeps them as 1 or drops them. Input: x.
    case reduce(ReductionFunction, axes: [Int])
    /// N-D convolution. Inputs: x [B, C, spatial...], weight [O, C / groups, kernel...], bias [O]?.
    case convolution(ConvolutionGeometry)
    /// N-D resize of the trailing axes to the output's shape. Input: x.
    case resize(ResizeMode)
    /// Zero padding (or `value`): `before` and `after` per axis, negative to crop. Input: x.
    case pad(before: [Int], after: [Int], value: Float)
    /// Normalise each [B, C] plane over its remaining axes (ONNX InstanceNormalization).
    /// Inputs: x, scale [C], bias [C].
    case instanceNorm(eps: Float)
    /// The index (int64) of the largest (or smallest) element along `axis`, the
    /// first one on ties (ONNX ArgMax / ArgMin; the output keeps the axis as 1 or drops it). Input: x.
    case argExtremum(axis: Int, largest: Bool)
    /// ONNX GatherND with batch_dims 0: indices [..., k] (int64) pick slices
    /// data[i0, ..., ik-1, ...]. Inputs: data, indices.
    case gatherND
    /// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) * weight. Inputs: x, weight [D]?.
    case rmsNorm(eps: Float)
    /// x * sigmoid(1.702 x): transformers' `quick_gelu` (OpenAI CLIP's text encoder).
    case quickGELU
    /// Rotary position embedding: in each head of x [B, N, heads x D], channel pairs (2i, 2i + 1) of
    /// token n rotated by angle a[n, i]. Inputs: x, angles [N, D] holding cos a [N, D/2] then sin a [N, D/2].
    case rotaryEmbedding(heads: Int)
    /// ONNX CumSum along `axis`: running sums (`exclusive`: of the elements before; `reverse`:
    /// from the end). Input: x (float32 or int64).
    case cumulativeSum(axis: Int, exclusive: Bool, reverse: Bool)
    /// ONNX ScatterND: a copy of data with the slices that indices [..., k] (int64) pick replaced by,
    /// or combined with, updates, tuple by tuple in order. Inputs: data, indices, updates.
    case scatterND(ScatterReduction)
    /// A depthwise convolution ("same" zero padding, stride 1, odd kernel sides) over a grid of tokens
    /// kept channels-last: x [B, D H W, C] for `grid` (D, H, W). Inputs: x, weight [C, 1, kd, kh, kw], bias [C]?.
    case tokenDepthwiseConvolution(grid: [Int])
    /// diffusers' `GEGLU` module whole: its Linear to 2D features (`proj`), then the gating, a chunk of
    /// rows at a time, so the [..., 2D] projection never exists whole. Planning raises a `linear` that
    /// only a `geglu` reads to this (`LinearReaderFusion`). Inputs as `linear` -> [..., D].
    case gegluProjection(WeightLayout)
    /// A `linear` whose output goes through `activation` as the product stores it, never
    /// written bare. Planning raises a `linear` that only a `geluTanh`, `silu` or `quickGELU`
    /// reads to this (`LinearReaderFusion`). Inputs as `linear`.
    case activatedLinear(WeightLayout, LinearActivation)

    /// The op's name in plans and profiles.
    public var name: String {
        switch self {
        case .linear: "linear"
        case .layerNorm: "layer_norm"
        case .modulatedLayerNorm: "modulated_layer_norm"
        case .gatedResidual: "gated_residual"
        case .attention: "attention"
        case .geluTanh: "gelu_tanh"
        case .gelu: "gelu"
        case .silu: "silu"
        case .add: "add"
        case .addBroadcast: "add_broadcast"
        case .scale: "scale"
        case .timestepEmbedding: "timestep_embedding"
        case .embeddingLookup: "embedding_lookup"
        case .patchify: "patchify"
        case .unpatchify: "unpatchify"
        case .conv2d: "conv2d"
        case .groupNorm: "group_norm"
        case .upsampleNearest2x: "upsample_nearest_2x"
        case .channelsToTokens: "channels_to_tokens"
        case .tokensToChannels: "tokens_to_channels"
        case .concatChannels: "concat_channels"
        case .lowRankUpdate: "low_rank_update"
        case .geglu: "geglu"
        case .addPerChannel: "add_per_channel"
        case .conv2dAsymmetric: "conv2d_asymmetric"
        case .resizeNearest: "resize_nearest"
        case .binary(let function): function.rawValue
        case .map(let function): function.rawValue
        case .select: "select"
        case .matMul: "mat_mul"
        case .reshape: "reshape"
        case .transpose: "transpose"
        case .slice: "slice"
        case .concat: "concat"
        case .gather: "gather"
        case .expand: "expand"
        case .cast: "cast"
        case .softmax: "softmax"
        case .reduce(let function, _): "reduce_" + function.rawValue
        case .convolution: "convolution"
        case .resize: "resize"
        case .pad: "pad"
        case .instanceNorm: "instance_norm"
        case .argExtremum(_, let largest): largest ? "arg_max" : "arg_min"
        case .gatherND: "gather_nd"
        case .rmsNorm: "rms_norm"
        case .quickGELU: "quick_gelu"
        case .rotaryEmbedding: "rotary_embedding"
        case .cumulativeSum: "cumulative_sum"
        case .scatterND: "scatter_nd"
        case .tokenDepthwiseConvolution: "token_depthwise_convolution"
        case .gegluProjection: "geglu_projection"
        case .activatedLinear(_, let activation): "linear_" + activation.name
        }
    }

    /// Whether the output may share the first input's buffer: every output
    /// element depends only on input elements at or before it in one pass.
    var canRunInPlace: Bool {
        switch self {
        case .geluTanh, .gelu, .silu, .add, .addBroadcast, .scale, .gatedResidual, .layerNorm, .modulatedLayerNorm,
             .groupNorm, .lowRankUpdate, .addPerChannel, .binary, .map, .reshape, .cast, .softmax, .instanceNorm, .rmsNorm,
             .quickGELU, .rotaryEmbedding:
            true
        default:
            false
        }
    }
}

/// One adapter's part of a `lowRankUpdate`.
public struct LowRankPart: Sendable {
    public var slot: Int
    public var scale: Float
    public var rank: Int

    public init(slot: Int, scale: Float, rank: Int) {
        self.slot = slot
        self.scale = scale
        self.rank = rank
    }
}
