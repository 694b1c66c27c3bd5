"""CLIP text tokenizer: ``nodus.Tokenizer.from_pretrained("sd/tokenizer")``."""

import ctypes
import os

import numpy as np

from . import _lib
from ._handle import Handle

PAD_TO_MAX_LENGTH = 1
NO_SPECIAL_TOKENS = 2


def _utf8(text):
    """``text`` (str or UTF-8 bytes) as bytes; bytes are checked by the library."""
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if not isinstance(text, str):
        raise ValueError(f"nodus: a tokenizer takes str (or UTF-8 bytes), not {type(text).__name__}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"nodus: the text cannot be encoded as UTF-8 ({error.reason} at {error.start})") from error


class Tokenizer(Handle):
    """CLIP's byte-level BPE tokenizer (``nodus_tokenizer *``), id for id as transformers 5's
    ``CLIPTokenizer`` (which is ``CLIPTokenizerFast`` there).

    ``tok(texts)`` equals ``transformers_tokenizer(texts, padding="max_length", max_length=77,
    truncation=True, return_tensors="np")["input_ids"]`` (as int64). Long prompts and
    ``(word:1.2)`` weighting are opt-in: :meth:`encode_prompt`.

    Free it with ``close()`` or a ``with`` block.
    """

    _free_function = "nodus_tokenizer_free"
    _label = "tokenizer"

    @classmethod
    def from_pretrained(cls, path):
        """A diffusers ``tokenizer/`` folder (vocab.json + merges.txt + its config files), a folder
        with a tokenizer.json, or a tokenizer.json path."""
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise ValueError(f"nodus: Tokenizer.from_pretrained takes a path, not {type(path).__name__}")
        handle = ctypes.c_void_p()
        _lib.check(_lib.lib.nodus_tokenizer_load(os.fsencode(path), ctypes.byref(handle)))
        tokenizer = cls(handle)
        tokenizer._max_length = int(_lib.lib.nodus_tokenizer_max_length(handle))
        return tokenizer

    def __repr__(self):
        if not self._handle:
            return "<nodus.Tokenizer closed>"
        return f"<nodus.Tokenizer vocab_size={self.vocab_size} model_max_length={self.model_max_length}>"

    # -- attributes transformers users expect --------------------------------

    @property
    def model_max_length(self):
        """The padded length (tokenizer_config.json ``model_max_length``; 77 when absent)."""
        return int(_lib.lib.nodus_tokenizer_max_length(self.handle))

    @property
    def bos_token_id(self):
        return int(_lib.lib.nodus_tokenizer_bos_id(self.handle))

    @property
    def eos_token_id(self):
        return int(_lib.lib.nodus_tokenizer_eos_id(self.handle))

    @property
    def pad_token_id(self):
        """SD-1.5's tokenizer pads with ``<|endoftext|>`` (49407), SD-2's with ``!`` (0)."""
        return int(_lib.lib.nodus_tokenizer_pad_id(self.handle))

    @property
    def vocab_size(self):
        return int(_lib.lib.nodus_tokenizer_vocab_size(self.handle))

    def __len__(self):
        return self.vocab_size

    def convert_tokens_to_ids(self, tokens):
        """The id of a token string (``"photo</w>"``), or a list of ids for a list of tokens."""
        if isinstance(tokens, (list, tuple)):
            return [self.convert_tokens_to_ids(token) for token in tokens]
        value = ctypes.c_int64()
        _lib.check(_lib.lib.nodus_tokenizer_token_to_id(self.handle, str(tokens).encode(), ctypes.byref(value)))
        return int(value.value)

    def _text(self, call):
        """Calls ``call(buffer, capacity, length_pointer)`` twice (size, then text) and decodes the bytes."""
        length = ctypes.c_size_t()
        _lib.check(call(None, 0, ctypes.byref(length)))
        buffer = ctypes.create_string_buffer(length.value + 1)
        _lib.check(call(buffer, length.value + 1, ctypes.byref(length)))
        return buffer.raw[: length.value].decode("utf-8")

    def convert_ids_to_tokens(self, ids):
        """The token string of an id (``"photo</w>"``), or a list of them for a list of ids."""
        if isinstance(ids, (list, tuple, np.ndarray)):
            return [self.convert_ids_to_tokens(int(value)) for value in ids]
        identifier = int(ids)
        return self._text(lambda buffer, capacity, length: _lib.lib.nodus_tokenizer_id_to_token(
            self.handle, identifier, buffer, capacity, length))

    def decode(self, ids, skip_special_tokens=False):
        """Text from ids, as transformers' ``decode``: ``</w>`` becomes a space, the ends are stripped."""
        values = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))
        pointer = values.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        flag = 1 if skip_special_tokens else 0
        return self._text(lambda buffer, capacity, length: _lib.lib.nodus_tokenizer_decode(
            self.handle, pointer, len(values), flag, buffer, capacity, length))

    def batch_decode(self, sequences, skip_special_tokens=False):
        """``decode`` of each row."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in sequences]

    @property
    def bos_token(self):
        return self.convert_ids_to_tokens(self.bos_token_id)

    @property
    def eos_token(self):
        return self.convert_ids_to_tokens(self.eos_token_id)

    @property
    def pad_token(self):
        return self.convert_ids_to_tokens(self.pad_token_id)

    # -- encoding -------------------------------------------------------------

    def _encode(self, text, flags):
        data = _utf8(text)
        # Usually one call: room for n + 2 ids for n bytes (or exactly the padded length); lower-casing
        # can lengthen the text ("Ⱥ" is 2 bytes, "ⱥ" 3), and then the count reported by the failed call
        # sizes the second.
        capacity = self._max_length if flags & PAD_TO_MAX_LENGTH else len(data) + 2
        count = ctypes.c_size_t()
        for _ in range(2):
            ids = np.empty(capacity, np.int64)
            status = _lib.lib.nodus_tokenizer_encode(self.handle, data, len(data), flags, ids.ctypes.data, capacity,
                                                     ctypes.byref(count))
            if status == 0 or count.value <= capacity:
                break
            capacity = count.value
        _lib.check(status)
        return ids[: count.value]

    def encode(self, text, add_special_tokens=True, padding=False, truncation=False, max_length=None):
        """A list of ids, as transformers' ``encode``: ``[BOS] ... [EOS]``, untruncated by default."""
        return self._ids(text, add_special_tokens, padding, truncation, max_length).tolist()

    def _ids(self, text, add_special_tokens, padding, truncation, max_length):
        flags = 0 if add_special_tokens else NO_SPECIAL_TOKENS
        length = self._max_length if max_length is None else int(max_length)
        specials = 2 if add_special_tokens else 0
        if length < specials:
            raise ValueError(f"nodus: max_length {length} leaves no room for BOS and EOS")
        if padding == "max_length" and truncation and length == self._max_length:
            return self._encode(text, flags | PAD_TO_MAX_LENGTH)  # stops reading at the limit
        ids = self._encode(text, flags)
        if truncation and len(ids) > length:
            ids = np.concatenate([ids[: length - 1], ids[-1:]]) if add_special_tokens else ids[:length]
        if padding == "max_length" and len(ids) < length:
            ids = np.concatenate([ids, np.full(length - len(ids), self.pad_token_id, np.int64)])
        return ids

    def __call__(self, text, padding="max_length", truncation=True, max_length=None, add_special_tokens=True,
                 return_tensors="np"):
        """Token ids as np.int64 ``[N, L]``: one row per text (a str is one row).

        Defaults are the Stable Diffusion pipelines' ``padding="max_length", truncation=True,
        max_length=model_max_length``; ``return_tensors`` may be "np" or None (numpy either way: the
        array itself, not transformers' BatchEncoding). ``padding="longest"`` (or True) pads to the longest row;
        ``padding=False`` returns a list of 1-D arrays (rows of different lengths).
        """
        if return_tensors not in ("np", None):
            raise ValueError(f"nodus: Tokenizer returns numpy arrays; return_tensors={return_tensors!r} is not supported")
        texts = [text] if isinstance(text, (str, bytes, bytearray)) else list(text)
        length = self._max_length
        if (padding == "max_length" and truncation and add_special_tokens
                and (max_length is None or max_length == length)):
            # The pipelines' call: each row written in place by one C call.
            result = np.empty((len(texts), length), np.int64)
            address, stride = result.ctypes.data, length * 8
            count = ctypes.c_size_t()
            encode, handle = _lib.lib.nodus_tokenizer_encode, self.handle
            for index, item in enumerate(texts):
                data = _utf8(item)
                _lib.check(encode(handle, data, len(data), PAD_TO_MAX_LENGTH, address + index * stride, length,
                                  ctypes.byref(count)))
            return result
        if padding not in ("max_length", "longest", True, False, "do_not_pad"):
            raise ValueError(f"nodus: padding must be 'max_length', 'longest', True or False, not {padding!r}")
        rows = [self._ids(item, add_special_tokens, "max_length" if padding == "max_length" else False,
                          truncation, max_length) for item in texts]
        if padding in (False, "do_not_pad"):
            return rows
        width = max((len(row) for row in rows), default=0)
        result = np.full((len(rows), width), self.pad_token_id, np.int64)
        for index, row in enumerate(rows):
            result[index, : len(row)] = row
        return result

    def encode_prompt(self, text, weighted=True, comma_backtrack=20, max_chunks=None):
        """Long prompts and prompt weighting (opt-in), as AUTOMATIC1111's webui does them.

        Returns ``(ids, weights)``: np.int64 and np.float32 ``[chunks, model_max_length]``. The
        prompt's tokens fill chunks of 75, each ``[BOS] tokens [EOS] pad...``; with ``weighted``,
        ``(text)`` multiplies the weight of ``text`` by 1.1, ``[text]`` divides it by 1.1,
        ``(text:1.3)`` multiplies by 1.3, ``\\(`` is a literal bracket and ``BREAK`` starts a new
        chunk. ``comma_backtrack`` (A1111's default 20, 0 for off) moves the words after a chunk's
        last comma to the next chunk when that comma is at most that many tokens back.
        ``max_chunks`` keeps the first chunks only. The exact rule is in the README.
        """
        data = _utf8(text)
        params = _lib.PromptParams()
        _lib.lib.nodus_prompt_params_init(ctypes.byref(params))
        params.parse_weights = 1 if weighted else 0
        params.comma_backtrack = int(comma_backtrack)
        params.max_chunks = 0 if max_chunks is None else int(max_chunks)
        if max_chunks is not None and params.max_chunks < 1:
            raise ValueError(f"nodus: max_chunks must be at least 1, not {max_chunks!r}")
        count = ctypes.c_size_t()
        _lib.check(_lib.lib.nodus_tokenizer_encode_prompt(self.handle, data, len(data), ctypes.byref(params), None,
                                                          None, 0, ctypes.byref(count)))
        ids = np.empty(count.value, np.int64)
        weights = np.empty(count.value, np.float32)
        _lib.check(_lib.lib.nodus_tokenizer_encode_prompt(
            self.handle, data, len(data), ctypes.byref(params), ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)),
            weights.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), count.value, ctypes.byref(count)))
        length = self.model_max_length
        return ids.reshape(-1, length), weights.reshape(-1, length)
