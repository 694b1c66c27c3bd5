"""The Ray engine: one Ray task per row, at most `workers` in flight. Ray keeps its
worker processes between tasks, and each process keeps a RowRunner with its models
loaded, so a model loads once per worker process. Tasks fit better than an actor pool
here: when a node dies, Ray retries its tasks on any free CPU, while a restarted
actor needs a CPU of its own and waits forever when the surviving actors hold them
all. A retried row rewrites the same files atomically (same pixels), and only the
driver writes result lines, one per row: every row is recorded exactly once."""

import os
import socket

from .rows import RowRunner


def _check_reachable(address, timeout=5.0):
    """A clear error for an address no Ray head answers at (ray.init would wait long)."""
    host, _, port = address.rpartition(":")
    if address.startswith("ray://"):
        host, _, port = address[len("ray://"):].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as error:
        raise ConnectionError(f"no Ray cluster answers at '{address}' ({error}); start one with "
                              "`ray start --head` or pass the head's HOST:PORT") from None


def connect(address, workers):
    """ray.init for `address`: None starts a local cluster of `workers` CPUs, "auto"
    joins the cluster this machine belongs to, HOST:PORT (or ray://HOST:PORT) a head."""
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray engine needs ray: pip install 'ray==2.60.0'") from None
    if ray.is_initialized():
        return ray
    environment = {"env_vars": {key: os.environ[key] for key in ("NODUS_LIBRARY", "PYTHONPATH") if key in os.environ}}
    if address not in (None, "auto"):
        _check_reachable(address)
    try:
        if address is None:
            # "local": always a new cluster of our own, never one another program started here
            ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     runtime_env=environment)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=environment)
    except ConnectionError as error:
        raise ConnectionError(f"cannot join the Ray cluster at '{address}': {error}") from None
    return ray


_runners = {}  # in each Ray worker process: the RowRunner of each output folder


def _run_row(row, out_dir):
    if out_dir not in _runners:
        _runners[out_dir] = RowRunner(out_dir, threads=1)
    return _runners[out_dir].run(row)


def run_ray(rows, out_dir, workers, address, on_result, retries=3):
    """Runs `rows` as Ray tasks of one CPU and one nodus thread, at most `workers` at a
    time (default: the cluster's CPUs). Calls ``on_result(result)`` on the driver as rows
    finish; a row whose task is lost more than `retries` times is recorded as failed."""
    ray = connect(address, workers)
    in_flight = workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_run_row)
    folder = os.path.abspath(out_dir)
    queue = list(rows)
    pending = {}
    while queue or pending:
        while queue and len(pending) < in_flight:
            row = queue.pop(0)
            pending[task.remote(row, folder)] = row
        ready, _ = ray.wait(list(pending), num_returns=1)
        row = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as error:  # the task's worker or node was lost more than `retries` times
            result = {"id": row["id"], "status": "failed",
                      "error": f"lost on the Ray cluster after {retries} retries: {type(error).__name__}: {error}"}
        on_result(result)
