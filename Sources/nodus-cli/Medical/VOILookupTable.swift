/// A DICOM VOI LUT (the first item of the VOI LUT Sequence): modality values
/// from `firstMapped` on index `entries`; values below and above take the first
/// and last entry (PS3.3 C.11.2.1.1). Entries are `bits` wide.
struct VOILookupTable: Equatable {
    var firstMapped: Int
    var bits: Int
    var entries: [UInt16]

    /// The brightness of a modality value, 0...1.
    func display(_ value: Double) -> Double {
        guard let last = entries.last else { return 0 }
        let index = Int((value - Double(firstMapped)).rounded(.down))
        let entry = index < 0 ? entries[0] : index >= entries.count ? last : entries[index]
        return Double(entry) / Double((1 << bits) - 1)
    }
}
