"""Writes Tests/Fixtures/randn.json: torch.randn float32 values from seeded CPU generators.

Each case is one generator, `g = torch.Generator().manual_seed(seed)`, followed by
successive `torch.randn(shape, generator=g, dtype=torch.float32)` calls. Values are
stored as the uint32 bit patterns of the float32 results (as JSON integers), so the
Swift test can check bit equality. Run with the reference venv:

    python tests/reference/make_randn_fixtures.py
"""

import json
import os

import numpy
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.normpath(os.path.join(HERE, "..", "..", "Tests", "Fixtures", "randn.json"))

# (seed, list of shapes drawn one after another from the same generator).
CASES = [
    (0, [[1]]),
    (0, [[3]]),
    (0, [[15]]),
    (0, [[16]]),
    (0, [[17]]),
    (0, [[100]]),
    (0, [[4, 8, 8]]),
    (42, [[1], [3], [15], [16], [17], [100]]),
    (1234, [[4, 8, 8]]),
    (2**32 + 1234, [[4, 8, 8]]),  # only the low 32 bits seed the engine
    (2**40 + 7, [[33]]),
    (7, [[3], [2, 5], [1], [16], [5], [31], [4]]),  # the small-path cache survives big calls
    (123456789, [[2, 3], [999], [1, 1, 7, 7]]),
    (2024, [[700], [701], [13]]),  # crosses several 624-word twists
    (31337, [[2, 4, 32, 32]]),
]


def bits(tensor):
    return tensor.contiguous().view(-1).numpy().view(numpy.uint32).tolist()


def main():
    torch.set_num_threads(1)
    cases = []
    for seed, shapes in CASES:
        generator = torch.Generator().manual_seed(seed)
        values = [bits(torch.randn(shape, generator=generator, dtype=torch.float32)) for shape in shapes]
        cases.append({"seed": seed, "shapes": shapes, "values": values})
    document = {
        "torch_version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "description": "torch.randn float32 bit patterns (uint32) per call; calls in a case share one generator",
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
    with open(OUTPUT, "w") as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.write("\n")
    print(f"wrote {OUTPUT} ({os.path.getsize(OUTPUT)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
