import CNodusKernels

/// A Linear or a convolution with a bfloat16 weight (`PackedBFloat16Weight`),
/// bound to its buffers: checked once when made, then run any number of times
/// (a plan step). The float32 activations are rounded to bf16 as they are
/// packed and the bf16 products summed in float32, as torch's bf16 autocast
/// computes `nn.Linear` and `nn.Conv2d`; unlike autocast, the bias is added in
/// float32 and the output is not rounded to bf16. On this CPU's `vdpbf16ps` it
/// runs about twice as fast as the float32 `PackedGemm`; CPUs without
/// avx512_bf16 get the same sums from float32 fused multiply-adds (AVX-512F,
/// else AVX2, which gives the AVX-512F path's results bit for bit, else plain C).
public struct BFloat16Gemm {
    /// The kernel code to run (tests force the fallbacks).
    enum Path {
        case automatic, dotProduct, avx512, avx2, portable

        var kernelPath: nodus_gemm_bf16_path {
            switch self {
            case .automatic: NODUS_GEMM_BF16_AUTOMATIC
            case .dotProduct: NODUS_GEMM_BF16_DOT_PRODUCT
            case .avx512: NODUS_GEMM_BF16_AVX512
            case .avx2: NODUS_GEMM_BF16_AVX2
            case .portable: NODUS_GEMM_BF16_PORTABLE
            }
        }

        var isSupported: Bool { nodus_gemm_bf16_path_supported(kernelPath) != 0 }
    }

    static let tileRows = Int(nodus_gemm_bf16_tile_rows())
    static let tileColumns = Int(nodus_gemm_bf16_tile_columns())

    /// The first item's product; a convolution's later batch items move its
    /// input (or image) and output by the steps below.
    private var problem: nodus_gemm_bf16_problem
    private let batch: Int, inputStep: Int, outputStep: Int
    /// The weight whose panels `problem` reads, kept alive with it.
    private let weight: PackedBFloat16Weight

    /// `output[r, n] = sum_k bf16(input[r, k]) * weight[n, k] (+ bias[n])` over
    /// `rows` rows: a PyTorch `Linear` under bf16 autocast. Input rows are
    /// `inputRowStride` floats apart (default: the weight's depth); output rows
    /// are dense. With `accumulate` the result is added to `output`; `activation`,
    /// when given, is applied as the output is stored.
    /// - Throws: `NodusError.shape` when `weight` is not a `.linear` weight.
    public init(linearInput input: UnsafePointer<Float>, inputRowStride: Int? = nil, weight: PackedBFloat16Weight,
                bias: UnsafePointer<Float>?, activation: LinearActivation? = nil, output: UnsafeMutablePointer<Float>,
                rows: Int, accumulate: Bool = false) throws {
        guard weight.role == .linear else {
            throw NodusError.shape("a convolution's bf16 weight [\(weight.rows), \(weight.depth)] used as a Linear")
        }
        guard rows >= 0 else { throw NodusError.shape("a Linear of \(rows) rows") }
        problem = nodus_gemm_bf16_problem()
        (problem.m, problem.n, problem.k) = (Int64(rows), Int64(weight.rows), Int64(weight.depth))
        (problem.role, problem.weight) = (NODUS_GEMM_BF16_LINEAR, weight.packed)
        problem.input = PackedGemm.matrix(input, rowStride: inputRowStride ?? weight.depth, columnStride: 1)
        (problem.c, problem.ldc, problem.column_bias) = (output, Int64(weight.rows), bias)
        problem.accumulate = accumulate ? 1 : 0
        problem.activation = activation?.kernelActivation ?? NODUS_GEMM_ACTIVATION_NONE
        (batch, inputStep, outputStep, self.weight) = (1, 0, 0, weight)
    }

