"""Random small ONNX graphs through Nodus's importer, graph passes and kernels, against onnxruntime.

    python Fuzz/onnx_graphs.py [--graphs N] [--seed S] [--keep DIR]

Each graph chains 2 to 12 ops drawn from those the importer knows (element-wise, MatMul, Gemm,
Conv, Softmax, norms, reductions, Where, Transpose, Reshape, Concat, Slice, Gather, Expand, Tile) over float32 values of
random 1-D to 4-D shapes, with random initializers. Nodus must either match onnxruntime (relative
max error below 1e-4, as SPEC.md asks of ONNX graphs) or refuse the graph with a NodusError; a
crash ends the process, and the graph it was running is then the last one written to --keep.
Needs onnx, onnxruntime and numpy (`.venv-bench`) and libnodus.so (`make build`).
"""

import argparse
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bindings", "python"))
import nodus  # noqa: E402

OPSET = 18
UNARY = ["Neg", "Abs", "Exp", "Tanh", "Sigmoid", "Erf", "Sin", "Cos", "Relu", "Floor", "Ceil", "Identity"]
# Defined for positive inputs only: fed Abs(x) + 1.
POSITIVE_UNARY = ["Sqrt", "Log", "Reciprocal"]
BINARY = ["Add", "Sub", "Mul", "Max", "Min", "Sum"]


