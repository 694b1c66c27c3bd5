import CNodusMedical

/// Reads NIfTI-1 (`.nii`, `.nii.gz`, `.hdr`/`.img`) through niftilib: any real
/// data type, as float with scl_slope / scl_inter applied; the sform, else the
/// qform, as the geometry. A baseline for the follow-up workflow is a slice of it.
enum NIfTIReader {
    static func read(_ path: String) throws -> Volume {
        var volume = nodus_medical_volume()
        try MedicalCall.check { nodus_medical_nifti_read(path, &volume, $0, $1) }
        defer { nodus_medical_volume_release(&volume) }
        let count = Int(volume.nx * volume.ny * volume.nz * volume.channels)
        let affine = withUnsafeBytes(of: volume.affine) { Array($0.bindMemory(to: Double.self)) }
        return try Volume(channels: Int(volume.channels), depth: Int(volume.nz), height: Int(volume.ny),
                          width: Int(volume.nx), values: Array(UnsafeBufferPointer(start: volume.values, count: count)),
                          geometry: VolumeGeometry(affine: affine))
    }
}
