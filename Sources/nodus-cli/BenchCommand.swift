import CNodus
import NodusCore

/// `nodus bench MODEL`: times forward passes; with `--profile`, where one
/// forward's time goes, by kind of operation and by layer (`nodus_model_profile`).
struct BenchCommand: Command {
    let name = "bench"
    let summary = "Time forward passes, or profile one by kind of operation and layer (--profile)."
    let positionalUsage = "MODEL"
    let details = """
        Inputs are those of `nodus forward` (--input FILE.safetensors or NAME=FILE.npy; a VAE
        takes 'latent' to run its decoder, or with --profile 'image' for its encoder). Without
        --input, random inputs of the config's sizes: DiT sample [2, in_channels, sample_size,
        sample_size], timestep, class_labels [0, null class]; UNet the same sample and timestep
        with encoder_hidden_states [2, 77, cross_attention_dim]; VAE latent [1, latent_channels,
        sample_size/8, sample_size/8] (8 = 2^(levels - 1)).
        One untimed warm-up (it builds the plan and packs weights), then --rounds timed runs.
        Without --profile: the median and fastest forward. With --profile: seconds, share, calls
        and GFLOP/s per kind of operation (step medians over the rounds), then the --top slowest
        layers (diffusers module names; --fold sums the numbered blocks of a kind, so a DiT's 28
        transformer_blocks.*.ff.net.2 make one row); --json prints the profile's JSON instead.
        Example: nodus bench --profile dit/ --rounds 5 --top 20
        """
    let options: [OptionSpec] = [
        .flag("profile", "time every step: per kind of operation and per layer"),
        .value("input", "FILE", "FILE.safetensors or NAME=FILE.npy (default: random inputs)", repeatable: true),
        .value("rounds", "N", "timed runs after the warm-up (default 3)"),
        .value("threads", "N", "worker threads (default: all cores)"),
        ModelHandle.dtypeOption,
        .value("top", "N", "with --profile: layers to list (default 15)"),
        .flag("fold", "with --profile: sum layers over repeated blocks (transformer_blocks.*, resnets.*, attentions.*)"),
        .flag("json", "with --profile: print the profile as JSON"),
    ]

    func run(_ arguments: ParsedArguments) throws {
        let path = try arguments.positionals(["MODEL"])[0]
        let rounds = try arguments.integer("rounds", default: 3, in: 1...10_000)
        let threads = try arguments.integer("threads", default: 0, in: 0...4096)
        let top = try arguments.integer("top", default: 15, in: 0...100_000)
        let profiling = arguments.flag("profile")
        if !profiling, let option = ["top", "fold", "json"].first(where: { arguments.value($0) != nil || arguments.flag($0) }) {
            throw CLIError.usage("--\(option) needs --profile")
        }
        let model = try ModelHandle(path: path, threads: Int32(threads), dtype: arguments.value("dtype") ?? "float32")
        let specifications = arguments.all("input")
        let inputs = specifications.isEmpty ? try BenchInputs.make(for: model) : try TensorFiles.readInputs(specifications)

        let names = CStringPool()
        let described = try inputs.map { try TensorArgument.make($0.tensor, name: names.add($0.name)) }
        let shapes = inputs.map { "\($0.name) \($0.tensor.dtype.name) \($0.tensor.shape)" }.joined(separator: ", ")
        let header = "\(path) (\(model.kindName)), \(threads == 0 ? "all cores" : "\(threads) threads"): \(shapes)\n"
        defer { withExtendedLifetime(inputs) {} }
        if profiling {
            let json = try profile(model, described, rounds: rounds)
            if arguments.flag("json") {
                StandardStream.output(json + "\n")
            } else {
                StandardStream.output(header + (try ProfileReport(json: json).text(top: top, folded: arguments.flag("fold"))))
            }
            return
        }
        let seconds = try time(model, described, rounds: rounds)
        let sorted = seconds.sorted()
        let median = (sorted[(sorted.count - 1) / 2] + sorted[sorted.count / 2]) / 2
        StandardStream.output(header + "\(rounds) round\(rounds == 1 ? "" : "s") after one warm-up: median "
            + "\(String(significant: median, digits: 4)) s, min \(String(significant: seconds.min() ?? 0, digits: 4)) s\n")
    }

    /// The JSON of `nodus_model_profile`, copied before the model is used again.
    private func profile(_ model: ModelHandle, _ inputs: [nodus_tensor], rounds: Int) throws -> String {
        var text: UnsafePointer<CChar>?
        try inputs.withUnsafeBufferPointer { buffer in
            try check(nodus_model_profile(model.pointer, buffer.baseAddress, buffer.count, Int32(rounds), &text),
                      "profile of '\(model.path)'")
        }
        guard let text else { throw CLIError.failure("profile of '\(model.path)': no JSON returned") }
        return String(cString: text)
    }

    /// Seconds of each of `rounds` forward passes (VAE: decodes of 'latent') after one warm-up.
    private func time(_ model: ModelHandle, _ inputs: [nodus_tensor], rounds: Int) throws -> [Double] {
        let what = "forward pass of '\(model.path)'"
        let pass: () throws -> Void
        if model.kindName == "vae" {
            guard inputs.count == 1, let latent = inputs.first, latent.name.map({ String(cString: $0) }) == "latent" else {
                throw CLIError.usage("a VAE is timed on its decoder: give one input, 'latent' (or use --profile)")
            }
            pass = {
                _ = try withUnsafePointer(to: latent) { source in
                    try TensorArgument.output(what) { nodus_model_decode(model.pointer, source, $0) }
                }
            }
        } else {
            pass = {
                _ = try inputs.withUnsafeBufferPointer { buffer in
                    try TensorArgument.output(what) { nodus_model_forward(model.pointer, buffer.baseAddress, buffer.count, $0) }
                }
            }
        }
        try pass()
        return try (0..<rounds).map { _ in
            let start = Clock.seconds()
            try pass()
            return Clock.seconds() - start
        }
    }
}
