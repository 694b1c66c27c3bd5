import NodusCore

/// A labelled grid of grayscale image batches: one column per batch, one row
/// per batch item, the label above each column.
struct ImageGrid {
    /// (label, [B, C, H, W] images in about [-1, 1]; the first channel is drawn).
    var columns: [(String, Tensor)]
    var scale = 3
    var gap = 6

    func write(to path: String) throws {
        guard let first = columns.first?.1, first.rank == 4 else { throw CLIError.failure("no images to draw") }
        let (rows, tileHeight, tileWidth) = (first.shape[0], first.shape[2] * scale, first.shape[3] * scale)
        let labelHeight = BitmapFont.glyphHeight + 2 * gap
        var canvas = GrayCanvas(width: gap + columns.count * (tileWidth + gap),
                                height: labelHeight + rows * (tileHeight + gap), value: 24)
        for (index, (label, images)) in columns.enumerated() {
            guard images.rank == 4, images.shape[0] == rows, images.shape[2...] == first.shape[2...] else {
                throw CLIError.failure("column '\(label)' has shape \(images.shape), expected \(rows) images of \(first.shape[2])x\(first.shape[3])")
            }
            let x = gap + index * (tileWidth + gap)
            let textX = x + max(0, (tileWidth - BitmapFont.width(of: label, scale: 1)) / 2)
            BitmapFont.draw(label, x: textX, y: gap, scale: 1, value: 235, on: &canvas)
            for row in 0..<rows {
                canvas.draw(images, index: row, x: x, y: labelHeight + row * (tileHeight + gap), scale: scale)
            }
        }
        try canvas.write(to: path)
    }
}
