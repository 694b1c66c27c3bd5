import NodusCore

/// Long prompts and prompt weighting, opt-in (issue 15 part 3), the way AUTOMATIC1111's
/// stable-diffusion-webui does it (`FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`, without
/// textual-inversion embeddings):
///
/// 1. the prompt is cut into weighted segments (`PromptWeighting`; or one segment of weight 1);
/// 2. each segment is tokenized on its own, without BOS/EOS or truncation;
/// 3. the tokens fill chunks of `modelMaxLength - 2` (75): a token that arrives at a full chunk
///    starts a new one; a comma token records its place, and when a chunk is full and its last comma
///    is at most `commaBacktrack` tokens back, the tokens after the comma move to the next chunk;
///    `BREAK` ends the chunk at once;
/// 4. each chunk becomes [BOS] tokens [EOS] and pad ids to 77, weights 1 on BOS, EOS and padding;
///    an empty prompt is one chunk.
///
/// One difference from A1111, on purpose: a chunk is padded the way transformers pads one prompt
/// (pad token after the EOS), where A1111 writes EOS for padding then a final EOS. With SD-1.5's
/// tokenizer (pad = EOS) the ids are the same; with SD-2's (pad `!`) a one-chunk prompt equals
/// `encodePadded`. Weights are A1111's (products of 1.1, 1/1.1 and explicit weights in double
/// precision), returned as Float. How the text encoder applies them (A1111 multiplies each token's
/// hidden state and restores the chunk's mean; compel blends with the empty prompt) is the
/// caller's choice.
extension CLIPTokenizer {
    public func encodeLongPrompt(_ prompt: String, options: LongPromptOptions = LongPromptOptions()) throws
        -> PromptChunks {
        let chunkLength = configuration.modelMaxLength
        let capacity = chunkLength - 2
        if let maximum = options.maximumChunks, maximum < 1 {
            throw NodusError.invalidArgument("CLIPTokenizer.encodeLongPrompt: maximum chunks is \(maximum); "
                                             + "it must be at least 1")
        }
        guard options.commaBacktrack >= 0 else {
            throw NodusError.invalidArgument("CLIPTokenizer.encodeLongPrompt: comma backtrack is "
                                             + "\(options.commaBacktrack); it must be 0 or more")
        }
        let segments = options.parsesWeights ? try PromptWeighting.parse(prompt)
            : [PromptWeighting.Segment(text: prompt, weight: 1)]
        let comma = id(of: "," + configuration.endOfWordSuffix)
        var result = PromptChunks(ids: [], weights: [], chunkLength: chunkLength)
        var tokens: [Int] = []
        var weights: [Float] = []
        var lastComma = -1
        func finishChunk() {
            result.ids.append(beginTokenID)
            result.ids += tokens
            result.ids.append(endTokenID)
            result.weights.append(1)
            result.weights += weights
            result.weights.append(1)
            for _ in tokens.count..<capacity {
                result.ids.append(padTokenID)
                result.weights.append(1)
            }
            tokens.removeAll(keepingCapacity: true)
            weights.removeAll(keepingCapacity: true)
            lastComma = -1
        }
        // The first N chunks are complete once N * capacity + 1 tokens have arrived.
        let tokenLimit = options.maximumChunks.map { $0 * capacity + 1 }
        var consumed = 0
        segmentLoop: for segment in segments {
            if let maximum = options.maximumChunks, result.chunkCount >= maximum { break }
            if segment.isBreak {
                finishChunk()
                continue
            }
            let remaining = tokenLimit.map { $0 - consumed }
            if let remaining, remaining <= 0 { break }
            let segmentTokens = try contentIDs(segment.text, limit: remaining)
            consumed += segmentTokens.count
            let weight = Float(segment.weight)
            for token in segmentTokens {
                if let maximum = options.maximumChunks, result.chunkCount >= maximum { break segmentLoop }
                if token == comma {
                    lastComma = tokens.count
                } else if options.commaBacktrack != 0, tokens.count == capacity, lastComma != -1,
                          tokens.count - lastComma <= options.commaBacktrack {
                    let cut = lastComma + 1
                    let movedTokens = Array(tokens[cut...])
                    let movedWeights = Array(weights[cut...])
                    tokens.removeSubrange(cut...)
                    weights.removeSubrange(cut...)
                    finishChunk()
                    tokens = movedTokens
                    weights = movedWeights
                }
                if tokens.count == capacity { finishChunk() }
                tokens.append(token)
                weights.append(weight)
            }
        }
        if !tokens.isEmpty || result.ids.isEmpty { finishChunk() }
        if let maximum = options.maximumChunks, result.chunkCount > maximum {
            result.ids.removeSubrange((maximum * chunkLength)...)
            result.weights.removeSubrange((maximum * chunkLength)...)
        }
        return result
    }
}
