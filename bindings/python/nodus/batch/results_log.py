"""``results.jsonl``: one line per finished or failed row, written by one process."""

import json
import os


class ResultsLog:
    """The results of a batch in `out_dir`/results.jsonl. A row is done when its
    latest line says "ok" and every output it lists exists. Lines are appended with
    one write and flushed to disk; a line cut short by a crash is dropped on the
    next open, so the file always holds whole lines."""

    def __init__(self, out_dir):
        self.out_dir = os.fspath(out_dir)
        self.path = os.path.join(self.out_dir, "results.jsonl")
        self.latest = {}
        if os.path.exists(self.path):
            self._read()

    def _read(self):
        with open(self.path, "rb") as stream:
            content = stream.read()
        whole = content[: content.rfind(b"\n") + 1]
        if len(whole) != len(content):
            with open(self.path, "rb+") as stream:  # a line cut short by a crash
                stream.truncate(len(whole))
        for line in whole.decode().splitlines():
            if line.strip():
                result = json.loads(line)
                self.latest[result["id"]] = result

    def is_done(self, identifier):
        result = self.latest.get(identifier)
        if result is None or result.get("status") != "ok":
            return False
        return all(os.path.exists(os.path.join(self.out_dir, path)) for path in result.get("outputs", []))

    def append(self, result):
        """Appends one result line. Raises OSError naming the file (a full disk)."""
        line = (json.dumps(result, sort_keys=True) + "\n").encode()
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.write(descriptor, line) != len(line):
                    raise OSError(28, "No space left on device")
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            raise OSError(error.errno, f"cannot append to '{self.path}': {error.strerror}") from None
        self.latest[result["id"]] = result
