import CNodus
import NodusFormats

/// A `nodus_model *` freed with the object.
final class ModelHandle {
    let pointer: OpaquePointer
    let path: String

    /// The `--dtype` option of the commands that load models.
    static let dtypeOption = OptionSpec.value(
        "dtype", "NAME", "compute precision of Linears and convolutions: float32 (default) or bfloat16")

    /// Loads the model folder at `path` with `threads` workers (0 = all cores)
    /// and compute precision `dtype` (a `nodus_dtype_name`).
    init(path: String, threads: Int32 = 0, dtype: String = "float32") throws {
        var params = nodus_model_params()
        nodus_model_params_init(&params)
        params.threads = threads
        try check(nodus_dtype_from_name(dtype, &params.dtype), "--dtype")
        var model: OpaquePointer?
        try check(nodus_model_load(path, &params, &model), "cannot load '\(path)'")
        guard let model else { throw CLIError.failure("cannot load '\(path)': no model returned") }
        self.pointer = model
        self.path = path
    }

    deinit { nodus_model_free(pointer) }

    /// "dit", "vae", ...
    var kindName: String {
        nodus_model_kind_name(nodus_model_get_kind(pointer)).map { String(cString: $0) } ?? "unknown"
    }

    /// The model's config.json, as text and parsed.
    var configText: String {
        nodus_model_config_json(pointer).map { String(cString: $0) } ?? "{}"
    }

    func config() throws -> JSONValue {
        try JSONValue.parse(configText, context: "the config of '\(path)'")
    }

    /// "dit" or "unet" for a denoiser: a native one, or an ONNX export with DiT's
    /// (class_labels) or a UNet's (encoder_hidden_states) inputs; else the kind's name.
    var denoiserKind: String {
        guard kindName == "onnx" else { return kindName }
        let names = Set(signatures(input: true).map(\.name))
        guard names.contains("sample") && names.contains("timestep") else { return kindName }
        return names.contains("class_labels") ? "dit" : names.contains("encoder_hidden_states") ? "unet" : kindName
    }

    /// The denoiser's input channels and default latent height and width: config.json's
    /// in_channels and sample_size, or an export's declared `sample` shape.
    func sampleGeometry() throws -> (channels: Int, height: Int, width: Int) {
        guard kindName == "onnx" else {
            let size = try configInteger("sample_size")
            return (try configInteger("in_channels"), size, size)
        }
        guard let shape = signatures(input: true).first(where: { $0.name == "sample" })?.shape, shape.count == 4,
              shape[1] > 0 else {
            throw CLIError.failure("'\(path)' declares no [batch, channels, height, width] 'sample' input")
        }
        return (shape[1], shape[2] > 0 ? shape[2] : 32, shape[3] > 0 ? shape[3] : 32)
    }

    /// The names of the outputs of `nodus_model_forward_all`.
    var outputNames: [String] { signatures(input: false).map(\.name) }

    /// The model's inputs or outputs as (name, dtype name, shape with -1 for any size), nil shape for an open rank.
    func signatures(input: Bool) -> [(name: String, dtype: String, shape: [Int]?)] {
        let count = input ? nodus_model_input_count(pointer) : nodus_model_output_count(pointer)
        return (0..<count).compactMap { index in
            var info = nodus_tensor_info()
            let status = input ? nodus_model_input_info(pointer, index, &info) : nodus_model_output_info(pointer, index, &info)
            guard status == 0, let name = info.name else { return nil }
            var dims = info.shape
            let shape: [Int]? = info.ndim < 0 ? nil : withUnsafeBytes(of: &dims) { bytes in
                (0..<Int(info.ndim)).map { Int(bytes.load(fromByteOffset: $0 * 8, as: Int64.self)) }
            }
            let dtype = nodus_dtype_name(info.dtype).map { String(cString: $0) } ?? "unknown"
            return (String(cString: name), dtype, shape)
        }
    }

    /// An integer field of config.json, or a failure naming it.
    func configInteger(_ key: String) throws -> Int {
        guard let value = try config()[key]?.intValue else {
            throw CLIError.failure("the config of '\(path)' has no integer '\(key)'")
        }
        return value
    }
}

/// A `nodus_scheduler *` freed with the object.
final class SchedulerHandle {
    let pointer: OpaquePointer

    /// From a scheduler folder or scheduler_config.json file.
    init(path: String) throws {
        var scheduler: OpaquePointer?
        try check(nodus_scheduler_load(path, &scheduler), "cannot load the scheduler '\(path)'")
        guard let scheduler else { throw CLIError.failure("cannot load the scheduler '\(path)'") }
        self.pointer = scheduler
    }

    /// From a scheduler config as JSON text; `label` names it in errors.
    init(json: String, label: String) throws {
        var scheduler: OpaquePointer?
        try check(nodus_scheduler_from_json(json, &scheduler), label)
        guard let scheduler else { throw CLIError.failure("\(label): no scheduler returned") }
        self.pointer = scheduler
    }

    deinit { nodus_scheduler_free(pointer) }

    var kind: nodus_scheduler_kind { nodus_scheduler_get_kind(pointer) }

    /// The number of timesteps after the last set_timesteps.
    func timestepCount() throws -> Int {
        var count = 0, isInteger: Int32 = 0
        try check(nodus_scheduler_timesteps(pointer, nil, 0, &count, &isInteger), "timesteps")
        return count
    }
}
