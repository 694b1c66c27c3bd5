import CNodus
import NodusCore
import NodusFormats
import NodusPipelines

/// The diffusers class names indexed by `nodus_scheduler_kind` (append-only, as the header's enum).
enum SchedulerKinds {
    static let classNames = [
        "DDIMScheduler", "DDPMScheduler", "FlowMatchEulerDiscreteScheduler", "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler",
        "UniPCMultistepScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler", "LCMScheduler",
        "FlowMatchHeunDiscreteScheduler",
    ]
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let table = StaticCString.table(classNames)

    static func kind(ofClass name: String) -> nodus_scheduler_kind {
        guard let index = classNames.firstIndex(of: name) else { return -1 }
        return nodus_scheduler_kind(index)
    }
}

/// `const char *nodus_scheduler_kind_name(nodus_scheduler_kind)`: the diffusers class name; NULL if unknown.
@_cdecl("nodus_scheduler_kind_name")
public func nodusSchedulerKindName(_ kind: nodus_scheduler_kind) -> UnsafePointer<CChar>? {
    StaticCString.lookup(SchedulerKinds.table, kind)
}

/// `nodus_status nodus_scheduler_kind_from_name(const char *, nodus_scheduler_kind *)`.
@_cdecl("nodus_scheduler_kind_from_name")
public func nodusSchedulerKindFromName(_ name: UnsafePointer<CChar>?,
                                       _ outKind: UnsafeMutablePointer<nodus_scheduler_kind>?) -> nodus_status {
    let function = "nodus_scheduler_kind_from_name"
    return Status.run(function) {
        let text = try Argument.string(name, "name", in: function)
        let target = try Argument.required(outKind, "out_kind", in: function)
        let kind = SchedulerKinds.kind(ofClass: text)
        guard kind >= 0 else {
            let known = SchedulerKinds.classNames.joined(separator: ", ")
            throw NodusError.invalidArgument("\(function): unknown scheduler class '\(text)' (known: \(known))")
        }
        target.pointee = kind
    }
}

/// `nodus_status nodus_scheduler_load(const char *path, nodus_scheduler **)`: a
/// scheduler_config.json file or a folder holding one. On failure `*out_scheduler` is NULL.
@_cdecl("nodus_scheduler_load")
public func nodusSchedulerLoad(_ path: UnsafePointer<CChar>?,
                               _ outScheduler: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_scheduler_load"
    outScheduler?.pointee = nil
    return Status.run(function) {
        let target = try Argument.required(outScheduler, "out_scheduler", in: function)
        let scheduler = try Argument.withPath(path, "path", in: function) { try SchedulerFactory.load(path: $0) }
        target.pointee = SchedulerHandle(scheduler: scheduler).retainedPointer()
    }
}

/// `nodus_status nodus_scheduler_from_json(const char *json, nodus_scheduler **)`.
/// On failure `*out_scheduler` is NULL.
@_cdecl("nodus_scheduler_from_json")
public func nodusSchedulerFromJSON(_ json: UnsafePointer<CChar>?,
                                   _ outScheduler: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_scheduler_from_json"
    outScheduler?.pointee = nil
    return Status.run(function) {
        let target = try Argument.required(outScheduler, "out_scheduler", in: function)
        let text = try Argument.string(json, "json", in: function)
        let context = "the scheduler config given to \(function)"
        let config = try JSONValue.parse(text, context: context)
        let scheduler = try SchedulerFactory.make(config: config, context: context)
        target.pointee = SchedulerHandle(scheduler: scheduler).retainedPointer()
    }
}

/// `void nodus_scheduler_free(nodus_scheduler *)`: NULL is a no-op.
@_cdecl("nodus_scheduler_free")
public func nodusSchedulerFree(_ scheduler: OpaquePointer?) {
    SchedulerHandle.release(scheduler, in: "nodus_scheduler_free")
}

