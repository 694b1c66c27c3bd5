import CNodusMedical

/// 8- and 16-bit grayscale PNG, read and written with the samples exactly as
/// stored (no gamma). A PNG image's values are its samples; its storage is the
/// PNG's bit depth (bits stored from an sBIT chunk, 12 for example).
enum GrayscalePNG {
    /// Reads a gray PNG. Colour, palette and alpha PNGs are refused by name.
    static func read(_ path: String) throws -> MedicalImage {
        var png = nodus_medical_png_image()
        try MedicalCall.check { nodus_medical_png_read(path, &png, $0, $1) }
        defer { nodus_medical_png_image_release(&png) }
        let count = Int(png.width) * Int(png.height)
        let samples = UnsafeBufferPointer(start: png.samples, count: count)
        return MedicalImage(width: Int(png.width), height: Int(png.height), values: samples.map { Float($0) },
                            storage: PixelStorage(bitsAllocated: Int(png.bit_depth), bitsStored: Int(png.significant_bits),
                                                  isSigned: false))
    }

    /// Writes samples (row-major, each below 2^bitDepth) as a gray PNG of `bitDepth` 8 or 16.
    static func write(samples: [UInt16], width: Int, height: Int, bitDepth: Int, to path: String) throws {
        guard samples.count == width * height else {
            throw CLIError.failure("cannot write '\(path)': \(samples.count) samples for \(width)x\(height)")
        }
        try MedicalCall.check { nodus_medical_png_write(path, samples, Int32(width), Int32(height), Int32(bitDepth), $0, $1) }
    }

    /// Writes brightness 0 (black) ... 1 (white) rounded to `bitDepth` 8 or 16 bits.
    static func write(brightness: [Float], width: Int, height: Int, bitDepth: Int, to path: String) throws {
        let maximum = Float((1 << bitDepth) - 1)
        let samples = brightness.map { UInt16((min(max($0.isNaN ? 0 : $0, 0), 1) * maximum).rounded()) }
        try write(samples: samples, width: width, height: height, bitDepth: bitDepth, to: path)
    }

    /// Writes an image as shown by `transform` (with MONOCHROME1 inverted).
    static func write(_ image: MedicalImage, transform: DisplayTransform, bitDepth: Int, to path: String) throws {
        try write(brightness: image.displayValues(transform), width: image.width, height: image.height,
                  bitDepth: bitDepth, to: path)
    }
}
