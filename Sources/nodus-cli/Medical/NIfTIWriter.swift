import CNodusMedical

/// Writes a volume as NIfTI-1 (`.nii.gz`, or `.nii`) through niftilib: its
/// geometry in both sform and qform (scanner anatomical, mm), pixdim from the
/// affine's column lengths, atomically (read back and compared before the rename).
///
/// Map a model's output to Hounsfield units first (`HounsfieldMapping.apply`).
struct NIfTIWriter {
    enum DataType {
        /// Rounded to int16, as CT volumes in HU are usually stored.
        case int16
        case float32
    }

    var dataType: DataType = .int16
    /// The header's `descrip` (at most 79 characters).
    var description = "nodus synthetic volume"

    /// - Throws: `CLIError` naming the file: a wrong extension, a value that does
    ///   not fit int16, a path that cannot be written (nothing is left under it).
    func write(_ volume: Volume, to path: String) throws {
        var header = nodus_medical_volume()
        header.nx = Int64(volume.width)
        header.ny = Int64(volume.height)
        header.nz = Int64(volume.depth)
        header.channels = Int64(volume.channels)
        withUnsafeMutableBytes(of: &header.affine) { bytes in
            let target = bytes.bindMemory(to: Double.self)
            for index in 0..<16 { target[index] = volume.geometry.affine[index] }
        }
        let type = dataType == .int16 ? NODUS_MEDICAL_NIFTI_INT16 : NODUS_MEDICAL_NIFTI_FLOAT32
        try volume.values.withUnsafeBufferPointer { values in
            header.values = UnsafeMutablePointer(mutating: values.baseAddress)
            try MedicalCall.check { nodus_medical_nifti_write(path, &header, type, description, $0, $1) }
        }
    }
}
