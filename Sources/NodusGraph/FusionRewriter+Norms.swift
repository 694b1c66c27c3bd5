#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Normalisation patterns: group norm (+ SiLU), RMSNorm, AdaLN modulation and gated residuals.
extension FusionRewriter {
    // MARK: Group norm

    /// reshape -> instance norm (1, 0) -> reshape back -> * weight + bias -> group_norm.
    mutating func groupNorm(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation else { return nil }
        for (scaled, biasValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let multiply = interior(scaled), case .binary(.multiply) = multiply.operation else { continue }
            for (restored, weightValue) in [(multiply.inputs[0], multiply.inputs[1]), (multiply.inputs[1], multiply.inputs[0])] {
                guard let back = interior(restored), case .reshape = back.operation,
                      let norm = interior(back.inputs[0]), case .instanceNorm(let eps) = norm.operation,
                      let grouped = interior(norm.inputs[0]), case .reshape = grouped.operation,
                      let x = grouped.inputs[0], shape(x) == shape(node.output), shape(x).count >= 3 else { continue }
                let channels = shape(x)[1], groups = shape(grouped.output)[1]
                guard shape(grouped.output).count == 3, shape(grouped.output)[0] == shape(x)[0],
                      let unitScale = tensor(norm.inputs[1]), unitScale.floatArray().allSatisfy({ $0 == 1 }),
                      let zeroBias = tensor(norm.inputs[2]), zeroBias.floatArray().allSatisfy({ $0 == 0 }),
                      let weight = tensor(weightValue), weight.elementCount == channels,
                      let bias = tensor(biasValue), bias.elementCount == channels,
                      perChannel(weight, rank: shape(x).count), perChannel(bias, rank: shape(x).count) else { continue }
                let weightConstant = constant(constantName(weightValue!, fallback: "group_norm.weight"),
                                              try weight.reshaped([channels]))
                let biasConstant = constant(constantName(biasValue!, fallback: "group_norm.bias"), try bias.reshaped([channels]))
                return emit(.groupNorm(groups: groups, eps: eps, silu: false), [x, weightConstant, biasConstant],
                            like: node.output, name: "group_norm")
            }
        }
        return nil
    }

    /// A [C, 1, ...] (or [C]) constant broadcast over the channels axis of a rank-`rank` tensor.
    private func perChannel(_ tensor: Tensor, rank: Int) -> Bool {
        let trailing = tensor.shape.drop { $0 == 1 && tensor.shape.count > rank - 1 }
        return trailing.count == rank - 1 && trailing.dropFirst().allSatisfy { $0 == 1 }
    }

    /// silu(group_norm(x)) -> group_norm(x, silu: true).
    mutating func groupNormSiLU(_ node: Node) throws -> ValueID? {
        guard case .silu = node.operation, let norm = interior(node.inputs[0]),
              case .groupNorm(let groups, let eps, false) = norm.operation else { return nil }
        return emit(.groupNorm(groups: groups, eps: eps, silu: true), norm.inputs, like: node.output, name: "group_norm_silu")
    }

    // MARK: RMSNorm

    /// x * 1 / sqrt(mean(x², last axis) + eps), or x / sqrt(...) -> rms_norm (no weight yet).
    mutating func rmsNorm(_ node: Node) throws -> ValueID? {
        let x: ValueID?, root: Node?
        switch node.operation {
        case .binary(.multiply):
            // 1 / sqrt(...) as Reciprocal (dynamo) or Div(1, ...) (TorchScript).
            func inverse(_ value: ValueID?) -> Node? {
                guard let candidate = interior(value) else { return nil }
                switch candidate.operation {
                case .map(.reciprocal): return interior(candidate.inputs[0])
                case .binary(.divide) where scalar(candidate.inputs[0]) == 1: return interior(candidate.inputs[1])
                default: return nil
                }
            }
            if let found = inverse(node.inputs[1]) {
                (x, root) = (node.inputs[0], found)
            } else if let found = inverse(node.inputs[0]) {
                (x, root) = (node.inputs[1], found)
            } else {
                return nil
            }
        case .binary(.divide):
            x = node.inputs[0]
            root = interior(node.inputs[1])
        default:
            return nil
        }
        guard let x, let squareRoot = root, case .map(.sqrt) = squareRoot.operation,
              let sum = interior(squareRoot.inputs[0]), case .binary(.add) = sum.operation else { return nil }
        for (meanValue, epsValue) in [(sum.inputs[0], sum.inputs[1]), (sum.inputs[1], sum.inputs[0])] {
            guard let eps = scalar(epsValue), let mean = interior(meanValue),
                  case .reduce(.mean, let axes) = mean.operation, axes == [shape(x).count - 1],
                  shape(mean.output).count == shape(x).count, let square = interior(mean.inputs[0]),
                  isSquare(of: x, square) else { continue }
            return emit(.rmsNorm(eps: eps), [x, nil], like: node.output, name: "rms_norm")
        }
        return nil
    }

    private func isSquare(of x: ValueID, _ node: Node) -> Bool {
        switch node.operation {
        case .binary(.power): node.inputs[0] == x && scalar(node.inputs[1]) == 2
        case .binary(.multiply): node.inputs[0] == x && node.inputs[1] == x
        default: false
        }
    }

