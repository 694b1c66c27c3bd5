#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Runs a model over a large volume (or image) window by window and blends the
/// overlapping outputs: MONAI's `SlidingWindowInferer` (`sliding_window_inference`),
/// as MAISI decodes and encodes whole CT volumes with a VAE that would not fit
/// in memory at once.
///
/// Matches monai 1.6.1 with `sw_batch_size=1`: scan intervals
/// `int(window x (1 - overlap))` (the whole axis when the window spans it),
/// `dense_patch_slices`' window starts (the last window shifted back to end at
/// the border), the importance map of `compute_importance_map` (a separable
/// float32 Gaussian with sigma = window x `sigma_scale`, clamped below at
/// max(min, 1e-3); or constant), resized to the model's output window with
/// torch's "nearest-exact" interpolation when the model changes the size (a
/// decoder's 4x or 8x), and each output voxel the weighted mean of the windows
/// that cover it. Memory beyond the input and the output is one window, its
/// output, and one weight per output voxel.
///
/// Limitations: a window larger than the volume along an axis is clamped to
/// the volume there (MONAI pads the input instead); one window at a time.
public struct SlidingWindowInference: Sendable {
    public enum Blend: Sendable, Equatable {
        case gaussian(sigmaScale: Double)
        case constant
    }

    /// The window's size per spatial axis.
    public var windowSize: [Int]
    /// The fraction of a window that overlaps the next one, in [0, 1).
    public var overlap: Double
    public var blend: Blend

    public init(windowSize: [Int], overlap: Double = 0.25, blend: Blend = .gaussian(sigmaScale: 0.125)) throws {
        guard !windowSize.isEmpty, windowSize.count <= 3, windowSize.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else {
            throw NodusError.invalidArgument("sliding window: window_size must give 1 to 3 positive sizes (one per spatial axis), got \(windowSize)")
        }
        guard overlap.isFinite, overlap >= 0, overlap < 1 else {
            throw NodusError.invalidArgument("sliding window: overlap must be in [0, 1), got \(overlap)")
        }
        if case .gaussian(let sigmaScale) = blend, !(sigmaScale.isFinite && sigmaScale > 0) {
            throw NodusError.invalidArgument("sliding window: sigma_scale must be positive, got \(sigmaScale)")
        }
        self.windowSize = windowSize
        self.overlap = overlap
        self.blend = blend
    }

