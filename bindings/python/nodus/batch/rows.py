"""Running one manifest row in a worker that keeps its models loaded."""

import json
import os
import time

from ..workflows import NoduleModel, follow_up, insert_nodule
from .manifest import WORKFLOW_FIELDS


class RowRunner:
    """Runs rows, loading each model once (a worker process or a Ray actor holds one).
    `threads`: the nodus worker threads of each model (None: all cores)."""

    def __init__(self, out_dir, threads=None):
        self.out_dir = os.fspath(out_dir)
        self.threads = threads
        self.models = {}

    def _model(self, key, make):
        if key not in self.models:
            self.models[key] = make()
        return self.models[key]

    def run(self, row):
        """The row's result line: {"id", "status": "ok", "outputs", "provenance", "seconds"}
        or {"id", "status": "failed", "error"}. Never raises for a bad row."""
        from .. import load

        identifier = row["id"]
        started = time.perf_counter()
        folder = os.path.join(self.out_dir, identifier)
        try:
            workflow = row["workflow"]
            unknown = set(row) - WORKFLOW_FIELDS[workflow] - {"id", "workflow"}
            if unknown:
                raise ValueError(f"unknown field(s) {sorted(unknown)} for {workflow}")
            arguments = {key: value for key, value in row.items() if key not in ("id", "workflow")}
            if workflow == "insert_nodule":
                model_path = arguments.pop("model")
                scheduler = arguments.pop("scheduler", None)
                model = self._model(("nodule", model_path, json.dumps(scheduler)),
                                    lambda: NoduleModel(model_path, threads=self.threads, scheduler=scheduler))
                paths = insert_nodule(model, output_dir=folder, name=identifier, **arguments)
            else:
                unet_path, vae_path = arguments.pop("unet"), arguments.pop("vae")
                unet = self._model(("model", unet_path), lambda: load(unet_path, threads=self.threads))
                vae = self._model(("model", vae_path), lambda: load(vae_path, threads=self.threads))
                paths = follow_up(unet, vae, output_dir=folder, name=identifier, **arguments)
            files = [path for value in paths.values() for path in (value if isinstance(value, list) else [value])]
            with open(paths["sidecar"]) as stream:
                provenance = json.load(stream)
            return {"id": identifier, "status": "ok",
                    "outputs": sorted(os.path.relpath(path, self.out_dir) for path in files),
                    "provenance": provenance, "seconds": round(time.perf_counter() - started, 4)}
        except Exception as error:  # a failing row records its reason; the batch goes on
            return {"id": identifier, "status": "failed", "error": f"{type(error).__name__}: {error}",
                    "seconds": round(time.perf_counter() - started, 4)}
