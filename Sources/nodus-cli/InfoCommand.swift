import CNodus
import NodusFormats

/// `nodus info MODEL`: the model's kind and config.json; `nodus info --cpu`: the CPU level.
struct InfoCommand: Command {
    let name = "info"
    let summary = "Load a model folder and print its kind and config.json; or print the CPU level in use."
    let positionalUsage = "MODEL"
    let details = """
        MODEL is a diffusers model folder (config.json + safetensors weights) or an .onnx file
        (then its inputs, outputs and op counts are listed).
        --cpu prints the instruction-set level the kernels run at (MODEL optional):
        the environment variable NODUS_CPU=baseline|avx2|avx512|avx512_bf16 lowers it.
        """
    let options: [OptionSpec] = [
        .flag("json", "print the config as compact JSON only"),
        .flag("cpu", "print the CPU level in use and the highest this CPU supports"),
    ]

    func run(_ arguments: ParsedArguments) throws {
        if arguments.flag("cpu") {
            printCPULevel()
            if arguments.positionals.isEmpty { return }
        }
        let path = try arguments.positionals(["MODEL"])[0]
        let model = try ModelHandle(path: path, threads: 1)
        if arguments.flag("json") {
            StandardStream.output(model.configText + "\n")
            return
        }
        var text = "path:   \(path)\nkind:   \(model.kindName)\n"
        func describe(_ signature: (name: String, dtype: String, shape: [Int]?)) -> String {
            let shape = signature.shape.map { "[" + $0.map { $0 < 0 ? "?" : String($0) }.joined(separator: ", ") + "]" }
            return "  \(signature.name): \(signature.dtype) \(shape ?? "(any rank)")\n"
        }
        let inputs = model.signatures(input: true), outputs = model.signatures(input: false)
        if !inputs.isEmpty { text += "inputs:\n" + inputs.map(describe).joined() }
        text += "outputs:\n" + outputs.map(describe).joined()
        text += "config: \(JSONPrinter.pretty(try model.config()))\n"
        StandardStream.output(text)
    }

    private func printCPULevel() {
        func name(_ level: nodus_isa_level) -> String { nodus_isa_level_name(level).map { String(cString: $0) } ?? "?" }
        var text = "cpu level: \(name(nodus_cpu_level())) (this CPU supports up to \(name(nodus_cpu_level_supported())))\n"
        let note = String(cString: nodus_cpu_level_note())
        if !note.isEmpty { text += "note: \(note)\n" }
        StandardStream.output(text)
    }
}
