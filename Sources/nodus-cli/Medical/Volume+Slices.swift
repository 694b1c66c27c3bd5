/// 2-D images cut out of a volume, and a 2-D image as a one-slice volume.
extension Volume {
    enum Plane: String, CaseIterable {
        /// A k slice (height x width).
        case axial
        /// A j slice (depth x width), the last slice on top.
        case coronal
        /// An i slice (depth x height), the last slice on top.
        case sagittal
    }

    /// The slice of `plane` at `index` (the middle when nil) of one channel, as an
    /// image of float values. Coronal and sagittal images put the last k slice on
    /// top (superior up for a RAS volume). Voxels are shown square.
    func slice(_ plane: Plane, index: Int? = nil, channel: Int = 0) throws -> MedicalImage {
        let count: Int
        switch plane {
        case .axial: count = depth
        case .coronal: count = height
        case .sagittal: count = width
        }
        let position = index ?? count / 2
        guard (0..<count).contains(position) else {
            throw CLIError.usage("\(plane.rawValue) slice \(position) is outside 0...\(count - 1)")
        }
        guard (0..<channels).contains(channel) else {
            throw CLIError.usage("channel \(channel) is outside 0...\(channels - 1)")
        }
        let spacing = geometry.spacing
        switch plane {
        case .axial:
            let start = (channel * depth + position) * height * width
            return MedicalImage(width: width, height: height, values: Array(values[start..<start + height * width]),
                                pixelSpacing: (spacing.y, spacing.x), sliceThickness: spacing.z)
        case .coronal:
            return uprightSlice(columns: width, spacing: (spacing.z, spacing.x)) { k, i in
                value(channel: channel, k: k, j: position, i: i)
            }
        case .sagittal:
            return uprightSlice(columns: height, spacing: (spacing.z, spacing.y)) { k, j in
                value(channel: channel, k: k, j: j, i: position)
            }
        }
    }

    /// A plane through the depth axis, with the last k slice as the top row.
    private func uprightSlice(columns: Int, spacing: (row: Double, column: Double),
                              value: (_ k: Int, _ column: Int) -> Float) -> MedicalImage {
        var pixels = [Float]()
        pixels.reserveCapacity(depth * columns)
        for k in stride(from: depth - 1, through: 0, by: -1) {
            for column in 0..<columns { pixels.append(value(k, column)) }
        }
        return MedicalImage(width: columns, height: depth, values: pixels, pixelSpacing: spacing)
    }

    /// A 2-D image as a volume of one slice: its values, spacing from its pixel
    /// spacing and slice thickness (1 mm where unknown).
    init(image: MedicalImage) throws {
        let spacing = (x: image.pixelSpacing?.column ?? 1, y: image.pixelSpacing?.row ?? 1, z: image.sliceThickness ?? 1)
        try self.init(depth: 1, height: image.height, width: image.width, values: image.values,
                      geometry: VolumeGeometry(spacing: spacing))
    }
}
