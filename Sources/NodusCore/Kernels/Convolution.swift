import CNodusKernels

/// 2-D convolution on NCHW float32 data with a PyTorch [out, in, kh, kw] weight.
/// Zero padding is `padding` before (top, left) and `trailingPadding` after
/// (bottom, right) each spatial axis: equal for `nn.Conv2d(padding=p)`, (0, 1)
/// for diffusers' `Downsample2D` with padding 0 (`F.pad(x, (0, 1, 0, 1))`).
public struct ConvolutionShape: Sendable {
    public var batch: Int
    public var inChannels: Int
    public var height: Int
    public var width: Int
    public var outChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var stride: Int
    public var padding: Int
    public var trailingPadding: Int

    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int, trailingPadding: Int? = nil) {
        self.batch = batch
        self.inChannels = inChannels
        self.height = height
        self.width = width
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.stride = stride
        self.padding = padding
        self.trailingPadding = trailingPadding ?? padding
    }

    public var outHeight: Int { (height + padding + trailingPadding - kernelHeight) / stride + 1 }
    public var outWidth: Int { (width + padding + trailingPadding - kernelWidth) / stride + 1 }
    var patchSize: Int { inChannels * kernelHeight * kernelWidth }

    /// Floating-point operations of one run, 2 per multiply-add.
    public var flops: Int { 2 * batch * outChannels * outHeight * outWidth * patchSize }
    var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && stride == 1 && padding == 0 && trailingPadding == 0
    }

    /// One image of the input at `data`, read by the GEMMs as the im2col matrix of this convolution.
    func image(_ data: UnsafePointer<Float>) -> nodus_gemm_image {
        nodus_gemm_image(data: data, channels: Int64(inChannels), height: Int64(height), width: Int64(width),
                         kernel_height: Int64(kernelHeight), kernel_width: Int64(kernelWidth), stride: Int64(stride),
                         pad_top: Int64(padding), pad_left: Int64(padding), out_height: Int64(outHeight),
                         out_width: Int64(outWidth))
    }

    /// Floats the im2col column buffer may take (8 MB by default).
    public var columnBudget = 2 << 20

    /// Output rows per im2col chunk, so the column buffer stays within its budget.
    public var chunkRows: Int { max(1, min(outHeight, columnBudget / max(1, patchSize * outWidth))) }

    /// Whether `Convolution.run` reads patches straight from the image (`PackedGemm`).
    var readsImageDirectly: Bool { PackedGemm.isSupported }

    /// Floats the transformed weights of the Winograd path may take (40 MB by
    /// default, one chunk of output channels at a time; 512 x 512 channels fit
    /// in one chunk).
    public var winogradWeightBudget = 10 << 20

    /// Workers the Winograd path has work buffers for in the scratch: the thread
    /// count when the shape is made (runs with more threads use this many).
    public var winogradWorkers = Parallel.threads

    /// Whether `Convolution.run` takes the Winograd path (`WinogradConvolution`): a 3x3
    /// stride-1 padding-1 convolution with at least 16 input channels and 24 output tiles
    /// of 4x4. Measured on 2 Zen 5 cores against the direct product (its time / Winograd's):
    /// the SD VAE decoder's 512 -> 512 at 64 x 64 3.6x, 512 -> 512 at 128 x 128 3.7x,
    /// 256 -> 256 at 256 x 256 3.3x, 128 -> 128 at 512 x 512 4.8x, 128 -> 3 at 512 x 512
    /// 5.9x; the SD-1.5 UNet's 320 at 64 x 64 (batch 2) 3.7x, 640 at 32 x 32 3.0x, 1280 at
    /// 16 x 16 1.8x, but 1280 at 8 x 8 (8 tiles, most of each 32-tile product idle) 0.85x.
    /// Below 24 tiles: 16 tiles 0.95x, 9 tiles 0.76x, 25 tiles 1.6x; input channels: 4
    /// (conv_in) 0.6x, 8 0.9x, 16 1.45x.
    public var usesWinograd: Bool {
        WinogradConvolution.computes(self) && inChannels >= 16 && WinogradConvolution.tiles(self) >= 24
    }

    /// Scratch floats `Convolution.run` needs.
    public var scratchCount: Int {
        if usesWinograd { return WinogradConvolution.scratchCount(self) }
        return isPointwise || readsImageDirectly ? 0 : patchSize * chunkRows * outWidth
    }
}

