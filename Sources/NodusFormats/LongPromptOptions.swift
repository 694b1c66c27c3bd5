/// Options of `CLIPTokenizer.encodeLongPrompt` (opt-in long prompts and prompt weighting).
public struct LongPromptOptions: Equatable, Sendable {
    /// Parse `(text:1.2)`, `(text)`, `[text]` and `BREAK` (`PromptWeighting`); false: the prompt is
    /// plain text of weight 1 (long-prompt chunking only).
    public var parsesWeights = true
    /// A1111's `comma_padding_backtrack`: when a chunk is full and its last comma is at most this
    /// many tokens back, the tokens after that comma move to the next chunk. 0 turns it off;
    /// A1111's default is 20.
    public var commaBacktrack = 20
    /// Keep at most this many chunks (nil: all). The short prompt of a fixed-size text encoder
    /// batch is `maximumChunks = 1`; tokenization stops once the chunks kept are complete.
    public var maximumChunks: Int?

    public init(parsesWeights: Bool = true, commaBacktrack: Int = 20, maximumChunks: Int? = nil) {
        self.parsesWeights = parsesWeights
        self.commaBacktrack = commaBacktrack
        self.maximumChunks = maximumChunks
    }
}
