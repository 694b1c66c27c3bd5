#!/usr/bin/env python3
"""Differential check of nodus.Tokenizer against transformers' CLIPTokenizer (not part of `make test`:
it needs transformers; about a minute).

    .venv-bench/bin/python tests/reference/check_tokenizer_against_transformers.py [--strings 20000] [--seed 0]

1. Every Unicode code point (surrogates excepted), inside words, doubled and after a digit:
   "a{c}b {c}{c} 1{c}". The 3 code points of Unicode 16 whose NFC compositions tokenizers' tables lack
   (U+113C2, U+1611E, U+16D67) are the known differences.
2. Random strings of 0-40 pieces drawn from letters with special case or normalisation behaviour,
   digits, punctuation, apostrophe contractions, white space of every kind, combining marks, CJK,
   Hangul jamo, emoji sequences, control characters and the special-token literals, with each fixture
   folder (SD-1.5, SD-2, tokenizer.json).
3. Random weighted prompts (brackets, weights, escapes, BREAK, commas, long runs of words) through
   encode_prompt against the A1111 rule written in make_tokenizer_fixtures.py (ids equal, weights
   within 1e-6), with comma backtrack 20 and 0.
Uses the release library (make build) and the fixtures of make_tokenizer_fixtures.py. Exits 1 on any
other difference, printing the first ten.
"""
import argparse
import os
import random
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
KNOWN = {0x113C2, 0x1611E, 0x16D67}
PIECES = list("abcXYZéÉßİıΣσςǅ0123456789½²٣'’\"!?.,;:-_()[]{}<>|/\\@#$%^&*+=~`") + [
    " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2009", "\u3000", "\u200b", "\u0301", "\u0308", "\u0327", "e\u0301",
    "\u1100\u1161", "가", "한", "胸", "部", "ア", "🙂", "👨\u200d⚕️", "🇫🇷", "\x00", "\x1f", "\x85", "'s", "'t", "'re",
    "'ll", "'S", "'D", "<|endoftext|>", "<|startoftext|>", "<|ENDOFTEXT|>", "<|", "|>", "</w>", "Ġ", "ﬁ", "Ⅻ", "ǈ",
    "ﬀ", "\ufeff", "\U000e0001", "\U0010ffff", "\ud7ff", "ǰ", "ΐ", "ẞ", "Ω", "K", "Å", "\u0f73", "\u0f71\u0f72",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strings", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import nodus
    from transformers import CLIPTokenizer
    from transformers.utils import logging

    logging.set_verbosity_error()
    failures = []
    folder = os.path.join(FIXTURES, "clip-tokenizer")
    reference, ours = CLIPTokenizer.from_pretrained(folder), nodus.Tokenizer.from_pretrained(folder)
    differing = []
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        character = chr(code)
        text = f"a{character}b {character}{character} 1{character}"
        if reference(text)["input_ids"] != ours.encode(text):
            differing.append(code)
            if code not in KNOWN:
                failures.append(text)
    print(f"code points: {len(differing)} differ ({', '.join(f'U+{code:04X}' for code in differing[:12])}); "
          f"known: {len(KNOWN)}")
    rng = random.Random(args.seed)
    for name in ("clip-tokenizer", "clip-tokenizer-sd2", "clip-tokenizer-json"):
        folder = os.path.join(FIXTURES, name)
        reference, ours = CLIPTokenizer.from_pretrained(folder), nodus.Tokenizer.from_pretrained(folder)
        count = 0
        for _ in range(args.strings):
            text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 40)))
            padded = reference(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
            if reference(text)["input_ids"] != ours.encode(text) or padded != ours(text)[0].tolist():
                count += 1
                failures.append(text)
        print(f"{name}: {args.strings} random strings, {count} differ")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_tokenizer_fixtures import long_prompt

    import numpy as np

    words = ["chest", "x-ray", "nodule", ",", " ", "  ", "(", ")", "[", "]", ":", ":1.2", ":0.5)", ":-1)", "\\(",
             "\\)", "\\", "BREAK", " BREAK ", "lung", "1.5", "Ünïcode", "🙂", "\n", "((", "))"]
    for name in ("clip-tokenizer", "clip-tokenizer-sd2"):
        folder = os.path.join(FIXTURES, name)
        reference, ours = CLIPTokenizer.from_pretrained(folder), nodus.Tokenizer.from_pretrained(folder)
        count = 0
        for index in range(args.strings // 10):
            text = "".join(rng.choice(words) for _ in range(rng.randint(0, 120 if index % 4 else 400)))
            for backtrack in (20, 0):
                try:
                    expected_ids, expected_weights = long_prompt(reference, text, True, backtrack)
                except ValueError:  # A1111 raises on a weight that is not a number; so must Nodus
                    try:
                        ours.encode_prompt(text, comma_backtrack=backtrack)
                    except nodus.InvalidArgumentError:
                        continue
                    count += 1
                    failures.append(text)
                    continue
                ids, weights = ours.encode_prompt(text, comma_backtrack=backtrack)
                if ids.tolist() != expected_ids or not np.allclose(weights, np.array(expected_weights), rtol=1e-6):
                    count += 1
                    failures.append(text)
        print(f"{name}: {args.strings // 10} random weighted prompts (x2 backtrack settings), {count} differ")
    for text in failures[:10]:
        print("DIFFERS:", repr(text))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