/// `nodus_scheduler_kind nodus_scheduler_get_kind(const nodus_scheduler *)`: -1 when
/// `scheduler` is NULL or its class has no `nodus_scheduler_kind` value.
@_cdecl("nodus_scheduler_get_kind")
public func nodusSchedulerGetKind(_ scheduler: OpaquePointer?) -> nodus_scheduler_kind {
    guard let handle = SchedulerHandle.lookup(scheduler, "scheduler", in: "nodus_scheduler_get_kind") else { return -1 }
    return SchedulerKinds.kind(ofClass: handle.scheduler.className)
}

/// `nodus_status nodus_scheduler_set_timesteps(nodus_scheduler *, int32_t steps)`.
@_cdecl("nodus_scheduler_set_timesteps")
public func nodusSchedulerSetTimesteps(_ scheduler: OpaquePointer?, _ steps: Int32) -> nodus_status {
    let function = "nodus_scheduler_set_timesteps"
    return Status.run(function) {
        let handle = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        guard steps >= 1, Int(steps) <= SchedulerFactory.maximumSteps else {
            throw NodusError.invalidArgument("\(function): steps is \(steps); it must be in 1...\(SchedulerFactory.maximumSteps)")
        }
        try handle.scheduler.setTimesteps(Int(steps), mu: nil)
    }
}

/// `nodus_status nodus_scheduler_set_timesteps_sized(nodus_scheduler *, int32_t steps, int64_t spatial_size)`.
@_cdecl("nodus_scheduler_set_timesteps_sized")
public func nodusSchedulerSetTimestepsSized(_ scheduler: OpaquePointer?, _ steps: Int32, _ spatialSize: Int64) -> nodus_status {
    let function = "nodus_scheduler_set_timesteps_sized"
    return Status.run(function) {
        let handle = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        guard steps >= 1, Int(steps) <= SchedulerFactory.maximumSteps else {
            throw NodusError.invalidArgument("\(function): steps is \(steps); it must be in 1...\(SchedulerFactory.maximumSteps)")
        }
        guard spatialSize >= 1, spatialSize <= 1 << 40 else {
            throw NodusError.invalidArgument("\(function): spatial_size is \(spatialSize); it must be the latent's elements per channel (1...2^40)")
        }
        try handle.scheduler.setTimesteps(Int(steps), mu: nil, spatialSize: Int(spatialSize))
    }
}

/// `nodus_status nodus_scheduler_timesteps(const nodus_scheduler *, double *out, size_t capacity,
/// size_t *out_count, int32_t *out_is_integer)`.
@_cdecl("nodus_scheduler_timesteps")
public func nodusSchedulerTimesteps(_ scheduler: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?,
                                    _ capacity: Int, _ outCount: UnsafeMutablePointer<Int>?,
                                    _ outIsInteger: UnsafeMutablePointer<Int32>?) -> nodus_status {
    let function = "nodus_scheduler_timesteps"
    return Status.run(function) {
        let handle = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        let countTarget = try Argument.required(outCount, "out_count", in: function)
        let integerTarget = try Argument.required(outIsInteger, "out_is_integer", in: function)
        if capacity != 0 { _ = try Argument.required(out, "out", in: function) }
        let timesteps = handle.scheduler.timesteps
        if let out {
            // A size_t above Int.max arrives negative: it still means "room for all".
            let room = capacity < 0 ? timesteps.count : min(capacity, timesteps.count)
            for index in 0..<room { out[index] = timesteps[index] }
        }
        countTarget.pointee = timesteps.count
        integerTarget.pointee = handle.scheduler.timestepsAreIntegers ? 1 : 0
    }
}

/// `float nodus_scheduler_init_noise_sigma(const nodus_scheduler *)`: NaN when `scheduler` is NULL.
@_cdecl("nodus_scheduler_init_noise_sigma")
public func nodusSchedulerInitNoiseSigma(_ scheduler: OpaquePointer?) -> Float {
    guard let handle = SchedulerHandle.lookup(scheduler, "scheduler", in: "nodus_scheduler_init_noise_sigma") else { return .nan }
    return Float(handle.scheduler.initNoiseSigma)
}

