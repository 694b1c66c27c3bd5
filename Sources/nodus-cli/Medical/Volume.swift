import NodusCore

/// A 3-D volume (a CT): float values in C order [channels, depth, height, width]
/// and the geometry of its voxels. In NIfTI terms width is i (x, fastest),
/// height j, depth k, channels the 4th dimension; nibabel's `get_fdata()` of the
/// written file is this array transposed, shape (width, height, depth[, channels]).
struct Volume {
    var channels: Int
    var depth: Int
    var height: Int
    var width: Int
    var values: [Float]
    var geometry: VolumeGeometry

    init(channels: Int = 1, depth: Int, height: Int, width: Int, values: [Float],
         geometry: VolumeGeometry = VolumeGeometry()) throws {
        guard channels > 0, depth > 0, height > 0, width > 0, values.count == channels * depth * height * width else {
            throw CLIError.failure("a volume of \(channels)x\(depth)x\(height)x\(width) cannot hold \(values.count) values")
        }
        (self.channels, self.depth, self.height, self.width) = (channels, depth, height, width)
        self.values = values
        self.geometry = geometry
    }

    /// A volume from a tensor [D, H, W], [C, D, H, W] or [1, C, D, H, W] (a
    /// decoder's batch of one).
    init(tensor: Tensor, geometry: VolumeGeometry = VolumeGeometry()) throws {
        var shape = tensor.shape
        if shape.count == 5, shape[0] == 1 { shape.removeFirst() }
        if shape.count == 3 { shape.insert(1, at: 0) }
        guard shape.count == 4 else {
            throw CLIError.failure("a volume is [D, H, W], [C, D, H, W] or [1, C, D, H, W]; got \(tensor.shape)")
        }
        try self.init(channels: shape[0], depth: shape[1], height: shape[2], width: shape[3],
                      values: tensor.floatArray(), geometry: geometry)
    }

    /// The values as a float32 tensor [C, D, H, W] (or [D, H, W] for one channel).
    func tensor() throws -> Tensor {
        try Tensor(shape: channels == 1 ? [depth, height, width] : [channels, depth, height, width], floats: values)
    }

    /// One value: channel `channel`, slice `k`, row `j`, column `i`.
    func value(channel: Int = 0, k: Int, j: Int, i: Int) -> Float {
        values[((channel * depth + k) * height + j) * width + i]
    }

    /// The volume with `transform` applied to every value (the geometry kept).
    func mapped(_ transform: (Float) -> Float) -> Volume {
        var result = self
        result.values = values.map(transform)
        return result
    }
}
