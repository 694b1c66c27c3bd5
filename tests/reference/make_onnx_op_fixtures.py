#!/usr/bin/env python
"""Generate Tests/Fixtures/onnx/ops/: one tiny ONNX graph per case of the ops added after the model
families (CumSum, ScatterND), with onnxruntime's outputs.

    .venv-bench/bin/python tests/reference/make_onnx_op_fixtures.py

Each case writes <case>.onnx (opset 18) and <case>-io.safetensors: the inputs by graph input name and
onnxruntime's (CPU EP) outputs under `ort.<output name>`; the library versions are in its metadata.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

OUT = Path("Tests/Fixtures/onnx/ops")
TYPES = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64}


def graph_case(name, nodes, inputs, initializers=()):
    """inputs: name -> array (graph inputs); the output is 'y'."""
    values = [helper.make_tensor_value_info(key, TYPES[value.dtype.type], list(value.shape)) for key, value in inputs.items()]
    graph = helper.make_graph(nodes, name, values, [], initializer=list(initializers))
    inferred = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    graph.output.extend([info for info in inferred.graph.value_info if info.name == "y"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="make_onnx_op_fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = OUT / f"{name}.onnx"
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(["y"], inputs)
    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    save_file({**inputs, "ort.y": np.ascontiguousarray(result)}, str(OUT / f"{name}-io.safetensors"),
              metadata={"generator": "tests/reference/make_onnx_op_fixtures.py", "versions": json.dumps(versions)})
    print(f"  {name}: y {result.dtype} {result.shape}")


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    for exclusive in (0, 1):
        for reverse in (0, 1):
            for axis in (1, -1):
                graph_case(f"cumsum-axis{axis}-exclusive{exclusive}-reverse{reverse}",
                           [helper.make_node("CumSum", ["x", "axis"], ["y"], exclusive=exclusive, reverse=reverse)],
                           {"x": x}, [numpy_helper.from_array(np.array(axis, np.int64), "axis")])
    # Position ids as transformers exports them: cumsum over a mask, int64.
    graph_case("cumsum-int64-positions", [helper.make_node("CumSum", ["mask", "axis"], ["y"])],
               {"mask": (rng.random((2, 7)) > 0.3).astype(np.int64)},
               [numpy_helper.from_array(np.array(1, np.int64), "axis")])
    data = rng.standard_normal((4, 3, 5)).astype(np.float32)
    for reduction in ("none", "add", "mul", "max", "min"):
        # Slices [3, 5] at rows 2 and 0 (and 2 again for the reductions), updates [k, 3, 5].
        rows = np.array([[2], [0], [2]] if reduction != "none" else [[2], [0]], np.int64)
        updates = rng.standard_normal((len(rows), 3, 5)).astype(np.float32)
        graph_case(f"scatternd-{reduction}",
                   [helper.make_node("ScatterND", ["data", "indices", "updates"], ["y"],
                                     **({} if reduction == "none" else {"reduction": reduction}))],
                   {"data": data, "indices": rows, "updates": updates})
    # Element-wise tuples with negative indices, into int64 data.
    graph_case("scatternd-int64-elements",
               [helper.make_node("ScatterND", ["data", "indices", "updates"], ["y"])],
               {"data": np.arange(12, dtype=np.int64).reshape(3, 4), "indices": np.array([[0, -1], [2, 1]], np.int64),
                "updates": np.array([100, 200], np.int64)})


if __name__ == "__main__":
    main()
