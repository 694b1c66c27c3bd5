import NodusCore
import NodusFormats

/// Reads and writes the tensor files the CLI takes and produces: `.npy` (one
/// array) and `.safetensors` (named tensors).
enum TensorFiles {
    enum Kind { case npy, safetensors }

    /// The kind of file `path` names by its extension, or a usage error.
    static func kind(of path: String, option: String) throws -> Kind {
        let lower = path.lowercased()
        if lower.hasSuffix(".npy") { return .npy }
        if lower.hasSuffix(".safetensors") { return .safetensors }
        throw CLIError.usage("--\(option) '\(path)' must end in .npy or .safetensors")
    }

    /// Named inputs from `--input` values: `FILE.safetensors` (every tensor, by its
    /// name) or `NAME=FILE.npy`.
    static func readInputs(_ specifications: [String]) throws -> [(name: String, tensor: Tensor)] {
        var inputs: [(name: String, tensor: Tensor)] = []
        for specification in specifications {
            if let equals = specification.firstIndex(of: "="), !specification.lowercased().hasSuffix(".safetensors") {
                let name = String(specification[..<equals])
                let path = String(specification[specification.index(after: equals)...])
                guard !name.isEmpty, try kind(of: path, option: "input") == .npy else {
                    throw CLIError.usage("--input '\(specification)': use NAME=FILE.npy or FILE.safetensors")
                }
                inputs.append((name, try NumpyArray.read(path: path)))
            } else {
                guard try kind(of: specification, option: "input") == .safetensors else {
                    throw CLIError.usage("--input '\(specification)': an .npy file needs a name: NAME=FILE.npy")
                }
                let file = try SafetensorsFile(path: specification)
                for name in file.names { inputs.append((name, try file.tensor(name))) }
            }
        }
        var seen = Set<String>()
        for input in inputs where !seen.insert(input.name).inserted {
            throw CLIError.usage("input '\(input.name)' is given twice")
        }
        return inputs
    }

    /// The tensors of one `--option FILE`: an .npy array (under `defaultName`), or
    /// every tensor of a .safetensors file by name.
    static func read(_ path: String, option: String, defaultName: String) throws -> [String: Tensor] {
        switch try kind(of: path, option: option) {
        case .npy:
            return [defaultName: try NumpyArray.read(path: path)]
        case .safetensors:
            let file = try SafetensorsFile(path: path)
            return try Dictionary(uniqueKeysWithValues: file.names.map { ($0, try file.tensor($0)) })
        }
    }

    /// One tensor from `path`: a .npy file, or the tensor `name` of a .safetensors
    /// file (without a name: its only tensor, else `preferred`).
    static func readTensor(_ path: String, name: String?, preferred: String, option: String) throws -> Tensor {
        switch try kind(of: path, option: option) {
        case .npy:
            if name != nil { throw CLIError.usage("--tensor names a tensor of a .safetensors --\(option), not of '\(path)'") }
            return try NumpyArray.read(path: path)
        case .safetensors:
            let file = try SafetensorsFile(path: path)
            let chosen = name ?? (file.names.count == 1 ? file.names[0] : preferred)
            guard file.names.contains(chosen) else {
                throw CLIError.failure("'\(path)' has no tensor '\(chosen)' (it has \(file.names.joined(separator: ", "))); choose one with --tensor")
            }
            return try file.tensor(chosen)
        }
    }

    /// Writes one tensor to `path` (.npy, or .safetensors under `name`).
    static func write(_ tensor: Tensor, name: String, to path: String, option: String) throws {
        switch try kind(of: path, option: option) {
        case .npy: try NumpyArray.write(tensor, to: path)
        case .safetensors: try SafetensorsWriter.write([(name: name, tensor: tensor)], to: path)
        }
    }
}
