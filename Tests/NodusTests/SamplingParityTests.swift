import XCTest
import NodusCore
import NodusFormats
import NodusModels
import NodusPipelines

/// Full CFG sampling runs against loops that mirror diffusers' `DiTPipeline`
/// (`tests/reference/make_model_fixtures.py`): every step of the trajectory.
final class SamplingParityTests: XCTestCase {
    private func check(scheduler name: String, fixture: String, steps: Int) throws {
        let model = try ModelLoader.load(path: Fixtures.path("dit-tiny"))
        var scheduler = try SchedulerFactory.load(path: Fixtures.path(name))
        let reference = try SafetensorsFile(path: Fixtures.path(fixture))
        var request = SamplingRequest(initNoise: try reference.tensor("init_noise"))
        request.steps = steps
        request.guidanceScale = 4
        request.classLabels = try reference.tensor("class_labels").int64Array()
        request.stepNoise = reference.contains("step_noise") ? try reference.tensor("step_noise") : nil
        request.recordTrajectory = true
        let result = try GuidedSampler.run(model: model, scheduler: &scheduler, request: request)

        XCTAssertEqual(scheduler.timesteps.map { Float($0) }, try reference.tensor("timesteps").floatArray())
        let trajectory = try XCTUnwrap(result.trajectory).floatArray()
        let expected = try reference.tensor("trajectory").floatArray()
        let stepCount = expected.count / steps
        for step in 0..<steps {
            var difference: Float = 0, scale: Float = 0
            for index in (step * stepCount)..<((step + 1) * stepCount) {
                difference = max(difference, abs(trajectory[index] - expected[index]))
                scale = max(scale, abs(expected[index]))
            }
            XCTAssertLessThan(difference / scale, 1e-3, "\(name) step \(step): relative error \(difference / scale)")
        }
        XCTAssertEqual(result.final.floatArray(), Array(trajectory.suffix(stepCount)))
    }

    func testDDIMMatchesDiffusers() throws {
        try check(scheduler: "scheduler-ddim", fixture: "dit-tiny-sample-ddim.safetensors", steps: 50)
    }

    func testDDPMLearnedRangeMatchesDiffusers() throws {
        try check(scheduler: "scheduler-ddpm", fixture: "dit-tiny-sample-ddpm.safetensors", steps: 50)
    }

    func testFlowMatchingMatchesDiffusers() throws {
        try check(scheduler: "scheduler-flow", fixture: "dit-tiny-sample-flow.safetensors", steps: 20)
    }

    func testCancelStopsSampling() throws {
        let model = try ModelLoader.load(path: Fixtures.path("dit-tiny"))
        var scheduler = try SchedulerFactory.load(path: Fixtures.path("scheduler-ddim"))
        var request = SamplingRequest(initNoise: try Tensor(zeros: [1, 4, 8, 8]))
        request.steps = 10
        request.classLabels = [3]
        var calls = 0
        request.progress = { done, _ in calls += 1; return done < 3 }
        XCTAssertThrowsError(try GuidedSampler.run(model: model, scheduler: &scheduler, request: request)) { error in
            XCTAssertEqual((error as? NodusError)?.code, .cancelled, "\(error)")
        }
        XCTAssertEqual(calls, 3)
    }

    func testWrongLabelCountIsRejected() throws {
        let model = try ModelLoader.load(path: Fixtures.path("dit-tiny"))
        var scheduler = try SchedulerFactory.load(path: Fixtures.path("scheduler-ddim"))
        var request = SamplingRequest(initNoise: try Tensor(zeros: [1, 4, 8, 8]))
        request.classLabels = [1, 2, 3]
        XCTAssertThrowsError(try GuidedSampler.run(model: model, scheduler: &scheduler, request: request)) { error in
            XCTAssertTrue("\(error)".contains("class_labels has 3 labels"), "\(error)")
        }
    }
}
