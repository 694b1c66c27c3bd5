import NodusCore

// The kernels the lowering binds operations to: thin structs over the math in
// NodusCore, holding their resolved pointers and sizes.

struct LinearStep: Kernel {
    let input: UnsafePointer<Float>, weight: UnsafePointer<Float>, layout: WeightLayout
    let packedWeight: UnsafePointer<Float>?
    let bias: UnsafePointer<Float>?
    /// Applied as the product stores its output (an `activatedLinear`).
    var activation: LinearActivation? = nil
    let output: UnsafeMutablePointer<Float>
    let rows: Int, inFeatures: Int, outFeatures: Int
    var name: String { (activation.map { .activatedLinear(layout, $0) } ?? Operation.linear(layout)).name }
    var flops: Int { 2 * rows * inFeatures * outFeatures }
    func run(scratch: UnsafeMutablePointer<Float>) {
        run(rows: 0..<rows, into: output)
    }

    /// The output rows `range` into `target` (dense rows).
    func run(rows range: Range<Int>, into target: UnsafeMutablePointer<Float>) {
        Gemm.linear(input: input + range.lowerBound * inFeatures, weight: weight,
                    weightIsTransposed: layout == .inputsByOutputs, packedWeight: packedWeight, bias: bias,
                    activation: activation, output: target, rows: range.count, inFeatures: inFeatures,
                    outFeatures: outFeatures)
    }
}

/// A Linear's product as the plan computes it, for steps that run it over row ranges.
enum LinearProduct {
    case float32(LinearStep)
    case bfloat16(BFloat16Gemm)

    /// The output rows `range` into `target` (dense rows).
    func run(rows range: Range<Int>, into target: UnsafeMutablePointer<Float>) {
        switch self {
        case .float32(let step): step.run(rows: range, into: target)
        case .bfloat16(let product): product.run(rows: range, into: target)
        }
    }
}

/// A Linear or a convolution with a bf16 weight (a plan's `.bfloat16` precision).
struct BFloat16ProductStep: Kernel {
    let name: String
    let product: BFloat16Gemm
    let flops: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        product.run()
    }
}

struct LayerNormStep: Kernel {
    let name = "layer_norm"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?
    let rows: Int, width: Int, eps: Float
    func run(scratch: UnsafeMutablePointer<Float>) {
        Normalization.layerNorm(input, output, rows: rows, width: width, eps: eps, weight: weight, bias: bias)
    }
}

struct RMSNormStep: Kernel {
    let name = "rms_norm"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>?
    let rows: Int, width: Int, eps: Float
    func run(scratch: UnsafeMutablePointer<Float>) {
        Normalization.rmsNorm(input, output, rows: rows, width: width, eps: eps, weight: weight)
    }
}

struct TokenDepthwiseStep: Kernel {
    let name = "token_depthwise_convolution"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, bias: UnsafePointer<Float>?
    let convolution: TokenConvolution

    init(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
         output: UnsafeMutablePointer<Float>, batch: Int, grid: [Int], kernel: [Int], channels: Int) {
        (self.input, self.output, self.bias) = (input, output, bias)
        convolution = TokenConvolution(weight: weight, batch: batch, grid: grid, kernel: kernel, channels: channels)
    }

    var flops: Int { convolution.flops }
    func run(scratch: UnsafeMutablePointer<Float>) {
        convolution.run(input: input, bias: bias, output: output)
    }
}

struct RotaryEmbeddingStep: Kernel {
    let name = "rotary_embedding"
    let input: UnsafePointer<Float>, angles: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let batch: Int, tokens: Int, heads: Int, headWidth: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        RotaryEmbedding.apply(input, output, angles: angles, batch: batch, tokens: tokens, heads: heads,
                              headWidth: headWidth)
    }
}

struct ModulatedLayerNormStep: Kernel {
    let name = "modulated_layer_norm"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, modulationStride: Int
    let batch: Int, tokens: Int, width: Int, eps: Float
    func run(scratch: UnsafeMutablePointer<Float>) {
        Normalization.modulatedLayerNorm(input, output, batch: batch, tokens: tokens, width: width, eps: eps,
                                         scale: scale, shift: shift, modulationStride: modulationStride)
    }
}

struct GatedResidualStep: Kernel {
    let name = "gated_residual"
    let residual: UnsafePointer<Float>, update: UnsafePointer<Float>
    let gate: UnsafePointer<Float>, gateStride: Int
    let output: UnsafeMutablePointer<Float>
    let batch: Int, tokens: Int, width: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Elementwise.gatedResidual(residual: residual, update: update, gate: gate, gateStride: gateStride,
                                  output: output, batch: batch, tokens: tokens, width: width)
    }
}

