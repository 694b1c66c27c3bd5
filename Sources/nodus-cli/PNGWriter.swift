import CPNG
import NodusCore

/// Writes decoded images as 8-bit PNG files through libpng's simplified API.
enum PNGWriter {
    /// Writes item `index` of an image batch [B, C, H, W] in about [-1, 1] as
    /// `(x / 2 + 0.5).clamp(0, 1)` scaled to 0...255: RGB for 3 channels, gray for 1.
    static func write(_ images: Tensor, index: Int, to path: String) throws {
        let shape = images.shape
        guard shape.count == 4, shape[1] == 1 || shape[1] == 3 else {
            throw CLIError.failure("cannot write an image of shape \(shape) as PNG (need [B, 1 or 3, H, W])")
        }
        let (channels, height, width) = (shape[1], shape[2], shape[3])
        guard index >= 0, index < shape[0], height > 0, width > 0 else {
            throw CLIError.failure("cannot write image \(index) of shape \(shape) as PNG")
        }
        let values = try images.asFloat32().floats + index * channels * height * width
        var pixels = [UInt8](repeating: 0, count: channels * height * width)
        for y in 0..<height {
            for x in 0..<width {
                for channel in 0..<channels {
                    let value = values[(channel * height + y) * width + x]
                    let unit = min(max(value / 2 + 0.5, 0), 1)
                    pixels[(y * width + x) * channels + channel] = UInt8((unit * 255).rounded())
                }
            }
        }
        try writePixels(pixels, width: width, height: height, channels: channels, to: path)
    }

    /// Writes item `index` of pipeline images [N, H, W, 3] in [0, 1] as diffusers'
    /// `numpy_to_pil` does: `(x * 255).round()` as 8-bit RGB.
    static func writeUnit(_ images: Tensor, index: Int, to path: String) throws {
        let shape = images.shape
        guard shape.count == 4, shape[3] == 3, index >= 0, index < shape[0], shape[1] > 0, shape[2] > 0 else {
            throw CLIError.failure("cannot write image \(index) of shape \(shape) as PNG (need [N, H, W, 3])")
        }
        let count = shape[1] * shape[2] * 3
        let values = try images.asFloat32().floats + index * count
        let pixels = (0..<count).map { UInt8((min(max(values[$0], 0), 1) * 255).rounded()) }
        try writePixels(pixels, width: shape[2], height: shape[1], channels: 3, to: path)
    }

    /// Writes 8-bit pixels, row-major and interleaved (`channels` 1 = gray, 3 = RGB).
    static func writePixels(_ pixels: [UInt8], width: Int, height: Int, channels: Int, to path: String) throws {
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        image.width = png_uint_32(width)
        image.height = png_uint_32(height)
        image.format = png_uint_32(channels == 3 ? PNG_FORMAT_FLAG_COLOR : 0)
        let written = pixels.withUnsafeBytes { bytes in
            png_image_write_to_file(&image, path, 0, bytes.baseAddress, png_int_32(width * channels), nil)
        }
        if written == 0 {
            let message = withUnsafeBytes(of: image.message) { bytes in
                String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            png_image_free(&image)
            throw CLIError.failure("cannot write '\(path)': \(message)")
        }
    }
}
