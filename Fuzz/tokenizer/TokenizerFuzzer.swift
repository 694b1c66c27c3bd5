import FuzzSupport
import NodusFormats

/// libFuzzer target: the tokenizer files. A one-part input is a `tokenizer.json`; a longer one is a
/// diffusers `tokenizer/` folder: `vocab.json`, `merges.txt`, then optionally
/// `tokenizer_config.json` and `special_tokens_map.json`. The tokenizer then encodes and decodes a
/// few prompts, so the vocabulary and merges it accepted also drive byte-pair encoding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    FuzzInput.run(data, count) { input in
        let parts = input.parts
        let path: String
        if parts.count == 1 {
            path = ScratchFolder.write(input.bytes, to: "tokenizer-json/tokenizer.json")
        } else {
            let names = ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
            for (index, name) in names.enumerated() {
                if index < parts.count {
                    ScratchFolder.write(parts[index], to: "tokenizer/" + name)
                } else {
                    ScratchFolder.remove("tokenizer/" + name)
                }
            }
            path = ScratchFolder.path + "/tokenizer"
        }
        let tokenizer = try CLIPTokenizer.load(path: path)
        for prompt in prompts {
            let ids = try tokenizer.encodePadded(prompt)
            _ = tokenizer.decode(ids, skipSpecialTokens: true)
            _ = try tokenizer.encodeLongPrompt(prompt)
        }
    }
}

private let prompts = [
    "a chest x-ray, right lower lobe nodule", "", "  <|startoftext|>HELLO<|endoftext|> world's ",
    "Ünïcødé lung 肺 🫁 \u{301}\u{0}\t(spiculated:1.2) [calcified]",
    String(repeating: "nodule ", count: 90),
]
