/// The file kinds `nodus convert` reads and writes, by extension (a DICOM input
/// without one is recognised by its "DICM" marker).
enum MedicalFileKind: String {
    case dicom = "DICOM"
    case png = "PNG"
    case nifti = "NIfTI"
    case npy = ".npy"

    static func of(_ path: String, isInput: Bool) throws -> MedicalFileKind {
        let lower = path.lowercased()
        if lower.hasSuffix(".dcm") || lower.hasSuffix(".dicom") { return .dicom }
        if lower.hasSuffix(".png") { return .png }
        if lower.hasSuffix(".nii") || lower.hasSuffix(".nii.gz") || (isInput && lower.hasSuffix(".hdr")) { return .nifti }
        if lower.hasSuffix(".npy") { return .npy }
        if isInput && DICOMReader.isDICOM(path) { return .dicom }
        throw CLIError.usage("'\(path)': unknown file kind; use .dcm, .png, .nii, .nii.gz or .npy")
    }
}