    /// `predictor` applied window by window to `input` [B, C, spatial...] and blended.
    /// - Parameters:
    ///   - predictor: maps a window [1, C, window...] to [1, C', window x zoom...], the same zoom every call.
    ///   - progress: after each window (done, total); false cancels.
    /// - Throws: `NodusError.shape` when the input's spatial rank is not the window's, or the predictor's
    ///   output does not keep one zoom; `NodusError.cancelled`; what the predictor throws.
    public func run(_ input: Tensor, progress: ((Int, Int) -> Bool)? = nil,
                    predictor: (Tensor) throws -> Tensor) throws -> Tensor {
        let source = try input.finiteFloat32("sliding window input")
        let shape = source.shape
        guard shape.count == windowSize.count + 2, shape.allSatisfy({ $0 > 0 }) else {
            throw NodusError.shape("sliding window: the input must be [batch, channels] + \(windowSize.count) spatial sizes for a window of \(windowSize), got \(shape)")
        }
        let image = Array(shape[2...])
        let window = zip(windowSize, image).map { min($0, $1) }
        let starts = Self.windowStarts(image: image, window: window, overlap: overlap)
        let positions = Self.grid(starts)
        let weights = try importanceMap(window)
        let total = shape[0] * positions.count
        var output: Tensor?
        var weightSum: [Float] = []
        var outputWindow: [Int] = [], outputImage: [Int] = [], zoom: [Double] = []
        var windowWeights: [Float] = []
        var done = 0
        for item in 0..<shape[0] {
            for position in positions {
                let patch = try Self.crop(source, item: item, start: position, size: window)
                let predicted = try predictor(patch).asFloat32()
                let predictedShape = predicted.shape
                if output == nil {
                    guard predictedShape.count == shape.count, predictedShape[0] == 1, predictedShape[1] > 0 else {
                        throw NodusError.shape("sliding window: the model must map a window [1, \(shape[1])] + \(window) to [1, channels, ...], got \(predictedShape)")
                    }
                    outputWindow = Array(predictedShape[2...])
                    zoom = zip(outputWindow, window).map { Double($0) / Double($1) }
                    outputImage = zip(image, zoom).map { Int(Double($0) * $1) }
                    windowWeights = outputWindow == window ? weights : Self.resizedNearestExact(weights, from: window, to: outputWindow)
                    output = try Tensor(zeros: [shape[0], predictedShape[1]] + outputImage)
                    weightSum = [Float](repeating: 0, count: outputImage.reduce(1, *))
                    for start in positions {
                        Self.accumulate(windowWeights, window: outputWindow, into: &weightSum, image: outputImage,
                                        start: zip(start, zoom).map { Int(Double($0) * $1) })
                    }
                }
                guard let output, predictedShape == [1, output.shape[1]] + outputWindow else {
                    throw NodusError.shape("sliding window: the model's output window changed from \(outputWindow) to \(predictedShape)")
                }
                Self.add(predicted, weighted: windowWeights, window: outputWindow, into: output, item: item,
                         start: zip(position, zoom).map { Int(Double($0) * $1) })
                done += 1
                if let progress, !progress(done, total) {
                    throw NodusError.cancelled("sliding window cancelled by the progress callback after window \(done) of \(total)")
                }
            }
        }
        guard let output else { throw NodusError.shape("sliding window: no window to run") }
        let planes = output.shape[0] * output.shape[1], plane = weightSum.count
        let values = output.floats
        for index in 0..<planes * plane { values[index] /= weightSum[index % plane] }
        return output
    }

    /// The shape `run` returns for an input of `inputShape`, given the model's output shape for one window.
    public func outputShape(for inputShape: [Int], windowOutputShape: ([Int]) throws -> [Int]) throws -> [Int] {
        guard inputShape.count == windowSize.count + 2, inputShape.allSatisfy({ $0 > 0 }) else {
            throw NodusError.shape("sliding window: the input must be [batch, channels] + \(windowSize.count) spatial sizes for a window of \(windowSize), got \(inputShape)")
        }
        let image = Array(inputShape[2...])
        let window = zip(windowSize, image).map { min($0, $1) }
        let predicted = try windowOutputShape([1, inputShape[1]] + window)
        guard predicted.count == inputShape.count, predicted[0] == 1 else {
            throw NodusError.shape("sliding window: the model must map a window [1, \(inputShape[1])] + \(window) to [1, channels, ...], got \(predicted)")
        }
        return [inputShape[0], predicted[1]] + zip(image, zip(predicted[2...], window)).map { size, ratio in
            Int(Double(size) * (Double(ratio.0) / Double(ratio.1)))
        }
    }

    /// monai `_get_scan_interval` + `dense_patch_slices`: the window starts along each axis.
    static func windowStarts(image: [Int], window: [Int], overlap: Double) -> [[Int]] {
        zip(image, window).map { size, window in
            let interval = window == size ? window : max(Int(Double(window) * (1 - overlap)), 1)
            let candidates = Int((Double(size) / Double(interval)).rounded(.up))
            let last = (0..<candidates).first { $0 * interval + window >= size } ?? 0
            return (0...last).map { index in
                let start = index * interval
                return start - max(start + window - size, 0)
            }
        }
    }

    /// Every combination of per-axis starts, the last axis fastest (numpy's meshgrid "ij").
    static func grid(_ starts: [[Int]]) -> [[Int]] {
        starts.reduce([[]]) { partial, axis in partial.flatMap { prefix in axis.map { prefix + [$0] } } }
    }

