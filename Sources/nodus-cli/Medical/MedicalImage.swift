/// A 2-D grayscale medical image (a radiograph, a CT slice): its modality values
/// (Hounsfield units for CT, the stored value for a plain radiograph or PNG) and
/// what a viewer needs to show it. Read by `DICOMReader`, `GrayscalePNG` and
/// `NIfTIReader.slice`; written by `DerivedDICOMWriter` and `GrayscalePNG`.
struct MedicalImage {
    var width: Int
    var height: Int
    /// Modality values, row-major, `width * height`.
    var values: [Float]
    var photometric: Photometric = .monochrome2
    /// How the values are stored as integers (DICOM, PNG); nil for float data
    /// (NIfTI, .npy), which has no stored form.
    var storage: PixelStorage?
    /// The file's own VOI windows, first preferred (DICOM Window Center / Width).
    var windows: [Window] = []
    /// The file's own VOI LUT, used when it has no window.
    var lookupTable: VOILookupTable?
    /// Row and column spacing in mm (DICOM Pixel Spacing or Imager Pixel Spacing).
    var pixelSpacing: (row: Double, column: Double)?
    /// Slice thickness in mm (CT), when known.
    var sliceThickness: Double?

    /// The stored values: modality values through the inverse rescale, rounded
    /// and clamped to the storage's range. For an image read from a file and not
    /// changed, these are the file's values exactly.
    func storedValues(in storage: PixelStorage) -> [Int32] {
        values.map { storage.stored(ofValue: $0) }
    }

    /// The smallest and largest value (0...0 for an empty image).
    var valueRange: (lower: Float, upper: Float) {
        guard var lower = values.first else { return (0, 0) }
        var upper = lower
        for value in values {
            lower = min(lower, value)
            upper = max(upper, value)
        }
        return (lower, upper)
    }
}