struct AttentionStep: Kernel {
    let name = "attention"
    let shape: AttentionShape
    let query: UnsafePointer<Float>, key: UnsafePointer<Float>, value: UnsafePointer<Float>
    let output: UnsafeMutablePointer<Float>
    var scratchCount: Int { shape.scratchCount }
    /// q kᵀ and the weighted sum of v, per head: 2 products of Nq x Nk x headWidth.
    var flops: Int { 4 * shape.batch * shape.heads * shape.queryTokens * shape.keyTokens * shape.headWidth }
    func run(scratch: UnsafeMutablePointer<Float>) {
        AttentionKernel.run(shape: shape, query: query, key: key, value: value, output: output, scratch: scratch,
                            scale: 1 / Float(shape.headWidth).squareRoot())
    }
}

struct ActivationStep: Kernel {
    enum Function { case geluTanh, gelu, silu, quickGELU }
    let function: Function
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, count: Int
    var name: String {
        switch function {
        case .geluTanh: "gelu_tanh"
        case .gelu: "gelu"
        case .silu: "silu"
        case .quickGELU: "quick_gelu"
        }
    }
    func run(scratch: UnsafeMutablePointer<Float>) {
        switch function {
        case .geluTanh: Activation.geluTanh(input, output, count: count)
        case .gelu: Activation.geluErf(input, output, count: count)
        case .silu: Activation.silu(input, output, count: count)
        case .quickGELU: Activation.quickGELU(input, output, count: count)
        }
    }
}

struct AddStep: Kernel {
    let name = "add"
    let a: UnsafePointer<Float>, b: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    /// Elements of `b`; `a` holds `batch` copies' worth when broadcasting.
    let blockCount: Int, batch: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        if batch == 1 {
            Elementwise.add(a, b, output, count: blockCount)
        } else {
            Elementwise.addBroadcast(a, b, output, batch: batch, blockCount: blockCount)
        }
    }
}

struct ScaleStep: Kernel {
    let name = "scale"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, count: Int, factor: Float
    func run(scratch: UnsafeMutablePointer<Float>) {
        Elementwise.scale(input, output, count: count, factor: factor)
    }
}

struct TimestepEmbeddingStep: Kernel {
    let name = "timestep_embedding"
    let timesteps: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let batch: Int, dim: Int, flipSinToCos: Bool, downscaleFreqShift: Float, scale: Float, maxPeriod: Float
    func run(scratch: UnsafeMutablePointer<Float>) {
        Embedding.sinusoidal(timesteps: timesteps, output: output, batch: batch, dim: dim, flipSinToCos: flipSinToCos,
                             downscaleFreqShift: downscaleFreqShift, scale: scale, maxPeriod: maxPeriod)
    }
}

/// Indices are checked against the table before the plan runs (see
/// `Executable.run`), so the lookup itself cannot fail.
struct EmbeddingLookupStep: Kernel {
    let name = "embedding_lookup"
    let table: UnsafePointer<Float>, rows: Int, width: Int
    let indices: UnsafePointer<Int64>, count: Int
    let output: UnsafeMutablePointer<Float>
    func run(scratch: UnsafeMutablePointer<Float>) {
        _ = Embedding.lookup(table: table, rows: rows, width: width, indices: indices, count: count, output: output)
    }
}

struct PatchifyStep: Kernel {
    let name = "patchify"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let batch: Int, channels: Int, height: Int, width: Int, patch: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Layout.patchify(input, output, batch: batch, channels: channels, height: height, width: width, patch: patch)
    }
}

struct UnpatchifyStep: Kernel {
    let name = "unpatchify"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let batch: Int, channels: Int, rows: Int, columns: Int, patch: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Layout.unpatchify(input, output, batch: batch, channels: channels, rows: rows, columns: columns, patch: patch)
    }
}

struct ConvolutionStep: Kernel {
    let name = "conv2d"
    let shape: ConvolutionShape
    let input: UnsafePointer<Float>, weight: UnsafePointer<Float>, packedWeight: UnsafePointer<Float>?
    let bias: UnsafePointer<Float>?
    let output: UnsafeMutablePointer<Float>
    var scratchCount: Int { shape.scratchCount }
    var flops: Int { shape.flops }
    func run(scratch: UnsafeMutablePointer<Float>) {
        Convolution.run(shape: shape, input: input, weight: weight, packedWeight: packedWeight, bias: bias,
                        output: output, scratch: scratch)
    }
}

struct GroupNormStep: Kernel {
    let name = "group_norm"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?
    let batch: Int, channels: Int, spatial: Int, groups: Int, eps: Float, silu: Bool
    func run(scratch: UnsafeMutablePointer<Float>) {
        Normalization.groupNorm(input, output, batch: batch, channels: channels, spatial: spatial, groups: groups,
                                eps: eps, weight: weight, bias: bias, silu: silu)
    }
}

