/// How an image's values are stored as integers: the bit depth of the stored
/// values and the rescale (DICOM Modality LUT) from stored to modality values,
/// `value = stored * slope + intercept` (Hounsfield units for CT).
struct PixelStorage: Equatable {
    /// 8 or 16.
    var bitsAllocated: Int
    /// 1...bitsAllocated (12 for most CT).
    var bitsStored: Int
    var isSigned: Bool
    var rescaleSlope: Double = 1
    var rescaleIntercept: Double = 0

    /// The stored values this storage can hold.
    var storedRange: ClosedRange<Int32> {
        isSigned ? -(Int32(1) << (bitsStored - 1))...(Int32(1) << (bitsStored - 1)) - 1
                 : 0...(Int32(1) << bitsStored) - 1
    }

    /// The modality value of a stored value.
    func value(ofStored stored: Int32) -> Float {
        Float(Double(stored) * rescaleSlope + rescaleIntercept)
    }

    /// The stored value nearest to a modality value, clamped to `storedRange`.
    func stored(ofValue value: Float) -> Int32 {
        let exact = (Double(value) - rescaleIntercept) / rescaleSlope
        guard exact.isFinite else { return exact > 0 ? storedRange.upperBound : storedRange.lowerBound }
        let rounded = exact.rounded()
        return Int32(min(max(rounded, Double(storedRange.lowerBound)), Double(storedRange.upperBound)))
    }
}
