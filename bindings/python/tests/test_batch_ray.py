"""nodus.batch on Ray: a local cluster (ray.init with 2 CPUs) in every test run, and an
opt-in test (NODUS_RAY_CLUSTER_TEST=1) with a head and a worker node started as
separate processes on loopback, the worker killed mid-run."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine tests need ray (make test installs it)")
pytest.importorskip("pydicom", reason="the batch tests need nodus[medical]")

import nodus  # noqa: E402

from batch_samples import pixels, results, write_manifest  # noqa: E402


@pytest.fixture
def local_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(os.path.dirname(nodus.__file__))}})
    yield
    ray.shutdown()


def test_ray_engine_gives_the_local_engine_pixels(tmp_path, local_cluster):
    manifest = write_manifest(tmp_path, nodules=3, follow_up=True, missing=True)
    summary = nodus.batch.run(manifest, tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert summary == {"done": 4, "failed": 1, "skipped": 0}
    lines = results(tmp_path / "ray")
    assert sorted(line["id"] for line in lines) == ["follow-up", "missing", "nodule-0", "nodule-1", "nodule-2"]
    nodus.batch.run(manifest, tmp_path / "local", engine="local", workers=1, progress=False)
    for identifier in ("nodule-0", "nodule-1", "nodule-2", "follow-up"):
        assert pixels(tmp_path / "ray", identifier) == pixels(tmp_path / "local", identifier), identifier
    assert nodus.batch.run(manifest, tmp_path / "ray", engine="ray", workers=2, progress=False) == \
        {"done": 0, "failed": 1, "skipped": 4}


def _ray_command(*arguments):
    return [os.path.join(os.path.dirname(sys.executable), "ray"), *arguments]


@pytest.mark.skipif(os.environ.get("NODUS_RAY_CLUSTER_TEST") != "1",
                    reason="opt-in: NODUS_RAY_CLUSTER_TEST=1 starts a 2-node Ray cluster on loopback")
def test_two_node_cluster_survives_a_killed_worker_node(tmp_path):
    """Head (1 CPU) and worker node (1 CPU) as separate processes; the worker node is
    killed once some rows are done; every row still completes, each recorded once."""
    with socket.socket() as probe:  # a free port on loopback
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # A throwaway cluster on loopback: no token authentication (Ray 2.60 turns it on by default).
    environment = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(nodus.__file__)), RAY_AUTH_MODE="disabled")
    session_folder = tempfile.mkdtemp(prefix="nodus-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    # Both nodes run with --block in sessions of their own, so killing their process groups
    # ends exactly this cluster (never `ray stop`, which ends every Ray on the machine).
    head = subprocess.Popen(_ray_command("start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                                         "--num-cpus=1", "--include-dashboard=false", "--disable-usage-stats",
                                         f"--temp-dir={session_folder}", "--block"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                            start_new_session=True)
    deadline = time.time() + 120
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.time() > deadline or head.poll() is not None:
            os.killpg(head.pid, signal.SIGKILL)
            pytest.fail(f"the Ray head did not start on port {port}")
        time.sleep(0.5)
    worker = subprocess.Popen(_ray_command("start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
                                           "--num-cpus=1", "--block", "--disable-usage-stats"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
                              start_new_session=True)
    try:
        manifest = write_manifest(tmp_path, nodules=16, steps=40, follow_up=False, missing=False)
        out = tmp_path / "out"
        driver = subprocess.Popen([sys.executable, "-m", "nodus.batch", manifest, "--out", out, "--ray",
                                   f"127.0.0.1:{port}", "--workers", "2", "--quiet"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        deadline = time.time() + 300
        while time.time() < deadline and (not (out / "results.jsonl").exists() or len(results(out)) < 4):
            time.sleep(0.2)
        os.killpg(worker.pid, signal.SIGKILL)  # the worker node's raylet and its actor processes
        stdout, stderr = driver.communicate(timeout=300)
        assert driver.returncode == 0, stderr
        lines = results(out)
        identifiers = [line["id"] for line in lines]
        assert sorted(identifiers) == sorted(f"nodule-{index}" for index in range(16)), identifiers
        assert all(line["status"] == "ok" for line in lines)
        assert not [name for folder, _, names in os.walk(out) for name in names if ".partial-" in name]
    finally:
        for node in (worker, head):
            try:
                os.killpg(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(session_folder, ignore_errors=True)
