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

    func testTheVectorKernelsRunFromAVX2() {
        XCTAssertEqual(Activation.hasVectorKernels, CPULevel.inUse >= .avx2, "level \(CPULevel.inUse.name)")
    }

    func testGELUTanh() {
        // 0.5 x (1 + tanh u) = x / (1 + e^(-2u)): the same function, without the
        // cancellation that makes 1 + tanh u exactly 0 in float64 too for u < -19.
        check("gelu_tanh", { Activation.geluTanh($0, $1, count: $2) }) { x in
            2 * 0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)
        }
    }

    func testExactGELU() {
        var output = [Float](repeating: .nan, count: inputs.count)
        Activation.geluErf(inputs, &output, count: inputs.count)
        for (x, y) in zip(inputs.map(Double.init), output) {
            let exact = 0.5 * x * erfc(-x / 2.0.squareRoot())
            XCTAssertLessThanOrEqual(abs(Double(y) - exact), (1e-6 + 1.5e-7 * x * x) * abs(exact) + 1e-30, "gelu(\(x))")
        }
    }

    func testGEGLU() {
        let (rows, width) = (3, 1037)
        let hidden = inputs.map { 1 - $0 / 200 }  // 0.4 ... 1.6
        var input = [Float](), output = [Float](repeating: .nan, count: rows * width)
        for row in 0..<rows { input += hidden.map { $0 * Float(row + 1) } + inputs.map { $0 / Float(row + 1) } }
        Activation.geglu(input, &output, rows: rows, width: width)
        for row in 0..<rows {
            for index in 0..<width {
                let g = Double(inputs[index] / Float(row + 1)), h = Double(hidden[index] * Float(row + 1))
                let exact = h * 0.5 * g * erfc(-g / 2.0.squareRoot())
                // About 1e-6 relative (fit_gelu_erf.py), plus e^(-g^2 / 2)'s error from
                // rounding g / sqrt 2 to float32, which grows with g^2.
                let tolerance = (1e-6 + 1.5e-7 * g * g) * abs(exact) + 1e-30
                XCTAssertLessThanOrEqual(abs(Double(output[row * width + index]) - exact), tolerance, "geglu(\(g))")
            }
        }
    }

    func testSiLU() {
        check("silu", { Activation.silu($0, $1, count: $2) }) { x in x }
        check("silu (one thread)", { Activation.siluSerial($0, $1, count: $2) }) { x in x }
    }

    /// transformers' quick_gelu (OpenAI CLIP): x * sigmoid(1.702 x).
    func testQuickGELU() {
        check("quick_gelu", { Activation.quickGELU($0, $1, count: $2) }) { x in 1.702 * x }
    }
}
