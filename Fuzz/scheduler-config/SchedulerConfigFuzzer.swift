import FuzzSupport
import NodusCore
import NodusFormats
import NodusPipelines

/// libFuzzer target: a `scheduler_config.json`, made into its scheduler, which then runs a whole
/// schedule on a tiny sample: every field a config may set reaches the arithmetic it feeds.
/// The step count is the input's length modulo 64, plus 1 (seeds are padded with spaces to theirs).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSchedulerConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let path = ScratchFolder.write(input.bytes, to: "scheduler/scheduler_config.json")
        var scheduler = try SchedulerFactory.load(path: path)
        let steps = input.bytes.count % 64 + 1
        try scheduler.setTimesteps(steps, mu: 0.5)
        let shape = [1, 1, 2, 2]
        var sample = try Tensor(shape: shape, floats: [0.5, -1, 0.25, 2])
        let modelOutput = try Tensor(shape: shape, floats: [0.1, -0.3, 1, 0])
        let noise = try Tensor(shape: shape, floats: [1, -1, 0.5, -0.5])
        _ = scheduler.initNoiseSigma
        if let first = scheduler.timesteps.first {
            _ = try scheduler.addNoise(to: sample, noise: noise, timestep: first)
        }
        for timestep in scheduler.timesteps {
            let scaled = try scheduler.scaleModelInput(sample, timestep: timestep)
            _ = scaled.floatArray()
            sample = try scheduler.step(modelOutput: modelOutput, timestep: timestep, sample: sample,
                                        noise: scheduler.drawsStepNoise ? noise : nil)
        }
    }
}
