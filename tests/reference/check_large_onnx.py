"""Real-size ONNX parity: DiT-XL/2, the SD-1.5 UNet, and the SD VAE decoder and encoder exported with both
torch.onnx exporters (dynamo at opset 18, TorchScript at opset 17, weights as external data), run by
onnxruntime (CPU EP) and by Nodus; prints the relative max error of Nodus against onnxruntime and torch.

    python tests/reference/check_large_onnx.py [--work /tmp/nodus-bench] [--only dit,unet,vae-decoder,vae-encoder]

Uses the random-init diffusers folders benchmarks/forward.py caches in --work (make bench makes them) and
writes the exports beside them (several GB). Needs the bench venv (.venv-bench) and a built library.
Exit status 1 when an error reaches 1e-4.
"""

import argparse
import gc
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "bindings" / "python"))

import forward  # noqa: E402 - the workloads (models, inputs, torch calls) of make bench

import nodus  # noqa: E402

EXPORTS = [("dynamo", 18), ("torchscript", 17)]


class Encoder(torch.nn.Module):
    """vae.encode(x).latent_dist mean and logvar."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        dist = self.vae.encode(sample).latent_dist
        return dist.mean, dist.logvar


def export(module, inputs, names, outputs, path, exporter, opset):
    args = tuple(torch.from_numpy(value) for value in inputs.values())
    if exporter == "dynamo":
        torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, external_data=True,
                          input_names=names, output_names=outputs)
    else:
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                          output_names=outputs)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nodus-bench"))
    parser.add_argument("--only", default="dit,unet,vae-decoder,vae-encoder")
    args = parser.parse_args()
    torch.set_num_threads(2)
    worst = 0.0
    for name in args.only.split(","):
        key = "vae" if name.startswith("vae") else name
        workload = forward.WORKLOADS[key]
        folder = args.work / workload.folder(False)
        model = forward.torch_model(workload, folder)
        if name == "vae-encoder":
            module, outputs = Encoder(model).eval(), ["latent_mean", "latent_logvar"]
            inputs = {"sample": np.random.default_rng(3).uniform(-1, 1, (1, 3, 512, 512)).astype(np.float32)}
        else:
            inputs = workload.inputs(False)
            module, outputs = forward.exported(workload, model, list(inputs)), ["out"]
        with torch.inference_mode():
            reference = module(*[torch.from_numpy(value) for value in inputs.values()])
        reference = [t.numpy() for t in (reference if isinstance(reference, tuple) else (reference,))]
        for exporter, opset in EXPORTS:
            target = args.work / f"{name}-{exporter}{opset}-onnx" / "model.onnx"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                try:
                    export(module, inputs, list(inputs), outputs, target, exporter, opset)
                except Exception as error:  # noqa: BLE001 - an exporter that fails is reported, the rest go on
                    print(f"{name} {exporter} opset {opset}: export failed: {str(error).splitlines()[0][:200]}")
                    continue
            session = forward.ort_session(str(target), 2)
            feed = {item.name: inputs[item.name] for item in session.get_inputs()}
            ort = session.run(None, feed)
            del session
            gc.collect()
            ours = nodus.load(str(target), threads=2)
            result = ours.forward(**{n: inputs[n] for n, _, _ in ours.inputs})
            result = [result[o] for o in outputs] if isinstance(result, dict) else [result]
            fused = ours.config.get("fused", {})
            del ours
            gc.collect()
            for index, output in enumerate(outputs):
                versus_ort, versus_torch = rel(result[index], ort[index]), rel(result[index], reference[index])
                worst = max(worst, versus_ort)
                print(f"{name} {exporter} opset {opset} {output}: vs onnxruntime {versus_ort:.1e}, vs torch "
                      f"{versus_torch:.1e} (onnxruntime vs torch {rel(ort[index], reference[index]):.1e}); "
                      f"fused {dict(sorted(fused.items()))}")
        del model
        gc.collect()
    print(f"worst error vs onnxruntime: {worst:.1e}")
    sys.exit(1 if worst >= 1e-4 else 0)


if __name__ == "__main__":
    main()
