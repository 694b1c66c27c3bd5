"""nodus.batch on local worker processes: results, resuming, failures, a full disk, the CLI."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("pydicom", reason="the batch tests need nodus[medical]")

import nodus  # noqa: E402

from batch_samples import pixels, results, write_manifest  # noqa: E402
from conftest import REPOSITORY  # noqa: E402
from medical_samples import run_on_tiny_filesystem  # noqa: E402

CLI = os.path.join(REPOSITORY, ".build", "release", "nodus")


def test_local_batch_records_every_row_once_and_resumes(tmp_path):
    manifest = write_manifest(tmp_path)
    out = tmp_path / "out"
    summary = nodus.batch.run(manifest, out, workers=2, progress=False)
    assert summary == {"done": 5, "failed": 1, "skipped": 0}
    lines = results(out)
    assert sorted(line["id"] for line in lines) == sorted(["nodule-0", "nodule-1", "nodule-2", "nodule-3",
                                                           "follow-up", "missing"])
    failed = next(line for line in lines if line["id"] == "missing")
    assert failed["status"] == "failed" and "nowhere.png" in failed["error"]
    ok = next(line for line in lines if line["id"] == "nodule-2")
    assert ok["provenance"]["seed"] == 2 and ok["provenance"]["adapters"]["calcified"]["weight"] == 0.7
    assert all(os.path.exists(out / path) for line in lines for path in line.get("outputs", []))
    assert not [name for folder, _, names in os.walk(out) for name in names if ".partial-" in name]

    # A rerun skips what is done and retries the failure; a lost output makes its row run again.
    assert nodus.batch.run(manifest, out, workers=2, progress=False) == {"done": 0, "failed": 1, "skipped": 5}
    os.unlink(out / "nodule-1" / "nodule-1.png")
    with open(out / "results.jsonl", "a") as stream:
        stream.write('{"id": "nodule-3", "sta')  # a line cut short by a crash
    assert nodus.batch.run(manifest, out, workers=1, progress=False) == {"done": 1, "failed": 1, "skipped": 4}
    assert all(line["id"] for line in results(out))


def test_same_row_same_pixels_for_any_worker_count(tmp_path):
    manifest = write_manifest(tmp_path, nodules=3, follow_up=True, missing=False)
    nodus.batch.run(manifest, tmp_path / "one", workers=1, progress=False)
    nodus.batch.run(manifest, tmp_path / "two", workers=2, progress=False)
    for identifier in ("nodule-0", "nodule-1", "nodule-2", "follow-up"):
        assert pixels(tmp_path / "one", identifier) == pixels(tmp_path / "two", identifier), identifier


def test_bad_manifest_and_options(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"id": "a", "workflow": "insert_nodule"}\n{"id": "a", "workflow": "insert_nodule"}\n')
    with pytest.raises(ValueError, match="jobs.jsonl:2: the id 'a' is used twice"):
        nodus.batch.run(path, tmp_path / "out")
    path.write_text('{"id": "a/b", "workflow": "insert_nodule"}\n')
    with pytest.raises(ValueError, match="jobs.jsonl:1: the id 'a/b'"):
        nodus.batch.run(path, tmp_path / "out")
    path.write_text('{"id": "a", "workflow": "paint"}\n')
    with pytest.raises(ValueError, match="workflow must be one of"):
        nodus.batch.run(path, tmp_path / "out")
    with pytest.raises(ValueError, match="engine must be"):
        nodus.batch.run(path, tmp_path / "out", engine="spark")


def test_unknown_ray_address_is_a_clear_error(tmp_path):
    manifest = write_manifest(tmp_path, nodules=1, follow_up=False, missing=False)
    with pytest.raises(ConnectionError, match="no Ray cluster answers at '127.0.0.1:1'"):
        nodus.batch.run(manifest, tmp_path / "out", engine="ray", ray_address="127.0.0.1:1", progress=False)


def test_full_disk_fails_rows_with_the_reason_and_leaves_no_partial_file(tmp_path):
    manifest = write_manifest(tmp_path, nodules=2, follow_up=False, missing=False)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    script = (f"cd '{os.path.join(REPOSITORY, 'bindings', 'python')}' && '{sys.executable}' -m nodus.batch "
              f"'{manifest}' --out \"$TINY/out\" --quiet; echo \"exit $?\"; ls -R \"$TINY\"; "
              "cat \"$TINY/out/results.jsonl\"")
    result = run_on_tiny_filesystem(tiny, script, size="96k")
    if result is None:
        pytest.skip("no private mount namespace here (needs root and unshare)")
    assert "exit 1" in result.stdout, result.stdout + result.stderr
    assert ".partial-" not in result.stdout
    assert "No space left on device" in result.stdout + result.stderr


def test_cli_batch_runs_the_python_engine(tmp_path):
    manifest = write_manifest(tmp_path, nodules=2, follow_up=False, missing=True)
    environment = dict(os.environ, NODUS_PYTHON=sys.executable)
    result = subprocess.run([CLI, "batch", manifest, "--out", tmp_path / "out", "--workers", "2"], capture_output=True,
                            text=True, timeout=300, env=environment)
    assert result.returncode == 1, result.stderr  # one row failed
    assert json.loads(result.stdout) == {"done": 2, "failed": 1, "skipped": 0}
    assert "batch (local): 3/3 rows" in result.stderr
    refused = subprocess.run([CLI, "batch", manifest, "--out", tmp_path / "other", "--ray", "127.0.0.1:1"],
                             capture_output=True, text=True, timeout=120, env=environment)
    assert refused.returncode == 1 and "no Ray cluster answers at '127.0.0.1:1'" in refused.stderr
