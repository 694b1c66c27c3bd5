/// The `--window` option: how images become brightness in a PNG, and how a PNG's
/// samples are read back.
enum WindowChoice: Equatable {
    /// The image's own window or VOI LUT, else its stored or value range.
    case file
    /// The image's min...max.
    case range
    /// No display mapping: PNG samples are stored values.
    case none
    /// A preset or an explicit window.
    case window(Window)

    static let help = "lung, vessel, soft-tissue, bone, CENTRE/WIDTH (e.g. -600/1500), "
        + "'file' (the image's own window or VOI LUT; default), 'range' (min...max), "
        + "or 'none' (PNG samples are the stored values)"

    static func parse(_ text: String) throws -> WindowChoice {
        switch text {
        case "file": return .file
        case "range": return .range
        case "none": return .none
        default: break
        }
        if let preset = WindowPreset(rawValue: text) { return .window(preset.window) }
        let parts = text.split(separator: "/").map { Double($0.trimmingCharacters(in: " ")) }
        guard parts.count == 2, let centre = parts[0], let width = parts[1], centre.isFinite, width.isFinite, width >= 1 else {
            throw CLIError.usage("--window must be \(help); got '\(text)'")
        }
        return .window(Window(centre: centre, width: width))
    }

    /// The display transform for `image`, or nil for `.none`.
    func transform(for image: MedicalImage) -> DisplayTransform? {
        switch self {
        case .file: return image.defaultDisplayTransform
        case .range:
            let range = image.valueRange
            return .range(lower: Double(range.lower), upper: Double(range.upper))
        case .none: return nil
        case .window(let window): return .window(window)
        }
    }
}
