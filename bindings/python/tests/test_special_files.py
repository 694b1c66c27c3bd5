"""Files that are not regular files: a FIFO in place of config.json, scheduler_config.json or a LoRA file
is refused at once (it used to block in open(2) forever), a directory too. Each case runs in a fresh
interpreter with a timeout, so a regression fails the test instead of hanging the suite."""

import os
import subprocess
import sys

import pytest

from conftest import HERE, fixture_path

CASES = {
    "config.json": "import nodus; nodus.load({folder!r})",
    "scheduler_config.json": "import nodus; nodus.Scheduler.from_config({path!r})",
    "lora.safetensors": "import nodus; nodus.load({dit!r}).load_lora_weights({path!r}, adapter_name='A')",
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_special_file_is_refused_at_once(tmp_path, name, kind):
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / name
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    code = CASES[name].format(folder=str(folder), path=str(path), dit=fixture_path("dit-tiny"))
    script = f"import sys; sys.path.insert(0, {os.path.dirname(HERE)!r})\ntry:\n    {code}\nexcept Exception as e:\n    print(type(e).__name__, e)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Error" in done.stdout and name in done.stdout, done.stdout
