#if canImport(Glibc)
import Glibc
#endif
import CNodusMedical

/// Reads a grayscale DICOM image through DCMTK (`Sources/CNodusMedical`):
/// MONOCHROME1 and MONOCHROME2, 8 or 16 bits allocated, any bits stored, signed
/// or unsigned, rescale slope and intercept, windows and the VOI LUT.
/// Compressed files are decoded when DCMTK can (JPEG, JPEG-LS, RLE).
///
/// Limitations: one frame; no Modality LUT Sequence; a colour image, JPEG 2000
/// and other syntaxes DCMTK cannot decode are refused with the file and reason.
enum DICOMReader {
    static func read(_ path: String) throws -> MedicalImage {
        var image = nodus_medical_dicom_image()
        try MedicalCall.check { nodus_medical_dicom_read(path, &image, $0, $1) }
        defer { nodus_medical_dicom_image_release(&image) }
        let storage = PixelStorage(bitsAllocated: Int(image.bits_allocated), bitsStored: Int(image.bits_stored),
                                   isSigned: image.is_signed != 0, rescaleSlope: image.rescale_slope,
                                   rescaleIntercept: image.rescale_intercept)
        let count = Int(image.width) * Int(image.height)
        let stored = UnsafeBufferPointer(start: image.stored_values, count: count)
        var result = MedicalImage(width: Int(image.width), height: Int(image.height),
                                  values: stored.map { storage.value(ofStored: $0) },
                                  photometric: image.is_monochrome1 != 0 ? .monochrome1 : .monochrome2,
                                  storage: storage)
        let function = Window.Function(rawValue: cString(image.voi_lut_function)) ?? .linear
        let centres = withUnsafeBytes(of: image.window_centers) { Array($0.bindMemory(to: Double.self)) }
        let widths = withUnsafeBytes(of: image.window_widths) { Array($0.bindMemory(to: Double.self)) }
        // A width below 1 is not a valid window (PS3.3 C.11.2.1.2): skip it rather than divide by it.
        result.windows = (0..<Int(image.window_count)).filter { widths[$0] >= 1 }.map {
            Window(centre: centres[$0], width: widths[$0], function: function)
        }
        if image.voi_lut_entries > 0, let data = image.voi_lut_data {
            result.lookupTable = VOILookupTable(firstMapped: Int(image.voi_lut_first_mapped), bits: Int(image.voi_lut_bits),
                                                entries: Array(UnsafeBufferPointer(start: data, count: Int(image.voi_lut_entries))))
        }
        if image.pixel_spacing.0 > 0, image.pixel_spacing.1 > 0 {
            result.pixelSpacing = (image.pixel_spacing.0, image.pixel_spacing.1)
        }
        if image.slice_thickness > 0 { result.sliceThickness = image.slice_thickness }
        return result
    }

    /// Whether `path` looks like a DICOM file: "DICM" after the 128-byte preamble.
    static func isDICOM(_ path: String) -> Bool {
        guard let file = fopen(path, "rb") else { return false }
        defer { fclose(file) }
        var header = [UInt8](repeating: 0, count: 132)
        guard fread(&header, 1, 132, file) == 132 else { return false }
        return header[128...] == [0x44, 0x49, 0x43, 0x4D][...]
    }

    /// A fixed-size C character array as a String.
    private static func cString<T>(_ tuple: T) -> String {
        withUnsafeBytes(of: tuple) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
