import XCTest
@testable import NodusCore

/// The Winograd F(4x4, 3x3) path (`winograd.c`, `WinogradConvolution`) against
/// the convolution's definition in float64: images that end inside 4x4 tiles,
/// rows of tiles that end inside the 16-tile vectors, blocks of 64 tiles that
/// cross images, channel counts off the 12-channel panels and 16-channel runs,
/// output channels in several chunks, biases, batches.
final class WinogradTests: XCTestCase {
    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    /// nn.Conv2d(padding=1) in float64.
    private func definition(_ shape: ConvolutionShape, input: [Float], weight: [Float], bias: [Float]?) -> [Double] {
        let (height, width) = (shape.height, shape.width)
        var result = [Double](repeating: 0, count: shape.batch * shape.outChannels * height * width)
        for item in 0..<shape.batch { for o in 0..<shape.outChannels { for y in 0..<height { for x in 0..<width {
            var sum = bias.map { Double($0[o]) } ?? 0
            for c in 0..<shape.inChannels { for ky in 0..<3 { for kx in 0..<3 {
                let iy = y + ky - 1, ix = x + kx - 1
                guard iy >= 0, iy < height, ix >= 0, ix < width else { continue }
                sum += Double(weight[((o * shape.inChannels + c) * 3 + ky) * 3 + kx])
                    * Double(input[((item * shape.inChannels + c) * height + iy) * width + ix])
            } } }
            result[((item * shape.outChannels + o) * height + y) * width + x] = sum
        } } } }
        return result
    }

