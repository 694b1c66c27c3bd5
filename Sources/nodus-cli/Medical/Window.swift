#if canImport(Glibc)
import Glibc
#endif

/// A DICOM VOI window: `centre` and `width` in modality units (Hounsfield units
/// for CT), mapped to display brightness 0 (black) ... 1 (white) by the function
/// of PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT or SIGMOID).
struct Window: Equatable {
    enum Function: String {
        case linear = "LINEAR"
        case linearExact = "LINEAR_EXACT"
        case sigmoid = "SIGMOID"
    }

    var centre: Double
    var width: Double
    var function: Function = .linear

    /// The brightness of a modality value, 0...1.
    func display(_ value: Double) -> Double {
        switch function {
        case .linear:
            // C.11.2.1.2.1: centre - 0.5 and width - 1, so [c - w/2, c + w/2) spans the range.
            let lower = centre - 0.5 - (width - 1) / 2, upper = centre - 0.5 + (width - 1) / 2
            if value <= lower { return 0 }
            if value > upper { return 1 }
            return ((value - (centre - 0.5)) / (width - 1) + 0.5)
        case .linearExact:
            if value <= centre - width / 2 { return 0 }
            if value > centre + width / 2 { return 1 }
            return (value - centre) / width + 0.5
        case .sigmoid:
            return 1 / (1 + exp(-4 * (value - centre) / width))
        }
    }

    /// The modality value shown with brightness `display` (0...1): the inverse of
    /// `display` inside the window (its ends map to the window's edges).
    func value(ofDisplay display: Double) -> Double {
        let unit = min(max(display, 0), 1)
        switch function {
        case .linear: return (unit - 0.5) * (width - 1) + centre - 0.5
        case .linearExact: return (unit - 0.5) * width + centre
        case .sigmoid:
            let clamped = min(max(unit, 1e-6), 1 - 1e-6)
            return centre - width / 4 * log(1 / clamped - 1)
        }
    }
}
