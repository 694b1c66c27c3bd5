"""What a sidecar records to reproduce a result: file digests, the Nodus version."""

import hashlib
import json
import os

from ..medical._atomic import write_atomically


def file_sha256(path):
    """The SHA-256 (hex) of a file, or of a folder's files: the SHA-256 of the lines
    "<sha256>  <relative path>" of its files in sorted order (what `sha256sum` prints
    for each; a PEFT adapter folder, say)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.relpath(os.path.join(folder, name), path)
                       for folder, _, names in os.walk(path) for name in names)
        listing = "".join(f"{file_sha256(os.path.join(path, name))}  {name}\n" for name in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path, content):
    """Writes `content` as indented JSON, atomically."""
    text = json.dumps(content, indent=2, sort_keys=True) + "\n"

    def write(temporary):
        with open(temporary, "w") as stream:
            stream.write(text)

    write_atomically(path, write, suffix=".json")
