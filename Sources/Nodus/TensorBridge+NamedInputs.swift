import CNodus
import NodusCore

extension TensorBridge {
    /// The `count` named tensors at `inputs` as views of the caller's buffers
    /// (valid during the call): each must have a name, given once.
    /// - Parameter function: the entry point, for error messages.
    static func namedInputs(_ inputs: UnsafePointer<nodus_tensor>?, count: Int,
                            in function: String) throws -> [String: Tensor] {
        guard count >= 0, count <= 1024 else {
            throw NodusError.invalidArgument("\(function): input_count \(count) is out of range")
        }
        guard count > 0 else { return [:] }
        let inputs = try Argument.required(inputs, "inputs", in: function)
        var named: [String: Tensor] = [:]
        for index in 0..<count {
            let input = inputs[index]
            guard let namePointer = input.name else {
                throw NodusError.invalidArgument("\(function): inputs[\(index)].name is NULL")
            }
            let name = String(cString: namePointer)
            guard named[name] == nil else {
                throw NodusError.invalidArgument("\(function): input '\(name)' is given twice")
            }
            named[name] = try TensorBridge.input(input, label: "\(function): input '\(name)'", copy: false)
        }
        return named
    }
}
