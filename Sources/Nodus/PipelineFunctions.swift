import CNodus
#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusModels
import NodusPipelines

enum PipelineOutputs {
    static let names = ["image", "latent"]
    // Immutable after initialisation; safe to share between threads.
    nonisolated(unsafe) static let table = StaticCString.table(names)
}

enum GenerateParameters {
    static var defaults: nodus_generate_params {
        var params = nodus_generate_params()
        params.struct_size = UInt32(MemoryLayout<nodus_generate_params>.stride)
        params.steps = 50
        params.guidance_scale = 7.5
        params.images_per_prompt = 1
        params.output = nodus_pipeline_output(NODUS_PIPELINE_OUTPUT_IMAGE)
        params.strength = 0.8
        return params
    }

    /// The request the caller's params describe, checked.
    static func request(_ settings: nodus_generate_params, in function: String) throws -> TextToImageRequest {
        guard settings.prompt_count != 0 else {
            throw NodusError.invalidArgument("\(function): params.prompt_count is 0: give at least one prompt")
        }
        var request = TextToImageRequest(
            prompts: try Argument.strings(settings.prompts, count: settings.prompt_count, "params.prompts", in: function))
        if settings.negative_prompt_count != 0 {
            request.negativePrompts = try Argument.strings(settings.negative_prompts,
                                                           count: settings.negative_prompt_count,
                                                           "params.negative_prompts", in: function)
        }
        request.steps = Int(settings.steps)
        request.guidanceScale = try Argument.finite(settings.guidance_scale, "params.guidance_scale", in: function)
        // Read with or without an image: every number given must be finite.
        let strength = try Argument.finite(settings.strength, "params.strength", in: function)
        guard settings.height >= 0, settings.width >= 0 else {
            throw NodusError.invalidArgument("\(function): params.height and width must be 0 (the default) or positive, got \(settings.height) x \(settings.width)")
        }
        request.height = settings.height == 0 ? nil : Int(settings.height)
        request.width = settings.width == 0 ? nil : Int(settings.width)
        request.seed = settings.seed
        request.imagesPerPrompt = Int(settings.images_per_prompt)
        request.clipSkip = Int(settings.clip_skip)
        switch settings.output {
        case nodus_pipeline_output(NODUS_PIPELINE_OUTPUT_IMAGE): request.output = .image
        case nodus_pipeline_output(NODUS_PIPELINE_OUTPUT_LATENT): request.output = .latent
        default: throw NodusError.invalidArgument("\(function): params.output \(settings.output) is not a nodus_pipeline_output")
        }
        if let callback = settings.progress {
            let userData = settings.progress_user_data
            request.progress = { done, total in callback(Int32(clamping: done), Int32(clamping: total), userData) == 0 }
        }
        if let image = settings.image {
            request.image = try TensorBridge.input(image.pointee, label: "\(function): params.image", copy: true)
            request.strength = strength
        }
        if let mask = settings.mask {
            request.mask = try TensorBridge.input(mask.pointee, label: "\(function): params.mask", copy: true)
        }
        return request
    }
}

/// `nodus_status nodus_pipeline_load(const char *path, const nodus_model_params *, nodus_pipeline **)`.
@_cdecl("nodus_pipeline_load")
public func nodusPipelineLoad(_ path: UnsafePointer<CChar>?, _ params: UnsafePointer<nodus_model_params>?,
                              _ outPipeline: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_pipeline_load"
    outPipeline?.pointee = nil
    return Status.run(function) {
        let target = try Argument.required(outPipeline, "out_pipeline", in: function)
        let options = try ModelParameters.options(params, in: function)
        let pipeline = try Argument.withPath(path, "path", in: function) {
            try StableDiffusionPipeline(directory: $0, options: options)
        }
        target.pointee = PipelineHandle(pipeline: pipeline).retainedPointer()
    }
}

/// `void nodus_pipeline_free(nodus_pipeline *)`: NULL is a no-op.
@_cdecl("nodus_pipeline_free")
public func nodusPipelineFree(_ pipeline: OpaquePointer?) {
    PipelineHandle.release(pipeline, in: "nodus_pipeline_free")
}

/// `nodus_status nodus_pipeline_model(nodus_pipeline *, const char *component, nodus_model **)`.
@_cdecl("nodus_pipeline_model")
public func nodusPipelineModel(_ pipeline: OpaquePointer?, _ component: UnsafePointer<CChar>?,
                               _ outModel: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_pipeline_model"
    outModel?.pointee = nil
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let target = try Argument.required(outModel, "out_model", in: function)
        let name = try Argument.string(component, "component", in: function)
        let pipeline = handle.pipeline
        let model: any DiffusionModel
        switch name {
        case "unet": model = pipeline.unet
        case "vae": model = pipeline.vae
        case "text_encoder": model = pipeline.textEncoder
        default:
            throw NodusError.invalidArgument("\(function): component '\(name)' is not one of unet, vae, text_encoder")
        }
        target.pointee = try ModelHandle(model: model).retainedPointer()
    }
}

/// `nodus_status nodus_pipeline_tokenizer(nodus_pipeline *, nodus_tokenizer **)`.
@_cdecl("nodus_pipeline_tokenizer")
public func nodusPipelineTokenizer(_ pipeline: OpaquePointer?,
                                   _ outTokenizer: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_pipeline_tokenizer"
    outTokenizer?.pointee = nil
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let target = try Argument.required(outTokenizer, "out_tokenizer", in: function)
        target.pointee = TokenizerHandle(tokenizer: handle.pipeline.tokenizer).retainedPointer()
    }
}

