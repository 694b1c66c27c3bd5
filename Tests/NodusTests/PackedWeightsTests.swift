import XCTest
import NodusCore
import NodusFormats
@testable import NodusGraph

/// Weights packed once at plan time: only file-mapped float32 weights, each
/// once, and products that read them agree with products that pack per call.
final class PackedWeightsTests: XCTestCase {
    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    func testPacksMappedWeightsOnceAndTheyGiveTheSameProducts() throws {
        try XCTSkipUnless(Gemm.packedLinearWeightCount(outFeatures: 1, inFeatures: 1) != nil,
                          "this CPU has no AVX-512: weights are not packed")
        let (rows, inFeatures, outFeatures) = (37, 300, 70)
        let (convolutionOut, convolutionIn) = (14, 5)
        let directory = temporaryDirectory("packed-weights")
        try SafetensorsWriter.write(
            [(name: "linear.weight", tensor: try Tensor(shape: [outFeatures, inFeatures],
                                                        floats: random(outFeatures * inFeatures, seed: 1))),
             (name: "conv.weight", tensor: try Tensor(shape: [convolutionOut, convolutionIn, 3, 3],
                                                      floats: random(convolutionOut * convolutionIn * 9, seed: 2)))],
            to: directory + "/diffusion_pytorch_model.safetensors")
        let store = try WeightStore(directory: directory)
        let weight = try store.float32("linear.weight"), kernel = try store.float32("conv.weight")
        XCTAssertTrue(weight.storage.isFileMapped)

        let packedWeights = PackedWeights()
        let packed = try XCTUnwrap(try packedWeights.linear(weight))
        XCTAssertEqual(try packedWeights.linear(weight), packed, "a weight is packed once")
        let owned = try Tensor(shape: weight.shape, floats: weight.floatArray())
        XCTAssertNil(try packedWeights.linear(owned), "weights the model made are used as they are")

        let input = random(rows * inFeatures, seed: 3), bias = random(outFeatures, seed: 4)
        var perCall = [Float](repeating: .nan, count: rows * outFeatures), once = perCall
        Gemm.linear(input: input, weight: weight.floats, bias: bias, output: &perCall, rows: rows,
                    inFeatures: inFeatures, outFeatures: outFeatures)
        Gemm.linear(input: input, weight: weight.floats, packedWeight: packed, bias: bias, output: &once, rows: rows,
                    inFeatures: inFeatures, outFeatures: outFeatures)
        XCTAssertEqual(once, perCall, "the same sums in the same order")

        let shape = ConvolutionShape(batch: 2, inChannels: convolutionIn, height: 9, width: 11,
                                     outChannels: convolutionOut, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1)
        let image = random(2 * convolutionIn * 9 * 11, seed: 5)
        var convolved = [Float](repeating: .nan, count: 2 * convolutionOut * 9 * 11), convolvedOnce = convolved
        var scratch = [Float](repeating: 0, count: max(1, shape.scratchCount))
        let packedKernel = try XCTUnwrap(try packedWeights.convolution(kernel))
        Convolution.run(shape: shape, input: image, weight: kernel.floats, bias: nil, output: &convolved,
                        scratch: &scratch)
        Convolution.run(shape: shape, input: image, weight: kernel.floats, packedWeight: packedKernel, bias: nil,
                        output: &convolvedOnce, scratch: &scratch)
        XCTAssertEqual(convolvedOnce, convolved, "the same sums in the same order")
        // The file pages were dropped after packing; the weight still reads from the file.
        XCTAssertEqual(weight.floatArray(), random(outFeatures * inFeatures, seed: 1))
    }
}
