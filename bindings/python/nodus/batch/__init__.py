"""Synthetic-dataset generation: a JSONL manifest of workflow jobs run on local
worker processes or a Ray cluster, idempotent and resumable.

    summary = nodus.batch.run("jobs.jsonl", out_dir="out/", engine="local", workers=2)
    summary = nodus.batch.run("jobs.jsonl", out_dir="out/", engine="ray", ray_address="auto")

One JSON object per manifest line: "id" (names the row's output folder), "workflow"
("insert_nodule" or "follow_up") and that workflow's arguments; relative paths are
taken from the manifest's folder. A row's files go to OUT/<id>/, its result line to
OUT/results.jsonl (status, outputs, the sidecar's provenance, or the error).
"""

import os

from .local_engine import run_local
from .manifest import read_manifest
from .progress import Progress
from .ray_engine import run_ray
from .results_log import ResultsLog


def run(manifest, out_dir, engine="local", workers=None, ray_address=None, progress=True, threads=None):
    """Runs every manifest row not yet done; returns {"done", "failed", "skipped"}.

    Args:
        engine: "local" (worker processes) or "ray".
        workers: local processes (default 1), or Ray actors (default: the cluster's CPUs;
            for a local Ray cluster, 2).
        ray_address: None (start a local Ray cluster), "auto" or the head's HOST:PORT.
        progress: a progress line with an ETA on stderr.
        threads: nodus threads per local worker (default: the cores divided among the
            workers); Ray tasks take one CPU and one thread each.
    A row is done when its latest result line says "ok" and its outputs exist; those
    are skipped. A failing row records its error and the others go on. Raises
    ValueError for a bad manifest, OSError when results.jsonl cannot be written (a
    full disk), ConnectionError when no Ray cluster answers.
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    rows = read_manifest(manifest)
    os.makedirs(out_dir, exist_ok=True)
    log = ResultsLog(out_dir)
    pending = [row for row in rows if not log.is_done(row["id"])]
    summary = {"done": 0, "failed": 0, "skipped": len(rows) - len(pending)}
    bar = Progress(len(pending), label=f"batch ({engine})", enabled=progress)

    def record(result):
        log.append(result)
        failed = result["status"] != "ok"
        summary["failed" if failed else "done"] += 1
        bar.update(failed)

    if pending:
        if engine == "local":
            run_local(pending, out_dir, workers or 1, record, threads)
        else:
            run_ray(pending, out_dir, workers or (2 if ray_address is None else None), ray_address, record)
    return summary


__all__ = ["read_manifest", "run"]
