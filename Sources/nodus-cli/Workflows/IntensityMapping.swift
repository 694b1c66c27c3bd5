/// The linear map between a radiograph's modality values and a model's pixels in
/// [-1, 1] (-1 black, 1 white), and back; as `nodus.workflows.intensity`.
/// Unclipped, so the way back is exact and blending pixels is blending values.
struct IntensityMapping {
    var lower: Double
    var upper: Double
    /// MONOCHROME1: low values are shown white.
    var inverted: Bool

    /// From the image's first window (centre +- width / 2), else its storage's full range.
    init(of image: MedicalImage, path: String) throws {
        if let window = image.windows.first {
            lower = window.centre - window.width / 2
            upper = window.centre + window.width / 2
        } else if let storage = image.storage {
            let ends = [storage.value(ofStored: storage.storedRange.lowerBound),
                        storage.value(ofStored: storage.storedRange.upperBound)].map(Double.init)
            lower = ends.min() ?? 0
            upper = ends.max() ?? 0
        } else {
            let range = image.valueRange
            lower = Double(range.lower)
            upper = Double(range.upper)
        }
        guard upper > lower else {
            throw CLIError.failure("'\(path)' has no intensity range to map to the model's pixels (\(lower) ... \(upper))")
        }
        inverted = image.photometric == .monochrome1
    }

    func pixel(ofValue value: Double) -> Double {
        let brightness = (value - lower) / (upper - lower)
        return 2 * (inverted ? 1 - brightness : brightness) - 1
    }

    func value(ofPixel pixel: Double) -> Double {
        let brightness = (pixel + 1) / 2
        return lower + (inverted ? 1 - brightness : brightness) * (upper - lower)
    }
}
