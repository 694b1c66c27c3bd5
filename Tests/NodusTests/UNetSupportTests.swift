#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats
import NodusModels
@testable import NodusPipelines

/// The pieces the UNet and its pipelines add, against formulas written out:
/// GEGLU, per-channel adds, UNet config parsing, add_noise, get_timesteps,
/// the known-region blend and ensemble statistics.
final class UNetSupportTests: XCTestCase {
    private func random(_ count: Int, seed: UInt64) -> [Float] {
        var generator = TorchGenerator(seed: seed)
        return generator.normal(count: count)
    }

    func testGEGLUAndPerPlaneAdd() {
        let (rows, width) = (37, 19)
        let input = random(rows * 2 * width, seed: 1)
        var output = [Float](repeating: 0, count: rows * width)
        Activation.geglu(input, &output, rows: rows, width: width)
        for row in 0..<rows {
            for index in 0..<width {
                let hidden = Double(input[row * 2 * width + index]), gate = Double(input[row * 2 * width + width + index])
                let expected = hidden * 0.5 * gate * (1 + erf(gate / 2.0.squareRoot()))
                XCTAssertEqual(Double(output[row * width + index]), expected, accuracy: 1e-5 * max(1, abs(expected)))
            }
        }
        let (planes, planeSize) = (6, 40_000)  // large enough to split over threads
        let x = random(planes * planeSize, seed: 2), values = random(planes, seed: 3)
        var sum = [Float](repeating: 0, count: x.count)
        Elementwise.addPerPlane(x, values, &sum, planes: planes, planeSize: planeSize)
        for index in stride(from: 0, to: x.count, by: 997) {
            XCTAssertEqual(sum[index], x[index] + values[index / planeSize])
        }
    }

    private func unetConfig(_ json: String) throws -> UNetConfig {
        try UNetConfig(JSONObjectReader(JSONValue.parse(json, context: "test"), context: "config"))
    }

