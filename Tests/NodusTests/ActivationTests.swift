import Foundation
import XCTest
@testable import NodusCore

/// GELU (tanh) and SiLU against their float64 formulas, over the range a
/// network feeds them (including large magnitudes, where exp saturates), on
/// counts that end inside a vector, in place and out of place.
final class ActivationTests: XCTestCase {
    private let inputs: [Float] = (0..<1037).map { index in
        let t = Float(index) / 1036 * 2 - 1  // -1 ... 1
        return t * t * t * 120 + t * 0.5      // dense near 0, out to +-120.5
    }

    /// `formula(x) = x / (1 + e^(-argument(x)))`.
    private func check(_ name: String, _ function: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                       argument: (Double) -> Double) {
        var output = [Float](repeating: .nan, count: inputs.count)
        function(inputs, &output, inputs.count)
        var inPlace = inputs
        inPlace.withUnsafeMutableBufferPointer { function($0.baseAddress!, $0.baseAddress!, $0.count) }
        XCTAssertEqual(inPlace, output, "\(name) in place")
        for (x, y) in zip(inputs, output) {
            let a = argument(Double(x))
            let exact = Double(x) / (1 + Foundation.exp(-a))
            // A few float32 roundings of the result, plus e^-a's relative error from
            // rounding a itself to float32 (|a| 2^-24 and its few operations); below
            // 1e-30 (exp saturated, float32 results of 0 to 5e-37) nothing matters.
            let tolerance = (4e-7 + 2.5e-7 * abs(a)) * abs(exact) + 1e-30
            XCTAssertLessThanOrEqual(abs(Double(y) - exact), tolerance, "\(name)(\(x))")
        }
    }

    func testGELUTanh() {
        // 0.5 x (1 + tanh u) = x / (1 + e^(-2u)): the same function, without the
        // cancellation that makes 1 + tanh u exactly 0 in float64 too for u < -19.
        check("gelu_tanh", { Activation.geluTanh($0, $1, count: $2) }) { x in
            2 * 0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)
        }
    }

    func testSiLU() {
        check("silu", { Activation.silu($0, $1, count: $2) }) { x in x }
        check("silu (one thread)", { Activation.siluSerial($0, $1, count: $2) }) { x in x }
    }
}
