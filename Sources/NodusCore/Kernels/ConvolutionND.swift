import CNodusKernels

/// N-D convolution with 1 to 3 spatial axes on channels-first data (NCW,
/// NCHW, NCDHW), any groups, strides, dilations and zero padding: ONNX `Conv`,
/// the 3-D convolutions of MONAI's VAEs and UNets and MedSyn2's depthwise ones.
///
/// Two paths. A convolution with one group and enough work per output (at
/// least 16 products per output and 8 output channels) is a GEMM: weight
/// [out, in x taps] times the im2col columns of a chunk of output rows,
/// gathered into scratch (at most `columnBudget` floats), on the packed
/// product (`PackedGemm`, AVX2 and up) with the bias added as it stores. The
/// rest, depthwise and small grouped convolutions above all, runs the C
/// row-update kernel (`nodus_convolution_direct`): per tap, one multiply-add of
/// a contiguous input row into an output row. Both sum in float32.
public struct ConvolutionND: Sendable {
    let geometry: nodus_convolution_geometry
    let batch: Int

    /// Floats the im2col chunk may take (8 MB).
    public var columnBudget = 2 << 20

    public init(inputShape: [Int], weightShape: [Int], outputShape: [Int], strides: [Int], dilations: [Int],
                padsBefore: [Int], groups: Int) {
        // Leading axes of size 1 make every convolution a 3-D one.
        func padded(_ values: ArraySlice<Int>, _ fill: Int) -> (Int64, Int64, Int64) {
            let full = Array(repeating: fill, count: 3 - values.count) + values
            return (Int64(full[0]), Int64(full[1]), Int64(full[2]))
        }
        var geometry = nodus_convolution_geometry()
        geometry.in_channels = Int64(inputShape[1])
        geometry.out_channels = Int64(outputShape[1])
        geometry.groups = Int64(groups)
        geometry.in_size = padded(inputShape[2...], 1)
        geometry.out_size = padded(outputShape[2...], 1)
        geometry.kernel = padded(weightShape[2...], 1)
        geometry.stride = padded(strides[...], 1)
        geometry.dilation = padded(dilations[...], 1)
        geometry.pad_before = padded(padsBefore[...], 0)
        self.geometry = geometry
        batch = inputShape[0]
    }

    /// Whether these shapes have 1 to 3 spatial axes (other ranks take `PrimitiveMath.convolution`).
    public static func supports(spatialRank: Int) -> Bool { (1...3).contains(spatialRank) }

    private var inChannels: Int { Int(geometry.in_channels) }
    private var outChannels: Int { Int(geometry.out_channels) }
    private var taps: Int { Int(geometry.kernel.0 * geometry.kernel.1 * geometry.kernel.2) }
    private var patchSize: Int { inChannels * taps }
    private var outRowLength: Int { Int(geometry.out_size.2) }
    private var outRows: Int { Int(geometry.out_size.0 * geometry.out_size.1) }
    private var outPlane: Int { outRows * outRowLength }
    private var inPlane: Int { Int(geometry.in_size.0 * geometry.in_size.1 * geometry.in_size.2) }

    /// Whether `run` takes the GEMM path.
    public var usesGemm: Bool {
        geometry.groups == 1 && PackedGemm.isSupported && patchSize >= 16 && outChannels >= 8
    }

    /// Output rows per im2col chunk.
    var chunkRows: Int { max(1, min(outRows, columnBudget / max(1, patchSize * outRowLength))) }

    /// Scratch floats `run` needs.
    public var scratchCount: Int { usesGemm ? patchSize * chunkRows * outRowLength : 0 }

    /// Floating-point operations of one run, 2 per multiply-add.
    public var flops: Int { 2 * batch * outChannels * outPlane * (inChannels / Int(geometry.groups)) * taps }

    public func run(input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                    output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        guard usesGemm else {
            let cost = outPlane * (inChannels / Int(geometry.groups)) * taps
            Parallel.forEach(batch * outChannels, costPerItem: cost) { range in
                withUnsafePointer(to: geometry) { described in
                    nodus_convolution_direct(input, weight, bias, output, described, Int64(range.lowerBound),
                                             Int64(range.upperBound))
                }
            }
            return
        }
        for item in 0..<batch {
            let source = input + item * inChannels * inPlane
            let target = output + item * outChannels * outPlane
            var row = 0
            while row < outRows {
                let rows = min(chunkRows, outRows - row)
                let columns = rows * outRowLength
                gatherColumns(source, firstRow: row, rows: rows, into: scratch)
                var problem = PackedGemm.problem(m: outChannels, n: columns, k: patchSize,
                                                 a: PackedGemm.matrix(weight, rowStride: patchSize, columnStride: 1),
                                                 c: target + row * outRowLength, ldc: outPlane)
                problem.b = PackedGemm.matrix(scratch, rowStride: columns, columnStride: 1)
                problem.row_bias = bias
                PackedGemm.run(problem)
                row += rows
            }
        }
    }

    /// im2col of output rows `firstRow ..< firstRow + rows` (a row: all axes but the last fixed):
    /// [in x taps, rows x row length], zero where a tap falls in the padding.
    private func gatherColumns(_ source: UnsafePointer<Float>, firstRow: Int, rows: Int,
                               into columns: UnsafeMutablePointer<Float>) {
        let g = geometry
        let rowLength = outRowLength, columnCount = rows * rowLength
        let (inDepth, inHeight, inWidth) = (Int(g.in_size.0), Int(g.in_size.1), Int(g.in_size.2))
        let (kernelHeight, kernelWidth) = (Int(g.kernel.1), Int(g.kernel.2))
        let outHeight = Int(g.out_size.1)
        Parallel.forEach(patchSize, costPerItem: columnCount) { range in
            for patchRow in range {
                let channel = patchRow / taps, tap = patchRow % taps
                let kz = tap / (kernelHeight * kernelWidth), ky = (tap / kernelWidth) % kernelHeight, kx = tap % kernelWidth
                let plane = source + channel * inPlane
                let xOffset = kx * Int(g.dilation.2) - Int(g.pad_before.2), xStride = Int(g.stride.2)
                var target = columns + patchRow * columnCount
                for outRow in firstRow..<(firstRow + rows) {
                    let z = (outRow / outHeight) * Int(g.stride.0) + kz * Int(g.dilation.0) - Int(g.pad_before.0)
                    let y = (outRow % outHeight) * Int(g.stride.1) + ky * Int(g.dilation.1) - Int(g.pad_before.1)
                    if z < 0 || z >= inDepth || y < 0 || y >= inHeight {
                        target.update(repeating: 0, count: rowLength)
                    } else {
                        let line = plane + (z * inHeight + y) * inWidth
                        for x in 0..<rowLength {
                            let position = x * xStride + xOffset
                            target[x] = position >= 0 && position < inWidth ? line[position] : 0
                        }
                    }
                    target += rowLength
                }
            }
        }
    }
}
