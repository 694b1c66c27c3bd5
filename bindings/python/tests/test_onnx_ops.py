"""Single ONNX ops beside onnxruntime: CumSum (axes, exclusive, reverse, int64 position ids) and ScatterND
(every reduction, slices and element tuples, negative indices). Fixtures in Tests/Fixtures/onnx/ops, made by
tests/reference/make_onnx_op_fixtures.py."""

import glob
import os

import numpy as np
import pytest
from safetensors.numpy import load_file

import nodus
from conftest import FIXTURES

CASES = sorted(os.path.basename(path)[:-len(".onnx")] for path in glob.glob(os.path.join(FIXTURES, "onnx", "ops", "*.onnx")))


def test_every_case_is_there():
    assert len(CASES) == 15, CASES


@pytest.mark.parametrize("case", CASES)
def test_op_equals_onnxruntime(case):
    io = load_file(os.path.join(FIXTURES, "onnx", "ops", f"{case}-io.safetensors"))
    model = nodus.load(os.path.join(FIXTURES, "onnx", "ops", f"{case}.onnx"))
    output = model.forward(**{name: io[name] for name, _, _ in model.inputs})
    assert output.dtype == io["ort.y"].dtype
    np.testing.assert_allclose(output, io["ort.y"], rtol=1e-6, atol=1e-6, err_msg=case)
