"""The JSONL manifest of a batch: one job per line."""

import json
import os
import re

# The keywords each workflow takes from a row; paths are resolved against the manifest's folder.
WORKFLOW_FIELDS = {
    "insert_nodule": {"model", "image", "center", "diameter", "mask", "adapters", "subtlety", "seed", "steps",
                      "scheduler", "guidance_scale"},
    "follow_up": {"unet", "vae", "baseline", "context", "samples", "seed", "steps", "guidance_scale", "scheduler",
                  "slice_index"},
}
PATH_FIELDS = {"model", "image", "mask", "unet", "vae", "baseline", "context"}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def read_manifest(path):
    """The rows of a JSONL manifest as dicts, with relative paths made absolute
    against the manifest's folder. Raises ValueError naming the line of a row that is
    not a JSON object, lacks an id or a known workflow, or repeats an id."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    rows, seen = [], set()
    with open(path) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: a row must be a JSON object")
            identifier = str(row.get("id", ""))
            if not _ID.match(identifier):
                raise ValueError(f"{path}:{number}: the id {row.get('id')!r} must be 1-128 letters, digits, '.', '_' "
                                 "or '-' (it names the row's output folder)")
            if identifier in seen:
                raise ValueError(f"{path}:{number}: the id '{identifier}' is used twice")
            if row.get("workflow") not in WORKFLOW_FIELDS:
                raise ValueError(f"{path}:{number}: workflow must be one of {sorted(WORKFLOW_FIELDS)}, "
                                 f"got {row.get('workflow')!r}")
            seen.add(identifier)
            for key in PATH_FIELDS & set(row):
                if isinstance(row[key], str) and not os.path.isabs(row[key]):
                    row[key] = os.path.normpath(os.path.join(folder, row[key]))
            rows.append(row)
    return rows
