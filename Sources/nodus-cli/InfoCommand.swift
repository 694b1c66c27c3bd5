import CNodus
import NodusFormats

/// `nodus info MODEL`: the model's kind and config.json.
struct InfoCommand: Command {
    let name = "info"
    let summary = "Load a model folder and print its kind and config.json."
    let positionalUsage = "MODEL"
    let details = "MODEL is a diffusers model folder (config.json + safetensors weights)."
    let options: [OptionSpec] = [.flag("json", "print the config as compact JSON only")]

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let model = try ModelHandle(path: path, threads: 1)
        if arguments.flag("json") {
            StandardStream.output(model.configText + "\n")
            return
        }
        StandardStream.output("""
            path:   \(path)
            kind:   \(model.kindName)
            config: \(JSONPrinter.pretty(try model.config()))

            """)
    }
}
