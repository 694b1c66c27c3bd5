#if canImport(Glibc)
import Glibc
#endif
import NodusCore

/// Activation patterns: elementwise subgraphs of one variable recognised by their values, and GEGLU.
extension FusionRewriter {

    private static let probe: [Float] = (0...96).map { Float($0 - 48) / 6 }  // -8 ... 8

    /// An elementwise subgraph of one variable that computes GELU or SiLU.
    mutating func activation(_ node: Node) throws -> ValueID? {
        guard isElementwise(node), result[node.output].dtype == .float32 else { return nil }
        var region: [Node] = []
        var variable: ValueID?
        func gather(_ current: Node) -> Bool {
            guard region.count < 16 else { return false }
            region.append(current)
            for input in current.inputs {
                guard let input else { return false }
                if scalar(input) != nil { continue }
                if let inner = interior(input), isElementwise(inner), shape(inner.output) == shape(node.output) {
                    if !gather(inner) { return false }
                } else {
                    guard variable == nil || variable == input, shape(input) == shape(node.output),
                          result[input].dtype == .float32 else { return false }
                    variable = input
                }
            }
            return true
        }
        guard gather(node), region.count >= 2, let variable else { return nil }
        let values = try evaluate(region.reversed(), variable: variable, output: node.output)
        let candidates: [(Operation, String, (Double) -> Double)] = [
            (.gelu, "gelu", { x in 0.5 * x * erfc(-x / 2.0.squareRoot()) }),
            (.geluTanh, "gelu_tanh", { x in 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }),
            (.silu, "silu", { x in x / (1 + exp(-x)) }),
            (.quickGELU, "quick_gelu", { x in x / (1 + exp(-1.702 * x)) }),
        ]
        for (operation, name, function) in candidates {
            let matches = zip(FusionRewriter.probe, values).allSatisfy { x, y in
                let expected = function(Double(x))
                return abs(Double(y) - expected) <= 1e-5 * max(1, abs(expected))
            }
            if matches { return emit(operation, [variable], like: node.output, name: name) }
        }
        return nil
    }

    private func isElementwise(_ node: Node) -> Bool {
        switch node.operation {
        case .binary(let function): [.add, .subtract, .multiply, .divide, .power].contains(function)
        case .map(let function): function != .not
        default: false
        }
    }

    /// The region's values on the probe points, the variable replaced by them.
    private func evaluate(_ region: [Node], variable: ValueID, output: ValueID) throws -> [Float] {
        var builder = GraphBuilder()
        var values: [ValueID: ValueID] = [
            variable: try builder.typedConstant("x", Tensor(shape: [FusionRewriter.probe.count], floats: FusionRewriter.probe)),
        ]
        func value(_ id: ValueID?) throws -> ValueID {
            guard let id else { throw NodusError(.internal, "fusion probe lost an input") }
            if let known = values[id] { return known }
            guard let number = scalar(id) else { throw NodusError(.internal, "fusion probe lost an input") }
            return try builder.typedConstant("scalar", Tensor(shape: [], floats: [number]))
        }
        for node in region {
            switch node.operation {
            case .binary(let function): values[node.output] = try builder.binary(function, value(node.inputs[0]), value(node.inputs[1]))
            case .map(let function): values[node.output] = try builder.map(function, value(node.inputs[0]))
            default: throw NodusError(.internal, "fusion probe met \(node.operation.name)")
            }
        }
        guard let result = values[output], let folded = builder.constantTensor(result),
              folded.elementCount == FusionRewriter.probe.count else {
            throw NodusError(.internal, "fusion probe did not fold")
        }
        return folded.floatArray()
    }

    /// hidden * GELU(gate), hidden and gate the two halves of one tensor's last axis -> geglu.
    mutating func geglu(_ node: Node) throws -> ValueID? {
        guard case .binary(.multiply) = node.operation else { return nil }
        for (hiddenValue, gateValue) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])] {
            guard let gelu = interior(gateValue), case .gelu = gelu.operation,
                  let gateSlice = interior(gelu.inputs[0]), let hiddenSlice = interior(hiddenValue),
                  case .slice(let gateStarts, let gateSteps) = gateSlice.operation,
                  case .slice(let hiddenStarts, let hiddenSteps) = hiddenSlice.operation,
                  let whole = gateSlice.inputs[0], hiddenSlice.inputs[0] == whole,
                  let width = shape(node.output).last, shape(whole).last == 2 * width,
                  (gateSteps + hiddenSteps).allSatisfy({ $0 == 1 }),
                  hiddenStarts.allSatisfy({ $0 == 0 }), gateStarts.dropLast().allSatisfy({ $0 == 0 }),
                  gateStarts.last == width, shape(whole).dropLast() == shape(node.output).dropLast() else { continue }
            return emit(.geglu, [whole], like: node.output, name: "geglu")
        }
        return nil
    }
}
