"""Mutation fuzzing of the ONNX importer: nodus must answer every mutated export with a model
or a NodusError, never a crash.

Each trial takes one of the committed tiny exports (Tests/Fixtures/onnx), changes one to three
attributes (ints to huge, negative or zero values; lists to other lengths; floats to NaN, inf,
1e30) or small int64 initializers (shapes, axes, pads), saves it, and loads and runs it in a
fresh interpreter (a crash cannot take the fuzzer down). Crashing files are kept in --out.

    .venv-bench/bin/python tests/fuzz/onnx_attributes.py --seed 1 --trials 200

Needs onnx (in .venv-bench, `make bench` makes it) and the test venv .venv with the binding.
"""

import argparse
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[2]
SOURCES = ["dit-tiny-dynamo18", "unet-micro-torchscript17", "vae-micro-decoder-dynamo18",
           "vae-micro-encoder-torchscript14", "models/clip-text-tiny-dynamo18", "models/clip-text-tiny-torchscript17",
           "models/monai-vae3d-tiny-decoder-dynamo18"]
RUNNER = """
import sys
sys.path.insert(0, sys.argv[3])
import nodus
from safetensors.numpy import load_file
try:
    model = nodus.load(sys.argv[1])
    io = load_file(sys.argv[2])
    model.forward(**{name: io[name] for name, _, _ in model.inputs})
except (nodus.NodusError, ValueError):
    pass
"""


def mutate(model, rng):
    for _ in range(rng.randint(1, 3)):
        node = rng.choice(list(model.graph.node))
        if node.attribute and rng.random() < 0.7:
            attribute = rng.choice(node.attribute)
            if attribute.type == onnx.AttributeProto.INT:
                attribute.i = rng.choice([-(1 << 40), -5, -1, 0, 1, 2, 7, 1 << 40])
            elif attribute.type == onnx.AttributeProto.INTS:
                count = rng.choice([0, 1, len(attribute.ints), len(attribute.ints) + 2])
                del attribute.ints[:]
                attribute.ints.extend(rng.choice([-3, -1, 0, 1, 2, 5, 1 << 33]) for _ in range(count))
            elif attribute.type == onnx.AttributeProto.FLOAT:
                attribute.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
            continue
        small = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT64 and np.prod(t.dims) <= 8]
        if small:
            tensor = rng.choice(small)
            values = numpy_helper.to_array(tensor).copy()
            if values.size:
                values.flat[rng.randrange(values.size)] = rng.choice([-(1 << 62), -7, -1, 0, 3, 1 << 31, 1 << 62])
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/nodus-onnx-fuzz"), help="where crashing files are kept")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    python = REPO / ".venv" / "bin" / "python"
    crashes = 0
    for trial in range(args.trials):
        name = rng.choice(SOURCES)
        model = onnx.load(str(REPO / "Tests/Fixtures/onnx" / f"{name}.onnx"))
        mutate(model, rng)
        path = args.out / f"seed{args.seed}-{trial}-{name.split('/')[-1]}.onnx"
        onnx.save(model, str(path))
        done = subprocess.run([str(python), "-c", RUNNER, str(path), str(REPO / "Tests/Fixtures/onnx" / f"{name}-io.safetensors"),
                               str(REPO / "bindings/python")], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            crashes += 1
            print(f"crash: trial {trial} ({name}), exit {done.returncode}, kept {path}")
        else:
            path.unlink()
    print(f"{args.trials - crashes} passed, {crashes} failed")
    sys.exit(1 if crashes else 0)


if __name__ == "__main__":
    main()
