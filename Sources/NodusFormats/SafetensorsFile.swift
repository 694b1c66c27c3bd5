import NodusCore

/// One `.safetensors` file, memory-mapped read-only, with its header parsed and
/// fully validated at open.
///
/// Layout: an 8-byte little-endian header length `N`, `N` bytes of JSON header
/// (`{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}`
/// with an optional `"__metadata__"` object of strings), then the data area; the
/// offsets are relative to the start of the data area.
///
/// Validation at open (every failure is `NodusError.format` naming the file and,
/// where there is one, the tensor): the header length fits in the file; the header
/// is a JSON object; `__metadata__` maps strings to strings; each tensor has a
/// known dtype, a shape of non-negative integers and `data_offsets` `[begin, end]`
/// with `begin <= end <= data area size` and `end - begin == dtype size × element
/// count`; no two tensors share bytes.
///
/// Tensors returned by `tensor(_:)` are zero-copy views of the mapping. The mapping
/// is read-only: **a view must never be written** (writing faults the process).
/// Views keep the mapping alive on their own, so they may outlive this object.
///
/// Limitations: little-endian hosts only (the format is little-endian); the dtypes
/// are those of `DType` (no F8 / I8 / I16 / U16 ...).
public final class SafetensorsFile: Sendable {
    /// One tensor's header entry.
    public struct Entry: Equatable, Sendable {
        public let dtype: DType
        public let shape: [Int]
        /// The `data_offsets` of the header: bytes relative to the start of the data area.
        public let dataOffsets: Range<Int>
        /// The same bytes as offsets from the start of the file.
        public let byteRange: Range<Int>

        public var elementCount: Int { shape.reduce(1, *) }
    }

    /// Headers larger than this are refused (the limit of the reference implementation).
    public static let maximumHeaderByteCount = 100_000_000

    /// The path the file was opened from.
    public let path: String
    /// The `__metadata__` object of the header (empty when there is none).
    public let metadata: [String: String]
    /// Tensor names, sorted.
    public let names: [String]
    /// The read-only mapping of the whole file; every view points into it.
    public let mapping: MappedFile
    /// Where the data area starts in the file (8 + header length).
    public let dataOffset: Int
    private let entries: [String: Entry]

    /// Maps and validates the file at `path`.
    /// - Throws: `NodusError.io` when the file cannot be opened or mapped,
    ///   `NodusError.format` naming the file (and tensor) when it is not valid safetensors.
    public init(path: String, access: FileAccess = .mapped) throws {
        let mapping = try MappedFile(path: path, access: access)
        let context = "safetensors file '\(path)'"
        let fileSize = mapping.byteCount
        guard fileSize >= 8 else {
            throw NodusError.format("\(context) is \(fileSize) bytes, shorter than the 8-byte header length")
        }
        let declared = UInt64(littleEndian: mapping.bytes.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(fileSize - 8) else {
            throw NodusError.format("\(context): header length \(declared) runs past the end of the file (\(fileSize) bytes)")
        }
        let headerLength = Int(declared)
        guard headerLength <= SafetensorsFile.maximumHeaderByteCount else {
            throw NodusError.format("\(context): header length \(headerLength) exceeds the limit of \(SafetensorsFile.maximumHeaderByteCount) bytes")
        }
        let dataOffset = 8 + headerLength
        let dataSize = fileSize - dataOffset
        // The safetensors library refuses a header naming a tensor twice: so does this.
        let header = try JSONValue.parse(UnsafeRawBufferPointer(start: mapping.bytes + 8, count: headerLength),
                                         context: "the header of \(context)", rejectingDuplicateKeys: true)
        guard let members = header.objectValue else {
            throw NodusError.format("\(context): the header is not a JSON object")
        }

        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        // Sorted, so the first error reported does not depend on hash order.
        for (name, value) in members.sorted(by: { $0.key < $1.key }) {
            if name == "__metadata__" {
                metadata = try SafetensorsFile.parseMetadata(value, context: context)
                continue
            }
            entries[name] = try SafetensorsFile.parseEntry(value, name: name, dataOffset: dataOffset,
                                                           dataSize: dataSize, context: context)
        }

        // Sorted by begin, each non-empty tensor must start at or after the furthest end
        // seen so far (empty tensors own no bytes). As the safetensors library requires,
        // the tensors then cover the data area exactly: a header length one byte off, or
        // bytes no tensor owns, mean the file is not what its header says.
        let sorted = entries.filter { !$0.value.dataOffsets.isEmpty }
            .sorted { ($0.value.dataOffsets.lowerBound, $0.key) < ($1.value.dataOffsets.lowerBound, $1.key) }
        var furthest: (name: String, end: Int)? = nil
        for (name, entry) in sorted {
            if let previous = furthest, entry.dataOffsets.lowerBound < previous.end {
                throw NodusError.format("\(context): tensors '\(previous.name)' and '\(name)' overlap (data_offsets \(entry.dataOffsets.lowerBound) < \(previous.end))")
            }
            if entry.dataOffsets.lowerBound != (furthest?.end ?? 0) {
                throw NodusError.format("\(context): tensor '\(name)' starts at \(entry.dataOffsets.lowerBound), leaving bytes \(furthest?.end ?? 0)..<\(entry.dataOffsets.lowerBound) of the data area to no tensor (is the header length \(headerLength) right?)")
            }
            furthest = (name, entry.dataOffsets.upperBound)
        }
        guard (furthest?.end ?? 0) == dataSize else {
            throw NodusError.format("\(context): the tensors end at byte \(furthest?.end ?? 0) of a \(dataSize)-byte data area (is the header length \(headerLength) right?)")
        }

        self.path = path
        self.mapping = mapping
        self.dataOffset = dataOffset
        self.metadata = metadata
        self.entries = entries
        self.names = entries.keys.sorted()
    }

    /// The header entry of `name`, or nil when the file has no such tensor.
    public func entry(_ name: String) -> Entry? { entries[name] }

    /// Whether the file holds a tensor called `name`.
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// A zero-copy view of tensor `name`. The view is read-only memory: never write it.
    /// - Throws: `NodusError.format` naming the tensor and file when there is no such tensor.
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else {
            throw NodusError.format("safetensors file '\(path)' has no tensor '\(name)'")
        }
        // The mapping is PROT_READ; the mutable pointer is only what `Storage` stores.
        let start = UnsafeMutableRawPointer(mutating: mapping.bytes + entry.byteRange.lowerBound)
        let storage = Storage(viewing: start, byteCount: entry.byteRange.count, owner: mapping)
        return Tensor(storage: storage, shape: entry.shape, dtype: entry.dtype)
    }