class GraphMaker:
    """Builds one random graph: a pool of float32 values with known shapes, grown op by op."""

    def __init__(self, random):
        self.random = random
        self.nodes, self.initializers, self.values = [], [], []
        self.counter = 0

    def name(self, stem):
        self.counter += 1
        return f"{stem}{self.counter}"

    def constant(self, shape, low=-1.0, high=1.0):
        name = self.name("w")
        array = self.random.uniform(low, high, size=shape).astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values):
        name = self.name("i")
        self.initializers.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    def add(self, op, inputs, shape, **attributes):
        output = self.name("v")
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        self.values.append((output, shape))
        return output, shape

    def positive(self, value, shape):
        absolute, _ = self.add("Abs", [value], shape)
        return self.add("Add", [absolute, self.constant([1], 1.0, 1.0)], shape)

    def step(self):
        value, shape = self.values[self.random.integers(len(self.values))]
        rank = len(shape)
        choice = self.random.integers(22)
        if choice == 0:
            return self.add(str(self.random.choice(UNARY)), [value], shape)
        if choice == 1:
            positive, _ = self.positive(value, shape)
            return self.add(str(self.random.choice(POSITIVE_UNARY)), [positive], shape)
        if choice == 2:
            # Broadcast against a constant of the same rank with some axes 1.
            other = [size if self.random.random() < 0.5 else 1 for size in shape]
            op = str(self.random.choice(BINARY))
            return self.add(op, [value, self.constant(other)], shape)
        if choice == 3:
            same = [name for name, other in self.values if other == shape]
            return self.add(str(self.random.choice(BINARY)), [value, str(self.random.choice(same))], shape)
        if choice == 4:
            denominator, _ = self.positive(self.constant(shape), shape)
            return self.add("Div", [value, denominator], shape)
        if choice == 5:
            columns = int(self.random.integers(1, 6))
            return self.add("MatMul", [value, self.constant([shape[-1], columns])], shape[:-1] + [columns])
        if choice == 6:
            return self.add("Softmax", [value], shape, axis=int(self.random.integers(-rank, rank)))
        if choice == 7 and rank >= 2:
            permutation = [int(axis) for axis in self.random.permutation(rank)]
            return self.add("Transpose", [value], [shape[axis] for axis in permutation], perm=permutation)
        if choice == 8:
            axis = int(self.random.integers(rank))
            op = str(self.random.choice(["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"]))
            keep = int(self.random.integers(2))
            reduced = [1 if index == axis else size for index, size in enumerate(shape)]
            if not keep:
                reduced = [size for index, size in enumerate(shape) if index != axis]
            if not reduced:
                return None
            return self.add(op, [value, self.ints([axis])], reduced, keepdims=keep)
        if choice == 9:
            flat = int(np.prod(shape))
            target = [flat] if rank > 1 else [1, flat]
            return self.add("Reshape", [value, self.ints(target)], target)
        if choice == 10:
            axis = int(self.random.integers(rank))
            same = [name for name, other in self.values if other == shape]
            joined = list(shape)
            joined[axis] *= 2
            return self.add("Concat", [value, str(self.random.choice(same))], joined, axis=axis)
        if choice == 11:
            width = shape[-1]
            return self.add("LayerNormalization", [value, self.constant([width]), self.constant([width])], shape,
                            axis=-1, epsilon=1e-5)
        if choice == 12 and rank == 4:
            channels = int(self.random.integers(1, 5))
            kernel = int(self.random.choice([1, 3]))
            padding = kernel // 2
            weight = self.constant([channels, shape[1], kernel, kernel])
            return self.add("Conv", [value, weight, self.constant([channels])], [shape[0], channels] + shape[2:],
                            pads=[padding] * 4, kernel_shape=[kernel, kernel])
        if choice == 13 and shape[-1] > 1:
            end = int(self.random.integers(1, shape[-1]))
            sliced = shape[:-1] + [end]
            return self.add("Slice", [value, self.ints([0]), self.ints([end]), self.ints([-1])], sliced)
        if choice == 14 and rank == 2:
            rows = int(self.random.integers(1, 6))
            return self.add("Gemm", [value, self.constant([rows, shape[1]]), self.constant([rows])], [shape[0], rows],
                            transB=1, alpha=float(self.random.uniform(0.5, 2)), beta=float(self.random.uniform(0.5, 2)))
        if choice == 15:
            condition, _ = self.add("Greater", [value, self.constant([1])], shape)
            self.values.pop()  # a bool value: not an input for the float ops
            return self.add("Where", [condition, value, self.constant(shape)], shape)
        if choice == 16:
            positive, _ = self.positive(value, shape)
            return self.add("Pow", [positive, self.constant([1], 0.5, 2.5)], shape)
        if choice == 17:
            return self.add("Clip", [value, self.constant([], -0.5, 0), self.constant([], 0, 0.5)], shape)
        if choice == 18 and rank >= 3:
            return self.add("InstanceNormalization", [value, self.constant([shape[1]]), self.constant([shape[1]])],
                            shape, epsilon=1e-5)
        if choice == 19 and rank < 4:
            axis = int(self.random.integers(rank + 1))
            unsqueezed, new_shape = self.add("Unsqueeze", [value, self.ints([axis])], shape[:axis] + [1] + shape[axis:])
            expanded = list(new_shape)
            expanded[axis] = int(self.random.integers(1, 4))
            return self.add("Expand", [unsqueezed, self.ints(expanded)], expanded)
        if choice == 20:
            axis = int(self.random.integers(rank))
            indices = [int(index) for index in self.random.integers(0, shape[axis], size=int(self.random.integers(1, 4)))]
            gathered = shape[:axis] + [len(indices)] + shape[axis + 1:]
            return self.add("Gather", [value, self.ints(indices)], gathered, axis=axis)
        if choice == 21:
            repeats = [int(self.random.integers(1, 3)) for _ in shape]
            return self.add("Tile", [value, self.ints(repeats)], [size * repeat for size, repeat in zip(shape, repeats)])
        return None

    def model(self):
        rank = int(self.random.integers(1, 5))
        shape = [int(size) for size in self.random.integers(1, 6, size=rank)]
        self.values.append(("x", shape))
        for _ in range(int(self.random.integers(2, 13))):
            self.step()
        output, output_shape = self.values[-1]
        graph = helper.make_graph(
            self.nodes, "random", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)], self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model, shape


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=tempfile.mkdtemp(prefix="nodus-onnx-graphs-"))
    arguments = parser.parse_args()
    os.makedirs(arguments.keep, exist_ok=True)
    random = np.random.default_rng(arguments.seed)
    matched, refused, mismatched = 0, {}, []
    for index in range(arguments.graphs):
        model, shape = GraphMaker(random).model()
        path = os.path.join(arguments.keep, "current.onnx")
        onnx.save(model, path)
        x = random.uniform(-2, 2, size=shape).astype(np.float32)
        reference = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        try:
            ours = nodus.load(path, threads=1).forward(x=x)
        except nodus.NodusError as error:
            reason = str(error).split(":")[-1].strip()[:80]
            refused[reason] = refused.get(reason, 0) + 1
            continue
        scale = max(float(np.abs(reference).max()), 1e-30)
        error = float(np.abs(ours - reference).max()) / scale if ours.shape == reference.shape else float("inf")
        if error < 1e-4:
            matched += 1
        else:
            kept = os.path.join(arguments.keep, f"mismatch-{index}.onnx")
            onnx.save(model, kept)
            mismatched.append((kept, error, [node.op_type for node in model.graph.node]))
    print(f"{arguments.graphs} graphs (seed {arguments.seed}): {matched} match onnxruntime, "
          f"{sum(refused.values())} refused with a NodusError, {len(mismatched)} differ")
    for reason, count in sorted(refused.items(), key=lambda item: -item[1]):
        print(f"  refused x{count}: {reason}")
    for kept, error, ops in mismatched:
        print(f"  differs by {error:.2e}: {kept} ({' '.join(ops)})")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
