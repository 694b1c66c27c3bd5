import NodusCore

/// Checks and converts user tensors into the exact inputs a model graph takes.
/// Errors name the input, what was expected and what came.
struct ModelInputs {
    let inputs: [String: Tensor]
    let known: Set<String>

    init(_ inputs: [String: Tensor], known: Set<String>) throws {
        for name in inputs.keys where !known.contains(name) {
            throw NodusError.invalidArgument("unknown input '\(name)' (expected \(known.sorted().joined(separator: ", ")))")
        }
        self.inputs = inputs
        self.known = known
    }

    func required(_ name: String) throws -> Tensor {
        guard let tensor = inputs[name] else { throw NodusError.invalidArgument("missing input '\(name)'") }
        return tensor
    }

    /// A float32 NCHW tensor with `channels` channels and sides divisible by `multiple`.
    func image(_ name: String, channels: Int, multiple: Int) throws -> Tensor {
        let tensor = try required(name)
        guard tensor.dtype.isFloatingPoint else {
            throw NodusError.shape("'\(name)' must be floating point, got \(tensor.dtype.name)")
        }
        guard tensor.rank == 4, tensor.shape[0] > 0, tensor.shape[1] == channels,
              tensor.shape[2] > 0, tensor.shape[3] > 0,
              tensor.shape[2] % multiple == 0, tensor.shape[3] % multiple == 0 else {
            throw NodusError.shape("'\(name)' must be [batch, \(channels), height, width] with height and width multiples of \(multiple), got \(tensor.shape)")
        }
        return try tensor.finiteFloat32("'\(name)'")
    }

    /// A float32 NCDHW volume with `channels` channels and sides divisible by `multiple`.
    func volume(_ name: String, channels: Int, multiple: Int) throws -> Tensor {
        let tensor = try required(name)
        guard tensor.dtype.isFloatingPoint else {
            throw NodusError.shape("'\(name)' must be floating point, got \(tensor.dtype.name)")
        }
        guard tensor.rank == 5, tensor.shape[0] > 0, tensor.shape[1] == channels,
              tensor.shape[2...].allSatisfy({ $0 > 0 && $0 % multiple == 0 }) else {
            throw NodusError.shape("'\(name)' must be [batch, \(channels), depth, height, width] with sides multiples of \(multiple), got \(tensor.shape)")
        }
        return try tensor.finiteFloat32("'\(name)'")
    }

    /// A float32 token sequence [batch, tokens, width] (encoder hidden states).
    func sequence(_ name: String, batch: Int, width: Int) throws -> Tensor {
        let tensor = try required(name)
        guard tensor.dtype.isFloatingPoint else {
            throw NodusError.shape("'\(name)' must be floating point, got \(tensor.dtype.name)")
        }
        guard tensor.rank == 3, tensor.shape[0] == batch, tensor.shape[1] > 0, tensor.shape[2] == width else {
            throw NodusError.shape("'\(name)' must be [\(batch), tokens, \(width)] (the model's cross_attention_dim is \(width)), got \(tensor.shape)")
        }
        return try tensor.finiteFloat32("'\(name)'")
    }

    /// Timesteps as float32 [batch]: one value (a scalar or [1]) is broadcast.
    func timesteps(_ name: String, batch: Int) throws -> Tensor {
        let tensor = try required(name)
        guard tensor.elementCount == batch || tensor.elementCount == 1, tensor.rank <= 1 else {
            throw NodusError.shape("'\(name)' must be a scalar or [\(batch)], got \(tensor.shape)")
        }
        let values = tensor.floatArray()
        guard values.allSatisfy(\.isFinite) else { throw NodusError.invalidArgument("'\(name)' holds a NaN or infinity") }
        return try Tensor(shape: [batch], floats: values.count == batch ? values : Array(repeating: values[0], count: batch))
    }

    /// Integer labels as int64 [batch].
    func labels(_ name: String, batch: Int) throws -> Tensor {
        let tensor = try required(name)
        guard !tensor.dtype.isFloatingPoint || tensor.floatArray().allSatisfy({ $0.rounded() == $0 }) else {
            throw NodusError.shape("'\(name)' must hold integers, got \(tensor.dtype.name)")
        }
        guard tensor.rank <= 1, tensor.elementCount == batch || tensor.elementCount == 1 else {
            throw NodusError.shape("'\(name)' must be [\(batch)], got \(tensor.shape)")
        }
        let values = tensor.int64Array()
        return try Tensor(shape: [batch], int64s: values.count == batch ? values : Array(repeating: values[0], count: batch))
    }
}
