"""Manifests for the batch tests: nodule insertions on the demo model and a follow-up
on the UNet fixture, with one row whose image is missing."""

import json
import os

import numpy as np

from nodus import medical

from conftest import REPOSITORY, fixture_path
from radiographs import synthetic_radiograph

DEMO = os.path.join(REPOSITORY, "models", "nodule-demo")


def write_manifest(folder, nodules=4, steps=10, follow_up=True, missing=True):
    """Writes cxr.png, context.npy and jobs.jsonl in `folder`; returns the manifest's path."""
    medical.write_png(os.path.join(folder, "cxr.png"), samples=synthetic_radiograph(480, 480, seed=0), bits=16)
    np.save(os.path.join(folder, "context.npy"), np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32))
    rows = [{"id": f"nodule-{index}", "workflow": "insert_nodule", "model": DEMO, "image": "cxr.png",
             "center": [140 + 4 * index, 240], "diameter": 30, "adapters": {"calcified": 0.5 + 0.1 * index},
             "seed": index, "steps": steps} for index in range(nodules)]
    if follow_up:
        rows.append({"id": "follow-up", "workflow": "follow_up", "unet": fixture_path("unet-tiny-cond"),
                     "vae": fixture_path("vae-tiny"), "baseline": "cxr.png", "context": "context.npy", "samples": 3,
                     "seed": 0, "steps": 5})
    if missing:
        rows.append({"id": "missing", "workflow": "insert_nodule", "model": DEMO, "image": "nowhere.png",
                     "center": [10, 10], "diameter": 5, "seed": 0, "steps": 5})
    path = os.path.join(folder, "jobs.jsonl")
    with open(path, "w") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def results(out_dir):
    with open(os.path.join(out_dir, "results.jsonl")) as stream:
        return [json.loads(line) for line in stream]


def pixels(out_dir, identifier):
    """Every output file of a row but its sidecar, as bytes by file name."""
    folder = os.path.join(out_dir, identifier)
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
            if not name.endswith(".json")}
