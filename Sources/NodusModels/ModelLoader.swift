#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Opens a diffusers model folder and builds the model its config.json names,
/// or an ONNX file (a path ending in `.onnx`, or any path naming a file rather
/// than a folder).
public enum ModelLoader {
    public static func load(path: String, options: ModelOptions = ModelOptions()) throws -> any DiffusionModel {
        _ = try options.precision()
        guard (0...Parallel.maximumThreads).contains(options.threads) else {
            throw NodusError.invalidArgument("threads must be in 0...\(Parallel.maximumThreads) (0 = every core), got \(options.threads)")
        }
        if path.lowercased().hasSuffix(".onnx") || isFile(path) { return try ONNXGraphModel(path: path, options: options) }
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
        let className = try modelClass(reader)
        switch className {
        case "DiTTransformer2DModel":
            return try DiTModel(directory: directory, config: config, options: options)
        case "UNet2DConditionModel":
            return try UNetModel(directory: directory, config: config, options: options)
        case "AutoencoderKL":
            return try AutoencoderKLModel(directory: directory, config: config, options: options)
        case "MedSyn2Transformer3DModel":
            return try MedSyn2Model(directory: directory, config: config, options: options)
        case "CLIPTextModel", "CLIPTextModelWithProjection":
            return try CLIPTextModel(directory: directory, config: config, options: options,
                                     withProjection: className == "CLIPTextModelWithProjection")
        default:
            throw NodusError.unsupported("'\(configPath)': model class '\(className)' is not supported (supported: \(supportedClasses.joined(separator: ", ")))")
        }
    }

    public static let supportedClasses = ["DiTTransformer2DModel", "UNet2DConditionModel", "AutoencoderKL",
                                          "CLIPTextModel", "CLIPTextModelWithProjection", "MedSyn2Transformer3DModel"]

    /// diffusers configs name their class in `_class_name`; transformers configs
    /// (a pipeline's `text_encoder/`) in `architectures`, else by `model_type`.
    private static func modelClass(_ reader: JSONObjectReader) throws -> String {
        if let name = try reader.optionalString("_class_name") { return name }
        if reader.has("architectures"), let first = try reader.stringArray("architectures").first { return first }
        if try reader.optionalString("model_type") == "clip_text_model" { return "CLIPTextModel" }
        throw NodusError.format("\(reader.context): no '_class_name' (diffusers) or 'architectures' (transformers) names the model class")
    }

    /// Whether `path` names something other than a folder (following symlinks).
    private static func isFile(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) != S_IFDIR
    }
}