    /// A 2-D convolution (NCHW, `shape`) with a bf16 weight [out, in * kh * kw]:
    /// `nn.Conv2d` under bf16 autocast. Each image is the B of one product, its
    /// patches read (and rounded) as they are packed: no im2col buffer. With
    /// `accumulate` the result is added to `output`.
    /// - Throws: `NodusError.shape` when `weight` is not a `.convolution` weight of `shape`.
    public init(convolution shape: ConvolutionShape, input: UnsafePointer<Float>, weight: PackedBFloat16Weight,
                bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, accumulate: Bool = false) throws {
        guard weight.role == .convolution, weight.rows == shape.outChannels, weight.depth == shape.patchSize else {
            throw NodusError.shape("bf16 weight [\(weight.rows), \(weight.depth)] (\(weight.role)) does not fit a "
                                   + "convolution of \(shape.inChannels) -> \(shape.outChannels) channels, "
                                   + "kernel \(shape.kernelHeight)x\(shape.kernelWidth)")
        }
        let outSpatial = shape.outHeight * shape.outWidth
        let inSpatial = shape.height * shape.width
        problem = nodus_gemm_bf16_problem()
        (problem.m, problem.n, problem.k) = (Int64(shape.outChannels), Int64(outSpatial), Int64(shape.patchSize))
        (problem.role, problem.weight) = (NODUS_GEMM_BF16_CONVOLUTION, weight.packed)
        (problem.c, problem.ldc) = (output, Int64(outSpatial))
        (problem.row_bias, problem.accumulate) = (bias, accumulate ? 1 : 0)
        if shape.isPointwise {
            problem.input = PackedGemm.matrix(input, rowStride: inSpatial, columnStride: 1)
        } else {
            problem.image = shape.image(input)
        }
        (batch, inputStep, outputStep) = (shape.batch, shape.inChannels * inSpatial, shape.outChannels * outSpatial)
        self.weight = weight
    }

    /// Computes the product on the fastest path this CPU has.
    public func run() {
        run(problem, path: .automatic)
    }

    /// A Linear's output rows `range` (of the rows it was made for) into `target`,
    /// dense rows: for a step that computes its rows a chunk at a time.
    public func run(rows range: Range<Int>, into target: UnsafeMutablePointer<Float>) {
        var chunk = problem
        chunk.input.data = problem.input.data.map { $0 + range.lowerBound * Int(problem.input.row_stride) }
        (chunk.m, chunk.c) = (Int64(range.count), target)
        run(chunk, path: .automatic)
    }

    /// Computes the product on `path`.
    /// - Throws: `NodusError.unsupported` when this CPU cannot run `path`.
    func run(path: Path) throws {
        guard path.isSupported else { throw NodusError.unsupported("this CPU cannot run the bf16 path \(path)") }
        run(problem, path: path)
    }

    private func run(_ first: nodus_gemm_bf16_problem, path: Path) {
        withExtendedLifetime(weight) {
            var problem = first
            problem.path = path.kernelPath
            for item in 0..<batch {
                if problem.image.data != nil {
                    problem.image.data = first.image.data + item * inputStep
                } else {
                    problem.input.data = first.input.data + item * inputStep
                }
                problem.c = first.c + item * outputStep
                Self.runOnWorkers(problem)
            }
        }
    }

    /// Runs one product on the workers, each on a run of whole tiles, split
    /// so that no two pack the same activations: a Linear's rows (A) when
    /// there are enough for every worker, a convolution's columns (its
    /// patches, B); the other way when C is too narrow. (Splitting a
    /// Linear's columns instead, each worker would pack all of A: a tenth of
    /// the time at 2 threads on 8192 x 320 -> 1280.) A convolution of few
    /// columns and many output channels (the SD UNet's 1280 channels at 16x16
    /// and 8x8) splits its rows instead: each worker then streams half the
    /// weight instead of all of it (8x8: 274 -> 382 GFLOP/s, 16x16: 644 -> 727,
    /// 2 threads, medians of 5, a C harness over `nodus_gemm_bf16_block`).
    private static func runOnWorkers(_ problem: nodus_gemm_bf16_problem) {
        let (rows, columns) = (Int(problem.m), Int(problem.n))
        let columnTiles = (columns + tileColumns - 1) / tileColumns
        let rowTiles = (rows + tileRows - 1) / tileRows
        let depth = max(1, Int(problem.k))
        let splitColumns = problem.role == NODUS_GEMM_BF16_LINEAR
            ? rowTiles < Parallel.threads && columnTiles > rowTiles
            : columnTiles >= 4 * Parallel.threads && 4 * columnTiles >= rowTiles
        withUnsafePointer(to: problem) { problem in
            if splitColumns {
                Parallel.forEach(columnTiles, costPerItem: rows * depth * tileColumns) { tiles in
                    _ = nodus_gemm_bf16_block(problem, 0, Int64(rows), Int64(tiles.lowerBound * tileColumns),
                                              Int64(min(columns, tiles.upperBound * tileColumns)))
                }
            } else {
                Parallel.forEach(rowTiles, costPerItem: tileRows * depth * columns) { tiles in
                    _ = nodus_gemm_bf16_block(problem, Int64(tiles.lowerBound * tileRows),
                                              Int64(min(rows, tiles.upperBound * tileRows)), 0, Int64(columns))
                }
            }
        }
    }
}
