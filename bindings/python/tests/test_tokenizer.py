"""nodus.Tokenizer against transformers 5's CLIPTokenizer (Tests/Fixtures/clip-tokenizer-references.json,
made by tests/reference/make_tokenizer_fixtures.py with the real 49408-token CLIP vocabulary), and the
tokenizer's C ABI on bad input."""

import ctypes
import json
import os
import threading
import time

import numpy as np
import pytest

from conftest import fixture_path

import nodus
from nodus import _lib

lib = _lib.lib
OK, INVALID_ARGUMENT, IO, FORMAT = 0, 1, 2, 3


@pytest.fixture(scope="module")
def references():
    with open(fixture_path("clip-tokenizer-references.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def sd15():
    with nodus.Tokenizer.from_pretrained(fixture_path("clip-tokenizer")) as tokenizer:
        yield tokenizer


@pytest.fixture(scope="module")
def sd2():
    with nodus.Tokenizer.from_pretrained(fixture_path("clip-tokenizer-sd2")) as tokenizer:
        yield tokenizer


def test_attributes_match_transformers(sd15, sd2, references):
    special = references["special"]
    assert sd15.bos_token_id == special["bos_token_id"] == 49406
    assert sd15.eos_token_id == special["eos_token_id"] == 49407
    assert sd15.pad_token_id == special["pad_token_id"] == 49407
    assert sd2.pad_token_id == special["pad_token_id_sd2"] == 0
    assert sd15.vocab_size == len(sd15) == special["vocab_size"] == 49408
    assert sd15.model_max_length == special["model_max_length"] == 77
    assert sd15.convert_tokens_to_ids(["photo</w>", "<|endoftext|>"])[1] == 49407
    assert "vocab_size=49408" in repr(sd15)


def test_spec_example(sd15):
    ids = sd15(["a chest x-ray", ""])
    assert ids.dtype == np.int64 and ids.shape == (2, 77)
    assert ids[1, 0] == 49406 and (ids[1, 1:] == 49407).all()


@pytest.mark.parametrize("folder,key", [("clip-tokenizer", "input_ids"), ("clip-tokenizer-json", "input_ids"),
                                        ("clip-tokenizer-sd2", "input_ids_sd2")])
def test_corpus_ids_equal_transformers(folder, key, references):
    cases = references["cases"]
    assert len(cases) > 50
    with nodus.Tokenizer.from_pretrained(fixture_path(folder)) as tokenizer:
        ids = tokenizer([case["text"] for case in cases])
        for row, case in zip(ids, cases):
            assert row.tolist() == case[key], f"{case['text'][:60]!r} should give {case[key]}"


def test_untruncated_encode_equals_transformers(sd15, references):
    for case in references["cases"]:
        assert sd15.encode(case["text"]) == case["untruncated"], repr(case["text"][:60])
        assert sd15.encode(case["text"], add_special_tokens=False) == case["untruncated"][1:-1]


def test_decode_and_tokens_equal_transformers(sd15, references):
    for case in references["cases"]:
        ids = case["untruncated"]
        assert sd15.decode(ids) == case["decoded"], repr(case["text"][:60])
        assert sd15.decode(np.array(ids), skip_special_tokens=True) == case["decoded_skip_special"]
        assert sd15.convert_ids_to_tokens(ids) == case["tokens"]
    assert sd15.batch_decode(sd15(["a chest x-ray", ""]), skip_special_tokens=True) == ["a chest x - ray", ""]
    assert (sd15.bos_token, sd15.eos_token, sd15.pad_token) == ("<|startoftext|>", "<|endoftext|>", "<|endoftext|>")
    length = ctypes.c_size_t()
    buffer = ctypes.create_string_buffer(4)
    assert lib.nodus_tokenizer_id_to_token(sd15.handle, 49406, buffer, 4, ctypes.byref(length)) == INVALID_ARGUMENT
    assert length.value == len("<|startoftext|>") and "capacity" in _lib.last_error()
    assert lib.nodus_tokenizer_id_to_token(sd15.handle, 49408, None, 0, ctypes.byref(length)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_id_to_token(sd15.handle, -1, None, 0, ctypes.byref(length)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_decode(sd15.handle, None, 1, 0, None, 0, ctypes.byref(length)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_decode(sd15.handle, None, 0, 0, None, 0, ctypes.byref(length)) == OK
    assert length.value == 0
    assert lib.nodus_tokenizer_decode(sd15.handle, None, 0, 0, None, 0, None) == INVALID_ARGUMENT
    assert sd15.decode([49406, 10**12, 320]) == "<|startoftext|>a"  # unknown ids are skipped, as tokenizers does


def test_padding_and_truncation_options(sd15, references):
    report = references["cases"][-1]
    full = report["untruncated"]
    assert len(full) > 77
    assert sd15.encode(report["text"], truncation=True, max_length=20) == full[:19] + full[-1:]
    assert sd15(report["text"], max_length=20).tolist() == [full[:19] + full[-1:]]
    longest = sd15(["a", "a chest x-ray"], padding="longest")
    assert longest.shape == (2, len(sd15.encode("a chest x-ray")))
    with pytest.raises(ValueError, match="return_tensors"):
        sd15("a", return_tensors="pt")
    rows = sd15(["a", "a b"], padding=False, return_tensors=None)
    assert [len(row) for row in rows] == [3, 4]
    padded = sd15.encode("a", padding="max_length", max_length=10, truncation=True)
    assert padded == [49406, 320, 49407] + [49407] * 7


def test_long_prompts_and_weights_equal_the_reference_rule(sd15, sd2, references):
    for entry in references["long_prompts"]:
        for key, tokenizer, backtrack in (("sd15", sd15, 20), ("sd2", sd2, 20), ("sd15_no_backtrack", sd15, 0)):
            ids, weights = tokenizer.encode_prompt(entry["text"], comma_backtrack=backtrack)
            assert ids.tolist() == entry[key]["input_ids"], f"{key}: {entry['text'][:50]!r}"
            np.testing.assert_allclose(weights, np.array(entry[key]["weights"]), rtol=1e-6,
                                       err_msg=f"{key}: {entry['text'][:50]!r}")
            if "unweighted_input_ids" in entry[key]:
                plain, flat = tokenizer.encode_prompt(entry["text"], weighted=False, comma_backtrack=backtrack)
                assert plain.tolist() == entry[key]["unweighted_input_ids"]
                assert (flat == 1).all()
    ids, _ = sd15.encode_prompt("word " * 500, max_chunks=2)
    assert ids.shape == (2, 77)
    with pytest.raises(nodus.InvalidArgumentError, match="1.2.3"):
        sd15.encode_prompt("(a:1.2.3)")
    with pytest.raises(ValueError):
        sd15.encode_prompt("a", max_chunks=0)


def test_missing_and_disagreeing_files(tmp_path):
    with pytest.raises(nodus.NodusIOError, match="vocab.json and merges.txt"):
        nodus.Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(nodus.NodusIOError, match="does not exist"):
        nodus.Tokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "a</w>": 2, "b</w>": 3,
                                                     "<|startoftext|>": 4, "<|endoftext|>": 5}))
    with pytest.raises(nodus.NodusIOError, match="no merges.txt"):
        nodus.Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    with pytest.raises(nodus.FormatError, match="'ab'.*disagree"):
        nodus.Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(nodus.FormatError, match="tokenizer.json"):
        nodus.Tokenizer.from_pretrained(tmp_path)


def test_invalid_utf8_and_null_pointers(sd15):
    handle = sd15.handle
    count = ctypes.c_size_t()
    for bad in (b"abc\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"caf\xc3", b"\xf4\x90\x80\x80"):
        status = lib.nodus_tokenizer_encode(handle, bad, len(bad), 0, None, 0, ctypes.byref(count))
        assert status == INVALID_ARGUMENT and "UTF-8" in _lib.last_error(), bad
    with pytest.raises(nodus.InvalidArgumentError, match="byte 3"):
        sd15(b"abc\xff")
    with pytest.raises(ValueError, match="UTF-8"):
        sd15("\ud800")
    assert sd15(b"caf\xc3\xa9").tolist() == sd15("café").tolist()
    # Lower-casing lengthens "Ⱥ" (2 bytes) to "ⱥ" (3 bytes, 3 ids): more ids than bytes + 2.
    assert sd15.encode("ȺȺ") == [49406, 158, 109, 98, 158, 109, 354, 49407]
    # NUL bytes are text: the length says where the text ends.
    assert sd15.encode("nul\x00char") == [49406, 1156, 331, 444, 16017, 49407]
    ids = (ctypes.c_int64 * 77)()
    assert lib.nodus_tokenizer_encode(None, b"a", 1, 0, ids, 77, ctypes.byref(count)) == INVALID_ARGUMENT
    assert "tokenizer" in _lib.last_error()
    assert lib.nodus_tokenizer_encode(handle, None, 1, 0, ids, 77, ctypes.byref(count)) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_encode(handle, None, 0, 1, ids, 77, ctypes.byref(count)) == OK and count.value == 77
    assert lib.nodus_tokenizer_encode(handle, b"a", 1, 0, ids, 77, None) == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_encode(handle, b"a", 1, 8, ids, 77, ctypes.byref(count)) == INVALID_ARGUMENT
    assert "flags" in _lib.last_error()
    assert lib.nodus_tokenizer_encode(handle, b"a b c", 5, 0, ids, 2, ctypes.byref(count)) == INVALID_ARGUMENT
    assert count.value == 5 and "capacity" in _lib.last_error()
    assert lib.nodus_tokenizer_encode(handle, b"a b c", 5, 0, None, 5, ctypes.byref(count)) == INVALID_ARGUMENT
    weights = (ctypes.c_float * 77)()
    assert lib.nodus_tokenizer_encode_prompt(None, b"a", 1, None, ids, weights, 77, ctypes.byref(count)) \
        == INVALID_ARGUMENT
    assert lib.nodus_tokenizer_encode_prompt(handle, b"a", 1, None, ids, None, 77, ctypes.byref(count)) == OK
    assert count.value == 77 and ids[1] == 320
    params = _lib.PromptParams()
    assert lib.nodus_tokenizer_encode_prompt(handle, b"a", 1, ctypes.byref(params), ids, weights, 77,
                                             ctypes.byref(count)) == INVALID_ARGUMENT
    assert "nodus_prompt_params_init" in _lib.last_error()
    lib.nodus_prompt_params_init(ctypes.byref(params))
    params.comma_backtrack = -1
    assert lib.nodus_tokenizer_encode_prompt(handle, b"a", 1, ctypes.byref(params), ids, weights, 77,
                                             ctypes.byref(count)) == INVALID_ARGUMENT
    for query in (lib.nodus_tokenizer_max_length, lib.nodus_tokenizer_bos_id, lib.nodus_tokenizer_eos_id,
                  lib.nodus_tokenizer_pad_id, lib.nodus_tokenizer_vocab_size):
        assert query(None) == -1
    value = ctypes.c_int64()
    assert lib.nodus_tokenizer_token_to_id(handle, b"not a token", ctypes.byref(value)) == INVALID_ARGUMENT
    assert value.value == -1
    assert lib.nodus_tokenizer_token_to_id(handle, None, ctypes.byref(value)) == INVALID_ARGUMENT
    out = ctypes.c_void_p()
    assert lib.nodus_tokenizer_load(None, ctypes.byref(out)) == INVALID_ARGUMENT and out.value is None
    assert lib.nodus_tokenizer_load(b"/nonexistent/tokenizer", None) == INVALID_ARGUMENT
    lib.nodus_tokenizer_free(None)


def test_million_character_prompt_is_truncated_quickly(sd15):
    text = "pulmonary nodule in the right lower lobe " * 25_000
    start = time.perf_counter()
    ids = sd15(text)
    elapsed = time.perf_counter() - start
    assert ids.shape == (1, 77) and ids.tolist() == sd15(text[:2000]).tolist()
    assert elapsed < 1.0, f"truncation should stop early, took {elapsed:.2f} s"


def test_million_character_words_equal_transformers(sd15, references):
    assert len(references["repeated"]) == 7
    for entry in references["repeated"]:
        start = time.perf_counter()
        ids = sd15(entry["unit"] * entry["count"])
        elapsed = time.perf_counter() - start
        assert ids[0].tolist() == entry["input_ids"], f"{entry['unit']!r} x {entry['count']}"
        assert elapsed < 10, f"{entry['unit']!r} x {entry['count']} took {elapsed:.1f} s"


def test_threads_share_one_tokenizer(sd15, references):
    cases = references["cases"]
    failures = []

    def work():
        for case in cases:
            if sd15(case["text"])[0].tolist() != case["input_ids"]:
                failures.append(case["text"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_closed_tokenizer_raises():
    tokenizer = nodus.Tokenizer.from_pretrained(fixture_path("clip-tokenizer"))
    tokenizer.close()
    with pytest.raises(ValueError):
        tokenizer("a")
    with pytest.raises(ValueError):
        nodus.Tokenizer.from_pretrained(42)
