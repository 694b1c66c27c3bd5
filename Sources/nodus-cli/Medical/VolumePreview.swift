/// PNG previews of a volume's three mid planes in a window, for a quick look at
/// a generated CT: `PREFIX-axial.png`, `PREFIX-coronal.png`, `PREFIX-sagittal.png`.
enum VolumePreview {
    /// Writes the mid axial, coronal and sagittal planes of `channel`, shown
    /// through `transform` (a window in HU for a CT), as 8-bit gray PNGs.
    /// - Returns: the paths written, axial first.
    @discardableResult
    static func writeMidPlanes(of volume: Volume, transform: DisplayTransform, prefix: String,
                               channel: Int = 0, bitDepth: Int = 8) throws -> [String] {
        try Volume.Plane.allCases.map { plane in
            let path = "\(prefix)-\(plane.rawValue).png"
            try GrayscalePNG.write(volume.slice(plane, channel: channel), transform: transform, bitDepth: bitDepth, to: path)
            return path
        }
    }

    /// The same in one of the seed's window presets.
    @discardableResult
    static func writeMidPlanes(of volume: Volume, window: WindowPreset, prefix: String) throws -> [String] {
        try writeMidPlanes(of: volume, transform: .window(window.window), prefix: prefix)
    }
}
