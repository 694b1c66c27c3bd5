import CNodus
import NodusCore

/// `nodus randn`: torch-compatible normal noise to a file.
struct RandnCommand: Command {
    let name = "randn"
    let summary = "Write torch.randn(shape, generator=torch.Generator().manual_seed(seed)) as float32."
    let options: [OptionSpec] = [
        .value("seed", "S", "the generator's seed (default 0)"),
        .value("shape", "D0,D1,...", "the tensor shape, e.g. 1,4,32,32 (required)"),
        .value("output", "FILE", "the .npy or .safetensors file to write (required; tensor 'noise')"),
    ]

    func run(_ arguments: ParsedArguments) throws {
        _ = try arguments.positionals([])
        let seedText = arguments.value("seed") ?? "0"
        guard let seed = UInt64(seedText) else {
            throw CLIError.usage("--seed must be an integer in 0...\(UInt64.max), got '\(seedText)'")
        }
        let shape = try RandnCommand.parseShape(try arguments.required("shape"))
        let output = try arguments.required("output")
        _ = try TensorFiles.kind(of: output, option: "output")
        let noise = try RandnCommand.randn(shape: shape, seed: seed)
        try TensorFiles.write(noise, name: "noise", to: output, option: "output")
    }

    /// "1,4,8,8" as [1, 4, 8, 8].
    static func parseShape(_ text: String) throws -> [Int] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let shape = parts.compactMap { Int($0.trimmingCharacters(in: " ")) }
        guard shape.count == parts.count, !shape.isEmpty, shape.count <= Int(NODUS_MAX_DIMS),
              shape.allSatisfy({ $0 >= 0 })
        else {
            throw CLIError.usage("--shape must be 1 to \(NODUS_MAX_DIMS) non-negative integers like 1,4,8,8, got '\(text)'")
        }
        return shape
    }

    /// A float32 tensor filled by `nodus_randn`.
    static func randn(shape: [Int], seed: UInt64) throws -> Tensor {
        let tensor = try Tensor(zeros: shape, dtype: .float32)
        var description = try TensorArgument.make(tensor)
        try check(nodus_randn(seed, &description), "nodus_randn")
        return tensor
    }
}

extension Substring {
    func trimmingCharacters(in character: Character) -> Substring {
        var result = self
        while result.first == character { result = result.dropFirst() }
        while result.last == character { result = result.dropLast() }
        return result
    }
}
