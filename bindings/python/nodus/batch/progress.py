"""A progress line with an ETA on stderr: redrawn in place on a terminal, every 5% otherwise."""

import sys
import time


def _duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    def __init__(self, total, label="batch", stream=None, enabled=True):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.started = time.perf_counter()
        self.interactive = self.stream.isatty()
        self.last_shown = -1

    def update(self, failed):
        self.done += 1
        self.failed += failed
        if not self.enabled or self.total == 0:
            return
        step = max(self.total // 20, 1)
        if not self.interactive and self.done % step and self.done != self.total:
            return
        elapsed = time.perf_counter() - self.started
        remaining = elapsed / self.done * (self.total - self.done)
        text = (f"{self.label}: {self.done}/{self.total} rows ({100 * self.done // self.total}%), "
                f"{self.failed} failed, {_duration(elapsed)}" + (f", ETA {_duration(remaining)}" if remaining else ""))
        self.stream.write(("\r" + text + " " * 8) if self.interactive else text + "\n")
        if self.interactive and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()
