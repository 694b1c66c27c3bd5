#if canImport(Glibc)
import Glibc
#endif
import CNodus
import NodusCore
import NodusFormats

/// A `nodus_pipeline *` freed with the object, and the CLI's uses of it.
final class LoadedPipeline {
    let pointer: OpaquePointer
    let path: String

    init(path: String, threads: Int32, dtype: String) throws {
        var params = nodus_model_params()
        nodus_model_params_init(&params)
        params.threads = threads
        try check(nodus_dtype_from_name(dtype, &params.dtype), "--dtype")
        var pipeline: OpaquePointer?
        try check(nodus_pipeline_load(path, &params, &pipeline), "cannot load '\(path)'")
        guard let pipeline else { throw CLIError.failure("cannot load '\(path)': no pipeline returned") }
        self.pointer = pipeline
        self.path = path
    }

    deinit { nodus_pipeline_free(pointer) }

    /// `--scheduler`: a class name made from the folder's scheduler config, or a scheduler folder.
    func setScheduler(_ value: String, folder: String) throws {
        let scheduler: SchedulerHandle
        if value.hasSuffix("Scheduler") && !value.contains("/") {
            let configPath = folder + "/scheduler/scheduler_config.json"
            let file = try MappedFile(path: configPath)
            let config = try JSONValue.parse(UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount),
                                             context: "'\(configPath)'")
            guard case .object(var fields) = config else { throw CLIError.failure("'\(configPath)' is not a JSON object") }
            fields["_class_name"] = .string(value)
            scheduler = try SchedulerHandle(json: JSONValue.object(fields).serialized(), label: "--scheduler \(value)")
        } else {
            scheduler = try SchedulerHandle(path: value)
        }
        try check(nodus_pipeline_set_scheduler(pointer, scheduler.pointer), "--scheduler")
    }

    /// `--lora FILE:WEIGHT` values: each loaded as adapter lora0, lora1, ..., all active with their weights.
    func loadLoRAs(_ values: [String]) throws {
        guard !values.isEmpty else { return }
        var names: [String] = [], weights: [Float] = []
        for (index, value) in values.enumerated() {
            var path = value, weight: Float = 1
            if let colon = value.lastIndex(of: ":"), let parsed = Float(value[value.index(after: colon)...]) {
                path = String(value[..<colon])
                weight = parsed
            }
            guard weight.isFinite else { throw CLIError.usage("--lora '\(value)': the weight must be a finite number") }
            let name = "lora\(index)"
            try check(nodus_pipeline_load_lora(pointer, path, name), "--lora '\(path)'")
            names.append(name)
            weights.append(weight)
        }
        try withCStrings(names) { list in
            try check(nodus_pipeline_set_adapters(pointer, list, weights, names.count), "--lora weights")
        }
    }

    /// Runs the pipeline for one prompt: images [N, H, W, 3] or latents [N, C, h, w], with a progress bar.
    func generate(_ settings: nodus_generate_params, prompt: String, negative: String?,
                  inputs: GenerateCommand.Inputs, output: TextOutput) throws -> Tensor {
        var params = settings
        params.output = output == .latent ? nodus_pipeline_output(NODUS_PIPELINE_OUTPUT_LATENT)
            : nodus_pipeline_output(NODUS_PIPELINE_OUTPUT_IMAGE)
        let progress = ProgressBar(label: "generate")
        params.progress = { done, total, userData in
            guard let userData else { return 0 }
            Unmanaged<ProgressBar>.fromOpaque(userData).takeUnretainedValue().update(done: Int(done), total: Int(total))
            return 0
        }
        params.progress_user_data = Unmanaged.passUnretained(progress).toOpaque()
        // The descriptions live at fixed addresses for the duration of the calls.
        let image = try inputs.image.map { try TensorArgument.make($0) }
        let mask = try inputs.mask.map { try TensorArgument.make($0) }
        let descriptions = UnsafeMutablePointer<nodus_tensor>.allocate(capacity: 2)
        defer { descriptions.deallocate() }
        if let image {
            descriptions[0] = image
            params.image = UnsafePointer(descriptions)
        }
        if let mask {
            descriptions[1] = mask
            params.mask = UnsafePointer(descriptions + 1)
        }
        defer { withExtendedLifetime(inputs) {} }
        return try withCStrings([prompt] + (negative.map { [$0] } ?? [])) { texts in
            params.prompts = UnsafePointer(texts)
            params.prompt_count = 1
            if negative != nil {
                params.negative_prompts = UnsafePointer(texts + 1)
                params.negative_prompt_count = 1
            }
            var description = nodus_tensor()
            try check(nodus_pipeline_generate(pointer, &params, &description), "generate")
            let result = try Tensor(zeros: TensorArgument.shape(of: description))
            var target = try TensorArgument.make(result)
            try check(nodus_pipeline_generate(pointer, &params, &target), "generate")
            withExtendedLifetime(progress) {}
            return result
        }
    }

    enum TextOutput { case image, latent }
}

/// Calls `body` with a C array of `strings` (valid during the call).
private func withCStrings<Result>(_ strings: [String],
                                  _ body: (UnsafeMutablePointer<UnsafePointer<CChar>?>) throws -> Result) throws -> Result {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let list = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(copies.count, 1))
    defer { list.deallocate() }
    for (index, copy) in copies.enumerated() { list[index] = UnsafePointer(copy) }
    return try body(list)
}
