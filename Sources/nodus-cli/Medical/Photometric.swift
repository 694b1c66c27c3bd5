/// How stored gray values map to brightness (DICOM Photometric Interpretation).
enum Photometric: String {
    /// The lowest value is white (many computed and digital radiographs).
    case monochrome1 = "MONOCHROME1"
    /// The lowest value is black (CT, PNG, NIfTI).
    case monochrome2 = "MONOCHROME2"
}
