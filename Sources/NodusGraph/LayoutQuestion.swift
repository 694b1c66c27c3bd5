/// What a layout check of the attention pattern depends on: a chain of reshapes
/// and transposes, the shape it starts from, and the head layout it must reach.
/// Two chains with the same question have the same answer, so a DiT's 28
/// blocks index-check their head split and merge once, not 28 times.
struct LayoutQuestion: Hashable {
    enum Step: Hashable {
        /// A reshape, by its output shape.
        case reshape([Int])
        case transpose([Int])
    }

    let steps: [Step]
    let source: [Int]
    /// The axis order of the head layout, or the merged shape when `merging`.
    let target: [Int]
    let heads: Int
    let merging: Bool
}
