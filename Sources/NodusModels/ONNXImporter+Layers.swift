import NodusCore
import NodusFormats
import NodusGraph

/// The ONNX ops that are layers: convolution, resize, pad and normalisations,
/// written as the fused ops where they are one, else as primitives.
extension ONNXImporter {
    mutating func convolution() throws {
        let x = try input(0), weight = try input(1), bias = try optionalInput(2)
        let s = builder.shape(of: x), w = builder.shape(of: weight)
        let spatial = s.count - 2
        guard spatial >= 1, w.count == s.count else { throw error("input \(s) does not fit weight \(w)") }
        let strides = try ints("strides") ?? [Int](repeating: 1, count: spatial)
        let dilations = try ints("dilations") ?? [Int](repeating: 1, count: spatial)
        let groups = try int("group", default: 1)
        var pads = try ints("pads") ?? [Int](repeating: 0, count: 2 * spatial)
        if let kernel = try ints("kernel_shape"), kernel != Array(w.dropFirst(2)) {
            throw error("kernel_shape \(kernel) disagrees with the weight \(w)")
        }
        guard strides.count == spatial, dilations.count == spatial, pads.count == 2 * spatial,
              strides.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }), dilations.allSatisfy({ $0 > 0 && $0 <= 1 << 20 }),
              pads.allSatisfy({ $0 >= 0 && $0 <= 1 << 20 }) else {
            throw error("strides \(strides), dilations \(dilations) or pads \(pads) do not fit \(spatial) spatial axes")
        }
        switch try string("auto_pad", default: "NOTSET") {
        case "NOTSET": break
        case "VALID": pads = [Int](repeating: 0, count: 2 * spatial)
        case let mode where mode.hasPrefix("SAME"):
            for axis in 0..<spatial {
                let output = (s[axis + 2] + strides[axis] - 1) / strides[axis]
                let total = max(0, (output - 1) * strides[axis] + dilations[axis] * (w[axis + 2] - 1) + 1 - s[axis + 2])
                pads[axis] = mode == "SAME_UPPER" ? total / 2 : total - total / 2
                pads[axis + spatial] = total - pads[axis]
            }
        case let mode: throw error("auto_pad '\(mode)' is not supported")
        }
        let before = Array(pads[..<spatial]), after = Array(pads[spatial...])
        // The fused 2-D convolution (packed GEMM, Winograd) covers what diffusion models use.
        if spatial == 2, groups == 1, dilations == [1, 1], strides[0] == strides[1], before[0] == before[1],
           after[0] == after[1] {
            return try define(0, builder.conv2d(x, weight: weight, bias: bias, stride: strides[0], padding: before[0],
                                                trailingPadding: after[0]))
        }
        let geometry = ConvolutionGeometry(strides: strides, dilations: dilations, padsBefore: before, padsAfter: after,
                                           groups: groups)
        try define(0, builder.convolution(x, weight: weight, bias: bias, geometry: geometry))
    }

    mutating func resize() throws {
        let x = try input(0)
        let s = builder.shape(of: x)
        guard try int("antialias", default: 0) == 0 else { throw error("antialias is not supported") }
        guard try string("keep_aspect_ratio_policy", default: "stretch") == "stretch" else {
            throw error("keep_aspect_ratio_policy other than stretch is not supported")
        }
        // Inputs: X, roi, scales, sizes (opset 11+); X, scales (opset 10).
        let scales = try numbers(opset >= 11 ? 2 : 1)
        let sizes = opset >= 11 ? try integers(3) : nil
        let axes = try ints("axes").map { $0.map { $0 < 0 ? $0 + s.count : $0 } } ?? Array(s.indices)
        var target = s
        if let sizes, !sizes.isEmpty {
            guard sizes.count == axes.count else { throw error("sizes \(sizes) do not fit axes \(axes)") }
            for (index, axis) in axes.enumerated() { target[axis] = sizes[index] }
        } else if let scales, !scales.isEmpty {
            guard scales.count == axes.count else { throw error("scales \(scales) do not fit axes \(axes)") }
            for (index, axis) in axes.enumerated() {
                let size = (Double(s[axis]) * Double(scales[index])).rounded(.down)
                guard size.isFinite, size >= 1, size < Double(1 << 31) else {
                    throw error("scale \(scales[index]) of axis \(axis) gives no valid size")
                }
                target[axis] = Int(size)
            }
        } else {
            throw error("needs scales or sizes")
        }
        let modeName = try string("mode", default: "nearest")
        guard let interpolation = ResizeMode.Interpolation(rawValue: modeName) else {
            throw error("mode '\(modeName)' is not supported (nearest, linear)")
        }
        let coordinateNames: [String: ResizeMode.Coordinates] = [
            "half_pixel": .halfPixel, "asymmetric": .asymmetric, "align_corners": .alignCorners,
            "pytorch_half_pixel": .pytorchHalfPixel,
        ]
        let roundingNames: [String: ResizeMode.Rounding] = [
            "round_prefer_floor": .roundPreferFloor, "round_prefer_ceil": .roundPreferCeil, "floor": .floor, "ceil": .ceil,
        ]
        let coordinateName = try string("coordinate_transformation_mode", default: "half_pixel")
        let roundingName = try string("nearest_mode", default: "round_prefer_floor")
        guard let coordinates = coordinateNames[coordinateName], let rounding = roundingNames[roundingName] else {
            throw error("coordinate_transformation_mode '\(coordinateName)' / nearest_mode '\(roundingName)' is not supported")
        }
        // Every mode but align_corners makes an exact 2x nearest upsample the same replication.
        if interpolation == .nearest, coordinates != .alignCorners, s.count == 4, target == [s[0], s[1], 2 * s[2], 2 * s[3]] {
            return try define(0, builder.upsampleNearest2x(x))
        }
        try define(0, builder.resize(x, to: target, mode: ResizeMode(interpolation: interpolation, coordinates: coordinates,
                                                                     rounding: rounding)))
    }

    mutating func pad() throws {
        let x = try input(0)
        let rank = builder.shape(of: x).count
        let mode = try string("mode", default: "constant")
        guard mode == "constant" else { throw error("mode '\(mode)' is not supported (constant)") }
        // Opset 11+: pads, constant_value and (18+) axes are inputs; before: attributes.
        let pads = try ints("pads") ?? integers(1) ?? []
        let value = try attribute("value") != nil ? float("value", default: 0) : (numbers(2)?.first ?? 0)
        let axes = try integers(3)?.map { $0 < 0 ? $0 + rank : $0 } ?? Array(0..<rank)
        guard pads.count == 2 * axes.count else { throw error("\(pads.count) pads for \(axes.count) axes") }
        var before = [Int](repeating: 0, count: rank), after = before
        for (index, axis) in axes.enumerated() {
            before[axis] = pads[index]
            after[axis] = pads[index + axes.count]
        }
        try define(0, builder.pad(x, before: before, after: after, value: value))
    }

    /// LayerNormalization over the trailing axes from `axis`, as the fused layer norm over one flattened axis.
    mutating func layerNormalization() throws {
        let x = try input(0), scale = try input(1), bias = try optionalInput(2)
        let s = builder.shape(of: x)
        var axis = try int("axis", default: -1)
        if axis < 0 { axis += s.count }
        guard axis >= 0 && axis < s.count else { throw error("axis \(axis) is outside rank \(s.count)") }
        let width = s[axis...].reduce(1, *)
        func flat(_ value: ValueID) throws -> ValueID {
            guard builder.shape(of: value).reduce(1, *) == width else {
                throw error("scale or bias \(builder.shape(of: value)) does not cover the normalised axes of \(s)")
            }
            return try builder.reshape(value, to: [width])
        }
        if axis == s.count - 1 {
            return try define(0, builder.layerNorm(x, eps: float("epsilon", default: 1e-5), weight: flat(scale),
                                                   bias: bias.map(flat)))
        }
        let rows = try builder.reshape(x, to: [s[..<axis].reduce(1, *), width])
        let normalized = try builder.layerNorm(rows, eps: float("epsilon", default: 1e-5), weight: flat(scale),
                                               bias: bias.map(flat))
        try define(0, builder.reshape(normalized, to: s))
    }

    /// GroupNormalization: scale and bias per group (opset 18) or per channel (opset 21).
    mutating func groupNormalization() throws {
        let x = try input(0)
        var scale = try input(1), bias = try input(2)
        let s = builder.shape(of: x)
        let groups = try int("num_groups", default: 0)
        guard s.count >= 3, groups > 0, s[1] % groups == 0 else { throw error("\(s[1]) channels in \(groups) groups") }
        if builder.shape(of: scale) == [groups] && groups != s[1] {
            let perGroup = s[1] / groups
            let channelGroups = try builder.typedConstant("groups", Tensor(shape: [s[1]], int64s: (0..<s[1]).map { Int64($0 / perGroup) }))
            scale = try builder.gather(scale, indices: channelGroups, axis: 0)
            bias = try builder.gather(bias, indices: channelGroups, axis: 0)
        }
        try define(0, builder.groupNorm(x, groups: groups, eps: float("epsilon", default: 1e-5), weight: scale, bias: bias,
                                        silu: false))
    }
}
