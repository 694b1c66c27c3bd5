/// The weights of one target sample of a 1-D resize: the antialiased triangle
/// (bilinear) filter of Pillow's and torchvision's `resize(..., antialias: true)`,
/// as `nodus.workflows.resampling.resize_weights` computes them.
struct ResizeWeights {
    /// The first source sample with a weight.
    var first: Int
    /// The weights of sources `first`, `first + 1`, ...; they sum to 1 (or are empty).
    var weights: [Double]

    /// Target sample `target` of a resize from `sourceSize` to `targetSize` samples,
    /// over the source samples `sources` only (normalised over those). Pixel centres
    /// align; when shrinking, the triangle widens by the scale.
    init(target: Int, sourceSize: Int, targetSize: Int, sources: Range<Int>) {
        let scale = Double(sourceSize) / Double(targetSize)
        let support = max(scale, 1)
        let centre = (Double(target) + 0.5) * scale
        let lower = max(sources.lowerBound, Int((centre - support - 0.5).rounded(.down)))
        let upper = min(sources.upperBound, Int((centre + support + 0.5).rounded(.up)) + 1)
        var values: [Double] = []
        var start = lower
        for source in lower..<max(lower, upper) {
            let weight = max(0, 1 - abs(Double(source) + 0.5 - centre) / support)
            if values.isEmpty && weight == 0 { start = source + 1; continue }
            values.append(weight)
        }
        while values.last == 0 { values.removeLast() }
        let total = values.reduce(0, +)
        first = start
        weights = total > 0 ? values.map { $0 / total } : []
    }

    /// The separable resize of `values` (row-major, `width` wide) through `rows` and
    /// `columns` weights: row-major, `rows.count` x `columns.count`.
    static func resample(_ values: [Double], width: Int, rows: [ResizeWeights], columns: [ResizeWeights]) -> [Double] {
        var result = [Double](repeating: 0, count: rows.count * columns.count)
        for (row, rowWeights) in rows.enumerated() {
            for (column, columnWeights) in columns.enumerated() {
                var sum = 0.0
                for (rowOffset, rowWeight) in rowWeights.weights.enumerated() {
                    let base = (rowWeights.first + rowOffset) * width + columnWeights.first
                    var line = 0.0
                    for (columnOffset, columnWeight) in columnWeights.weights.enumerated() {
                        line += columnWeight * values[base + columnOffset]
                    }
                    sum += rowWeight * line
                }
                result[row * columns.count + column] = sum
            }
        }
        return result
    }
}
