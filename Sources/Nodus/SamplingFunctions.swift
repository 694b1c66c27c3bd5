import CNodus
import NodusCore
import NodusPipelines

enum SampleParameters {
    static var defaults: nodus_sample_params {
        var params = nodus_sample_params()
        params.struct_size = UInt32(MemoryLayout<nodus_sample_params>.stride)
        params.steps = 50
        params.guidance_scale = 4.0
        params.strength = 1.0
        return params
    }
}

/// `void nodus_sample_params_init(nodus_sample_params *)`: 50 steps, guidance 4.0, strength 1, every pointer NULL.
@_cdecl("nodus_sample_params_init")
public func nodusSampleParamsInit(_ params: UnsafeMutablePointer<nodus_sample_params>?) {
    guard let params else { return }
    params.pointee = SampleParameters.defaults
}

/// `nodus_status nodus_sample(nodus_model *, nodus_scheduler *, const nodus_sample_params *, nodus_tensor *output)`:
/// the guided denoising loop. With `output->data` NULL only the shape is reported.
@_cdecl("nodus_sample")
public func nodusSample(_ model: OpaquePointer?, _ scheduler: OpaquePointer?,
                        _ params: UnsafePointer<nodus_sample_params>?,
                        _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_sample"
    return Status.run(function) {
        let modelHandle = try Argument.handle(model, ModelHandle.self, "model", in: function)
        let schedulerHandle = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        let paramsPointer = try Argument.required(params, "params", in: function)
        let target = try Argument.required(output, "output", in: function)
        let settings = try Argument.params(paramsPointer, defaults: SampleParameters.defaults,
                                           initializer: "nodus_sample_params_init", in: function)
        guard settings.steps >= 1 else {
            throw NodusError.invalidArgument("\(function): params.steps is \(settings.steps); it must be at least 1")
        }
        _ = try Argument.finite(settings.guidance_scale, "params.guidance_scale", in: function)
        _ = try Argument.finite(settings.strength, "params.strength", in: function)
        let initSource = try Argument.required(settings.init_noise, "params.init_noise", in: function)
        let initNoise = try TensorBridge.input(initSource.pointee, label: "\(function): params.init_noise", copy: true)
        var request = SamplingRequest(initNoise: initNoise)
        request.steps = Int(settings.steps)
        request.guidanceScale = settings.guidance_scale
        if settings.class_label_count != 0 {
            let labels = try Argument.required(settings.class_labels, "params.class_labels", in: function)
            guard settings.class_label_count > 0, settings.class_label_count <= 1 << 20 else {
                throw NodusError.invalidArgument(
                    "\(function): params.class_label_count \(UInt(bitPattern: settings.class_label_count)) is out of range")
            }
            request.classLabels = Array(UnsafeBufferPointer(start: labels, count: settings.class_label_count))
        }
        if let stepNoise = settings.step_noise {
            request.stepNoise = try TensorBridge.input(stepNoise.pointee, label: "\(function): params.step_noise",
                                                       copy: true)
        }
        request.adapterSchedule = try adapterSchedule(settings, in: function)
        func optionalTensor(_ tensor: UnsafePointer<nodus_tensor>?, _ name: String) throws -> Tensor? {
            try tensor.map { try TensorBridge.input($0.pointee, label: "\(function): params.\(name)", copy: true) }
        }
        request.conditioning = try optionalTensor(settings.conditioning, "conditioning")
        request.encoderHiddenStates = try optionalTensor(settings.encoder_hidden_states, "encoder_hidden_states")
        request.imageLatents = try optionalTensor(settings.image_latents, "image_latents")
        request.mask = try optionalTensor(settings.mask, "mask")
        request.strength = settings.strength
        if let context = settings.context {
            let contextHandle = try Argument.handle(context, ContextHandle.self, "params.context", in: function)
            guard contextHandle.model === modelHandle.model else {
                throw NodusError.invalidArgument("\(function): params.context is a context of another model")
            }
            request.context = contextHandle.context
        }
        let shape = initNoise.shape
        // The trajectory has one latent per timestep that runs: learn their number from a copy.
        var probe = schedulerHandle.scheduler
        let trajectoryShape = [try GuidedSampler.timesteps(for: request, scheduler: &probe).count] + shape
        if let trajectory = settings.trajectory {
            let label = "\(function): params.trajectory"
            guard trajectory.pointee.data != nil else {
                throw NodusError.invalidArgument("\(label): data is NULL")
            }
            _ = try TensorBridge.prepareOutput(trajectory, shape: trajectoryShape, dtype: .float32, label: label)
            request.recordTrajectory = true
        }
        let label = "\(function): output"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        if let callback = settings.progress {
            let userData = settings.progress_user_data
            request.progress = { done, total in
                callback(Int32(clamping: done), Int32(clamping: total), userData) == 0
            }
        }
        // The run steps a copy: a progress callback may use the scheduler handle (set_timesteps,
        // timesteps) without a conflicting access; the handle takes the run's final state after.
        var running = schedulerHandle.scheduler
        let result = try GuidedSampler.run(model: modelHandle.model, scheduler: &running, request: request)
        schedulerHandle.scheduler = running
        if let trajectory = settings.trajectory {
            guard let recorded = result.trajectory else {
                throw NodusError(.internal, "\(function): the sampler did not record the trajectory")
            }
            try TensorBridge.write(recorded, to: trajectory, shape: trajectoryShape, dtype: .float32,
                                   label: "\(function): params.trajectory")
        }
        try TensorBridge.write(result.final, to: target, shape: shape, dtype: .float32, label: label)
    }
}

/// The `adapter_schedule` entries of sample params, checked.
private func adapterSchedule(_ settings: nodus_sample_params, in function: String) throws -> [AdapterChange] {
    // A size_t above Int.max arrives negative: out of range, not "none".
    let count = settings.adapter_schedule_count
    guard count != 0 else { return [] }
    guard (1...100_000).contains(count) else {
        throw NodusError.invalidArgument("\(function): params.adapter_schedule_count \(UInt(bitPattern: count)) is out of range")
    }
    let entries = try Argument.required(settings.adapter_schedule, "params.adapter_schedule", in: function)
    return try (0..<count).map { index in
        let entry = entries[index]
        let label = "params.adapter_schedule[\(index)]"
        guard (0...4096).contains(entry.count) else {
            throw NodusError.invalidArgument("\(function): \(label).count \(UInt(bitPattern: entry.count)) is out of range")
        }
        var names: [String] = []
        if entry.count > 0 {
            let list = try Argument.required(entry.names, "\(label).names", in: function)
            names = try (0..<entry.count).map { try Argument.string(list[$0], "\(label).names[\($0)]", in: function) }
        }
        let weights = try Argument.floats(entry.weights, count: names.count, fallback: 1, "\(label).weights",
                                          in: function)
        return AdapterChange(step: Int(entry.step), names: names, weights: weights)
    }
}
