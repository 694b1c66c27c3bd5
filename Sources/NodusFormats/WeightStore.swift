#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// The weights of one diffusers model folder (`save_pretrained` layout), or of one
/// `.safetensors` file, by name. Weights are zero-copy views of the mapped files
/// (read-only: never write them) unless a conversion is asked for.
///
/// A folder holds either `<baseName>.safetensors` or a sharded set described by
/// `<baseName>.safetensors.index.json` (`{"weight_map": {"weight name": "shard file"}}`,
/// as written by diffusers / transformers). When both exist the single file wins.
///
/// Limitations: only safetensors (no `.bin` pickles); in a sharded folder, tensors
/// that a shard holds but the index does not list are ignored.
public final class WeightStore: Sendable {
    /// The folder the weights came from (the file's folder for `init(file:)`).
    public let directory: String
    /// The opened files: one, or one per shard named by the index.
    public let files: [SafetensorsFile]
    /// Weight names, sorted.
    public let names: [String]
    /// How messages name the source: "folder '<dir>'" or "file '<path>'".
    private let sourceDescription: String
    /// Weight name → index into `files`.
    private let locations: [String: Int]

    /// Opens the weights of the diffusers model folder `directory`.
    /// - Parameters:
    ///   - directory: the model folder (e.g. `<model>/transformer`).
    ///   - baseName: the weights file name without extension.
    /// - Throws: `NodusError.io` when the folder has neither weights file (the message
    ///   lists both paths looked for) or a shard is missing; `NodusError.format` for
    ///   a malformed index, a shard name leaving the folder, a weight absent from its
    ///   shard, or an invalid safetensors file.
    public init(directory: String, baseName: String = "diffusion_pytorch_model", access: FileAccess = .mapped) throws {
        let folder = directory.hasSuffix("/") && directory.count > 1 ? String(directory.dropLast()) : directory
        let singlePath = "\(folder)/\(baseName).safetensors"
        let indexPath = "\(singlePath).index.json"
        self.directory = folder
        self.sourceDescription = "folder '\(folder)'"
        if try WeightStore.isFile(singlePath) {
            let file = try SafetensorsFile(path: singlePath, access: access)
            self.files = [file]
            self.names = file.names
            self.locations = Dictionary(uniqueKeysWithValues: file.names.map { ($0, 0) })
            return
        }
        guard try WeightStore.isFile(indexPath) else {
            throw NodusError.io("folder '\(folder)' has no weights: looked for '\(singlePath)' and '\(indexPath)'")
        }
        let weightMap = try WeightStore.readWeightMap(indexPath: indexPath)
        var files: [SafetensorsFile] = []
        var fileIndex: [String: Int] = [:]
        var locations: [String: Int] = [:]
        for name in weightMap.keys.sorted() {
            guard let shard = weightMap[name] else { continue }
            let index: Int
            if let known = fileIndex[shard] {
                index = known
            } else {
                let shardPath = "\(folder)/\(shard)"
                guard try WeightStore.isFile(shardPath) else {
                    throw NodusError.io("index '\(indexPath)' puts weight '\(name)' in shard '\(shard)', but '\(shardPath)' does not exist")
                }
                files.append(try SafetensorsFile(path: shardPath, access: access))
                index = files.count - 1
                fileIndex[shard] = index
            }
            guard files[index].contains(name) else {
                throw NodusError.format("index '\(indexPath)' puts weight '\(name)' in shard '\(shard)', but the shard has no such tensor")
            }
            locations[name] = index
        }
        self.files = files
        self.locations = locations
        self.names = weightMap.keys.sorted()
    }

    /// Opens one `.safetensors` file as a weight store.
    /// - Throws: `NodusError.io` / `NodusError.format` as `SafetensorsFile.init(path:)`.
    public init(file path: String) throws {
        let file = try SafetensorsFile(path: path)
        if let slash = path.lastIndex(of: "/") {
            self.directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            self.directory = "."
        }
        self.sourceDescription = "file '\(path)'"
        self.files = [file]
        self.names = file.names
        self.locations = Dictionary(uniqueKeysWithValues: file.names.map { ($0, 0) })
    }

