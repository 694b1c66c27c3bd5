"""A result of several files (image, mask, sidecar) that appears whole or not at all."""

import os


class OutputFiles:
    """Collects the files a workflow writes (each atomically). When the block raises,
    the files already written are removed, so a failed run leaves nothing behind:

        with OutputFiles() as outputs:
            write_png(outputs.add(path), ...)
    """

    def __init__(self):
        self.paths = []

    def add(self, path):
        path = os.fspath(path)
        self.paths.append(path)
        return path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if error is not None:
            for path in self.paths:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return False
