/// How modality values become display brightness (the DICOM VOI transformation):
/// a window, a VOI lookup table, or a plain linear ramp over a value range.
enum DisplayTransform: Equatable {
    case window(Window)
    case lookupTable(VOILookupTable)
    /// `lower` black, `upper` white, linear between (a PNG's full range, or min...max).
    case range(lower: Double, upper: Double)

    /// The brightness of a modality value, 0...1, before any MONOCHROME1 inversion.
    func display(_ value: Double) -> Double {
        switch self {
        case .window(let window): return window.display(value)
        case .lookupTable(let table): return table.display(value)
        case .range(let lower, let upper):
            guard upper > lower else { return value >= upper ? 1 : 0 }
            return min(max((value - lower) / (upper - lower), 0), 1)
        }
    }

    /// The modality value shown with brightness `display`, or nil for a lookup
    /// table (not invertible in general).
    func value(ofDisplay display: Double) -> Double? {
        switch self {
        case .window(let window): return window.value(ofDisplay: display)
        case .lookupTable: return nil
        case .range(let lower, let upper): return lower + min(max(display, 0), 1) * (upper - lower)
        }
    }
}
