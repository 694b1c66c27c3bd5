/// Element types a tensor can hold. Raw values are the C header's `nodus_dtype` values
/// (append-only).
public enum DType: Int32, CaseIterable, Sendable {
    case float32 = 0
    case float16 = 1
    case bfloat16 = 2
    case int64 = 3
    case int32 = 4
    case uint8 = 5
    case bool = 6
    case float64 = 7

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float32, .int32: 4
        case .float16, .bfloat16: 2
        case .int64, .float64: 8
        case .uint8, .bool: 1
        }
    }

    /// The lower-case name used by the C ABI and Python (`"float32"`, ...).
    public var name: String {
        switch self {
        case .float32: "float32"
        case .float16: "float16"
        case .bfloat16: "bfloat16"
        case .int64: "int64"
        case .int32: "int32"
        case .uint8: "uint8"
        case .bool: "bool"
        case .float64: "float64"
        }
    }

    public init?(name: String) {
        guard let match = DType.allCases.first(where: { $0.name == name }) else { return nil }
        self = match
    }

    /// The safetensors header spelling (`"F32"`, `"BF16"`, ...).
    public var safetensorsName: String {
        switch self {
        case .float32: "F32"
        case .float16: "F16"
        case .bfloat16: "BF16"
        case .int64: "I64"
        case .int32: "I32"
        case .uint8: "U8"
        case .bool: "BOOL"
        case .float64: "F64"
        }
    }

    public init?(safetensorsName: String) {
        guard let match = DType.allCases.first(where: { $0.safetensorsName == safetensorsName }) else { return nil }
        self = match
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64: true
        default: false
        }
    }
}