    private static func parseMetadata(_ value: JSONValue, context: String) throws -> [String: String] {
        guard let members = value.objectValue else {
            throw NodusError.format("\(context): '__metadata__' must be an object of strings, found \(value.serialized())")
        }
        var metadata: [String: String] = [:]
        for (key, item) in members {
            guard let text = item.stringValue else {
                throw NodusError.format("\(context): '__metadata__' value of '\(key)' must be a string, found \(item.serialized())")
            }
            metadata[key] = text
        }
        return metadata
    }

    private static func parseEntry(_ value: JSONValue, name: String, dataOffset: Int, dataSize: Int,
                                   context: String) throws -> Entry {
        let subject = "\(context): tensor '\(name)'"
        guard let members = value.objectValue else {
            throw NodusError.format("\(subject): entry is not a JSON object")
        }
        guard let dtypeName = members["dtype"]?.stringValue else {
            throw NodusError.format("\(subject): missing or non-string 'dtype'")
        }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw NodusError.format("\(subject): unknown dtype '\(dtypeName)' (supported: \(DType.allCases.map(\.safetensorsName).joined(separator: ", ")))")
        }
        guard let shapeItems = members["shape"]?.arrayValue else {
            throw NodusError.format("\(subject): missing or non-array 'shape'")
        }
        var shape: [Int] = []
        shape.reserveCapacity(shapeItems.count)
        for item in shapeItems {
            guard let dimension = item.intValue, dimension >= 0 else {
                throw NodusError.format("\(subject): shape \(JSONValue.array(shapeItems).serialized()) must hold non-negative integers")
            }
            shape.append(dimension)
        }
        let elementCount: Int
        do {
            elementCount = try Tensor.elementCount(of: shape)
        } catch {
            throw NodusError.format("\(subject): shape \(shape) is too large")
        }
        guard let offsetItems = members["data_offsets"]?.arrayValue, offsetItems.count == 2,
              let begin = offsetItems[0].intValue, let end = offsetItems[1].intValue else {
            throw NodusError.format("\(subject): 'data_offsets' must be two integers [begin, end], found \(members["data_offsets"]?.serialized() ?? "nothing")")
        }
        guard begin >= 0, begin <= end else {
            throw NodusError.format("\(subject): data_offsets [\(begin), \(end)] must have 0 <= begin <= end")
        }
        guard end <= dataSize else {
            throw NodusError.format("\(subject): data_offsets [\(begin), \(end)] run past the end of the data area (\(dataSize) bytes)")
        }
        let expected = elementCount * dtype.byteSize
        guard end - begin == expected else {
            throw NodusError.format("\(subject): data_offsets [\(begin), \(end)] hold \(end - begin) bytes, but \(dtypeName) \(shape) needs \(expected)")
        }
        return Entry(dtype: dtype, shape: shape, dataOffsets: begin..<end,
                     byteRange: (dataOffset + begin)..<(dataOffset + end))
    }
}
