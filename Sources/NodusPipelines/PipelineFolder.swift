import NodusCore
import NodusFormats

/// A diffusers pipeline folder: `model_index.json` naming the pipeline class
/// and, per component, its library and class (`"unet": ["diffusers",
/// "UNet2DConditionModel"]`), each component in the folder of its name.
///
/// Limitations: components Nodus does not run (`safety_checker`,
/// `feature_extractor`, `image_encoder`) are skipped, as diffusers skips a
/// component given as `[null, null]`; any other component must be one of the
/// classes Nodus reads, or loading fails naming it.
public struct PipelineFolder: Sendable {
    public let directory: String
    public let className: String
    /// Component name -> class name, for the components Nodus runs.
    public let components: [String: String]

    /// Components a Stable Diffusion pipeline may list that Nodus does not run.
    static let skippedComponents: Set<String> = ["safety_checker", "feature_extractor", "image_encoder"]

    /// The classes each component Nodus runs may have.
    static let acceptedClasses: [String: Set<String>] = [
        "unet": ["UNet2DConditionModel"],
        "vae": ["AutoencoderKL"],
        "text_encoder": ["CLIPTextModel"],
        "tokenizer": ["CLIPTokenizer", "CLIPTokenizerFast"],
        "scheduler": Set(SchedulerFactory.classNames),
    ]

    /// Reads `directory/model_index.json`.
    /// - Throws: `NodusError.io` when it cannot be read, `.format` when it is not a pipeline
    ///   index, `.unsupported` naming a component whose class Nodus lacks.
    public init(directory: String) throws {
        let folder = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        let path = folder + "/model_index.json"
        let file: MappedFile
        do {
            file = try MappedFile(path: path)
        } catch let error as NodusError {
            throw NodusError.io("'\(directory)' is not a diffusers pipeline folder: \(error.message)")
        }
        let index = try JSONValue.parse(UnsafeRawBufferPointer(start: file.bytes, count: file.byteCount),
                                        context: "'\(path)'")
        guard case .object(let fields) = index else {
            throw NodusError.format("'\(path)' is not a JSON object")
        }
        let reader = try JSONObjectReader(index, context: "'\(path)'")
        self.directory = folder
        className = try reader.string("_class_name")
        var components: [String: String] = [:]
        for (name, value) in fields where !name.hasPrefix("_") {
            // Pipeline options (requires_safety_checker, ...) are plain values, components pairs.
            guard case .array(let pair) = value, pair.count == 2 else { continue }
            guard case .string(let componentClass) = pair[1] else { continue }  // [null, null]: absent
            if Self.skippedComponents.contains(name) { continue }
            guard let accepted = Self.acceptedClasses[name] else {
                throw NodusError.unsupported("'\(path)': component '\(name)' (\(componentClass)) is not one Nodus runs (it runs \(Self.acceptedClasses.keys.sorted().joined(separator: ", ")))")
            }
            guard accepted.contains(componentClass) else {
                throw NodusError.unsupported("'\(path)': component '\(name)' is a \(componentClass), which Nodus does not read (it reads \(accepted.sorted().joined(separator: ", ")))")
            }
            components[name] = componentClass
        }
        for required in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] where components[required] == nil {
            throw NodusError.format("'\(path)': the pipeline has no '\(required)' component")
        }
        self.components = components
    }

    /// The folder of component `name`.
    public func path(of name: String) -> String { directory + "/" + name }
}
