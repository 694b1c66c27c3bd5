#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// What `nodus lora inspect` reports about a LoRA, from the file alone (no model): per
/// layer its rank, alpha, scale, target kind and the norm of its update, and the summary.
///
/// The norm of a layer's update dW = s B A is computed from rank-sized products in double
/// precision, never the [out, in] matrix: ||B A||_F^2 = tr((B^T B)(A A^T)).
struct LoRAInspection {
    /// One adapted module.
    struct Layer {
        let layer: LoRALayer
        /// The module's kind ("to_q", "to_out.0", "ff.net.0.proj"); see `LoRAInspection.kind`.
        let kind: String
        /// ||s B A||_F.
        let norm: Double

        var parameterCount: Int { layer.down.elementCount + layer.up.elementCount }
    }

    let file: LoRAFile
    let layers: [Layer]
    /// The bytes of every A and B tensor as stored (before conversion to float32).
    let storedBytes: Int

    /// Reads the LoRA at `path` (a `.safetensors` file or a PEFT adapter folder).
    /// - Throws: the `NodusError` of `LoRAFile.load(path:)`, naming the file and the key.
    init(path: String) throws {
        let file = try LoRAFile.load(path: path)
        self.file = file
        layers = file.layers.map {
            Layer(layer: $0, kind: LoRAInspection.kind(of: $0.module, format: file.format), norm: LoRAInspection.norm(of: $0))
        }
        let weights = try SafetensorsFile(path: LoRAInspection.isDirectory(path) ? path + "/adapter_model.safetensors" : path)
        storedBytes = file.layers.reduce(0) { total, layer in
            total + [layer.downKey, layer.upKey].reduce(0) { $0 + (weights.entry($1)?.byteRange.count ?? 0) }
        }
    }

    var parameterCount: Int { layers.reduce(0) { $0 + $1.parameterCount } }

    /// (min, median, max) of the layers' norms; zeros for a file without layers.
    var normSummary: (minimum: Double, median: Double, maximum: Double) {
        let sorted = layers.map(\.norm).sorted()
        guard let first = sorted.first, let last = sorted.last else { return (0, 0, 0) }
        let middle = sorted.count / 2
        let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
        return (first, median, last)
    }

    /// How many layers target each module kind, sorted by kind.
    var targets: [(kind: String, count: Int)] {
        Dictionary(grouping: layers, by: \.kind).map { ($0.key, $0.value.count) }.sorted { $0.kind < $1.kind }
    }

    /// The kind of a module path: what follows its last block index (a number after a plural
    /// container: "transformer_blocks.0", "attentions.1"), without a leading attention
    /// container ("attn", "attn1", ...). "transformer_blocks.0.attn1.to_out.0" -> "to_out.0",
    /// "transformer_blocks.0.ff.net.0.proj" -> "ff.net.0.proj", "proj_out" -> "proj_out".
    /// kohya's underscored names are split at "_" and rejoined with "." before numbers:
    /// "transformer_blocks_0_attn1_to_out_0" -> "to_out.0".
    static func kind(of module: String, format: LoRAFormat) -> String {
        let separator: Character = format == .kohya ? "_" : "."
        let parts = module.split(separator: separator).map(String.init)
        let isNumber = { (text: Substring) in !text.isEmpty && text.allSatisfy(\.isNumber) }
        var start = 0
        for index in parts.indices.dropFirst() where isNumber(Substring(parts[index])) && parts[index - 1].hasSuffix("s") {
            start = index + 1
        }
        var kind = Array(parts[min(start, parts.count)...])
        if kind.count > 1, let first = kind.first, first.hasPrefix("attn"), first == "attn" || isNumber(first.dropFirst(4)) {
            kind.removeFirst()
        }
        if kind.isEmpty { kind = parts }
        return kind.enumerated().map { index, part in
            index == 0 ? part : (isNumber(Substring(part)) || format == .peft ? "." : "_") + part
        }.joined()
    }

    /// ||s B A||_F = |s| sqrt(sum_ij (B^T B)_ij (A A^T)_ij), in double precision.
    static func norm(of layer: LoRALayer) -> Double {
        let rank = layer.rank, inputs = layer.inFeatures, outputs = layer.outFeatures
        guard rank > 0, layer.down.elementCount == rank * inputs, layer.up.elementCount == outputs * rank else { return 0 }
        let down = layer.down.floats, up = layer.up.floats
        var squared = 0.0
        for i in 0..<rank {
            for j in i..<rank {
                var gramUp = 0.0, gramDown = 0.0
                for row in 0..<outputs { gramUp += Double(up[row * rank + i]) * Double(up[row * rank + j]) }
                for column in 0..<inputs { gramDown += Double(down[i * inputs + column]) * Double(down[j * inputs + column]) }
                squared += (i == j ? 1 : 2) * gramUp * gramDown
            }
        }
        return Double(abs(layer.scale)) * max(squared, 0).squareRoot()
    }

    private static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return stat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }
}
