/// Where a model's patch sits in a radiograph: the seed standardises the image to a
/// square (960 x 960) and cuts a patch (256 x 256) around a centre. Only the patch is
/// resampled, in and out, so the rest of the image is never touched. The same
/// geometry as `nodus.workflows.patch_placement.PatchPlacement`.
struct PatchPlacement {
    var width: Int
    var height: Int
    var standardSize: Int
    var patchSize: Int
    /// x = column, y = row, in pixels of the original image.
    var center: (x: Double, y: Double)

    /// - Throws: `CLIError` when the centre is outside the image or the patch does not fit.
    init(width: Int, height: Int, standardSize: Int, patchSize: Int, center: (x: Double, y: Double)) throws {
        guard center.x >= 0, center.x < Double(width), center.y >= 0, center.y < Double(height) else {
            throw CLIError.usage("the centre (\(String(significant: center.x, digits: 6)), \(String(significant: center.y, digits: 6))) "
                + "is outside the \(width)x\(height) image (x must be in 0 ... \(width - 1), y in 0 ... \(height - 1))")
        }
        guard patchSize <= standardSize else {
            throw CLIError.failure("the model's \(patchSize)-pixel patch does not fit its standard size \(standardSize)")
        }
        self.width = width
        self.height = height
        self.standardSize = standardSize
        self.patchSize = patchSize
        self.center = center
    }

    private var scaleX: Double { Double(standardSize) / Double(width) }
    private var scaleY: Double { Double(standardSize) / Double(height) }

    /// The patch's first column and row in the standardised image, moved inward near an edge.
    var origin: (column: Int, row: Int) {
        func start(_ coordinate: Double, _ scale: Double) -> Int {
            let wanted = Int(((coordinate + 0.5) * scale - Double(patchSize) / 2 + 0.5).rounded(.down))
            return min(max(wanted, 0), standardSize - patchSize)
        }
        return (start(center.x, scaleX), start(center.y, scaleY))
    }

    /// The seam's width in standardised pixels: a sixteenth of the patch.
    var featherWidth: Double { max(Double(patchSize) / 16, 1) }

    /// The patch (row-major, `patchSize`^2) of `values` (row-major, `width` x `height`)
    /// resized to the standard size.
    func cut(_ values: [Double]) -> [Double] {
        let rows = (0..<patchSize).map {
            ResizeWeights(target: origin.row + $0, sourceSize: height, targetSize: standardSize, sources: 0..<height)
        }
        let columns = (0..<patchSize).map {
            ResizeWeights(target: origin.column + $0, sourceSize: width, targetSize: standardSize, sources: 0..<width)
        }
        return ResizeWeights.resample(values, width: width, rows: rows, columns: columns)
    }

    /// The original pixels along one axis whose centres fall inside the patch, and
    /// their distance in standardised pixels to the patch's nearer edge.
    private func footprint(size: Int, start: Int) -> [(index: Int, distance: Double)] {
        let scale = Double(standardSize) / Double(size)
        let lower = Double(start), upper = Double(start + patchSize)
        return (0..<size).compactMap { index in
            let position = (Double(index) + 0.5) * scale
            guard position > lower, position < upper else { return nil }
            return (index, min(position - lower, upper - position))
        }
    }

    private func smoothstep(_ x: Double) -> Double {
        let t = min(max(x, 0), 1)
        return t * t * (3 - 2 * t)
    }

    /// `values` with `patch` (standardised pixels) blended in: weight 1 inside, falling
    /// smoothly to 0 over `featherWidth` at the patch's edge. Pixels outside are kept.
    func paste(_ patch: [Double], into values: [Double]) -> [Double] {
        var result = values
        let rows = footprint(size: height, start: origin.row)
        let columns = footprint(size: width, start: origin.column)
        let patchRange = origin.row..<(origin.row + patchSize)
        let columnRange = origin.column..<(origin.column + patchSize)
        // Weights over the patch's own pixels (the standardised image's, shifted by the origin).
        let rowWeights = rows.map { row -> ResizeWeights in
            var weights = ResizeWeights(target: row.index, sourceSize: standardSize, targetSize: height, sources: patchRange)
            weights.first -= origin.row
            return weights
        }
        let columnWeights = columns.map { column -> ResizeWeights in
            var weights = ResizeWeights(target: column.index, sourceSize: standardSize, targetSize: width, sources: columnRange)
            weights.first -= origin.column
            return weights
        }
        let resized = ResizeWeights.resample(patch, width: patchSize, rows: rowWeights, columns: columnWeights)
        for (rowNumber, row) in rows.enumerated() {
            let rowFeather = smoothstep(row.distance / featherWidth)
            for (columnNumber, column) in columns.enumerated() {
                let weight = rowFeather * smoothstep(column.distance / featherWidth)
                let index = row.index * width + column.index
                result[index] = values[index] + weight * (resized[rowNumber * columns.count + columnNumber] - values[index])
            }
        }
        return result
    }

    /// Row-major flags of the pixels `paste` may change, or with `core` of those it replaces fully.
    func region(core: Bool) -> [Bool] {
        let least = core ? featherWidth : 0
        var flags = [Bool](repeating: false, count: width * height)
        let columns = footprint(size: width, start: origin.column).filter { $0.distance >= least }
        for row in footprint(size: height, start: origin.row) where row.distance >= least {
            for column in columns { flags[row.index * width + column.index] = true }
        }
        return flags
    }

    /// The nodule mask in the patch: a disk of `diameter` original pixels around the
    /// centre (an ellipse in standardised pixels when the image is not square).
    func diskMask(diameter: Double) -> [Float] {
        let centreX = (center.x + 0.5) * scaleX - 0.5 - Double(origin.column)
        let centreY = (center.y + 0.5) * scaleY - 0.5 - Double(origin.row)
        let radiusX = diameter / 2 * scaleX, radiusY = diameter / 2 * scaleY
        return (0..<(patchSize * patchSize)).map { index in
            let x = (Double(index % patchSize) - centreX) / radiusX
            let y = (Double(index / patchSize) - centreY) / radiusY
            return x * x + y * y <= 1 ? 1 : 0
        }
    }

    /// The same disk at the original resolution (row-major 0 / 1), the mask output.
    func fullDiskMask(diameter: Double) -> [UInt8] {
        let radius = diameter / 2
        return (0..<(width * height)).map { index in
            let x = Double(index % width) - center.x, y = Double(index / width) - center.y
            return x * x + y * y <= radius * radius ? 1 : 0
        }
    }
}
