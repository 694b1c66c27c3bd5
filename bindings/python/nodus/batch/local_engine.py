"""Local worker processes, each holding its models loaded."""

import multiprocessing
import os

from .rows import RowRunner

_runner = None  # the worker process's RowRunner


def _start_worker(out_dir, threads):
    global _runner
    _runner = RowRunner(out_dir, threads=threads)


def _run_row(row):
    return _runner.run(row)


def run_local(rows, out_dir, workers, on_result, threads=None):
    """Runs `rows` on `workers` processes (spawned, so no process inherits the parent's
    threads); each uses `threads` nodus threads (default cores / workers). Calls ``on_result(result)`` in
    this process as rows finish, in any order."""
    threads = threads or max((os.cpu_count() or 1) // workers, 1)
    if workers == 1:
        runner = RowRunner(out_dir, threads=threads)
        for row in rows:
            on_result(runner.run(row))
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(out_dir, threads)) as pool:
        for result in pool.imap_unordered(_run_row, rows, chunksize=1):
            on_result(result)
