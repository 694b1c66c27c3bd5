extension Tensor {
    /// This tensor as float32, after checking every value is finite.
    /// - Throws: `NodusError.invalidArgument` naming `name` and the first NaN or infinity.
    public func finiteFloat32(_ name: String) throws -> Tensor {
        let converted = try asFloat32()
        let values = converted.floats
        for index in 0..<converted.elementCount where !values[index].isFinite {
            throw NodusError.invalidArgument("\(name) holds a NaN or infinity at element \(index)")
        }
        return converted
    }
}
