import NodusCore

/// ONNX element types (`TensorProto.DataType`) and their Nodus dtypes.
extension DType {
    /// The Nodus dtype of an ONNX element type, or nil when Nodus has none
    /// (INT8, INT16, UINT16/32/64, STRING, complex and the 8/4/2-bit types).
    public init?(onnxElementType: Int32) {
        switch onnxElementType {
        case 1: self = .float32
        case 2: self = .uint8
        case 6: self = .int32
        case 7: self = .int64
        case 9: self = .bool
        case 10: self = .float16
        case 11: self = .float64
        case 16: self = .bfloat16
        default: return nil
        }
    }

    /// The ONNX element type of this dtype.
    public var onnxElementType: Int32 {
        switch self {
        case .float32: 1
        case .uint8: 2
        case .int32: 6
        case .int64: 7
        case .bool: 9
        case .float16: 10
        case .float64: 11
        case .bfloat16: 16
        }
    }

    /// ONNX's name of an element type (`"FLOAT"`, `"INT64"`, ...), for messages;
    /// `"type <n>"` for a number ONNX does not define.
    public static func onnxElementTypeName(_ elementType: Int32) -> String {
        let names = ["UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL",
                     "FLOAT16", "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16",
                     "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4",
                     "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2"]
        return elementType >= 0 && Int(elementType) < names.count ? names[Int(elementType)] : "type \(elementType)"
    }
}
