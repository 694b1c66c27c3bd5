/// The element functions of the primitive ops (ONNX's names in the comments).

/// Two inputs, numpy broadcasting. Arithmetic keeps the inputs' dtype;
/// comparisons give bool.
public enum BinaryFunction: String, Sendable, CaseIterable {
    case add, subtract, multiply, divide, power, maximum, minimum
    case equal, less, greater, lessOrEqual, greaterOrEqual
    case and, or
    /// ONNX `Mod` with fmod = 0 (the sign of the divisor), as torch's `%`.
    case modulo

    public var isComparison: Bool {
        switch self {
        case .equal, .less, .greater, .lessOrEqual, .greaterOrEqual: true
        default: false
        }
    }

    public var isLogical: Bool { self == .and || self == .or }
}

/// One input, the same dtype out (bool for `not`).
public enum UnaryFunction: String, Sendable, CaseIterable {
    case negate, absolute, exp, log, sqrt, reciprocal, tanh, sigmoid, erf, sin, cos, relu, floor, ceil
    case not, identity
}

/// How ScatterND combines an update with the element it lands on (ONNX `reduction`).
public enum ScatterReduction: String, Sendable, CaseIterable {
    case none, add, mul, max, min
}

/// ONNX `Reduce*` over some axes (the output shape says whether they are kept).
public enum ReductionFunction: String, Sendable, CaseIterable {
    case sum, mean, max, min, product
    /// ReduceSumSquare
    case sumOfSquares
}

/// An N-D convolution's geometry (ONNX `Conv`): per spatial axis, the stride,
/// dilation and the zero padding before and after; input channels in `groups` groups.
public struct ConvolutionGeometry: Sendable, Equatable {
    public var strides: [Int]
    public var dilations: [Int]
    public var padsBefore: [Int]
    public var padsAfter: [Int]
    public var groups: Int

    public init(strides: [Int], dilations: [Int], padsBefore: [Int], padsAfter: [Int], groups: Int) {
        self.strides = strides
        self.dilations = dilations
        self.padsBefore = padsBefore
        self.padsAfter = padsAfter
        self.groups = groups
    }
}

/// How `resize` picks its source coordinates (ONNX `Resize`, the modes torch exports).
public struct ResizeMode: Sendable, Equatable {
    public enum Interpolation: String, Sendable { case nearest, linear }
    /// ONNX coordinate_transformation_mode: half_pixel, asymmetric, align_corners, pytorch_half_pixel.
    public enum Coordinates: String, Sendable { case halfPixel, asymmetric, alignCorners, pytorchHalfPixel }
    /// ONNX nearest_mode.
    public enum Rounding: String, Sendable { case roundPreferFloor, roundPreferCeil, floor, ceil }

    public var interpolation: Interpolation
    public var coordinates: Coordinates
    public var rounding: Rounding

    public init(interpolation: Interpolation, coordinates: Coordinates, rounding: Rounding) {
        self.interpolation = interpolation
        self.coordinates = coordinates
        self.rounding = rounding
    }
}
