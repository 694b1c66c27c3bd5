#!/usr/bin/env python3
"""Writes the CLIP tokenizer fixtures for Tests/NodusTests/CLIPTokenizerTests.swift and
bindings/python/tests/test_tokenizer.py:

* Tests/Fixtures/clip-tokenizer/        vocab.json + merges.txt + special_tokens_map.json +
                                        tokenizer_config.json, as SD-1.5's `tokenizer/` folder
                                        (openai/clip-vit-large-patch14; pad `<|endoftext|>`)
* Tests/Fixtures/clip-tokenizer-sd2/    the same with pad `!` (SD-2's `tokenizer/` folder)
* Tests/Fixtures/clip-tokenizer-json/   tokenizer.json (+ the two config files) written by
                                        transformers' CLIPTokenizerFast.save_pretrained
* Tests/Fixtures/clip-tokenizer-references.json   token ids from transformers for a corpus of
                                        tricky strings, and long-prompt / weighting references

Run with the reference environment (transformers 5, tokenizers):
    python tests/reference/make_tokenizer_fixtures.py [--bpe bpe_simple_vocab_16e6.txt.gz]

The 49408-token vocabulary is OpenAI CLIP's: `bpe_simple_vocab_16e6.txt.gz`, shipped in the
open-clip-torch wheel on PyPI. Without `--bpe` the script takes it from an installed `open_clip`
package, else it runs `pip download open-clip-torch --no-deps` into a temporary folder and reads it
from the wheel. vocab.json and merges.txt are built exactly as CLIP's `SimpleTokenizer` builds its
encoder (and as openai/clip-vit-large-patch14's files hold it): the 256 byte-level characters, the
same 256 with `</w>`, the first 48894 merges joined, then `<|startoftext|>` and `<|endoftext|>`.

To keep one copy of the 2 MB vocabulary in the repository, clip-tokenizer-sd2/vocab.json and
merges.txt are relative symbolic links to clip-tokenizer/'s (git keeps them; the folder loads on its
own like a Hugging Face cache snapshot, whose files are symbolic links too). clip-tokenizer-json/
carries its own tokenizer.json, because that is one file.

The long-prompt and weighting references follow AUTOMATIC1111's stable-diffusion-webui:
`parse_prompt_attention` (modules/prompt_parser.py) and the chunking of
`FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line` (modules/sd_hijack_clip.py), rewritten here
without textual-inversion embeddings, with `comma_padding_backtrack` as a parameter (A1111's
default 20), and with one documented difference: a chunk is padded the way transformers pads one
prompt ([BOS] tokens [EOS] then the pad token up to 77), where A1111 pads with EOS before its final
EOS. With SD-1.5's tokenizer (pad = EOS) both give the same ids.
"""
import argparse
import glob
import gzip
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import zipfile

import tokenizers
import transformers
from transformers import CLIPTokenizer, CLIPTokenizerFast

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
MAX_LENGTH = 77
CHUNK_LENGTH = 75