/// `int32_t nodus_scheduler_draws_noise(const nodus_scheduler *)`: 1 or 0; -1 when `scheduler` is NULL.
@_cdecl("nodus_scheduler_draws_noise")
public func nodusSchedulerDrawsNoise(_ scheduler: OpaquePointer?) -> Int32 {
    guard let handle = SchedulerHandle.lookup(scheduler, "scheduler", in: "nodus_scheduler_draws_noise") else { return -1 }
    return handle.scheduler.drawsStepNoise ? 1 : 0
}

/// `int32_t nodus_scheduler_order(const nodus_scheduler *)`: -1 when `scheduler` is NULL.
@_cdecl("nodus_scheduler_order")
public func nodusSchedulerOrder(_ scheduler: OpaquePointer?) -> Int32 {
    guard let handle = SchedulerHandle.lookup(scheduler, "scheduler", in: "nodus_scheduler_order") else { return -1 }
    return Int32(clamping: handle.scheduler.order)
}

/// `nodus_status nodus_scheduler_step(nodus_scheduler *, const nodus_tensor *model_output, double timestep,
/// const nodus_tensor *sample, const nodus_tensor *noise, nodus_tensor *prev_sample)`.
/// Inputs are copied: multistep schedulers keep past model outputs beyond the call.
/// With `prev_sample->data` NULL only the shape is reported and the scheduler does not step.
@_cdecl("nodus_scheduler_step")
public func nodusSchedulerStep(_ scheduler: OpaquePointer?, _ modelOutput: UnsafePointer<nodus_tensor>?,
                               _ timestep: Double, _ sample: UnsafePointer<nodus_tensor>?,
                               _ noise: UnsafePointer<nodus_tensor>?,
                               _ prevSample: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_scheduler_step"
    return Status.run(function) {
        let handle = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        let outputSource = try Argument.required(modelOutput, "model_output", in: function)
        let sampleSource = try Argument.required(sample, "sample", in: function)
        let target = try Argument.required(prevSample, "prev_sample", in: function)
        guard timestep.isFinite else {
            throw NodusError.invalidArgument("\(function): timestep \(timestep) is not finite")
        }
        let modelOutputTensor = try TensorBridge.input(outputSource.pointee, label: "\(function): model_output",
                                                       copy: true)
        let sampleTensor = try TensorBridge.input(sampleSource.pointee, label: "\(function): sample", copy: true)
        let noiseTensor = try noise.map { try TensorBridge.input($0.pointee, label: "\(function): noise", copy: true) }
        let shape = sampleTensor.shape
        let label = "\(function): prev_sample"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        let result = try handle.scheduler.step(modelOutput: modelOutputTensor, timestep: timestep,
                                               sample: sampleTensor, noise: noiseTensor)
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}

/// `nodus_status nodus_scheduler_scale_model_input(const nodus_scheduler *, const nodus_tensor *sample,
/// double timestep, nodus_tensor *scaled)`: diffusers `scale_model_input`; the scheduler does not move.
/// With `scaled->data` NULL only the shape is reported.
@_cdecl("nodus_scheduler_scale_model_input")
public func nodusSchedulerScaleModelInput(_ scheduler: OpaquePointer?, _ sample: UnsafePointer<nodus_tensor>?,
                                          _ timestep: Double,
                                          _ scaled: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_scheduler_scale_model_input"
    return Status.run(function) {
        let handle = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        let sampleSource = try Argument.required(sample, "sample", in: function)
        let target = try Argument.required(scaled, "scaled", in: function)
        guard timestep.isFinite else {
            throw NodusError.invalidArgument("\(function): timestep \(timestep) is not finite")
        }
        let sampleTensor = try TensorBridge.input(sampleSource.pointee, label: "\(function): sample", copy: false)
        guard sampleTensor.rank >= 1 else {
            throw NodusError.shape("\(function): sample must have at least one dimension, got shape \(sampleTensor.shape)")
        }
        let shape = sampleTensor.shape
        let label = "\(function): scaled"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        let result = try handle.scheduler.scaleModelInput(try sampleTensor.asFloat32(), timestep: timestep)
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}