    /// Whether the store holds a weight called `name`.
    public func contains(_ name: String) -> Bool { locations[name] != nil }

    /// The dtypes of the weights in the store.
    public var dtypes: Set<DType> {
        var result = Set<DType>()
        for (name, index) in locations {
            if let entry = files[index].entry(name) { result.insert(entry.dtype) }
        }
        return result
    }

    /// The header entry (dtype, shape, bytes) of weight `name`, or nil when absent.
    public func entry(_ name: String) -> SafetensorsFile.Entry? {
        guard let index = locations[name] else { return nil }
        return files[index].entry(name)
    }

    /// A zero-copy, read-only view of weight `name`, in the file's dtype.
    /// - Throws: `NodusError.format` naming the weight and the folder when it is missing.
    public func tensor(_ name: String) throws -> Tensor {
        guard let index = locations[name] else { throw missing(name) }
        return try files[index].tensor(name)
    }

    /// Weight `name` as float32: the view itself when the file holds aligned F32,
    /// else a converted copy (from F16, BF16 or F64); integer weights are an error.
    /// - Parameters:
    ///   - name: the weight name.
    ///   - expected: when given, the shape the weight must have.
    /// - Throws: `NodusError.format` when the weight is missing, `NodusError.shape`
    ///   naming the weight, the expected and the found shape when they differ;
    ///   `NodusError.format` for a weight stored as integers.
    public func float32(_ name: String, shape expected: [Int]? = nil) throws -> Tensor {
        guard let index = locations[name] else { throw missing(name) }
        if let expected, let entry = files[index].entry(name), entry.shape != expected {
            throw NodusError.shape("weight '\(name)' in \(sourceDescription): expected shape \(expected), found \(entry.shape)")
        }
        let tensor = try files[index].tensor(name)
        guard tensor.dtype.isFloatingPoint else {
            throw NodusError.format("weight '\(name)' in \(sourceDescription) is \(tensor.dtype.name), expected a floating-point type")
        }
        return try tensor.asFloat32()
    }

    private func missing(_ name: String) -> NodusError {
        NodusError.format("weight '\(name)' is missing from \(sourceDescription)")
    }

    /// Whether `path` is a regular file (following symlinks); false when nothing is there.
    /// - Throws: `NodusError.io` when something that is not a regular file is (a FIFO, a device,
    ///   a folder), which reading would block on or misread.
    private static func isFile(_ path: String) throws -> Bool {
        var status = stat()
        guard stat(path, &status) == 0 else { return false }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw NodusError.io("'\(path)' is not a regular file") }
        return true
    }

    /// Reads and checks the `weight_map` of a sharded index: weight name → shard file name.
    private static func readWeightMap(indexPath: String) throws -> [String: String] {
        let mapping = try MappedFile(path: indexPath)
        let value = try JSONValue.parse(UnsafeRawBufferPointer(start: mapping.bytes, count: mapping.byteCount),
                                        context: "index '\(indexPath)'")
        guard let members = value["weight_map"]?.objectValue else {
            throw NodusError.format("index '\(indexPath)' has no 'weight_map' object")
        }
        var weightMap: [String: String] = [:]
        for (name, item) in members {
            guard let shard = item.stringValue else {
                throw NodusError.format("index '\(indexPath)': shard of weight '\(name)' must be a string, found \(item.serialized())")
            }
            guard !shard.isEmpty, shard != ".", shard != "..", !shard.contains("/"), !shard.contains("\\"),
                  !shard.contains("\0") else {
                throw NodusError.format("index '\(indexPath)': shard name '\(shard)' of weight '\(name)' must be a plain file name inside the folder")
            }
            weightMap[name] = shard
        }
        return weightMap
    }
}
