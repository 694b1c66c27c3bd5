#if canImport(Glibc)
import Glibc
#endif
import NodusFormats

/// The tables `nodus bench --profile` prints from `nodus_model_profile`'s JSON:
/// one row per kind of operation, then the slowest layers (or repeated modules).
struct ProfileReport {
    let profile: JSONValue

    init(json text: String) throws {
        profile = try JSONValue.parse(text, context: "the profile")
    }

    /// The summary line, the kinds table and the `top` slowest layers (with
    /// `folded`, the numbers of repeated blocks folded: see `layerTotals`).
    func text(top: Int, folded: Bool) -> String {
        let rounds = profile["rounds"]?.intValue ?? 0
        let roundSeconds = profile["round_seconds"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        let stepSeconds = number(profile, "step_seconds")
        var text = "\(rounds) round\(rounds == 1 ? "" : "s") after one warm-up: \(seconds(number(profile, "seconds")))"
            + " per forward (median"
        if let fastest = roundSeconds.min(), let slowest = roundSeconds.max(), roundSeconds.count > 1 {
            text += "; min \(seconds(fastest)), max \(seconds(slowest))"
        }
        text += "); steps \(seconds(stepSeconds)) (sum of their medians)\n\n"

        let kinds = profile["kinds"]?.arrayValue ?? []
        var rows = [["kind", "ms", "share", "calls", "GFLOP", "GFLOP/s"]]
        for kind in kinds {
            rows.append([kind["kind"]?.stringValue ?? "?", fixed(number(kind, "seconds") * 1e3, 2),
                         percent(number(kind, "share")), String(kind["calls"]?.intValue ?? 0),
                         gigaflops(number(kind, "flops")), rate(number(kind, "gflops"))])
        }
        let flops = number(profile, "flops")
        rows.append(["total", fixed(stepSeconds * 1e3, 2), percent(stepSeconds > 0 ? 1 : 0),
                     String(kinds.reduce(0) { $0 + ($1["calls"]?.intValue ?? 0) }), gigaflops(flops),
                     rate(stepSeconds > 0 ? flops / stepSeconds / 1e9 : 0)])
        text += table(rows)

        let layers = layerTotals(folded: folded).prefix(top)
        guard !layers.isEmpty else { return text }
        let title = folded ? "layer, blocks folded (top \(layers.count))" : "layer (top \(layers.count))"
        rows = [[title, "kind", "ms", "share", "calls", "GFLOP/s"]]
        for layer in layers {
            rows.append([layer.name, layer.kind, fixed(layer.seconds * 1e3, 3), percent(layer.share), String(layer.calls),
                         rate(layer.seconds > 0 ? layer.flops / layer.seconds / 1e9 : 0)])
        }
        return text + "\n" + table(rows)
    }

    /// The profile's layers, slowest first; `folded`: summed over the numbers of
    /// repeated blocks (`transformer_blocks.3` -> `transformer_blocks.*`, likewise
    /// `resnets` and `attentions`), so a DiT's 28 blocks or a UNet level's resnets
    /// make one row per module while UNet levels (`up_blocks.1`) stay apart.
    private func layerTotals(folded: Bool)
        -> [(name: String, kind: String, seconds: Double, share: Double, calls: Int, flops: Double)] {
        var totals: [(name: String, kind: String, seconds: Double, share: Double, calls: Int, flops: Double)] = []
        var index: [String: Int] = [:]
        for layer in profile["layers"]?.arrayValue ?? [] {
            var name = layer["layer"]?.stringValue ?? "?"
            let kind = layer["kind"]?.stringValue ?? "?"
            if folded {
                var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
                for position in parts.indices.dropFirst()
                where ["transformer_blocks", "resnets", "attentions"].contains(parts[position - 1])
                    && !parts[position].isEmpty && parts[position].allSatisfy(\.isNumber) {
                    parts[position] = "*"
                }
                name = parts.joined(separator: ".")
            }
            let key = name + "\u{0}" + kind
            if index[key] == nil {
                index[key] = totals.count
                totals.append((name, kind, 0, 0, 0, 0))
            }
            let position = index[key] ?? 0
            totals[position].seconds += number(layer, "seconds")
            totals[position].share += number(layer, "share")
            totals[position].calls += layer["calls"]?.intValue ?? 0
            totals[position].flops += number(layer, "flops")
        }
        return totals.sorted { $0.seconds > $1.seconds }
    }

    private func number(_ value: JSONValue, _ key: String) -> Double { value[key]?.doubleValue ?? 0 }

    /// Rows as columns: the first left-aligned, the others right-aligned.
    private func table(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        let widths = (0..<columns).map { column in rows.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                return column == 0 ? cell + padding : "  " + padding + cell
            }.joined()
        }.joined(separator: "\n") + "\n"
    }

    private func percent(_ share: Double) -> String { fixed(share * 100, 1) + "%" }
    private func gigaflops(_ flops: Double) -> String { flops > 0 ? String(significant: flops / 1e9, digits: 4) : "-" }
    private func seconds(_ value: Double) -> String { String(significant: value, digits: 4) + " s" }
    private func rate(_ gigaflops: Double) -> String { gigaflops > 0 ? fixed(gigaflops, 1) : "-" }

    /// `value` with `decimals` digits after the point, as C's `%.*f`.
    private func fixed(_ value: Double, _ decimals: Int) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let count = withVaList([Int32(decimals), value]) { vsnprintf(&buffer, buffer.count, "%.*f", $0) }
        return count > 0 ? String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : "\(value)"
    }
}