    func testUNetConfigExpandsPerBlockFieldsAndRefusesWhatItCannotRun() throws {
        let config = try unetConfig("""
            {"block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": [2, 4],
             "layers_per_block": 1, "cross_attention_dim": 64, "norm_num_groups": 8,
             "only_cross_attention": [true, false], "transformer_layers_per_block": [2, 1]}
            """)
        XCTAssertEqual(config.heads, [2, 4])
        XCTAssertEqual(config.layersPerBlock, [1, 1])
        XCTAssertEqual(config.transformerLayersPerBlock, [2, 1])
        XCTAssertEqual(config.onlyCrossAttention, [true, false])
        XCTAssertEqual(config.timeEmbeddingWidth, 128)
        XCTAssertEqual(config.downscale, 2)
        XCTAssertTrue(config.hasMidBlock)

        let refused: [(String, String)] = [
            (#""num_attention_heads": 8"#, "num_attention_heads"),
            (#""class_embed_type": "timestep""#, "class_embed_type"),
            (#""resnet_time_scale_shift": "scale_shift""#, "resnet_time_scale_shift"),
            (#""down_block_types": ["SimpleCrossAttnDownBlock2D"]"#, "SimpleCrossAttnDownBlock2D"),
            (#""cross_attention_dim": [768, 1024, 1024, 1024]"#, "cross_attention_dim"),
            (#""layers_per_block": [2, 2]"#, "layers_per_block"),
            (#""norm_num_groups": 7"#, "norm_num_groups"),
            (#""center_input_sample": true"#, "center_input_sample"),
            (#""transformer_layers_per_block": [[1], [2], [3], [4]]"#, "transformer_layers_per_block"),
        ]
        for (field, fragment) in refused {
            XCTAssertThrowsError(try unetConfig("{\(field)}"), field) { error in
                XCTAssertTrue((error as? NodusError)?.message.contains(fragment) == true, "\(field): \(error)")
            }
        }
    }

    func testAddNoiseMatchesTheSchedulerFormulas() throws {
        let original = try Tensor(shape: [1, 2, 2, 2], floats: random(8, seed: 4))
        let noise = try Tensor(shape: [1, 2, 2, 2], floats: random(8, seed: 5))
        let ddim = try DDIMScheduler(config: JSONValue.parse(#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#, context: "t"), context: "t")
        let noised = try ddim.addNoise(to: original, noise: noise, timestep: 500)
        let alpha = ddim.schedule.alphasCumprod[500]
        for index in 0..<8 {
            XCTAssertEqual(noised.floats[index], alpha.squareRoot() * original.floats[index] + (1 - alpha).squareRoot() * noise.floats[index])
        }
        XCTAssertThrowsError(try ddim.addNoise(to: original, noise: try Tensor(zeros: [1, 2, 2, 3]), timestep: 500))

        var flow = try FlowMatchEulerDiscreteScheduler(config: JSONValue.parse("{}", context: "t"), context: "t")
        try flow.setTimesteps(10)
        flow.setBeginIndex(4)
        let scaled = try flow.addNoise(to: original, noise: noise, timestep: flow.timesteps[4])
        let sigma = flow.sigmas[4]
        for index in 0..<8 {
            XCTAssertEqual(scaled.floats[index], sigma * noise.floats[index] + (1 - sigma) * original.floats[index])
        }
    }

    func testStrengthStartsWhereDiffusersGetTimestepsDoes() throws {
        // init_timestep = min(int(steps * strength), steps); t_start = steps - init_timestep.
        XCTAssertEqual(try KnownImage.startIndex(steps: 50, strength: 0.6), 20)
        XCTAssertEqual(try KnownImage.startIndex(steps: 10, strength: 0.7), 3)  // 0.7 * 10 = 7.000000000000001
        XCTAssertEqual(try KnownImage.startIndex(steps: 10, strength: 1), 0)
        XCTAssertEqual(try KnownImage.startIndex(steps: 10, strength: 0.05), 10)
        XCTAssertThrowsError(try KnownImage.startIndex(steps: 10, strength: 1.5))
    }

    func testKnownRegionBlendKeepsTheImageOutsideTheMask() throws {
        let shape = [2, 3, 2, 2]
        let latents = try Tensor(shape: shape, floats: random(24, seed: 6))
        let noise = try Tensor(shape: shape, floats: random(24, seed: 7))
        let mask = try Tensor(shape: [1, 1, 2, 2], floats: [1, 0, 0.25, 1])
        let known = try KnownImage(latents: latents, noise: noise, mask: mask)
        let ddim: any Scheduler = try DDIMScheduler(config: JSONValue.parse("{}", context: "t"), context: "t")
        let generated = try Tensor(shape: shape, floats: random(24, seed: 8))
        let last = try known.blend(generated, scheduler: ddim, nextTimestep: nil)
        for index in 0..<24 {
            let m = mask.floats[index % 4]
            XCTAssertEqual(last.floats[index], (1 - m) * latents.floats[index] + m * generated.floats[index])
        }
        XCTAssertThrowsError(try KnownImage(latents: latents, noise: noise, mask: try Tensor(zeros: [1, 2, 2, 2])))
        XCTAssertThrowsError(try KnownImage(latents: try Tensor(zeros: [1, 3, 2, 2]), noise: noise, mask: nil))
    }

    func testEnsembleStatistics() throws {
        let samples = try Tensor(shape: [4, 3], floats: [1, 2, 3, 2, 2, 5, 3, 2, 7, 6, 2, 9])
        let (mean, variance) = try EnsembleStatistics.compute(samples, correction: 1)
        XCTAssertEqual(mean.floatArray(), [3, 2, 6])
        XCTAssertEqual(variance.floatArray(), [14.0 / 3, 0, 20.0 / 3])
        let population = try EnsembleStatistics.compute(samples, correction: 0).variance
        XCTAssertEqual(population.floatArray(), [3.5, 0, 5])
        XCTAssertThrowsError(try EnsembleStatistics.compute(try Tensor(zeros: [1, 3]), correction: 1))
        XCTAssertThrowsError(try EnsembleStatistics.compute(samples, correction: 4))
        XCTAssertThrowsError(try EnsembleStatistics.compute(try Tensor(shape: [2], floats: [1, .nan]), correction: 1))
    }
}
