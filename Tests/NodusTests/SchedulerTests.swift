#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats
import NodusPipelines

/// The one shared scheduler suite: every case of `Tests/Fixtures/schedulers.json`
/// (made by `tests/reference/make_scheduler_fixtures.py` from diffusers) goes
/// through `SchedulerFactory.make`, whatever its class; then the config errors.
final class SchedulerTests: XCTestCase {
    /// Per-step tolerance on `max|ours - ref| / max|ref|`.
    static let stepTolerance = 1e-5
    /// UniPC's last steps with `predict_x0` = false subtract two large terms (h phi_1 grows as sigma
    /// falls), which magnifies float32 rounding: 1.1e-5 in the worst case.
    static let uniPCStepTolerance = 3e-5
    /// Tolerance on the final sample of a whole run fed with our own outputs.
    static let chainTolerance = 1e-4

    struct FixtureCase {
        let name: String
        let json: JSONValue
        func floats(_ value: JSONValue?) -> [Float] {
            (value?.arrayValue ?? []).map { Float($0.doubleValue ?? .nan) }
        }
    }

    static func loadCases() throws -> (generator: String, cases: [FixtureCase]) {
        let file = try MappedFile(path: Fixtures.path("schedulers.json"))
        let document = try JSONValue.parse(UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount),
                                           context: "schedulers.json")
        let cases = (document["cases"]?.arrayValue ?? []).map {
            FixtureCase(name: $0["name"]?.stringValue ?? "?", json: $0)
        }
        return (document["generator"]?.serialized() ?? "?", cases)
    }

    static func relativeError(_ ours: Tensor, _ reference: [Float]) -> Double {
        let values = ours.floatArray()
        guard values.count == reference.count else { return .infinity }
        var difference = 0.0, scale = 0.0
        for (a, b) in zip(values, reference) {
            if a.isNaN != b.isNaN { return .infinity }
            difference = max(difference, abs(Double(a) - Double(b)))
            scale = max(scale, abs(Double(b)))
        }
        if difference.isNaN { return .infinity }
        return scale == 0 ? difference : difference / scale
    }

    static func makeScheduler(_ fixture: FixtureCase) throws -> any Scheduler {
        var scheduler = try SchedulerFactory.make(config: fixture.json["config"] ?? .null, context: fixture.name)
        if let eta = fixture.json["eta"]?.doubleValue, var ddim = scheduler as? DDIMScheduler {
            ddim.eta = Float(eta)
            scheduler = ddim
        }
        if let arguments = fixture.json["stepArguments"], var euler = scheduler as? EulerDiscreteScheduler {
            euler.churn = Float(arguments["s_churn"]?.doubleValue ?? 0)
            euler.churnMinimumSigma = Float(arguments["s_tmin"]?.doubleValue ?? 0)
            euler.churnMaximumSigma = Float(arguments["s_tmax"]?.doubleValue ?? .infinity)
            euler.noiseScale = Float(arguments["s_noise"]?.doubleValue ?? 1)
            scheduler = euler
        }
        try scheduler.setTimesteps(fixture.json["steps"]?.intValue ?? 0, mu: fixture.json["mu"]?.doubleValue)
        return scheduler
    }

    /// The sigmas of a sigma-based scheduler (empty for the others).
    static func sigmas(of scheduler: any Scheduler) -> [Float] {
        switch scheduler {
        case let euler as EulerDiscreteScheduler: return euler.sigmas
        case let ancestral as EulerAncestralDiscreteScheduler: return ancestral.sigmas
        case let heun as HeunDiscreteScheduler: return heun.sigmas
        case let lms as LMSDiscreteScheduler: return lms.sigmas
        case let dpm as DPMSolverMultistepScheduler: return dpm.sigmas
        case let unipc as UniPCMultistepScheduler: return unipc.sigmas
        case let flowHeun as FlowMatchHeunDiscreteScheduler: return flowHeun.sigmas
        default: return []
        }
    }

    func testEveryFixtureCaseMatchesDiffusers() throws {
        let (generator, cases) = try Self.loadCases()
        XCTAssertGreaterThanOrEqual(cases.count, 100, "fixture cases from \(generator)")
        let classes = Set(cases.compactMap { $0.json["config"]?["_class_name"]?.stringValue })
        XCTAssertEqual(classes, Set(SchedulerFactory.classNames), "every scheduler class has fixture cases")
        var worstStep = (error: 0.0, place: "")
        var worstChain = (error: 0.0, place: "")
        var worstByClass: [String: Double] = [:]
        var exactSteps = 0, totalSteps = 0
        for fixture in cases {
            let name = fixture.name
            var scheduler = try Self.makeScheduler(fixture)
            let expectedTimesteps = (fixture.json["timesteps"]?.arrayValue ?? []).compactMap(\.doubleValue)
            if scheduler.timestepsAreIntegers || fixture.json["sigmas"] == nil {
                XCTAssertEqual(scheduler.timesteps, expectedTimesteps, "\(name): timesteps differ from diffusers \(generator)")
            } else {
                // Fractional timesteps from _sigma_to_t: torch's vector square root of the training sigmas is not
                // correctly rounded, so a timestep can be one float32 ulp away.
                let error = zip(scheduler.timesteps, expectedTimesteps).map { abs($0 - $1) }.max() ?? 0
                XCTAssertEqual(scheduler.timesteps.count, expectedTimesteps.count, "\(name): timestep count")
                XCTAssertLessThan(error, 1e-3, "\(name): timesteps \(scheduler.timesteps) differ from \(expectedTimesteps)")
            }
            if let expectedSigmas = fixture.json["sigmas"] {
                let ours = try Tensor(shape: [Self.sigmas(of: scheduler).count], floats: Self.sigmas(of: scheduler))
                let error = Self.relativeError(ours, fixture.floats(expectedSigmas))
                XCTAssertLessThan(error, 1e-6, "\(name): sigmas \(ours.floatArray()) differ from \(fixture.floats(expectedSigmas))")
            }
            if let expected = fixture.json["initNoiseSigma"]?.doubleValue {
                XCTAssertEqual(Double(scheduler.initNoiseSigma), expected, accuracy: 1e-6 * max(1, expected),
                               "\(name): init_noise_sigma")
            }
            XCTAssertEqual(scheduler.className, fixture.json["config"]?["_class_name"]?.stringValue, name)

            // Each step on the reference input; and a second scheduler chained on its own outputs.
            var chained = try Self.makeScheduler(fixture)
            let shape = (fixture.json["shape"]?.arrayValue ?? []).compactMap(\.intValue)
            let outputShape = (fixture.json["modelOutputShape"]?.arrayValue ?? []).compactMap(\.intValue)
            var sample = try Tensor(shape: shape, floats: fixture.floats(fixture.json["sample"]))
            var chainSample = sample
            let records = fixture.json["records"]?.arrayValue ?? []
            XCTAssertEqual(records.count, expectedTimesteps.count, "\(name): one record per timestep")
            for (index, record) in records.enumerated() {
                // Our own timestep (a fractional Karras timestep may be one float32 ulp from torch's, see DiscreteSigmas).
                let referenceTimestep = record["timestep"]?.doubleValue ?? .nan
                let timestep = scheduler.timesteps[index]
                XCTAssertEqual(timestep, referenceTimestep, accuracy: 1e-6 * max(1, abs(referenceTimestep)),
                               "\(name) step \(index): timestep")
                let modelOutput = try Tensor(shape: outputShape, floats: fixture.floats(record["modelOutput"]))
                let noise = record["noise"].map { try? Tensor(shape: shape, floats: fixture.floats($0)) } ?? nil
                let expected = fixture.floats(record["prevSample"])
                let scaled = try scheduler.scaleModelInput(sample, timestep: timestep)
                let expectedScaled = record["scaledSample"].map { fixture.floats($0) } ?? sample.floatArray()
                let scaleError = Self.relativeError(scaled, expectedScaled)
                XCTAssertLessThan(scaleError, 1e-6, "\(name) step \(index): scale_model_input relative error \(scaleError)")
                let ours = try scheduler.step(modelOutput: modelOutput, timestep: timestep, sample: sample, noise: noise)
                let error = Self.relativeError(ours, expected)
                XCTAssertLessThan(error, scheduler is UniPCMultistepScheduler ? Self.uniPCStepTolerance : Self.stepTolerance,
                                  "\(name) step \(index) (t = \(timestep)): relative error \(error), "
                                      + "expected prev_sample starting \(expected.prefix(4)), got \(ours.floatArray().prefix(4))")
                if error > worstStep.error { worstStep = (error, "\(name) step \(index)") }
                worstByClass[scheduler.className] = max(worstByClass[scheduler.className] ?? 0, error)
                totalSteps += 1
                if ours.floatArray() == expected { exactSteps += 1 } else if getenv("NODUS_SCHEDULER_DEBUG") != nil {
                    print("not bit-exact: \(name) step \(index) t=\(timestep) error \(error)")
                }
                chainSample = try chained.step(modelOutput: modelOutput, timestep: timestep, sample: chainSample, noise: noise)
                sample = try Tensor(shape: shape, floats: expected)
            }
            if let noising = fixture.json["addNoise"], let middle = noising["index"]?.intValue {
                let fresh = try Self.makeScheduler(fixture)
                let original = try Tensor(shape: shape, floats: fixture.floats(noising["original"]))
                let noise = try Tensor(shape: shape, floats: fixture.floats(noising["noise"]))
                let noisy = try fresh.addNoise(to: original, noise: noise, timestep: fresh.timesteps[middle])
                let error = Self.relativeError(noisy, fixture.floats(noising["result"]))
                XCTAssertLessThan(error, 1e-6, "\(name): add_noise at schedule entry \(middle), relative error \(error)")
            }
            let chainError = Self.relativeError(chainSample, sample.floatArray())
            XCTAssertLessThan(chainError, Self.chainTolerance,
                              "\(name): whole run of \(records.count) steps, final relative error \(chainError)")
            if chainError > worstChain.error { worstChain = (chainError, name) }
        }
        print("SchedulerTests: \(cases.count) cases, \(exactSteps) of \(totalSteps) steps bit-exact; worst step error \(worstStep.error) (\(worstStep.place)); "
              + "worst whole-run error \(worstChain.error) (\(worstChain.place)); worst step by class \(worstByClass)")
    }

    // MARK: - Loading

    func testLoadsConfigFileAndFolder() throws {
        let folder = temporaryDirectory("scheduler")
        let path = folder + "/scheduler_config.json"
        let text = #"{"_class_name": "DDIMScheduler", "_diffusers_version": "0.42.1", "beta_schedule": "scaled_linear", "#
            + #""beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1, "skip_prk_steps": true}"#
        guard let handle = fopen(path, "w") else { return XCTFail("cannot write \(path)") }
        fputs(text, handle)
        fclose(handle)
        defer { unlink(path); rmdir(folder) }
        for location in [folder, path] {
            var scheduler = try SchedulerFactory.load(path: location)
            XCTAssertEqual(scheduler.className, "DDIMScheduler")
            XCTAssertTrue(scheduler.timestepsAreIntegers)
            XCTAssertEqual(scheduler.initNoiseSigma, 1)
            try scheduler.setTimesteps(4)
            XCTAssertEqual(scheduler.timesteps, [751, 501, 251, 1], "leading spacing with steps_offset 1")
        }
        assertFails(.io, containing: "missing-folder") { _ = try SchedulerFactory.load(path: "/nonexistent/missing-folder") }
    }

    // MARK: - Errors

    func assertFails(_ code: NodusError.Code, containing text: String, _ body: () throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            try body()
            XCTFail("expected a \(code) error mentioning '\(text)', got success", file: file, line: line)
        } catch let error as NodusError {
            XCTAssertEqual(error.code, code, "\(error.message)", file: file, line: line)
            XCTAssertTrue(error.message.contains(text), "message should mention '\(text)': \(error.message)",
                          file: file, line: line)
        } catch {
            XCTFail("expected a NodusError, got \(error)", file: file, line: line)
        }
    }

    func make(_ text: String) throws -> any Scheduler {
        try SchedulerFactory.make(config: try JSONValue.parse(text, context: "test"), context: "scheduler_config.json")
    }

    func testBadConfigsAreRejectedByName() {
        assertFails(.unsupported, containing: "UniPCMultistepScheduler") {  // the message lists the supported classes
            _ = try make(#"{"_class_name": "KDPM2DiscreteScheduler"}"#)
        }
        assertFails(.format, containing: "_class_name") { _ = try make(#"{"beta_start": 0.001}"#) }
        assertFails(.format, containing: "not a JSON object") { _ = try make("[1, 2]") }
        assertFails(.unsupported, containing: "beta_schedule") {
            _ = try make(#"{"_class_name": "DDIMScheduler", "beta_schedule": "cosine"}"#)
        }
        assertFails(.unsupported, containing: "beta_schedule") {  // DDPM-only schedule
            _ = try make(#"{"_class_name": "DDIMScheduler", "beta_schedule": "sigmoid"}"#)
        }
        assertFails(.format, containing: "num_train_timesteps") {
            _ = try make(#"{"_class_name": "DDPMScheduler", "num_train_timesteps": "1000"}"#)
        }
        assertFails(.format, containing: "num_train_timesteps") {
            _ = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 10.5}"#)
        }
        assertFails(.unsupported, containing: "prediction_type") {
            _ = try make(#"{"_class_name": "DDPMScheduler", "prediction_type": "x0"}"#)
        }
        assertFails(.unsupported, containing: "timestep_spacing") {
            _ = try make(#"{"_class_name": "DDIMScheduler", "timestep_spacing": "karras"}"#)
        }
        assertFails(.unsupported, containing: "fixed_large_log") {
            _ = try make(#"{"_class_name": "DDPMScheduler", "variance_type": "fixed_large_log"}"#)
        }
        assertFails(.unsupported, containing: "variance_type") {
            _ = try make(#"{"_class_name": "DDPMScheduler", "variance_type": "fixed"}"#)
        }
        assertFails(.format, containing: "clip_sample") {
            _ = try make(#"{"_class_name": "DDIMScheduler", "clip_sample": 1}"#)
        }
        assertFails(.format, containing: "trained_betas") {
            _ = try make(#"{"_class_name": "DDIMScheduler", "num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}"#)
        }
        assertFails(.unsupported, containing: "use_beta_sigmas") {
            _ = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "use_beta_sigmas": true}"#)
        }
        assertFails(.unsupported, containing: "only one of") {
            _ = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "use_karras_sigmas": true, "use_exponential_sigmas": true}"#)
        }
        assertFails(.unsupported, containing: "time_shift_type") {
            _ = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "time_shift_type": "cubic"}"#)
        }
    }

    func testStepCountsDiffusersRejects() throws {
        for name in ["DDIMScheduler", "DDPMScheduler"] {
            var scheduler = try make(#"{"_class_name": "\#(name)", "num_train_timesteps": 100}"#)
            assertFails(.invalidArgument, containing: "at least 1") { try scheduler.setTimesteps(0) }
            assertFails(.invalidArgument, containing: "num_train_timesteps = 100") { try scheduler.setTimesteps(101) }
            try scheduler.setTimesteps(100)
            XCTAssertEqual(scheduler.timesteps.count, 100)
        }
        var flow = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": true}"#)
        assertFails(.invalidArgument, containing: "at least 1") { try flow.setTimesteps(0, mu: 1) }
        assertFails(.invalidArgument, containing: "mu") { try flow.setTimesteps(10) }
        try flow.setTimesteps(10, mu: 0.5)
        XCTAssertFalse(flow.timestepsAreIntegers)
    }

    func testMissingNoiseAndBadShapes() throws {
        let sample = try Tensor(shape: [1, 2, 2, 2], floats: (0..<8).map { Float($0) / 8 })
        let output = try Tensor(shape: [1, 2, 2, 2], floats: (0..<8).map { Float($0) / 16 - 0.2 })
        let noise = try Tensor(shape: [1, 2, 2, 2], floats: [Float](repeating: 0.5, count: 8))

        var ddpm = try make(#"{"_class_name": "DDPMScheduler"}"#)
        try ddpm.setTimesteps(50)
        assertFails(.invalidArgument, containing: "timestep 980 needs noise") {
            _ = try ddpm.step(modelOutput: output, timestep: 980, sample: sample, noise: nil)
        }
        _ = try ddpm.step(modelOutput: output, timestep: 980, sample: sample, noise: noise)
        _ = try ddpm.step(modelOutput: output, timestep: 0, sample: sample, noise: nil)  // last step: no noise
        assertFails(.invalidArgument, containing: "not in the current schedule") {
            _ = try ddpm.step(modelOutput: output, timestep: 981, sample: sample, noise: noise)
        }
        assertFails(.invalidArgument, containing: "not an integer") {
            _ = try ddpm.step(modelOutput: output, timestep: 1000, sample: sample, noise: noise)
        }
        assertFails(.shape, containing: "model output shape") {
            _ = try ddpm.step(modelOutput: try Tensor(zeros: [1, 3, 2, 2]), timestep: 980, sample: sample, noise: noise)
        }
        assertFails(.shape, containing: "model output shape") {
            _ = try ddpm.step(modelOutput: try Tensor(zeros: [1, 2, 2, 3]), timestep: 980, sample: sample, noise: noise)
        }
        assertFails(.shape, containing: "noise shape") {
            _ = try ddpm.step(modelOutput: output, timestep: 980, sample: sample, noise: try Tensor(zeros: [2, 2, 2, 2]))
        }

        var learned = try make(#"{"_class_name": "DDPMScheduler", "variance_type": "learned_range"}"#)
        try learned.setTimesteps(10)
        assertFails(.shape, containing: "twice") {
            _ = try learned.step(modelOutput: output, timestep: 900, sample: sample, noise: noise)
        }

        var ddim = try make(#"{"_class_name": "DDIMScheduler"}"#)
        assertFails(.invalidArgument, containing: "setTimesteps") {
            _ = try ddim.step(modelOutput: output, timestep: 980, sample: sample, noise: nil)
        }
        guard var stochasticDDIM = ddim as? DDIMScheduler else { return XCTFail("DDIMScheduler expected") }
        stochasticDDIM.eta = 0.5
        try stochasticDDIM.setTimesteps(20)
        assertFails(.invalidArgument, containing: "timestep 950 needs noise") {
            _ = try stochasticDDIM.step(modelOutput: output, timestep: 950, sample: sample, noise: nil)
        }
        // A 2C-channel output: the second half (learned variance) is ignored by DDIM.
        let doubled = try Tensor(shape: [1, 4, 2, 2], floats: output.floatArray() + [Float](repeating: 9, count: 8))
        let plain = try stochasticDDIM.step(modelOutput: output, timestep: 950, sample: sample, noise: noise)
        let split = try stochasticDDIM.step(modelOutput: doubled, timestep: 950, sample: sample, noise: noise)
        XCTAssertEqual(plain.floatArray(), split.floatArray())

        var flow = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "stochastic_sampling": true}"#)
        try flow.setTimesteps(2)
        let first = flow.timesteps[0]
        assertFails(.invalidArgument, containing: "needs noise") {
            _ = try flow.step(modelOutput: output, timestep: first, sample: sample, noise: nil)
        }
        var plainFlow = try make(#"{"_class_name": "FlowMatchEulerDiscreteScheduler"}"#)
        try plainFlow.setTimesteps(1)
        assertFails(.invalidArgument, containing: "not in the current schedule") {
            _ = try plainFlow.step(modelOutput: output, timestep: 3.5, sample: sample, noise: nil)
        }
        _ = try plainFlow.step(modelOutput: output, timestep: plainFlow.timesteps[0], sample: sample, noise: nil)
        assertFails(.invalidArgument, containing: "exhausted") {
            _ = try plainFlow.step(modelOutput: output, timestep: 1000, sample: sample, noise: nil)
        }
    }

    func testSigmaSchedulerErrorsAndState() throws {
        assertFails(.unsupported, containing: "solver_order") {
            _ = try make(#"{"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4}"#)
        }
        assertFails(.unsupported, containing: "final_sigmas_type") {
            _ = try make(#"{"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver"}"#)
        }
        assertFails(.unsupported, containing: "use_beta_sigmas") {
            _ = try make(#"{"_class_name": "HeunDiscreteScheduler", "use_beta_sigmas": true}"#)
        }
        assertFails(.unsupported, containing: "solver_p") {
            _ = try make(#"{"_class_name": "UniPCMultistepScheduler", "solver_p": {"_class_name": "DDIMScheduler"}}"#)
        }
        assertFails(.unsupported, containing: "prediction_type") {
            _ = try make(#"{"_class_name": "EulerAncestralDiscreteScheduler", "prediction_type": "sample"}"#)
        }
        assertFails(.format, containing: "disable_corrector") {
            _ = try make(#"{"_class_name": "UniPCMultistepScheduler", "disable_corrector": [0.5]}"#)
        }
        // NaN sigmas from a nonsensical config are refused, not trapped on the int64 conversion.
        var nanFlow = try make(#"{"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": true, "sigma_min": -1}"#)
        assertFails(.invalidArgument, containing: "not a finite number") { try nanFlow.setTimesteps(4) }
        // Keys the class does not have are ignored, as diffusers' from_config does.
        var pndm = try make(#"{"_class_name": "PNDMScheduler", "rescale_betas_zero_snr": true, "skip_prk_steps": true}"#)
        try pndm.setTimesteps(4)
        XCTAssertEqual(pndm.timesteps, [750, 500, 500, 250, 0], "PNDM skip_prk_steps repeats the second-to-last timestep")

        // Heun: 2N - 1 entries, order 2; scale_model_input before the first step looks the timestep up.
        var heun = try make(#"{"_class_name": "HeunDiscreteScheduler"}"#)
        try heun.setTimesteps(3)
        XCTAssertEqual(heun.timesteps.count, 5)
        XCTAssertEqual(heun.order, 2)
        let sample = try Tensor(shape: [1, 1, 2, 2], floats: [0.5, -1, 2, 0.25])
        assertFails(.invalidArgument, containing: "not in the current schedule") {
            _ = try heun.scaleModelInput(sample, timestep: 3.5)
        }
        var state = sample
        for timestep in heun.timesteps {
            state = try heun.step(modelOutput: sample, timestep: timestep, sample: state, noise: nil)
        }
        assertFails(.invalidArgument, containing: "exhausted") {
            _ = try heun.step(modelOutput: sample, timestep: 0, sample: state, noise: nil)
        }
        try heun.setTimesteps(3)  // resets the position and the first-order state
        _ = try heun.step(modelOutput: sample, timestep: heun.timesteps[0], sample: sample, noise: nil)

        var euler = try make(#"{"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "leading", "steps_offset": 1}"#)
        try euler.setTimesteps(10)
        guard var churned = euler as? EulerDiscreteScheduler else { return XCTFail("EulerDiscreteScheduler expected") }
        churned.churn = 1
        assertFails(.invalidArgument, containing: "needs noise") {
            _ = try churned.step(modelOutput: sample, timestep: churned.timesteps[0], sample: sample, noise: nil)
        }
        _ = try euler.step(modelOutput: sample, timestep: euler.timesteps[0], sample: sample, noise: nil)
    }

    func testDynamicShiftMu() throws {
        let scheduler = try FlowMatchEulerDiscreteScheduler(
            config: try JSONValue.parse(#"{"base_shift": 0.5, "max_shift": 1.15}"#, context: "t"), context: "t")
        XCTAssertEqual(scheduler.mu(imageSequenceLength: 256), 0.5, accuracy: 1e-12)
        XCTAssertEqual(scheduler.mu(imageSequenceLength: 4096), 1.15, accuracy: 1e-12)
    }
}
