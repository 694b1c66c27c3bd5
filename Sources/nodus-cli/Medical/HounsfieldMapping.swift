/// The linear map from a model's output range to Hounsfield units, with values
/// beyond the range clipped (as MAISI's ScaleIntensityRange inverse with clip).
struct HounsfieldMapping: Equatable {
    var sourceRange: ClosedRange<Double>
    var hounsfieldRange: ClosedRange<Double>
    var clips = true

    /// MAISI's default: [0, 1] to [-1000, 1000] HU.
    static let maisi = HounsfieldMapping(sourceRange: 0...1, hounsfieldRange: -1000...1000)

    func hounsfield(_ value: Float) -> Float {
        let span = sourceRange.upperBound - sourceRange.lowerBound
        var unit = span == 0 ? 0 : (Double(value) - sourceRange.lowerBound) / span
        if clips { unit = min(max(unit, 0), 1) }
        return Float(hounsfieldRange.lowerBound + unit * (hounsfieldRange.upperBound - hounsfieldRange.lowerBound))
    }

    /// The volume in Hounsfield units.
    func apply(to volume: Volume) -> Volume { volume.mapped(hounsfield) }

    /// "maisi", or "LOW,HIGH,HU_LOW,HU_HIGH" ([LOW, HIGH] to [HU_LOW, HU_HIGH]).
    static func parse(_ text: String) throws -> HounsfieldMapping {
        if text == "maisi" { return .maisi }
        let numbers = text.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: " ")) }
        guard numbers.count == 4, numbers.allSatisfy(\.isFinite), numbers[0] < numbers[1], numbers[2] < numbers[3] else {
            throw CLIError.usage("--hounsfield must be 'maisi' or LOW,HIGH,HU_LOW,HU_HIGH with LOW < HIGH and HU_LOW < HU_HIGH, got '\(text)'")
        }
        return HounsfieldMapping(sourceRange: numbers[0]...numbers[1], hounsfieldRange: numbers[2]...numbers[3])
    }
}
