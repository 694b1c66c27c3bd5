import XCTest
import NodusCore
import NodusFormats
@testable import NodusGraph

/// Weights packed once at plan time: in float32 only file-mapped weights, each
/// once, and products that read them agree with products that pack per call;
/// in bf16 every weight, once per storage.
final class PackedWeightsTests: XCTestCase {
    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    func testPacksMappedWeightsOnceAndTheyGiveTheSameProducts() throws {
        try XCTSkipUnless(Gemm.packedLinearWeightCount(outFeatures: 1, inFeatures: 1) != nil,
                          "below AVX2: weights are not packed")
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

    /// In bf16, every weight is packed (the model's own too), once per
    /// storage; a new weight where an old one lay is packed anew, and
    /// forgetting frees the packings of weights nothing else holds.
    func testBFloat16PacksEveryWeightOncePerStorage() throws {
        let (outFeatures, inFeatures) = (40, 33)
        let values = random(outFeatures * inFeatures, seed: 6)
        let region = try Storage(zeroedByteCount: values.count * 4)
        func weight(_ values: [Float]) -> Tensor {
            let storage = Storage(viewing: region.bytes, byteCount: region.byteCount, owner: region)
            let tensor = Tensor(storage: storage, shape: [outFeatures, inFeatures], dtype: .float32)
            tensor.floats.update(from: values, count: values.count)
            return tensor
        }
        let packedWeights = PackedWeights(precision: .bfloat16)
        XCTAssertNil(try PackedWeights().bfloat16(weight(values), role: .linear), "float32 plans pack no bf16")
        var first: Tensor? = weight(values)
        let packed = try XCTUnwrap(try packedWeights.bfloat16(first!, role: .linear))
        XCTAssertEqual(packed.rows, outFeatures)
        XCTAssertEqual(packed.depth, inFeatures)
        XCTAssertEqual(try packedWeights.bfloat16(first!, role: .linear)?.byteCount, packed.byteCount)
        XCTAssertEqual(packedWeights.bfloat16ByteCount, packed.byteCount, "a weight is packed once")

        // A fused LoRA writes new weights over the old ones' memory: the same address, new storage.
        let doubled = weight(values.map { 2 * $0 })
        let repacked = try XCTUnwrap(try packedWeights.bfloat16(doubled, role: .linear))
        let input = random(3 * inFeatures, seed: 7)
        var old = [Float](repeating: .nan, count: 3 * outFeatures), new = old
        try linear(input, packed, &old)
        try linear(input, repacked, &new)
        XCTAssertEqual(new, old.map { 2 * $0 }, "the new weight's products, not the old packing's")

        first = nil
        packedWeights.forgetUnheldWeights()
        XCTAssertEqual(packedWeights.bfloat16ByteCount, repacked.byteCount, "the dropped weight's packing is freed")
        withExtendedLifetime(doubled) {}
    }

    private func linear(_ input: [Float], _ weight: PackedBFloat16Weight, _ output: inout [Float]) throws {
        try input.withUnsafeBufferPointer { input in
            try output.withUnsafeMutableBufferPointer { output in
                try BFloat16Gemm(linearInput: input.baseAddress!, weight: weight, bias: nil,
                                 output: output.baseAddress!, rows: 3).run()
            }
        }
    }
}
