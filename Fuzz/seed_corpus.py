"""Seeds each fuzz target's corpus from the real files of the repository.

    python3 Fuzz/seed_corpus.py OUT_DIR

writes OUT_DIR/<target>/ for every target of Fuzz/ (existing files are kept, so a corpus
grown by earlier runs stays). Inputs that stand for several files are joined with the
separator line of Fuzz/FuzzSupport/FuzzInput.swift. Crashing inputs found earlier
(Tests/Fixtures/fuzz/<target>/) are seeds too, so every run retries them.
Standard library only: CI's system python runs it.
"""

import glob
import hashlib
import json
import os
import struct
import sys

SEPARATOR = b"\n#nodus-fuzz-next-file\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
# Bigger seeds make every execution slower than the parser code they add is worth.
LARGEST_SEED = 70_000


def files(*patterns):
    found = set()
    for pattern in patterns:
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            if os.path.isfile(path) and os.path.getsize(path) <= LARGEST_SEED:
                found.add(path)
    return sorted(found)


def read(path):
    with open(path, "rb") as file:
        return file.read()


def joined(*parts):
    return SEPARATOR.join(parts)


def npy(descr, shape, data):
    """An .npy v1.0 file as numpy.save writes it (header padded to a 64-byte boundary)."""
    shape_text = "(" + "".join(f"{size}, " for size in shape).rstrip(" ") + ")" if len(shape) != 1 else f"({shape[0]},)"
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}".encode()
    padding = 64 - (10 + len(header) + 1) % 64
    header += b" " * (padding % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def tokenizer_folder(tokenizer_json, *extra):
    """vocab.json + merges.txt as diffusers saves them, from a tokenizer.json's BPE model."""
    model = json.loads(tokenizer_json)["model"]
    merges = ["#version: 0.2"] + [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    vocabulary = json.dumps(model["vocab"], ensure_ascii=False).encode()
    return joined(vocabulary, ("\n".join(merges) + "\n").encode(), *extra)


def seeds():
    corpus = {}
    corpus["json"] = [read(path) for path in files("Tests/Fixtures/**/*.json", "models/**/*.json")]
    corpus["model-config"] = [read(path) for path in files("Tests/Fixtures/**/config.json", "models/**/config.json")]
    corpus["model-folder"] = [read(os.path.join(FIXTURES, name, "config.json"))
                              for name in ["dit-tiny", "unet-tiny", "vae-tiny", "clip-tiny", "clip-tiny-projection",
                                           "volume/medsyn2-tiny"]]
    corpus["pipeline-index"] = [read(path) for path in files("Tests/Fixtures/**/model_index.json")]

    # scheduler_config.json files, and every config of the scheduler parity cases, padded with
    # spaces to the case's step count (the input's length sets it).
    schedulers = [read(path) for path in files("Tests/Fixtures/**/scheduler_config.json", "models/**/scheduler_config.json")]
    with open(os.path.join(FIXTURES, "schedulers.json")) as file:
        for case in json.load(file)["cases"]:
            text = json.dumps(case["config"]).encode()
            schedulers.append(text + b" " * ((case.get("steps", 10) - 1 - len(text)) % 64))
    corpus["scheduler-config"] = schedulers

    safetensors = files("Tests/Fixtures/**/*.safetensors", "models/**/*.safetensors")
    plain = [path for path in safetensors if "lora" not in os.path.basename(path) and "adapter" not in path]
    corpus["safetensors"] = [read(path) for path in plain[:24]]
    # Sharded folders: the shard, then an index naming it for each of its tensors.
    for path in plain[:4]:
        data = read(path)
        (length,) = struct.unpack("<Q", data[:8])
        names = [name for name in json.loads(data[8:8 + length]) if name != "__metadata__"]
        index = {"metadata": {"total_size": len(data)}, "weight_map": {name: "shard.safetensors" for name in names}}
        corpus["safetensors"].append(joined(data, json.dumps(index).encode()))

    loras = [read(path) for path in files("Tests/Fixtures/**/*lora*.safetensors", "models/**/lora-*.safetensors",
                                          "Tests/Fixtures/lora/*.safetensors")]
    for config in files("Tests/Fixtures/**/adapter_config.json", "models/**/adapter_config.json"):
        weights = os.path.join(os.path.dirname(config), "adapter_model.safetensors")
        if os.path.isfile(weights) and os.path.getsize(weights) <= LARGEST_SEED:
            loras.append(joined(read(config), read(weights)))
    corpus["lora"] = loras

    onnx = [read(path) for path in files("Tests/Fixtures/onnx/*.onnx", "Tests/Fixtures/onnx/broken/*.onnx",
                                         "Tests/Fixtures/onnx/unsupported/*.onnx")]
    corpus["onnx-model"] = onnx
    corpus["onnx-import"] = list(onnx)

    tokenizer_json = read(os.path.join(FIXTURES, "sd-tiny", "tokenizer", "tokenizer.json"))
    tokenizer_config = read(os.path.join(FIXTURES, "sd-tiny", "tokenizer", "tokenizer_config.json"))
    special_tokens = read(os.path.join(FIXTURES, "clip-tokenizer", "special_tokens_map.json"))
    corpus["tokenizer"] = [
        tokenizer_json,
        tokenizer_folder(tokenizer_json),
        tokenizer_folder(tokenizer_json, tokenizer_config),
        tokenizer_folder(tokenizer_json, read(os.path.join(FIXTURES, "clip-tokenizer", "tokenizer_config.json")),
                         special_tokens),
    ]

    # The repository holds no .npy files: the arrays the CLI and the tests exchange, written as numpy does.
    corpus["npy"] = [
        npy("<f4", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
        npy("<f2", [4], struct.pack("<4e", 1, -2, 0.5, 0)),
        npy("<f8", [], struct.pack("<d", 3.25)),
        npy("<i8", [1, 2], struct.pack("<2q", 1, -5)),
        npy("<i4", [3], struct.pack("<3i", 7, 8, 9)),
        npy("|u1", [2, 2], bytes([0, 1, 2, 255])),
        npy("|b1", [0, 3], b""),
    ]

    for target in corpus:
        corpus[target] += [read(path) for path in files(f"Tests/Fixtures/fuzz/{target}/*")]
    return corpus


def main():
    out = sys.argv[1]
    for target, inputs in seeds().items():
        folder = os.path.join(out, target)
        os.makedirs(folder, exist_ok=True)
        for data in inputs:
            # Named by content, as libFuzzer names what it adds.
            with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as file:
                file.write(data)
        print(f"{target}: {len(inputs)} seeds")


if __name__ == "__main__":
    main()