    /// Worst |a - b| over the largest |b|; NaN (an output never written) fails any bound.
    private func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
        let peak = max(expected.map(abs).max() ?? 1, 1e-30)
        var worst = 0.0
        for (a, b) in zip(actual, expected) {
            let difference = abs(Double(a) - b)
            if difference.isNaN { return .nan }
            worst = max(worst, difference)
        }
        return worst / peak
    }

    /// Runs `shape` through `WinogradConvolution` with a scratch of exactly
    /// `scratchCount` floats, all NaN (what the kernel reads it must have
    /// written), followed by guard floats that must stay untouched.
    private func check(_ shape: ConvolutionShape, bias hasBias: Bool, seed: UInt64,
                       file: StaticString = #filePath, line: UInt = #line) {
        let input = random(shape.batch * shape.inChannels * shape.height * shape.width, seed: seed)
        let weight = random(shape.outChannels * shape.inChannels * 9, seed: seed + 1).map { $0 / Float(3 * shape.inChannels) }
        let bias = hasBias ? random(shape.outChannels, seed: seed + 2) : nil
        let expected = definition(shape, input: input, weight: weight, bias: bias)
        var output = [Float](repeating: .nan, count: expected.count)
        let scratchCount = WinogradConvolution.scratchCount(shape), guardCount = 64
        var scratch = [Float](repeating: .nan, count: scratchCount) + [Float](repeating: -7, count: guardCount)
        (bias ?? []).withUnsafeBufferPointer { biasBuffer in
            scratch.withUnsafeMutableBufferPointer { scratch in
                WinogradConvolution.run(shape: shape, input: input, weight: weight,
                                        bias: hasBias ? biasBuffer.baseAddress : nil, output: &output,
                                        scratch: scratch.baseAddress!)
            }
        }
        let error = relativeError(output, expected)
        XCTAssertLessThan(error, 1e-5, "\(shape.batch)x\(shape.inChannels)x\(shape.height)x\(shape.width) -> "
                          + "\(shape.outChannels), bias \(hasBias): relative error \(error)", file: file, line: line)
        XCTAssertEqual(Array(scratch[scratchCount...]), [Float](repeating: -7, count: guardCount),
                       "the scratch was written past its \(scratchCount) floats", file: file, line: line)
    }

    private func shape(batch: Int = 1, _ inChannels: Int, _ height: Int, _ width: Int, _ outChannels: Int) -> ConvolutionShape {
        ConvolutionShape(batch: batch, inChannels: inChannels, height: height, width: width, outChannels: outChannels,
                         kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1)
    }

    func testSmallImagesMatchFloat64() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        check(shape(5, 7, 9, 14), bias: true, seed: 1)
        check(shape(3, 1, 1, 5), bias: true, seed: 2)  // one tile, all but one input pixel padding
        check(shape(batch: 2, 19, 5, 13, 13), bias: false, seed: 3)
        check(shape(1, 4, 4, 1), bias: true, seed: 4)  // exactly one tile
        check(shape(2, 2, 3, 12), bias: true, seed: 5)  // fewer rows than a tile
    }

    /// 70 pixels are 18 tiles: rows of tiles end inside the 16-tile vectors, so
    /// vectors take tiles from two rows (and, in a batch, two images).
    func testRowsOfTilesCrossingVectorsMatchFloat64() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        check(shape(batch: 2, 33, 9, 70, 25), bias: true, seed: 6)
        check(shape(batch: 3, 17, 6, 6, 20), bias: true, seed: 7)  // 2 x 2 tiles per image: 8 images' worth per vector
        // 9 tiles per row, 13 output channels: rows cross the 8-tile vectors and
        // the channels end inside the 6-channel panels of the AVX2 form.
        check(shape(batch: 2, 11, 7, 35, 13), bias: true, seed: 12)
    }

    func testTheFormFollowsTheCPULevel() {
        let level = CPULevel.inUse
        XCTAssertEqual(WinogradConvolution.isSupported, level >= .avx2, "level \(level.name)")
        if level >= .avx512 {
            XCTAssertEqual([WinogradConvolution.panelChannels, WinogradConvolution.tileColumns], [12, 32])
        } else if level == .avx2 {
            XCTAssertEqual([WinogradConvolution.panelChannels, WinogradConvolution.tileColumns], [6, 16])
        }
    }

    /// 2 x 21 x 37 is 120 tiles: two blocks of 64, the first crossing from the
    /// first image into the second; 40 input channels are 2.5 runs of 16.
    func testBlocksCrossingImagesMatchFloat64() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        check(shape(batch: 2, 40, 21, 37, 30), bias: true, seed: 8)
    }

    /// 2 x 33 x 50 is 234 tiles, four blocks of 64: enough for each worker to take
    /// whole blocks in its own buffers (fewer blocks are shared between workers).
    func testWorkersTakingOwnBlocksMatchFloat64() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        var twoWorkers = shape(batch: 2, 17, 33, 50, 20)
        twoWorkers.winogradWorkers = 2
        check(twoWorkers, bias: true, seed: 11)
    }

    /// 240 channels x 64 tile columns: a transformed input over 2 MB, which the
    /// kernel streams to memory (smaller ones stay in cache), with a last vector
    /// of tiles that is not whole.
    func testStreamedTransformedInputMatchesFloat64() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        check(shape(240, 13, 50, 12), bias: true, seed: 15)
    }

    /// A weight budget of one panel: the output channels run in chunks of 12,
    /// each written into its slice of the output.
    func testOutputChannelsInChunksMatchFloat64() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        var chunked = shape(batch: 2, 20, 10, 11, 29)
        chunked.winogradWeightBudget = 1
        check(chunked, bias: true, seed: 9)
        var oneWorker = chunked
        oneWorker.winogradWorkers = 1
        check(oneWorker, bias: false, seed: 10)
    }

    /// `Convolution.run` takes this path for the shapes the rule names, with the
    /// scratch `scratchCount` asks for, and leaves the others to the direct product.
    func testConvolutionRunChoosesWinograd() throws {
        try XCTSkipUnless(WinogradConvolution.isSupported, "below AVX2: the direct path runs instead")
        XCTAssertTrue(shape(512, 64, 64, 512).usesWinograd)  // SD VAE decoder
        XCTAssertTrue(shape(128, 512, 512, 3).usesWinograd)  // its conv_out
        XCTAssertTrue(shape(batch: 2, 1280, 16, 16, 1280).usesWinograd)  // SD-1.5 UNet, 32 tiles
        XCTAssertFalse(shape(batch: 2, 1280, 8, 8, 1280).usesWinograd)  // 8 tiles
        XCTAssertFalse(shape(4, 64, 64, 512).usesWinograd)  // conv_in: 4 input channels
        XCTAssertFalse(ConvolutionShape(batch: 1, inChannels: 64, height: 64, width: 64, outChannels: 64, kernelHeight: 3,
                                        kernelWidth: 3, stride: 2, padding: 0, trailingPadding: 1).usesWinograd)
        XCTAssertFalse(ConvolutionShape(batch: 1, inChannels: 64, height: 64, width: 64, outChannels: 64, kernelHeight: 1,
                                        kernelWidth: 1, stride: 1, padding: 0).usesWinograd)

        let chosen = shape(16, 19, 20, 8)  // 5 x 5 tiles
        XCTAssertTrue(chosen.usesWinograd)
        let input = random(chosen.inChannels * chosen.height * chosen.width, seed: 12)
        let weight = random(chosen.outChannels * chosen.inChannels * 9, seed: 13).map { $0 / 12 }
        let bias = random(chosen.outChannels, seed: 14)
        let expected = definition(chosen, input: input, weight: weight, bias: bias)
        var output = [Float](repeating: .nan, count: expected.count)
        var scratch = [Float](repeating: 0, count: chosen.scratchCount)
        Convolution.run(shape: chosen, input: input, weight: weight, bias: bias, output: &output, scratch: &scratch)
        XCTAssertLessThan(relativeError(output, expected), 1e-5)
    }
}