    /// rms_norm(x) * weight [D] -> rms_norm(x, weight).
    mutating func rmsNormWeight(_ node: Node) throws -> ValueID? {
        guard case .binary(.multiply) = node.operation else { return nil }
        for (normed, weightValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let norm = interior(normed), case .rmsNorm = norm.operation, norm.inputs[1] == nil,
                  let weight = tensor(weightValue), let width = shape(norm.output).last,
                  isLastAxisVector(weight, width: width), shape(node.output) == shape(norm.output) else { continue }
            let vector = constant(constantName(weightValue!, fallback: "rms_norm.weight"), try weight.reshaped([width]))
            fused["rms_norm", default: 0] -= 1  // the same norm, now with its weight
            return emit(norm.operation, [norm.inputs[0], vector], like: node.output, name: "rms_norm")
        }
        return nil
    }

    // MARK: AdaLN

    /// (modulation [B, M], first column) when `value` is columns c..<c+D of a
    /// [B, M] value reshaped to [B, 1, D] (a Split output unsqueezed, DiT), or
    /// row k of a [B, K, D] value (PixArt's `scale_shift_table + emb` chunked):
    /// then the modulation is that value seen as [B, K D], reshaped here.
    private mutating func modulationColumns(_ value: ValueID?, width: Int) -> (ValueID, Int)? {
        if let unsqueezed = interior(value), case .reshape = unsqueezed.operation,
           let slice = interior(unsqueezed.inputs[0]), case .slice(let starts, let steps) = slice.operation,
           let modulation = slice.inputs[0], shape(modulation).count == 2, steps == [1, 1], starts[0] == 0,
           shape(slice.output) == [shape(modulation)[0], width],
           shape(unsqueezed.output) == [shape(modulation)[0], 1, width] {
            return (modulation, starts[1])
        }
        guard let slice = interior(value), case .slice(let starts, let steps) = slice.operation,
              let rows = slice.inputs[0], shape(rows).count == 3, shape(rows)[2] == width, steps == [1, 1, 1],
              starts[0] == 0, starts[2] == 0, shape(slice.output) == [shape(rows)[0], 1, width] else { return nil }
        return (flattened(rows), starts[1] * width)
    }

    /// `rows` [B, K, D] as [B, K D], one reshape per value however many blocks read it.
    private mutating func flattened(_ rows: ValueID) -> ValueID {
        if let known = flattenedModulations[rows] { return known }
        let s = shape(rows)
        let flat = result.appendValue(ValueInfo(shape: [s[0], s[1] * s[2]], dtype: result[rows].dtype,
                                                origin: .node(result.nodes.count)))
        append(Node(operation: .reshape, inputs: [rows], output: flat))
        flattenedModulations[rows] = flat
        return flat
    }

    /// layer_norm(x) * (1 + scale) + shift, scale and shift columns of one
    /// modulation (a DiT block's AdaLN) -> modulated_layer_norm.
    mutating func modulatedLayerNorm(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation, shape(node.output).count == 3 else { return nil }
        let width = shape(node.output)[2]
        for (scaled, shiftValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let multiply = interior(scaled), case .binary(.multiply) = multiply.operation,
                  let (shiftSource, shiftColumn) = modulationColumns(shiftValue, width: width) else { continue }
            for (normed, factor) in [(multiply.inputs[0], multiply.inputs[1]), (multiply.inputs[1], multiply.inputs[0])] {
                guard let norm = interior(normed), case .layerNorm(let eps) = norm.operation,
                      norm.inputs.count < 3 || norm.inputs[2] == nil
                        || tensor(norm.inputs[2])?.floatArray().allSatisfy({ $0 == 0 }) == true,
                      norm.inputs.count < 2 || norm.inputs[1] == nil
                        || tensor(norm.inputs[1])?.floatArray().allSatisfy({ $0 == 1 }) == true,
                      let onePlus = interior(factor), case .binary(.add) = onePlus.operation,
                      let x = norm.inputs[0], shape(x) == shape(node.output) else { continue }
                for (scaleValue, one) in [(onePlus.inputs[0], onePlus.inputs[1]), (onePlus.inputs[1], onePlus.inputs[0])] {
                    guard scalar(one) == 1, let (scaleSource, scaleColumn) = modulationColumns(scaleValue, width: width),
                          scaleSource == shiftSource, shape(scaleSource)[0] == shape(x)[0] else { continue }
                    return emit(.modulatedLayerNorm(eps: eps, scaleColumn: scaleColumn, shiftColumn: shiftColumn),
                                [x, scaleSource], like: node.output, name: "modulated_layer_norm")
                }
            }
        }
        return nil
    }

    /// residual + gate * update, the gate a column block of a modulation -> gated_residual.
    mutating func gatedResidual(_ node: Node) throws -> ValueID? {
        guard case .binary(.add) = node.operation, shape(node.output).count == 3 else { return nil }
        let width = shape(node.output)[2]
        for (gatedValue, residual) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let residual, shape(residual) == shape(node.output), let multiply = interior(gatedValue),
                  case .binary(.multiply) = multiply.operation else { continue }
            for (gate, update) in [(multiply.inputs[0], multiply.inputs[1]), (multiply.inputs[1], multiply.inputs[0])] {
                guard let update, shape(update) == shape(node.output),
                      let (modulation, column) = modulationColumns(gate, width: width),
                      shape(modulation)[0] == shape(node.output)[0] else { continue }
                return emit(.gatedResidual(gateColumn: column), [residual, update, modulation], like: node.output,
                            name: "gated_residual")
            }
        }
        return nil
    }
}
