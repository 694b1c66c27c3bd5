/// Display brightness: the VOI transformation, then MONOCHROME1's inversion.
extension MedicalImage {
    /// What a viewer shows by default (DICOM PS3.4 N.2.1.1's order): the first
    /// window, else the VOI LUT, else for stored images the full stored range, else
    /// the values' min...max.
    var defaultDisplayTransform: DisplayTransform {
        if let window = windows.first { return .window(window) }
        if let lookupTable { return .lookupTable(lookupTable) }
        if let storage, storage.rescaleSlope == 1, storage.rescaleIntercept == 0, !storage.isSigned {
            return .range(lower: Double(storage.storedRange.lowerBound), upper: Double(storage.storedRange.upperBound))
        }
        let range = valueRange
        return .range(lower: Double(range.lower), upper: Double(range.upper))
    }

    /// Brightness 0 (black) ... 1 (white) of every pixel, row-major.
    func displayValues(_ transform: DisplayTransform) -> [Float] {
        let inverted = photometric == .monochrome1
        return values.map { value in
            let brightness = transform.display(Double(value))
            return Float(inverted ? 1 - brightness : brightness)
        }
    }

    /// The modality values that show as `brightness` (0...1, row-major) under
    /// `transform`: the inverse of `displayValues`, for a window or a range.
    static func values(ofDisplay brightness: [Float], transform: DisplayTransform,
                       photometric: Photometric) throws -> [Float] {
        guard transform.value(ofDisplay: 0.5) != nil else {
            throw CLIError.usage("a VOI lookup table cannot be inverted; choose a window with --window")
        }
        let inverted = photometric == .monochrome1
        return brightness.map { unit in
            Float(transform.value(ofDisplay: Double(inverted ? 1 - unit : unit)) ?? 0)
        }
    }
}