    /// monai `compute_importance_map` for a window, in float32.
    func importanceMap(_ window: [Int]) throws -> [Float] {
        let count = window.reduce(1, *)
        guard case .gaussian(let sigmaScale) = blend else { return [Float](repeating: 1, count: count) }
        let axes: [[Float]] = window.map { size in
            let sigma = Double(size) * sigmaScale
            let divisor = Float(-2 * sigma * sigma)
            return (0..<size).map { index in
                let x = Float(-Double(size - 1) / 2 + Double(index))
                return expf(x * x / divisor)
            }
        }
        var map: [Float] = axes[0]
        for axis in axes.dropFirst() { map = map.flatMap { value in axis.map { value * $0 } } }
        let floor = max(map.min() ?? 1, 1e-3)
        return map.map { max($0, floor) }
    }

    /// torch's `interpolate(mode="nearest-exact")` of a window map to another window size.
    static func resizedNearestExact(_ map: [Float], from window: [Int], to size: [Int]) -> [Float] {
        let sources: [[Int]] = zip(window, size).map { input, output in
            let scale = Float(input) / Float(output)
            return (0..<output).map { min(Int(floorf((Float($0) + 0.5) * scale)), input - 1) }
        }
        return grid(sources).map { index in
            index.enumerated().reduce(0) { offset, axis in offset * window[axis.offset] + axis.element }
        }.map { map[$0] }
    }

    /// The window [1, C, size...] of batch item `item` at `start`.
    static func crop(_ source: Tensor, item: Int, start: [Int], size: [Int]) throws -> Tensor {
        let shape = source.shape
        let channels = shape[1], image = Array(shape[2...])
        let patch = try Tensor(zeros: [1, channels] + size)
        let rows = size.dropLast().reduce(1, *), rowLength = size[size.count - 1]
        let from = source.floats, to = patch.floats
        for channel in 0..<channels {
            let plane = from + (item * channels + channel) * image.reduce(1, *)
            for row in 0..<rows {
                let sourceOffset = offset(of: row, start: start, window: size, image: image)
                (to + (channel * rows + row) * rowLength).update(from: plane + sourceOffset, count: rowLength)
            }
        }
        return patch
    }

    /// The flat offset in `image` of window row `row` (all axes but the last) plus the start's last coordinate.
    static func offset(of row: Int, start: [Int], window: [Int], image: [Int]) -> Int {
        var rest = row, offset = 0, stride = 1
        var coordinates = [Int](repeating: 0, count: window.count)
        coordinates[window.count - 1] = start[window.count - 1]
        for axis in (0..<(window.count - 1)).reversed() {
            coordinates[axis] = start[axis] + rest % window[axis]
            rest /= window[axis]
        }
        for axis in (0..<window.count).reversed() {
            offset += coordinates[axis] * stride
            stride *= image[axis]
        }
        return offset
    }

    static func accumulate(_ weights: [Float], window: [Int], into sum: inout [Float], image: [Int], start: [Int]) {
        let rows = window.dropLast().reduce(1, *), rowLength = window[window.count - 1]
        for row in 0..<rows {
            let target = offset(of: row, start: start, window: window, image: image)
            for index in 0..<rowLength { sum[target + index] += weights[row * rowLength + index] }
        }
    }

    static func add(_ predicted: Tensor, weighted weights: [Float], window: [Int], into output: Tensor, item: Int,
                    start: [Int]) {
        let channels = output.shape[1], image = Array(output.shape[2...])
        let rows = window.dropLast().reduce(1, *), rowLength = window[window.count - 1]
        let windowCount = rows * rowLength
        for channel in 0..<channels {
            let plane = output.floats + (item * channels + channel) * image.reduce(1, *)
            let values = predicted.floats + channel * windowCount
            for row in 0..<rows {
                let target = plane + offset(of: row, start: start, window: window, image: image)
                for index in 0..<rowLength {
                    let position = row * rowLength + index
                    target[index] += values[position] * weights[position]
                }
            }
        }
    }
}