def bytes_to_unicode():
    """CLIP's (and GPT-2's) byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(n) for n in cs]))


def read_bpe(path):
    if path is None:
        try:
            import open_clip  # noqa: F401
            path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
        except ImportError:
            folder = tempfile.mkdtemp()
            subprocess.run([sys.executable, "-m", "pip", "download", "open-clip-torch", "--no-deps", "-d", folder],
                           check=True)
            wheel = glob.glob(os.path.join(folder, "open_clip_torch-*.whl"))[0]
            with zipfile.ZipFile(wheel) as archive:
                return archive.read("open_clip/bpe_simple_vocab_16e6.txt.gz"), os.path.basename(wheel)
    with open(path, "rb") as handle:
        return handle.read(), os.path.basename(path)


def build_vocabulary(compressed):
    """vocab (token -> id) and merges, as CLIP's SimpleTokenizer constructs them."""
    lines = gzip.decompress(compressed).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [token + "</w>" for token in tokens]
    tokens += ["".join(merge) for merge in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    assert len(tokens) == 49408 and len(set(tokens)) == 49408
    return {token: index for index, token in enumerate(tokens)}, merges


def special(content):
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write_configs(folder, pad_token):
    """special_tokens_map.json and tokenizer_config.json as the SD-1.5 / SD-2 hub folders hold them."""
    pad = pad_token  # a plain string in both hub folders (SD-1.5 and SD-2)
    special_map = {"bos_token": special("<|startoftext|>"), "eos_token": special("<|endoftext|>"),
                   "pad_token": pad, "unk_token": special("<|endoftext|>")}
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as handle:
        json.dump(special_map, handle, indent=2)
        handle.write("\n")
    config = {"add_prefix_space": False,
              "bos_token": dict(special("<|startoftext|>"), __type="AddedToken"),
              "do_lower_case": True,
              "eos_token": dict(special("<|endoftext|>"), __type="AddedToken"),
              "errors": "replace", "model_max_length": MAX_LENGTH,
              "pad_token": pad_token,
              "tokenizer_class": "CLIPTokenizer",
              "unk_token": dict(special("<|endoftext|>"), __type="AddedToken")}
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")


REPORT = (
    "Findings: PA and lateral views of the chest were obtained. The cardiomediastinal silhouette is within normal "
    "limits for size and contour. There is a 3.5 cm spiculated opacity in the right lower lobe, suspicious for "
    "a primary neoplasm; a smaller 8 mm nodule is seen in the left upper lobe. No pleural effusion or "
    "pneumothorax is identified. The pulmonary vasculature is normal. Mild degenerative changes of the "
    "thoracic spine are noted, with small anterior osteophytes at T8-T10. No acute osseous abnormality. "
    "The trachea is midline. Surgical clips project over the right upper quadrant, consistent with prior "
    "cholecystectomy. Impression: 1. Spiculated right lower lobe mass measuring approximately 3.5 x 2.8 cm, "
    "highly suspicious for malignancy; recommend contrast-enhanced CT of the chest for further evaluation and "
    "staging. 2. Left upper lobe 8 mm pulmonary nodule; attention on follow-up CT. 3. No pleural effusion. "
    "Comparison: chest radiograph from 2024-03-14, on which the right lower lobe opacity measured 2.1 cm, "
    "indicating interval growth. Technique: digital radiography, 120 kVp, automatic exposure control. "
    "The lungs are otherwise clear without focal consolidation. Heart size is normal. The hila are not "
    "enlarged. There is no evidence of interstitial edema. The costophrenic angles are sharp. Soft tissues "
    "are unremarkable. A right-sided central venous catheter terminates at the cavoatrial junction. No "
    "free air under the diaphragm. Recommendation discussed with Dr. Smith by telephone at 14:35 on the day "
    "of the examination; read-back confirmed. Additional history: 64-year-old former smoker (40 pack-years) "
    "with weight loss and hemoptysis for two months. Prior CT from outside institution not available for "
    "comparison at this time; please forward images if obtained. Follow-up in 3 months is advised if biopsy "
    "is deferred, per Fleischner Society guidelines for solid nodules larger than 8 mm in high-risk patients."
)

CORPUS = [
    "", " ", "   \t\n  ", "a chest x-ray", "A Chest X-Ray", "CHEST X-RAY OF A 45 YEAR OLD MALE",
    "a photo of a cat", "chest x-ray, right lower lobe nodule", "3.5 cm", "3.5cm nodule", "12,345.678 mm^2",
    "T8-T10", "2024-03-14 14:35", "x2 x10 x100", "0123456789", "½ ¾ ² ³ ① Ⅻ ٣ ๓",
    "it's", "don't", "they're we've I'm you'll he'd", "IT'S DON'T", "'sup 's 't ''s '''", "rock 'n' roll",
    "it’s don’t", "naïve café résumé", "Ångström Øresund Œuvre", "e\u0301 (e + combining acute)",
    "Ａ full width ＡＢＣ １２３", "straße STRASSE", "İstanbul ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ", "ǅungla ǈ ǋ",
    "胸部X線写真", "肺结节 右下叶", "흉부 엑스레이", "рентген грудной клетки", "صورة الصدر بالأشعة", "एक्स-रे",
    "ภาพเอกซเรย์", "🙂 emoji 🫁🩻 lungs 👨‍⚕️ doctor 🇫🇷 flag", "🙂🙂🙂", "!!!", "?!?!...", "--->>> <<<---",
    "(((nodule)))", "[[mask]]", "a,b;c:d", "foo...bar", "#hashtag @mention $100 %50 ^caret &and *star",
    "&amp; &lt;b&gt; &quot;quoted&quot; &#39;apos&#39; &nbsp;", "<b>bold</b> <br/>", "tab\there", "new\nline",
    "carriage\r\nreturn", "multiple     spaces", "  leading and trailing  ", "nbsp\u00a0between", "thin\u2009space",
    "ideographic\u3000space", "zero\u200bwidth", "line\u2028separator", "vertical\x0btab form\x0cfeed",
    "unit\x1fseparator", "nul\x00char", "control\x07bell", "soft\u00adhyphen", "<|startoftext|> hello",
    "hello <|endoftext|> world", "<|ENDOFTEXT|>", "<|StartOfText|> x",
    "!<|ENDOFTEXT|>!", "e\u0301\u0f73\u0327 \u0f73\u0f73 \u0f75\u0f81", "\u0120\u0327\u0f71\u0f72</", "<|ENDOFTEXT|><|endoftext|><|STARTOFTEXT|>", "a<|ENDOFTEXT|>b", "<|endoftext", "x<|y|>z", "a<|endoftext|>b", "</w>", "ĠĊ", "low lower lowest",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis", "a" * 200,
    "ab" * 100, "x" * 1000, "1" * 100, "The quick brown fox jumps over the lazy dog. " * 3,
    "modern disney style, (masterpiece:1.2), best quality", "\ud7ff\ue000\uffff", "\U0001F600\U000E0001",
    REPORT,
]

# Prompts of about a million characters, stored as (unit, count): unit * count.
REPEATED = [("a", 1_000_000), ("pulmonary nodule ", 60_000), ("ab", 500_000), ("🙂", 250_000), ("x-ray, ", 150_000),
            ("e\u0327\u0301", 333_333), ("\u0f73", 1_000_000)]  # runs of combining marks to reorder

WEIGHTED_PROMPTS = [
    "", "a chest x-ray", "a (nodule:1.2) in the right lung", "((calcified)) nodule, [[blurry]]",
    "(ground glass:0.5), (spiculated margin:1.5) mass", r"literal \(parentheses\) and \[brackets\] \\ slash",
    "(unclosed bracket, [also unclosed", "closing ) without ] opening", "(a (b:2) c:0.5)",
    "(word: 1.25 )", "(word:-0.5)", "(word:+.5)", "a:b c", "first part BREAK second part", "BREAK", "ABREAK B",
    "(emphasis) BREAK [de-emphasis]", "chest x-ray, " * 40, REPORT, "(" + REPORT + ":1.3)",
    "word " * 74 + "last, tail after comma", "a, " + "b " * 80,
]


def parse_prompt_attention(text):
    """AUTOMATIC1111's modules/prompt_parser.py parse_prompt_attention, verbatim in behaviour."""
    re_attention = re.compile(r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""", re.X)
    re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)
    result = []
    round_brackets = []
    square_brackets = []

    def multiply_range(start, multiplier):
        for position in range(start, len(result)):
            result[position][1] *= multiplier

    for match in re_attention.finditer(text):
        piece = match.group(0)
        weight = match.group(1)
        if piece.startswith("\\"):
            result.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(result))
        elif piece == "[":
            square_brackets.append(len(result))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for index, part in enumerate(re.split(re_break, piece)):
                if index > 0:
                    result.append(["BREAK", -1])
                result.append([part, 1.0])
    for position in round_brackets:
        multiply_range(position, 1.1)
    for position in square_brackets:
        multiply_range(position, 1 / 1.1)
    if not result:
        result = [["", 1.0]]
    index = 0
    while index + 1 < len(result):
        if result[index][1] == result[index + 1][1]:
            result[index][0] += result[index + 1][0]
            result.pop(index + 1)
        else:
            index += 1
    return result


def special_token_variants(base):
    """How transformers flags special tokens as normalized (matched after lower-casing) or not, for
    config files written as strings or objects: each variant is a folder with the vocabulary and the
    given files, and the ids of a probe text."""
    def token(content, normalized=True):
        return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False}

    variants = [
        {},
        {"tokenizer_config.json": {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!"}},
        {"special_tokens_map.json": {"bos_token": token("<|startoftext|>"), "eos_token": token("<|endoftext|>"),
                                     "pad_token": token("<|endoftext|>"), "unk_token": "<|endoftext|>"}},
        {"special_tokens_map.json": {"bos_token": token("<|startoftext|>"), "eos_token": "<|endoftext|>",
                                     "pad_token": token("<|endoftext|>"), "unk_token": token("<|endoftext|>")}},
        {"special_tokens_map.json": {"bos_token": token("<|startoftext|>", False), "eos_token": token("<|endoftext|>"),
                                     "pad_token": token("<|endoftext|>"), "unk_token": token("<|endoftext|>")}},
        {"tokenizer_config.json": {"bos_token": dict(token("<|startoftext|>"), __type="AddedToken"),
                                   "pad_token": "<|endoftext|>"},
         "special_tokens_map.json": {"pad_token": token("<|endoftext|>")}},
        # transformers >= 4.34 saves added_tokens_decoder; then special_tokens_map.json is not read.
        {"tokenizer_config.json": {"added_tokens_decoder": {"49406": dict(token("<|startoftext|>", False), special=True),
                                                            "49407": dict(token("<|endoftext|>"), special=True)},
                                   "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                                   "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"},
         "special_tokens_map.json": {"pad_token": "!"}},
    ]
    probe = "<|ENDOFTEXT|> <|STARTOFTEXT|> a<|endoftext|>b!"
    result = []
    for files in variants:
        with tempfile.TemporaryDirectory() as folder:
            for name in ("vocab.json", "merges.txt"):
                os.symlink(os.path.join(os.path.abspath(base), name), os.path.join(folder, name))
            for name, content in files.items():
                with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
                    json.dump(content, handle)
            tokenizer = CLIPTokenizer.from_pretrained(folder)
            result.append({"files": files, "text": probe, "input_ids": tokenizer(probe)["input_ids"],
                           "pad_token_id": tokenizer.pad_token_id})
    return result


def long_prompt(tokenizer, text, weighted, comma_backtrack=20):
    """A1111's tokenize_line (no embeddings): chunks of 75 tokens, each [BOS] + tokens + [EOS] + pads."""
    parsed = parse_prompt_attention(text) if weighted else [[text, 1.0]]
    tokenized = tokenizer([piece for piece, _ in parsed], truncation=False, add_special_tokens=False)["input_ids"]
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks = []
    state = {"tokens": [], "weights": [], "last_comma": -1}

    def next_chunk():
        tokens, weights = state["tokens"], state["weights"]
        pads = CHUNK_LENGTH - len(tokens)
        ids = [tokenizer.bos_token_id] + tokens + [tokenizer.eos_token_id] + [tokenizer.pad_token_id] * pads
        chunks.append((ids, [1.0] + weights + [1.0] + [1.0] * pads))
        state.update(tokens=[], weights=[], last_comma=-1)

    for tokens, (piece, weight) in zip(tokenized, parsed):
        if piece == "BREAK" and weight == -1:
            next_chunk()
            continue
        for token in tokens:
            if token == comma:
                state["last_comma"] = len(state["tokens"])
            elif (comma_backtrack != 0 and len(state["tokens"]) == CHUNK_LENGTH and state["last_comma"] != -1
                  and len(state["tokens"]) - state["last_comma"] <= comma_backtrack):
                cut = state["last_comma"] + 1
                moved_tokens, moved_weights = state["tokens"][cut:], state["weights"][cut:]
                state["tokens"], state["weights"] = state["tokens"][:cut], state["weights"][:cut]
                next_chunk()
                state["tokens"], state["weights"] = moved_tokens, moved_weights
            if len(state["tokens"]) == CHUNK_LENGTH:
                next_chunk()
            state["tokens"].append(token)
            state["weights"].append(weight)
    if state["tokens"] or not chunks:
        next_chunk()
    return [ids for ids, _ in chunks], [weights for _, weights in chunks]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bpe", help="bpe_simple_vocab_16e6.txt.gz (default: from open_clip or its PyPI wheel)")
    arguments = parser.parse_args()
    compressed, source = read_bpe(arguments.bpe)
    vocab, merges = build_vocabulary(compressed)

    base = os.path.join(FIXTURES, "clip-tokenizer")
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "vocab.json"), "w", encoding="utf-8") as handle:
        json.dump(vocab, handle, ensure_ascii=False, separators=(",", ":"))
        handle.write("\n")
    with open(os.path.join(base, "merges.txt"), "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
        for first, second in merges:
            handle.write(f"{first} {second}\n")
    write_configs(base, "<|endoftext|>")

    sd2 = os.path.join(FIXTURES, "clip-tokenizer-sd2")
    os.makedirs(sd2, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        link = os.path.join(sd2, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.join("..", "clip-tokenizer", name), link)
    write_configs(sd2, "!")

    sd15 = CLIPTokenizer.from_pretrained(base)
    sd2_tokenizer = CLIPTokenizer.from_pretrained(sd2)
    json_folder = os.path.join(FIXTURES, "clip-tokenizer-json")
    with tempfile.TemporaryDirectory() as scratch:
        CLIPTokenizerFast.from_pretrained(base).save_pretrained(scratch)
        os.makedirs(json_folder, exist_ok=True)
        with open(os.path.join(scratch, "tokenizer_config.json"), "rb") as source_file, \
                open(os.path.join(json_folder, "tokenizer_config.json"), "wb") as target:
            target.write(source_file.read())
        # The same document without indentation: 2 MB instead of 3.6 MB.
        with open(os.path.join(scratch, "tokenizer.json"), encoding="utf-8") as source_file:
            document = json.load(source_file)
        with open(os.path.join(json_folder, "tokenizer.json"), "w", encoding="utf-8") as target:
            json.dump(document, target, ensure_ascii=False, separators=(",", ":"))
    from_json = CLIPTokenizer.from_pretrained(json_folder)
    assert not os.path.exists(os.path.join(json_folder, "vocab.json"))

    def padded(tokenizer, texts):
        return tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True)["input_ids"]

    padded_sd15 = padded(sd15, CORPUS)
    assert padded(from_json, CORPUS) == padded_sd15, "tokenizer.json and vocab.json + merges.txt disagree"
    cases = []
    for text, ids, ids_sd2 in zip(CORPUS, padded_sd15, padded(sd2_tokenizer, CORPUS)):
        full = sd15(text, add_special_tokens=True, truncation=False)["input_ids"]
        cases.append({"text": text, "input_ids": ids, "input_ids_sd2": ids_sd2, "untruncated": full,
                      "decoded": sd15.decode(full), "decoded_skip_special": sd15.decode(full, skip_special_tokens=True),
                      "tokens": sd15.convert_ids_to_tokens(full)})
    repeated = [{"unit": unit, "count": count, "input_ids": padded(sd15, [unit * count])[0]}
                for unit, count in REPEATED]
    weighted = []
    for text in WEIGHTED_PROMPTS:
        entry = {"text": text, "parsed": parse_prompt_attention(text)}
        for key, tokenizer in (("sd15", sd15), ("sd2", sd2_tokenizer)):
            ids, weights = long_prompt(tokenizer, text, weighted=True)
            plain_ids, _ = long_prompt(tokenizer, text, weighted=False)
            entry[key] = {"input_ids": ids, "weights": weights, "unweighted_input_ids": plain_ids}
        ids, weights = long_prompt(sd15, text, weighted=True, comma_backtrack=0)
        entry["sd15_no_backtrack"] = {"input_ids": ids, "weights": weights}
        weighted.append(entry)

    references = {
        "description": "CLIPTokenizer ids from transformers for tests/reference/make_tokenizer_fixtures.py's corpus; "
                       "input_ids: tokenizer(texts, padding='max_length', max_length=77, truncation=True) with "
                       "clip-tokenizer (SD-1.5, pad <|endoftext|>); input_ids_sd2: the same with clip-tokenizer-sd2 "
                       "(pad '!'); untruncated: tokenizer(text, truncation=False) (BOS ... EOS), with its decode() (plain and "
                       "skip_special_tokens=True) and convert_ids_to_tokens(); special_token_variants: folders with the "
                       "vocabulary and the given config files, and the ids of a probe; repeated: input_ids of "
                       "unit * count (a million characters). long_prompts: "
                       "A1111-style chunking and (word:1.2) weighting, see the script's docstring.",
        "command": "python tests/reference/make_tokenizer_fixtures.py",
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "python": platform.python_version(), "vocabulary": source,
                     "tokenizer_class": type(sd15).__name__,
                     "CLIPTokenizerFast_is_CLIPTokenizer": CLIPTokenizerFast is CLIPTokenizer},
        "special": {"bos_token_id": sd15.bos_token_id, "eos_token_id": sd15.eos_token_id,
                    "pad_token_id": sd15.pad_token_id, "pad_token_id_sd2": sd2_tokenizer.pad_token_id,
                    "vocab_size": sd15.vocab_size, "model_max_length": sd15.model_max_length},
        "cases": cases,
        "repeated": repeated,
        "special_token_variants": special_token_variants(base),
        "long_prompts": weighted,
    }
    with open(os.path.join(FIXTURES, "clip-tokenizer-references.json"), "w", encoding="utf-8") as handle:
        json.dump(references, handle, ensure_ascii=False, indent=None, separators=(",", ":"))
        handle.write("\n")
    print(f"{len(cases)} corpus strings, {len(weighted)} long/weighted prompts;", references["versions"])


if __name__ == "__main__":
    main()