struct UpsampleStep: Kernel {
    let name = "upsample_nearest_2x"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let planes: Int, height: Int, width: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Layout.upsampleNearest2x(input, output, planes: planes, height: height, width: width)
    }
}

struct ResizeStep: Kernel {
    let name = "resize_nearest"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let planes: Int, height: Int, width: Int, outHeight: Int, outWidth: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Layout.resizeNearest(input, output, planes: planes, height: height, width: width, outHeight: outHeight,
                             outWidth: outWidth)
    }
}

struct TransposeStep: Kernel {
    let name: String
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let batch: Int, rows: Int, columns: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Layout.transpose(input, output, batch: batch, rows: rows, columns: columns)
    }
}

struct ConcatChannelsStep: Kernel {
    let name = "concat_channels"
    let parts: [(pointer: UnsafePointer<Float>, channels: Int)]
    let output: UnsafeMutablePointer<Float>
    let batch: Int, spatial: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Layout.concatChannels(parts, output, batch: batch, spatial: spatial)
    }
}

struct GEGLUStep: Kernel {
    let name = "geglu"
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let rows: Int, width: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Activation.geglu(input, output, rows: rows, width: width)
    }
}

/// diffusers' `GEGLU`: the projection to 2 x `width` features, a chunk of rows at a
/// time into the scratch, each chunk gated into the output as it is made.
struct GEGLUProjectionStep: Kernel {
    /// Rows per chunk: its projection fills about this many bytes of scratch (the cache
    /// holds it until it is gated), and no fewer rows than the GEMM needs to run well.
    static let chunkBytes = 8 << 20
    static let minimumChunkRows = 64

    let name = "geglu_projection"
    let projection: LinearProduct
    let output: UnsafeMutablePointer<Float>
    let rows: Int, inFeatures: Int, width: Int

    /// At least 1, also for an empty input (a batch of 0) or an empty width.
    var chunkRows: Int {
        max(1, min(rows, max(Self.minimumChunkRows, Self.chunkBytes / max(1, 2 * width * MemoryLayout<Float>.size))))
    }
    var scratchCount: Int { chunkRows * 2 * width }
    var flops: Int { 2 * rows * inFeatures * 2 * width }

    func run(scratch: UnsafeMutablePointer<Float>) {
        let chunk = chunkRows
        for start in stride(from: 0, to: rows, by: chunk) {
            let range = start..<min(rows, start + chunk)
            projection.run(rows: range, into: scratch)
            Activation.geglu(scratch, output + start * width, rows: range.count, width: width)
        }
    }
}

struct AddPerChannelStep: Kernel {
    let name = "add_per_channel"
    let input: UnsafePointer<Float>, values: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let planes: Int, planeSize: Int
    func run(scratch: UnsafeMutablePointer<Float>) {
        Elementwise.addPerPlane(input, values, output, planes: planes, planeSize: planeSize)
    }
}

/// LoRA side paths: for each part whose run-time weight is non-zero,
/// `u = x A^T` into scratch, then `y += (weight * scale) u B^T` (never B A).
struct LowRankStep: Kernel {
    let name = "low_rank_update"
    /// The Linear's output when the plan could not update it in place (nil: `output` is it).
    let linearOutput: UnsafePointer<Float>?
    let input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>
    let parts: [(down: UnsafePointer<Float>, up: UnsafePointer<Float>, part: LowRankPart)]
    let weights: AdapterWeights
    let rows: Int, inFeatures: Int, outFeatures: Int
    var scratchCount: Int { rows * (parts.map(\.part.rank).max() ?? 0) }
    /// The products of the parts whose weight is non-zero now (the others are skipped).
    var flops: Int {
        let current = weights.all
        return parts.reduce(0) { total, entry in
            let factor = entry.part.slot < current.count ? current[entry.part.slot] : 0
            return total + (factor * entry.part.scale == 0 ? 0 : 2 * rows * entry.part.rank * (inFeatures + outFeatures))
        }
    }
    func run(scratch: UnsafeMutablePointer<Float>) {
        if let linearOutput { output.update(from: linearOutput, count: rows * outFeatures) }
        let current = weights.all
        for (down, up, part) in parts {
            let factor = (part.slot < current.count ? current[part.slot] : 0) * part.scale
            guard factor != 0 else { continue }
            Gemm.multiply(transposeA: false, transposeB: true, m: rows, n: part.rank, k: inFeatures,
                          a: input, lda: inFeatures, b: down, ldb: inFeatures, c: scratch, ldc: part.rank)
            Gemm.multiply(transposeA: false, transposeB: true, m: rows, n: outFeatures, k: part.rank, alpha: factor,
                          a: scratch, lda: part.rank, b: up, ldb: part.rank, beta: 1, c: output, ldc: outFeatures)
        }
    }
}
