import CNodus
import NodusCore
import NodusFormats

/// `nodus forward MODEL --input ... --output OUT`: one forward pass on named tensors.
struct ForwardCommand: Command {
    let name = "forward"
    let summary = "Run one forward pass (model(**inputs).sample, or an ONNX graph) on named tensors from files."
    let positionalUsage = "MODEL"
    let details = """
        Inputs are named as the model's inputs (DiT: sample, timestep, class_labels):
        either every tensor of a .safetensors file, or NAME=FILE.npy, repeated.
        An ONNX model (MODEL ending in .onnx) takes its graph's input names.
        The output is written to a .npy file or a .safetensors file (tensor 'output');
        a model with several outputs (an ONNX graph) needs .safetensors, one tensor per output name.
        Example: nodus forward dit/ --input sample=x.npy --input timestep=t.npy \\
                   --input class_labels=y.npy --output out.npy
        """
    let options: [OptionSpec] = [
        .value("input", "FILE", "FILE.safetensors or NAME=FILE.npy", repeatable: true),
        .value("output", "FILE", "the .npy or .safetensors file to write (required)"),
        .value("threads", "N", "worker threads (default: all cores)"),
        ModelHandle.dtypeOption,
    ]

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let output = try arguments.required("output")
        _ = try TensorFiles.kind(of: output, option: "output")
        let specifications = arguments.all("input")
        guard !specifications.isEmpty else { throw CLIError.usage("missing --input") }
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        let inputs = try TensorFiles.readInputs(specifications)
        let model = try ModelHandle(path: path, threads: Int32(threads), dtype: arguments.value("dtype") ?? "float32")

        let names = CStringPool()
        let described = try inputs.map { try TensorArgument.make($0.tensor, name: names.add($0.name)) }
        let outputNames = model.outputNames
        if outputNames.count > 1 {
            guard try TensorFiles.kind(of: output, option: "output") == .safetensors else {
                throw CLIError.usage("'\(path)' has \(outputNames.count) outputs (\(outputNames.joined(separator: ", "))): write them to a .safetensors file")
            }
            let results = try described.withUnsafeBufferPointer { buffer in
                try TensorArgument.outputs("forward pass of '\(path)'", count: outputNames.count) { targets, count in
                    nodus_model_forward_all(model.pointer, buffer.baseAddress, buffer.count, targets, count)
                }
            }
            withExtendedLifetime(inputs) {}
            try SafetensorsWriter.write(Array(zip(outputNames, results)).map { (name: $0.0, tensor: $0.1) }, to: output)
            for (name, result) in zip(outputNames, results) {
                StandardStream.output("\(name) \(result.dtype.name) \(result.shape) -> \(output)\n")
            }
            return
        }
        let result = try described.withUnsafeBufferPointer { buffer in
            try TensorArgument.output("forward pass of '\(path)'") { target in
                nodus_model_forward(model.pointer, buffer.baseAddress, buffer.count, target)
            }
        }
        withExtendedLifetime(inputs) {}
        try TensorFiles.write(result, name: "output", to: output, option: "output")
        StandardStream.output("output \(result.dtype.name) \(result.shape) -> \(output)\n")
    }
}
