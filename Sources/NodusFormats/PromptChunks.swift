/// A long prompt as chunks of `chunkLength` ids (77 for CLIP): ids and a weight per id, chunk
/// after chunk, ready to encode chunk by chunk and concatenate along the token axis (A1111, compel).
public struct PromptChunks: Equatable, Sendable {
    /// chunkCount * chunkLength ids; each chunk is [BOS] tokens [EOS] pad....
    public var ids: [Int]
    /// One weight per id: 1 for BOS, EOS and padding.
    public var weights: [Float]
    public var chunkLength: Int
    public var chunkCount: Int { chunkLength == 0 ? 0 : ids.count / chunkLength }

    public init(ids: [Int], weights: [Float], chunkLength: Int) {
        self.ids = ids
        self.weights = weights
        self.chunkLength = chunkLength
    }
}
