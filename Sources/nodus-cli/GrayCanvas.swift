import NodusCore

/// An 8-bit grayscale picture to compose image grids on.
struct GrayCanvas {
    let width: Int, height: Int
    private(set) var pixels: [UInt8]

    init(width: Int, height: Int, value: UInt8 = 0) {
        self.width = width
        self.height = height
        pixels = Array(repeating: value, count: width * height)
    }

    mutating func fill(x: Int, y: Int, width fillWidth: Int, height fillHeight: Int, value: UInt8) {
        for row in max(0, y)..<min(height, y + fillHeight) {
            for column in max(0, x)..<min(width, x + fillWidth) { pixels[row * width + column] = value }
        }
    }

    /// Draws item `index` of a [B, 1, H, W] image batch in about [-1, 1] at (x, y),
    /// each pixel as a `scale` x `scale` block, shown as (v / 2 + 0.5).clamp(0, 1).
    mutating func draw(_ images: Tensor, index: Int, x: Int, y: Int, scale: Int) {
        let (imageHeight, imageWidth) = (images.shape[2], images.shape[3])
        let values = images.floats + index * images.shape[1] * imageHeight * imageWidth
        for row in 0..<imageHeight {
            for column in 0..<imageWidth {
                let unit = min(max(values[row * imageWidth + column] / 2 + 0.5, 0), 1)
                fill(x: x + column * scale, y: y + row * scale, width: scale, height: scale,
                     value: UInt8((unit * 255).rounded()))
            }
        }
    }

    func write(to path: String) throws {
        try PNGWriter.writePixels(pixels, width: width, height: height, channels: 1, to: path)
    }
}