public enum Convolution {
    /// `packedWeight`, from `packWeight` of the same weight, saves packing it on every call.
    public static func run(shape: ConvolutionShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           packedWeight: UnsafePointer<Float>? = nil, bias: UnsafePointer<Float>?,
                           output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        if shape.usesWinograd {
            WinogradConvolution.run(shape: shape, input: input, weight: weight, bias: bias, output: output,
                                    scratch: scratch)
            return
        }
        if shape.readsImageDirectly {
            runPacked(shape: shape, input: input, weight: weight, packedWeight: packedWeight, bias: bias, output: output)
            return
        }
        let outSpatial = shape.outHeight * shape.outWidth
        let inSpatial = shape.height * shape.width
        for item in 0..<shape.batch {
            let source = input + item * shape.inChannels * inSpatial
            let target = output + item * shape.outChannels * outSpatial
            let beta: Float = bias == nil ? 0 : 1
            if let bias {
                Parallel.forEach(shape.outChannels, costPerItem: outSpatial) { range in
                    for channel in range { (target + channel * outSpatial).update(repeating: bias[channel], count: outSpatial) }
                }
            }
            if shape.isPointwise {
                Gemm.multiply(transposeA: false, transposeB: false, m: shape.outChannels, n: inSpatial,
                              k: shape.inChannels, a: weight, lda: shape.inChannels, b: source, ldb: inSpatial,
                              beta: beta, c: target, ldc: outSpatial)
                continue
            }
            var row = 0
            while row < shape.outHeight {
                let rows = min(shape.chunkRows, shape.outHeight - row)
                let columns = rows * shape.outWidth
                gatherPatches(shape: shape, source: source, firstRow: row, rows: rows, into: scratch)
                Gemm.multiply(transposeA: false, transposeB: false, m: shape.outChannels, n: columns,
                              k: shape.patchSize, a: weight, lda: shape.patchSize, b: scratch, ldb: columns,
                              beta: beta, c: target + row * shape.outWidth, ldc: outSpatial)
                row += rows
            }
        }
    }

    /// Floats a weight [out, in, kh, kw] takes packed for `run`, or nil on CPUs
    /// where convolutions do not use packed weights.
    public static func packedWeightCount(outChannels: Int, patchSize: Int) -> Int? {
        PackedGemm.packedCount(m: outChannels, k: patchSize)
    }

    /// Packs a weight once for `run`, into `packedWeightCount` floats.
    public static func packWeight(_ weight: UnsafePointer<Float>, outChannels: Int, patchSize: Int,
                                  into target: UnsafeMutablePointer<Float>) {
        PackedGemm.pack(a: PackedGemm.matrix(weight, rowStride: patchSize, columnStride: 1), m: outChannels,
                        k: patchSize, into: target)
    }

    /// Each image as the B of one `PackedGemm` product: weight [out, in * kh * kw]
    /// times the patches, gathered tile by tile as the product packs them.
    private static func runPacked(shape: ConvolutionShape, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  packedWeight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?,
                                  output: UnsafeMutablePointer<Float>) {
        let outSpatial = shape.outHeight * shape.outWidth
        let inSpatial = shape.height * shape.width
        var problem = PackedGemm.problem(m: shape.outChannels, n: outSpatial, k: shape.patchSize,
                                         a: PackedGemm.matrix(weight, rowStride: shape.patchSize, columnStride: 1),
                                         c: output, ldc: outSpatial)
        (problem.packed_a, problem.row_bias) = (packedWeight, bias)
        for item in 0..<shape.batch {
            let source = input + item * shape.inChannels * inSpatial
            if shape.isPointwise {
                problem.b = PackedGemm.matrix(source, rowStride: inSpatial, columnStride: 1)
            } else {
                problem.image = shape.image(source)
            }
            problem.c = output + item * shape.outChannels * outSpatial
            PackedGemm.run(problem)
        }
    }

    /// im2col for output rows `firstRow ..< firstRow + rows`: column matrix
    /// [inChannels * kh * kw, rows * outWidth], zero where the window leaves the image.
    static func gatherPatches(shape: ConvolutionShape, source: UnsafePointer<Float>, firstRow: Int, rows: Int,
                              into columns: UnsafeMutablePointer<Float>) {
        let columnCount = rows * shape.outWidth
        let taps = shape.kernelHeight * shape.kernelWidth
        Parallel.forEach(shape.patchSize, costPerItem: columnCount) { range in
            for patchRow in range {
                let channel = patchRow / taps
                let tap = patchRow % taps
                let dy = tap / shape.kernelWidth - shape.padding
                let dx = tap % shape.kernelWidth - shape.padding
                let plane = source + channel * shape.height * shape.width
                var target = columns + patchRow * columnCount
                for outRow in firstRow..<(firstRow + rows) {
                    let y = outRow * shape.stride + dy
                    if y < 0 || y >= shape.height {
                        target.update(repeating: 0, count: shape.outWidth)
                    } else {
                        let line = plane + y * shape.width
                        if shape.stride == 1 {
                            // Contiguous run inside the image, zeros at the edges.
                            let first = max(0, -dx)
                            let last = min(shape.outWidth, shape.width - dx)
                            if first > 0 { target.update(repeating: 0, count: first) }
                            if last > first { (target + first).update(from: line + first + dx, count: last - first) }
                            if last < shape.outWidth {
                                (target + max(last, first)).update(repeating: 0, count: shape.outWidth - max(last, first))
                            }
                        } else {
                            for outColumn in 0..<shape.outWidth {
                                let x = outColumn * shape.stride + dx
                                target[outColumn] = (x >= 0 && x < shape.width) ? line[x] : 0
                            }
                        }
                    }
                    target += shape.outWidth
                }
            }
        }
    }
}
