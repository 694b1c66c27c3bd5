import NodusCore
import NodusFormats

/// Opens a diffusers model folder and builds the model its config.json names,
/// or an ONNX file (a path ending in `.onnx`).
public enum ModelLoader {
    public static func load(path: String, options: ModelOptions = ModelOptions()) throws -> any DiffusionModel {
        _ = try options.precision()
        guard options.threads >= 0 else { throw NodusError.invalidArgument("threads must be >= 0, got \(options.threads)") }
        if path.lowercased().hasSuffix(".onnx") { return try ONNXGraphModel(path: path, options: options) }
        let directory = path.hasSuffix("/") && path.count > 1 ? String(path.dropLast()) : path
        let configPath = directory + "/config.json"
        let file: MappedFile
        do {
            file = try MappedFile(path: configPath)
        } catch let error as NodusError {
            throw NodusError.io("'\(path)' is not a diffusers model folder: \(error.message)")
        }
        let config = try JSONValue.parse(UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount),
                                         context: "'\(configPath)'")
        let reader = try JSONObjectReader(config, context: "'\(configPath)'")
        let className = try reader.string("_class_name")
        switch className {
        case "DiTTransformer2DModel":
            return try DiTModel(directory: directory, config: config, options: options)
        case "UNet2DConditionModel":
            return try UNetModel(directory: directory, config: config, options: options)
        case "AutoencoderKL":
            return try AutoencoderKLModel(directory: directory, config: config, options: options)
        default:
            throw NodusError.unsupported("'\(configPath)': model class '\(className)' is not supported (supported: DiTTransformer2DModel, UNet2DConditionModel, AutoencoderKL)")
        }
    }
}
