/// Where a volume's voxels are: a 4x4 affine (row-major) from voxel indices
/// (i along width, j along height, k along depth) to world millimetres (NIfTI's
/// RAS+ frame), as NIfTI's sform and qform hold it.
struct VolumeGeometry: Equatable {
    var affine: [Double]

    /// Axis-aligned voxels: `spacing` (x = along width, y = along height, z =
    /// along depth, in mm) and the world position of voxel (0, 0, 0).
    init(spacing: (x: Double, y: Double, z: Double) = (1, 1, 1), origin: (x: Double, y: Double, z: Double) = (0, 0, 0)) {
        affine = [spacing.x, 0, 0, origin.x,
                  0, spacing.y, 0, origin.y,
                  0, 0, spacing.z, origin.z,
                  0, 0, 0, 1]
    }

    /// A full affine, 16 values row-major with last row 0 0 0 1.
    init(affine: [Double]) throws {
        guard affine.count == 16, affine.allSatisfy(\.isFinite), affine[12...] == [0, 0, 0, 1][...] else {
            throw CLIError.usage("an affine is 16 finite numbers, row-major, ending 0,0,0,1")
        }
        self.affine = affine
        guard spacing.x > 0, spacing.y > 0, spacing.z > 0 else {
            throw CLIError.usage("the affine has a zero column: it maps a voxel axis to a point")
        }
    }

    /// The voxel size in mm along i, j and k: the lengths of the affine's first three columns.
    var spacing: (x: Double, y: Double, z: Double) {
        func length(_ column: Int) -> Double {
            (0..<3).map { affine[$0 * 4 + column] * affine[$0 * 4 + column] }.reduce(0, +).squareRoot()
        }
        return (length(0), length(1), length(2))
    }
}