/// `nodus_status nodus_pipeline_set_scheduler(nodus_pipeline *, const nodus_scheduler *)`.
@_cdecl("nodus_pipeline_set_scheduler")
public func nodusPipelineSetScheduler(_ pipeline: OpaquePointer?, _ scheduler: OpaquePointer?) -> nodus_status {
    let function = "nodus_pipeline_set_scheduler"
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let source = try Argument.handle(scheduler, SchedulerHandle.self, "scheduler", in: function)
        handle.pipeline.scheduler = source.scheduler
    }
}

/// `nodus_status nodus_pipeline_scheduler(nodus_pipeline *, nodus_scheduler **)`: a copy.
@_cdecl("nodus_pipeline_scheduler")
public func nodusPipelineScheduler(_ pipeline: OpaquePointer?,
                                   _ outScheduler: UnsafeMutablePointer<OpaquePointer?>?) -> nodus_status {
    let function = "nodus_pipeline_scheduler"
    outScheduler?.pointee = nil
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let target = try Argument.required(outScheduler, "out_scheduler", in: function)
        target.pointee = SchedulerHandle(scheduler: handle.pipeline.scheduler).retainedPointer()
    }
}

/// `nodus_status nodus_pipeline_load_lora(nodus_pipeline *, const char *path, const char *adapter_name)`.
@_cdecl("nodus_pipeline_load_lora")
public func nodusPipelineLoadLoRA(_ pipeline: OpaquePointer?, _ path: UnsafePointer<CChar>?,
                                  _ adapterName: UnsafePointer<CChar>?) -> nodus_status {
    let function = "nodus_pipeline_load_lora"
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let name = try Argument.string(adapterName, "adapter_name", in: function)
        _ = try Argument.withPath(path, "path", in: function) { try handle.pipeline.loadLoRA(path: $0, adapterName: name) }
    }
}

/// `nodus_status nodus_pipeline_set_adapters(nodus_pipeline *, const char *const *names, const float *weights, size_t)`.
@_cdecl("nodus_pipeline_set_adapters")
public func nodusPipelineSetAdapters(_ pipeline: OpaquePointer?, _ names: UnsafePointer<UnsafePointer<CChar>?>?,
                                     _ weights: UnsafePointer<Float>?, _ count: Int) -> nodus_status {
    let function = "nodus_pipeline_set_adapters"
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let list = try Argument.strings(names, count: count, "names", in: function)
        let values = try Argument.floats(weights, count: list.count, fallback: 1, "weights", in: function)
        try handle.pipeline.setAdapters(list, weights: values)
    }
}

/// `const char *nodus_pipeline_output_name(nodus_pipeline_output)`: NULL if unknown.
@_cdecl("nodus_pipeline_output_name")
public func nodusPipelineOutputName(_ output: nodus_pipeline_output) -> UnsafePointer<CChar>? {
    StaticCString.lookup(PipelineOutputs.table, output)
}

/// `nodus_status nodus_pipeline_output_from_name(const char *, nodus_pipeline_output *)`.
@_cdecl("nodus_pipeline_output_from_name")
public func nodusPipelineOutputFromName(_ name: UnsafePointer<CChar>?,
                                        _ outOutput: UnsafeMutablePointer<nodus_pipeline_output>?) -> nodus_status {
    let function = "nodus_pipeline_output_from_name"
    return Status.run(function) {
        let target = try Argument.required(outOutput, "out_output", in: function)
        let text = try Argument.string(name, "name", in: function)
        guard let index = PipelineOutputs.names.firstIndex(of: text) else {
            throw NodusError.invalidArgument("\(function): unknown output '\(text)' (known: \(PipelineOutputs.names.joined(separator: ", ")))")
        }
        target.pointee = nodus_pipeline_output(index)
    }
}

/// `void nodus_generate_params_init(nodus_generate_params *)`.
@_cdecl("nodus_generate_params_init")
public func nodusGenerateParamsInit(_ params: UnsafeMutablePointer<nodus_generate_params>?) {
    guard let params else { return }
    params.pointee = GenerateParameters.defaults
}

/// `nodus_status nodus_pipeline_generate(nodus_pipeline *, const nodus_generate_params *, nodus_tensor *output)`:
/// with `output->data` NULL only the shape is reported.
@_cdecl("nodus_pipeline_generate")
public func nodusPipelineGenerate(_ pipeline: OpaquePointer?, _ params: UnsafePointer<nodus_generate_params>?,
                                  _ output: UnsafeMutablePointer<nodus_tensor>?) -> nodus_status {
    let function = "nodus_pipeline_generate"
    return Status.run(function) {
        let handle = try Argument.handle(pipeline, PipelineHandle.self, "pipeline", in: function)
        let paramsPointer = try Argument.required(params, "params", in: function)
        let target = try Argument.required(output, "output", in: function)
        let settings = try Argument.params(paramsPointer, defaults: GenerateParameters.defaults,
                                           initializer: "nodus_generate_params_init", in: function)
        let request = try GenerateParameters.request(settings, in: function)
        let shape = try handle.pipeline.outputShape(for: request)
        let label = "\(function): output"
        guard try TensorBridge.prepareOutput(target, shape: shape, dtype: .float32, label: label) else { return }
        let result = try handle.pipeline.generate(request)
        try TensorBridge.write(result, to: target, shape: shape, dtype: .float32, label: label)
    }
}
