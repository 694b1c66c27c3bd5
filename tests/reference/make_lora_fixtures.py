#!/usr/bin/env python
"""Generate the LoRA parity fixtures under Tests/Fixtures/ (diffusers + PEFT references).

    python tests/reference/make_lora_fixtures.py [--out DIR]

Needs Tests/Fixtures/dit-tiny/ and Tests/Fixtures/scheduler-ddim/ (written by
tests/reference/make_model_fixtures.py). Deterministic (fixed seeds, one CPU
thread, deterministic torch algorithms, safetensors headers written with sorted
keys, JSON lists that PEFT builds from Python sets written sorted): a re-run
reproduces every file byte for byte with the same torch / diffusers / peft /
numpy / safetensors versions (recorded in each safetensors file's metadata under
"versions" and in GENERATED-lora-fixtures.md).

diffusers' DiTTransformer2DModel does not derive from PeftAdapterMixin (it has
no add_adapter / load_lora_adapter / set_adapters / fuse_lora), so the
references use `DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin)`: the same
model class with diffusers' own model-level LoRA methods mixed in.

What it writes (float32 unless said otherwise):

  dit-tiny-lora-A.safetensors
      adapter "A": LoraConfig(r=4, lora_alpha=8, target_modules to_q/to_k/to_v/to_out.0)
      added with diffusers `add_adapter`, lora_A as PEFT initialises it (seeded),
      lora_B re-initialised with seeded random values (PEFT zero-inits B);
      saved with diffusers' transformer LoRA writer
      (SanaLoraLoaderMixin.save_lora_weights -> _save_lora_weights ->
      _pack_dict_with_prefix + write_lora_layers): keys
      `transformer.transformer_blocks.{0,1}.attn1.{to_q,to_k,to_v,to_out.0}.lora_{A,B}.weight`
      (A [4,32], B [32,4]), metadata `format` = "pt" and `lora_adapter_metadata` =
      json.dumps(LoraConfig.to_dict() with every key prefixed "transformer.",
      indent=2, sort_keys=True). Scale alpha / r = 2.
  dit-tiny-lora-B/ (adapter_config.json + adapter_model.safetensors)
      adapter "B": LoraConfig(r=2, lora_alpha=3, target_modules to_q/to_v/ff.net.0.proj/ff.net.2,
      rank_pattern {"ff.net.0.proj": 4}, alpha_pattern {"ff.net.2": 6}) made with
      peft.get_peft_model and PeftModel.save_pretrained (keys
      `base_model.model.transformer_blocks.{0,1}.{attn1.to_q,attn1.to_v,ff.net.0.proj,ff.net.2}.lora_{A,B}.weight`).
      Scales: to_q/to_v 3/2, ff.net.0.proj 3/4 (rank 4), ff.net.2 6/2.
  dit-tiny-lora-A-kohya.safetensors
      A's weights as kohya/A1111: `lora_unet_transformer_blocks_{0,1}_attn1_{to_q,to_k,to_v,to_out_0}`
      + `.lora_down.weight` (= lora_A), `.lora_up.weight` (= lora_B), `.alpha` (scalar, 8.0).
  dit-tiny-lora-qkv.safetensors
      original-DiT naming: `blocks.{0,1}.attn.qkv.lora_A.weight` [4,32], `.lora_B.weight` [96,4],
      `blocks.{0,1}.attn.proj.lora_A.weight` [4,32], `.lora_B.weight` [32,4]; no
      lora_adapter_metadata (scale 1). Reference: the diffusers adapter "qkv" where
      to_q / to_k / to_v get the qkv lora_A and rows 0:32 / 32:64 / 64:96 of lora_B,
      to_out.0 gets proj.
  dit-tiny-lora-forward.safetensors
      sample [2,4,8,8], timestep int64 [2], class_labels int64 [2] (= [3, 10]); outputs
      [2,8,8,8]: base, A, B, AB_07_05, A_x4, A_fused, A_neg, qkv, base_after_unfuse.
  dit-tiny-lora-sample-ddim.safetensors          A+B at (0.7, 0.5)
  dit-tiny-lora-sample-ddim-slider.safetensors   A alone, weight 2**(2+s), s = 1 + (i % 5) at step i
  dit-tiny-lora-sample-ddim-switch.safetensors   A alone (1.0) steps 0..24, B alone (1.0) steps 25..49
      init_noise [1,4,8,8], class_labels int64 [2] = [3, 10], timesteps int64 [50],
      trajectory [50,1,4,8,8], final [1,4,8,8]; slider also slider_weights float32 [50];
      switch also switch_step int64 scalar (25). 50-step DDIM (scheduler-ddim), CFG 4.0,
      the loop of make_model_fixtures.cfg_sample (diffusers DiTPipeline.__call__).

All references come from a fresh `from_pretrained` dit-tiny with the adapters
loaded back from the written files (load_lora_adapter), i.e. what a user gets.
The script checks that the references can make a test fail (each LoRA moves the
output by >= 5%; wrong scales, swapped weights or thirds, an off-by-one schedule
move the reference by more than 10x the tolerance) and that float64 reruns sit
far below the tolerances.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import peft
import safetensors
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import diffusers
from diffusers import DDIMScheduler, DiTTransformer2DModel
from diffusers.loaders.lora_pipeline import SanaLoraLoaderMixin
from diffusers.loaders.peft import PeftAdapterMixin
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as mmf  # noqa: E402  (helpers only; its main() is not run)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "Tests" / "Fixtures"
COMMAND = "python tests/reference/make_lora_fixtures.py"
GENERATOR = "tests/reference/make_lora_fixtures.py"

GUIDANCE = mmf.GUIDANCE  # 4.0
COND_CLASS = mmf.COND_CLASS  # 3
NULL_CLASS = mmf.NULL_CLASS  # 10
STEPS = 50
FORWARD_TOL = mmf.FORWARD_TOL  # 1e-4
FUSED_TOL = 1e-5
SAMPLE_TOL = mmf.SAMPLE_TOL  # 1e-3
MIN_LORA_EFFECT = 0.05  # every adapter must move the forward output by at least 5% (relative max)

HIDDEN = 32
TARGETS_A = ["to_q", "to_k", "to_v", "to_out.0"]
CONFIG_A = dict(r=4, lora_alpha=8, target_modules=TARGETS_A)
TARGETS_B = ["to_q", "to_v", "ff.net.0.proj", "ff.net.2"]
CONFIG_B = dict(
    r=2,
    lora_alpha=3,
    target_modules=TARGETS_B,
    rank_pattern={"ff.net.0.proj": 4},
    alpha_pattern={"ff.net.2": 6},
)
QKV_RANK = 4

# std of the re-initialised lora_B (A keeps PEFT's kaiming-uniform init), chosen so that
# each adapter at weight 1 changes the forward output by roughly 10-20%.
B_STD = {"A": 0.15, "B": 0.1}
QKV_STD = (0.2, 0.15)  # (lora_A, lora_B) of the qkv file

SWITCH_STEP = 25


def slider_weight(i: int) -> float:
    """The subtlety slider: 2 ** (2 + s), s = 1..5, cycling with the step index."""
    s = 1 + (i % 5)
    return float(2 ** (2 + s))


# --------------------------------------------------------------------------- helpers


class DiTWithLora(DiTTransformer2DModel, PeftAdapterMixin):
    """DiTTransformer2DModel with diffusers' model-level LoRA API (PeftAdapterMixin)."""


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "peft": peft.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def metadata(description: str, **extra) -> dict:
    md = {
        "description": description,
        "generator": GENERATOR,
        "command": COMMAND,
        "versions": json.dumps(versions(), sort_keys=True),
    }
    for k, v in extra.items():
        md[k] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return md


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel_err(a, ref) -> float:
    return mmf.rel_err(a, ref)


def require_sensitive(label, ref, perturbed, tol) -> float:
    return mmf.require_sensitive(label, ref, perturbed, tol)


def require_sensitive_run(label, ref_traj, alt_traj, tol, factor=mmf.SENSITIVITY_FACTOR) -> float:
    """Like require_sensitive, on the per-step relative error maximised over the trajectory
    (what the tests bound: every trajectory step < tol)."""
    per_step = [rel_err(alt_traj[i], ref_traj[i]) for i in range(len(ref_traj))]
    i = int(np.argmax(per_step))
    err = per_step[i]
    print(f"  sensitivity: {label}: relative change {err:.3e} at step {i}, final {per_step[-1]:.3e} (tolerance {tol:.0e})")
    if not err > factor * tol:
        raise SystemExit(f"fixture too insensitive: {label} changes the trajectory by only {err:.3e}, need > {factor * tol:.0e}")
    return err


def require_effect(label, base, out) -> float:
    err = rel_err(out, base)
    print(f"  effect: {label}: relative change from base {err:.3e} (need >= {MIN_LORA_EFFECT})")
    if not err >= MIN_LORA_EFFECT:
        raise SystemExit(f"LoRA too weak: {label} changes the base output by only {err:.3e}")
    return err


def load_dit(dit_dir: Path, dtype=torch.float32) -> DiTWithLora:
    return DiTWithLora.from_pretrained(str(dit_dir), torch_dtype=dtype).eval()


def sorted_set_lists(cfg: dict) -> dict:
    """LoraConfig keeps target_modules as a Python set; diffusers / PEFT write list(set)
    whose order follows the per-process string hash. Sort those lists (only those)."""
    out = {}
    for k, v in cfg.items():
        if k.split(".")[-1] in ("target_modules", "exclude_modules") and isinstance(v, list):
            v = sorted(v)
        out[k] = v
    return out


def module_names(prefix_dict: dict) -> list[str]:
    return sorted({k.rsplit(".lora_", 1)[0] for k in prefix_dict})


@torch.no_grad()
def forward(model, sample, timestep, class_labels) -> torch.Tensor:
    return model(sample, timestep=timestep, class_labels=class_labels).sample.float()


def lora_layers(model):
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


# ------------------------------------------------------------------- adapters


def make_adapter_A(dit_dir: Path, out: Path) -> dict:
    """add_adapter + seeded B, saved through diffusers' transformer LoRA writer."""
    model = load_dit(dit_dir)
    torch.manual_seed(5000)  # PEFT initialises lora_A (kaiming uniform) from the global RNG
    model.add_adapter(LoraConfig(**CONFIG_A), adapter_name="A")
    g = gen(5001)
    with torch.no_grad():
        for name, layer in sorted(lora_layers(model), key=lambda kv: kv[0]):
            w = layer.lora_B["A"].weight
            w.copy_(torch.randn(w.shape, generator=g) * B_STD["A"])
    state = get_peft_model_state_dict(model, adapter_name="A")
    config = model.peft_config["A"].to_dict()
    with tempfile.TemporaryDirectory() as tmp:
        SanaLoraLoaderMixin.save_lora_weights(
            tmp, transformer_lora_layers=state, transformer_lora_adapter_metadata=config
        )
        written = Path(tmp) / "pytorch_lora_weights.safetensors"
        tensors = load_file(str(written))
        with safe_open(str(written), "pt") as f:
            md = dict(f.metadata())
    assert set(md) == {"format", "lora_adapter_metadata"}, md.keys()
    lora_md = sorted_set_lists(json.loads(md["lora_adapter_metadata"]))
    assert lora_md["transformer.r"] == 4 and lora_md["transformer.lora_alpha"] == 8, lora_md
    md["lora_adapter_metadata"] = json.dumps(lora_md, indent=2, sort_keys=True)  # as diffusers dumps it
    assert all(k.startswith("transformer.") for k in tensors), list(tensors)
    assert len(tensors) == 16
    md.update(
        metadata(
            "LoRA adapter 'A' on dit-tiny (r=4, lora_alpha=8, to_q/to_k/to_v/to_out.0), written by "
            "diffusers' transformer LoRA writer (keys transformer.<module>.lora_A/lora_B.weight, "
            "lora_adapter_metadata = LoraConfig.to_dict() keyed 'transformer.<field>'); lora_B seeded random"
        )
    )
    mmf.save_tensors(out / "dit-tiny-lora-A.safetensors", tensors, md)
    print(f"  A: {len(tensors)} tensors, modules {module_names(tensors)[:2]}...")
    return tensors


def make_adapter_B(dit_dir: Path, out: Path) -> dict:
    """A PEFT adapter folder written by PeftModel.save_pretrained."""
    base = DiTTransformer2DModel.from_pretrained(str(dit_dir), torch_dtype=torch.float32).eval()
    torch.manual_seed(5100)
    pm = get_peft_model(base, LoraConfig(**CONFIG_B), adapter_name="B")
    g = gen(5101)
    with torch.no_grad():
        for name, layer in sorted(lora_layers(pm), key=lambda kv: kv[0]):
            w = layer.lora_B["B"].weight
            w.copy_(torch.randn(w.shape, generator=g) * B_STD["B"])
    folder = mmf.fresh_dir(out / "dit-tiny-lora-B")
    with tempfile.TemporaryDirectory() as tmp:
        pm.save_pretrained(tmp)  # a non-default adapter name goes to <dir>/<name>/
        src = Path(tmp) / "B"
        config = json.loads((src / "adapter_config.json").read_text())
        tensors = load_file(str(src / "adapter_model.safetensors"))
        with safe_open(str(src / "adapter_model.safetensors"), "pt") as f:
            md = dict(f.metadata())
    assert md == {"format": "pt"}, md
    assert all(k.startswith("base_model.model.") for k in tensors), list(tensors)
    assert len(tensors) == 16
    config = sorted_set_lists(config)
    assert config["rank_pattern"] == CONFIG_B["rank_pattern"] and config["alpha_pattern"] == CONFIG_B["alpha_pattern"]
    # as PeftConfig.save_pretrained writes it (no trailing newline)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    md.update(
        metadata(
            "PEFT adapter 'B' on dit-tiny (r=2, lora_alpha=3, to_q/to_v/ff.net.0.proj/ff.net.2, "
            "rank_pattern {ff.net.0.proj: 4}, alpha_pattern {ff.net.2: 6}) written by "
            "PeftModel.save_pretrained (keys base_model.model.<module>.lora_A/lora_B.weight); lora_B seeded random"
        )
    )
    mmf.save_tensors(folder / "adapter_model.safetensors", tensors, md)
    print(f"  B: {len(tensors)} tensors, config r={config['r']} alpha={config['lora_alpha']}")
    return tensors


def make_kohya(tensors_A: dict, out: Path) -> dict:
    kohya = {}
    for key, t in tensors_A.items():
        module, kind = key.removeprefix("transformer.").rsplit(".lora_", 1)
        stem = "lora_unet_" + module.replace(".", "_")
        kohya[f"{stem}.lora_down.weight" if kind == "A.weight" else f"{stem}.lora_up.weight"] = t
        kohya[f"{stem}.alpha"] = torch.tensor(float(CONFIG_A["lora_alpha"]), dtype=torch.float32)
    mmf.save_tensors(
        out / "dit-tiny-lora-A-kohya.safetensors",
        kohya,
        metadata(
            "adapter 'A' (dit-tiny-lora-A.safetensors) in kohya/A1111 form: lora_unet_<module, . -> _>"
            ".lora_down.weight = lora_A, .lora_up.weight = lora_B, .alpha = 8 (scalar); scale alpha/rank = 2",
            ss_network_module="networks.lora",
            ss_network_dim=str(CONFIG_A["r"]),
            ss_network_alpha=str(float(CONFIG_A["lora_alpha"])),
        ),
    )
    return kohya


def make_qkv(out: Path) -> tuple[dict, dict]:
    """An original-DiT LoRA on the fused qkv Linear (+ proj), and its diffusers equivalent."""
    g = gen(5200)
    std_a, std_b = QKV_STD
    file, equiv = {}, {}
    for i in range(2):
        qa = torch.randn(QKV_RANK, HIDDEN, generator=g) * std_a
        qb = torch.randn(3 * HIDDEN, QKV_RANK, generator=g) * std_b
        pa = torch.randn(QKV_RANK, HIDDEN, generator=g) * std_a
        pb = torch.randn(HIDDEN, QKV_RANK, generator=g) * std_b
        file[f"blocks.{i}.attn.qkv.lora_A.weight"] = qa
        file[f"blocks.{i}.attn.qkv.lora_B.weight"] = qb
        file[f"blocks.{i}.attn.proj.lora_A.weight"] = pa
        file[f"blocks.{i}.attn.proj.lora_B.weight"] = pb
        for j, name in enumerate(["to_q", "to_k", "to_v"]):
            equiv[f"transformer_blocks.{i}.attn1.{name}.lora_A.weight"] = qa.clone()
            equiv[f"transformer_blocks.{i}.attn1.{name}.lora_B.weight"] = qb[j * HIDDEN : (j + 1) * HIDDEN].clone()
        equiv[f"transformer_blocks.{i}.attn1.to_out.0.lora_A.weight"] = pa.clone()
        equiv[f"transformer_blocks.{i}.attn1.to_out.0.lora_B.weight"] = pb.clone()
    mmf.save_tensors(
        out / "dit-tiny-lora-qkv.safetensors",
        file,
        metadata(
            "original-DiT style LoRA: blocks.{i}.attn.qkv (fused q/k/v Linear, lora_B [96, r], rows q|k|v) "
            "and blocks.{i}.attn.proj (= transformer_blocks.{i}.attn1.to_out.0); no lora_adapter_metadata, "
            "so scale 1 (as diffusers assumes without alphas)"
        ),
    )
    return file, equiv


def load_adapters(model: DiTWithLora, out: Path, qkv_equiv: dict) -> None:
    """Load A, B and qkv back from the written fixtures, the way diffusers does."""
    # use_safetensors=True matters: without it (and without weight_name) the model-level
    # load_lora_adapter reads the file through its non-safetensors branch, which drops
    # lora_adapter_metadata and silently uses scale 1 (the pipeline-level loader sets it).
    model.load_lora_adapter(
        str(out / "dit-tiny-lora-A.safetensors"), prefix="transformer", adapter_name="A", use_safetensors=True
    )
    folder = out / "dit-tiny-lora-B"
    config = json.loads((folder / "adapter_config.json").read_text())
    sd = {k.removeprefix("base_model.model."): v for k, v in load_file(str(folder / "adapter_model.safetensors")).items()}
    model.load_lora_adapter(sd, prefix=None, adapter_name="B", metadata=config)
    model.load_lora_adapter(dict(qkv_equiv), prefix=None, adapter_name="qkv")  # no metadata: alpha = r


def check_loaded(model: DiTWithLora, tensors_A: dict, tensors_B: dict, qkv_equiv: dict) -> None:
    """The adapters in the model are the written ones, with the intended per-layer scales."""
    layers = dict(lora_layers(model))
    for key, t in tensors_A.items():
        module, kind = key.removeprefix("transformer.").rsplit(".lora_", 1)
        w = (layers[module].lora_A if kind == "A.weight" else layers[module].lora_B)["A"].weight
        assert torch.equal(w.float(), t), key
    for key, t in tensors_B.items():
        module, kind = key.removeprefix("base_model.model.").rsplit(".lora_", 1)
        w = (layers[module].lora_A if kind == "A.weight" else layers[module].lora_B)["B"].weight
        assert torch.equal(w.float(), t), key
    for key, t in qkv_equiv.items():
        module, kind = key.rsplit(".lora_", 1)
        w = (layers[module].lora_A if kind == "A.weight" else layers[module].lora_B)["qkv"].weight
        assert torch.equal(w.float(), t), key
    expected = {}
    for name in layers:
        scales = {}
        if any(name.endswith("." + t) for t in TARGETS_A):
            scales["A"] = 8 / 4
            scales["qkv"] = 1.0
        if name.endswith(".to_q") or name.endswith(".to_v"):
            scales["B"] = 3 / 2
        if name.endswith(".ff.net.0.proj"):
            scales["B"] = 3 / 4
        if name.endswith(".ff.net.2"):
            scales["B"] = 6 / 2
        expected[name] = scales
    for name, layer in layers.items():
        got = {a: float(layer.lora_alpha[a]) / layer.r[a] for a in layer.r}
        assert got == expected[name], f"{name}: scales {got}, expected {expected[name]}"
    print(f"  loaded back: {len(layers)} LoRA layers, scales as intended (A 2, B 1.5/0.75/3, qkv 1)")


# ---------------------------------------------------------------------- sampling


class Scheduled(torch.nn.Module):
    """Calls set_adapters(schedule(step)) before the model call of each sampling step
    (the CFG loop calls the model once per step, on the [cond, null] batch)."""

    def __init__(self, inner, schedule):
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.schedule = schedule
        self.calls = 0

    def forward(self, *a, **k):
        names, weights = self.schedule(self.calls)
        self.inner.set_adapters(names, weights)
        self.calls += 1
        return self.inner(*a, **k)


def run_schedule(model, scheduler_dir: Path, init_noise, schedule):
    wrapped = Scheduled(model, schedule)
    scheduler = DDIMScheduler.from_pretrained(str(scheduler_dir))
    final, traj, ts, _ = mmf.cfg_sample(wrapped, scheduler, STEPS, GUIDANCE, init_noise, [COND_CLASS], NULL_CLASS)
    assert wrapped.calls == STEPS, wrapped.calls
    assert torch.equal(final, traj[-1])
    return final, traj, ts


SCHEDULES = {
    "ab": lambda i: (["A", "B"], [0.7, 0.5]),
    "slider": lambda i: (["A"], [slider_weight(i)]),
    "switch": lambda i: ((["A"], [1.0]) if i < SWITCH_STEP else (["B"], [1.0])),
}


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"fixture folder (default {DEFAULT_OUT})")
    args = ap.parse_args()
    out: Path = args.out
    dit_dir = DEFAULT_OUT / "dit-tiny"
    scheduler_dir = DEFAULT_OUT / "scheduler-ddim"
    for p in (dit_dir, scheduler_dir):
        if not p.exists():
            raise SystemExit(f"{p} missing: run tests/reference/make_model_fixtures.py first")
    out.mkdir(parents=True, exist_ok=True)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"versions: {versions()}")

    print("adapters")
    tensors_A = make_adapter_A(dit_dir, out)
    tensors_B = make_adapter_B(dit_dir, out)
    make_kohya(tensors_A, out)
    _, qkv_equiv = make_qkv(out)

    # ---------------------------------------------------------------- forward
    print("forward references")
    model = load_dit(dit_dir)
    g = gen(5300)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    timestep = torch.tensor([937, 17], dtype=torch.int64)
    class_labels = torch.tensor([COND_CLASS, NULL_CLASS], dtype=torch.int64)
    base = forward(model, sample, timestep, class_labels)
    load_adapters(model, out, qkv_equiv)
    check_loaded(model, tensors_A, tensors_B, qkv_equiv)

    def with_adapters(names, weights, m=model):
        m.set_adapters(names, weights)
        return forward(m, sample, timestep, class_labels)

    refs = {"base": base}
    refs["A"] = with_adapters(["A"], [1.0])
    refs["B"] = with_adapters(["B"], [1.0])
    refs["AB_07_05"] = with_adapters(["A", "B"], [0.7, 0.5])
    refs["A_x4"] = with_adapters(["A"], [4.0])
    refs["A_neg"] = with_adapters(["A"], [-2.0])
    refs["qkv"] = with_adapters(["qkv"], [1.0])
    model.disable_lora()
    assert torch.equal(forward(model, sample, timestep, class_labels), base), "disable_lora is not the base model"
    model.enable_lora()

    for name in ("A", "B", "AB_07_05", "A_x4", "A_neg", "qkv"):
        require_effect(name, base, refs[name])
    require_sensitive("A+B weights swapped (0.5, 0.7)", refs["AB_07_05"], with_adapters(["A", "B"], [0.5, 0.7]), FORWARD_TOL)
    require_sensitive("A without its scale alpha/r = 2", refs["A"], with_adapters(["A"], [0.5]), FORWARD_TOL)
    require_sensitive("A at 4 vs linear sum A + B", refs["A_x4"], with_adapters(["A", "B"], [4.0, 1.0]), FORWARD_TOL)
    layers = dict(lora_layers(model))

    def b_with_scales(pattern_scale: dict):
        saved = {n: dict(l.scaling) for n, l in layers.items()}
        model.set_adapters(["B"], [1.0])
        for n, l in layers.items():
            for suffix, s in pattern_scale.items():
                if n.endswith(suffix) and "B" in l.scaling:
                    l.scaling["B"] = s
        y = forward(model, sample, timestep, class_labels)
        for n, l in layers.items():
            l.scaling.clear()
            l.scaling.update(saved[n])
        return y

    require_sensitive("B: alpha_pattern ignored (ff.net.2 scale 3/2)", refs["B"], b_with_scales({".ff.net.2": 1.5}), FORWARD_TOL)
    require_sensitive(
        "B: rank_pattern ignored for the scale (ff.net.0.proj 3/2)", refs["B"], b_with_scales({".ff.net.0.proj": 1.5}), FORWARD_TOL
    )
    # qkv thirds in the wrong order (k rows used for q and q rows for k)
    swapped = dict(qkv_equiv)
    for i in range(2):
        q, k = f"transformer_blocks.{i}.attn1.to_q.lora_B.weight", f"transformer_blocks.{i}.attn1.to_k.lora_B.weight"
        swapped[q], swapped[k] = qkv_equiv[k], qkv_equiv[q]
    model.load_lora_adapter(swapped, prefix=None, adapter_name="qkv_swapped")
    require_sensitive("qkv: q and k thirds of lora_B swapped", refs["qkv"], with_adapters(["qkv_swapped"], [1.0]), FORWARD_TOL)
    model.delete_adapters(["qkv_swapped"])
    assert torch.equal(with_adapters(["A"], [1.0]), refs["A"]), "set_adapters is not reproducible"

    # ---- fused form, on a separate instance (fusing and unfusing touch the base weights)
    fused = load_dit(dit_dir)
    assert torch.equal(forward(fused, sample, timestep, class_labels), base)
    load_adapters(fused, out, qkv_equiv)
    original = {k: v.clone() for k, v in fused.state_dict().items() if "lora_" not in k}
    fused.set_adapters(["A"], [1.0])
    fused.fuse_lora(lora_scale=1.0, adapter_names=["A"])
    refs["A_fused"] = forward(fused, sample, timestep, class_labels)
    err = rel_err(refs["A_fused"], refs["A"])
    print(f"  fused A vs unfused A: {err:.2e} (bound {FUSED_TOL:.0e})")
    assert err < FUSED_TOL
    fused.unfuse_lora()
    changed = [k for k, v in fused.state_dict().items() if "lora_" not in k and not torch.equal(v, original[k])]
    fused.disable_lora()
    refs["base_after_unfuse"] = forward(fused, sample, timestep, class_labels)
    unfuse_exact = torch.equal(refs["base_after_unfuse"], base)
    unfuse_err = rel_err(refs["base_after_unfuse"], base)
    print(
        f"  PEFT unmerge (W -= delta): {len(changed)} base weights not restored bit for bit; "
        f"base after unfuse {'==' if unfuse_exact else '!='} base (relative {unfuse_err:.1e})"
    )
    fused.enable_lora()
    fused.set_adapters(["A"], [1.0])
    assert rel_err(forward(fused, sample, timestep, class_labels), refs["A"]) < FUSED_TOL
    # fuse semantics checked for the tests: the set_adapters weights are baked in, lora_scale multiplies
    extra = {}
    fused.set_adapters(["A", "B"], [0.7, 0.5])
    fused.fuse_lora(lora_scale=1.0, adapter_names=None)  # None = the active adapters
    extra["AB fused (None = active, weights 0.7/0.5)"] = rel_err(forward(fused, sample, timestep, class_labels), refs["AB_07_05"])
    fused.unfuse_lora()
    fresh = load_dit(dit_dir)
    load_adapters(fresh, out, qkv_equiv)
    fresh.set_adapters(["A"], [1.0])
    fresh.fuse_lora(lora_scale=4.0, adapter_names=["A"])
    extra["A fused with lora_scale 4 vs A at weight 4"] = rel_err(forward(fresh, sample, timestep, class_labels), refs["A_x4"])
    for label, e in extra.items():
        print(f"  {label}: {e:.2e}")
        assert e < FUSED_TOL, label
    del fresh

    # ---- float64 floor
    m64 = load_dit(dit_dir, torch.float64)
    load_adapters(m64, out, qkv_equiv)
    m64 = m64.to(torch.float64)
    cases64 = {"A": (["A"], [1.0]), "B": (["B"], [1.0]), "AB_07_05": (["A", "B"], [0.7, 0.5]), "A_x4": (["A"], [4.0]),
               "A_neg": (["A"], [-2.0]), "qkv": (["qkv"], [1.0])}
    floor = 0.0
    for name, (names, weights) in cases64.items():
        m64.set_adapters(names, weights)
        floor = max(floor, rel_err(refs[name], forward(m64, sample.double(), timestep, class_labels)))
    print(f"  forward float64 rerun floor {floor:.2e} (tolerance {FORWARD_TOL:.0e})")
    assert floor < FORWARD_TOL / 10

    save_tensors_forward(out, sample, timestep, class_labels, refs, unfuse_exact, unfuse_err, len(changed))

    # ---------------------------------------------------------------- sampling
    print("sampling (50-step DDIM, CFG 4.0)")
    init_noise = torch.randn(1, 4, 8, 8, generator=gen(5400))
    for kind in ("ab", "slider", "switch"):
        final, traj, ts = run_schedule(model, scheduler_dir, init_noise, SCHEDULES[kind])
        f64, t64, _ = run_schedule(m64, scheduler_dir, init_noise.double(), SCHEDULES[kind])
        floor = max(rel_err(traj[i], t64[i]) for i in range(STEPS))
        print(f"  {kind}: |final|max {final.abs().max():.3f}, float64 rerun floor {floor:.2e} (tolerance {SAMPLE_TOL:.0e})")
        assert floor < SAMPLE_TOL / 10, f"{kind}: float32 reference too far from float64 ({floor:.2e})"
        # sensitivity of the run to what a runtime can get wrong
        def check(label, schedule, factor=mmf.SENSITIVITY_FACTOR):
            _, alt, _ = run_schedule(model, scheduler_dir, init_noise, schedule)
            require_sensitive_run(f"{kind}: {label}", traj, alt, SAMPLE_TOL, factor)

        check("no adapters", lambda i: ([], []))
        if kind == "ab":
            check("weights swapped", lambda i: (["A", "B"], [0.5, 0.7]))
        elif kind == "slider":
            check("schedule shifted by one step", lambda i: (["A"], [slider_weight(i + 1)]))
            check("first weight kept for every step", lambda i: (["A"], [slider_weight(0)]))
            check("last step's weight at every step", lambda i: (["A"], [slider_weight(STEPS - 1)]))
        else:
            # A one-step shift of the switch changes one mid-run step only: about 7x the
            # tolerance here (enough to fail the test), so this check asks for 5x, not 10x.
            for shifted in (SWITCH_STEP - 1, SWITCH_STEP + 1):
                check(f"switch at step {shifted} instead of {SWITCH_STEP}",
                      lambda i, s=shifted: ((["A"], [1.0]) if i < s else (["B"], [1.0])), factor=5.0)
            check("A kept active after the switch",
                  lambda i: ((["A"], [1.0]) if i < SWITCH_STEP else (["A", "B"], [1.0, 1.0])))
        save_sampling(out, kind, init_noise, ts, traj, final)

    write_readme(out)
    print("done")


def save_tensors_forward(out, sample, timestep, class_labels, refs, unfuse_exact, unfuse_err, n_changed) -> None:
    tensors = dict(sample=sample, timestep=timestep, class_labels=class_labels)
    tensors.update(refs)
    mmf.save_tensors(
        out / "dit-tiny-lora-forward.safetensors",
        tensors,
        metadata(
            "dit-tiny(...).sample with PEFT adapters loaded by diffusers (load_lora_adapter) from "
            "dit-tiny-lora-A.safetensors ('A'), dit-tiny-lora-B/ ('B'), and the diffusers equivalent of "
            "dit-tiny-lora-qkv.safetensors ('qkv'): base = no adapter; A = set_adapters(['A'], [1.0]); "
            "B = set_adapters(['B'], [1.0]); AB_07_05 = set_adapters(['A','B'], [0.7, 0.5]); A_x4 = A at 4.0; "
            "A_neg = A at -2.0; qkv = set_adapters(['qkv'], [1.0]); A_fused = set_adapters(['A'], [1.0]) + "
            "fuse_lora(lora_scale=1.0, adapter_names=['A']); base_after_unfuse = unfuse_lora() + disable_lora()",
            null_class=NULL_CLASS,
            torch_unfuse_bit_exact=unfuse_exact,
            torch_unfuse_relative_error=f"{unfuse_err:.3e}",
            torch_unfuse_weights_not_restored=n_changed,
        ),
    )


def save_sampling(out, kind, init_noise, ts, traj, final) -> None:
    tensors = dict(
        init_noise=init_noise,
        class_labels=torch.tensor([COND_CLASS, NULL_CLASS], dtype=torch.int64),
        timesteps=ts.to(torch.int64),
        trajectory=traj,
        final=final,
    )
    common = (
        f"{STEPS}-step DDIM (scheduler-ddim/scheduler_config.json) CFG {GUIDANCE} sampling of dit-tiny, loop of "
        "diffusers DiTPipeline.__call__ (make_model_fixtures.cfg_sample; batch [cond 3, null 10]); "
        "trajectory[i] = cond-half latents after step i; final = trajectory[-1]; adapters: "
    )
    if kind == "ab":
        name = "dit-tiny-lora-sample-ddim.safetensors"
        desc = common + "set_adapters(['A','B'], [0.7, 0.5]) for every step"
        extra = dict(adapters={"A": 0.7, "B": 0.5})
    elif kind == "slider":
        name = "dit-tiny-lora-sample-ddim-slider.safetensors"
        weights = torch.tensor([slider_weight(i) for i in range(STEPS)], dtype=torch.float32)
        tensors["slider_weights"] = weights
        desc = common + (
            "set_adapters(['A'], [slider_weights[i]]) before the model call of step i; "
            "slider_weights[i] = 2 ** (2 + s), s = 1 + (i % 5) (subtlety slider, s = 1..5)"
        )
        extra = dict(slider_adapter="A")
    else:
        name = "dit-tiny-lora-sample-ddim-switch.safetensors"
        tensors["switch_step"] = torch.tensor(SWITCH_STEP, dtype=torch.int64)
        desc = common + (
            f"set_adapters(['A'], [1.0]) for steps 0..{SWITCH_STEP - 1}, set_adapters(['B'], [1.0]) "
            f"for steps {SWITCH_STEP}..{STEPS - 1} (switch_step = {SWITCH_STEP})"
        )
        extra = dict(schedule=[[0, {"A": 1.0}], [SWITCH_STEP, {"B": 1.0}]])
    mmf.save_tensors(
        out / name,
        tensors,
        metadata(desc, steps=STEPS, guidance_scale=GUIDANCE, class_labels=[COND_CLASS, NULL_CLASS],
                 scheduler="scheduler-ddim/scheduler_config.json", **extra),
    )


def write_readme(out: Path) -> None:
    v = versions()
    text = f"""# LoRA parity fixtures (generated)

Generated by `tests/reference/make_lora_fixtures.py`; do not edit by hand.
Needs `dit-tiny/` and `scheduler-ddim/` from `tests/reference/make_model_fixtures.py`.

Regenerate (deterministic, byte-identical with the same versions):

    {COMMAND}

Versions: torch {v['torch']}, diffusers {v['diffusers']}, peft {v['peft']}, numpy {v['numpy']},
safetensors {v['safetensors']}, python {v['python']}.
Every `.safetensors` file written by the script records them in its metadata
(`versions`), with a `description` and the `command`.

| file | contents |
|---|---|
| `dit-tiny-lora-A.safetensors` | adapter A, diffusers format: `transformer.transformer_blocks.{{0,1}}.attn1.{{to_q,to_k,to_v,to_out.0}}.lora_A.weight` [4,32] / `.lora_B.weight` [32,4]; metadata `lora_adapter_metadata` = PEFT LoraConfig (r 4, lora_alpha 8) keyed `transformer.<field>`; scale 2 |
| `dit-tiny-lora-B/` | adapter B, PEFT folder: `adapter_config.json` (r 2, lora_alpha 3, rank_pattern {{"ff.net.0.proj": 4}}, alpha_pattern {{"ff.net.2": 6}}) + `adapter_model.safetensors` (`base_model.model.transformer_blocks.{{0,1}}.{{attn1.to_q,attn1.to_v,ff.net.0.proj,ff.net.2}}.lora_{{A,B}}.weight`); scales to_q/to_v 1.5, ff.net.0.proj 0.75 (rank 4), ff.net.2 3 |
| `dit-tiny-lora-A-kohya.safetensors` | A in kohya form: `lora_unet_transformer_blocks_{{0,1}}_attn1_{{to_q,to_k,to_v,to_out_0}}.{{lora_down.weight,lora_up.weight,alpha}}` (alpha scalar 8.0) |
| `dit-tiny-lora-qkv.safetensors` | original-DiT LoRA: `blocks.{{0,1}}.attn.qkv.lora_A.weight` [4,32], `.lora_B.weight` [96,4], `blocks.{{0,1}}.attn.proj.lora_{{A,B}}.weight`; no metadata (scale 1) |
| `dit-tiny-lora-forward.safetensors` | `sample` [2,4,8,8], `timestep` int64, `class_labels` int64 ([3, 10]); outputs [2,8,8,8]: `base`, `A`, `B`, `AB_07_05`, `A_x4`, `A_neg` (A at -2), `qkv`, `A_fused`, `base_after_unfuse` |
| `dit-tiny-lora-sample-ddim.safetensors` | 50-step DDIM CFG 4.0, A+B at (0.7, 0.5): `init_noise`, `class_labels` [3, 10], `timesteps`, `trajectory` [50,1,4,8,8], `final` |
| `dit-tiny-lora-sample-ddim-slider.safetensors` | same loop, A alone at `slider_weights[i]` = 2^(2+s), s = 1 + (i % 5), at step i |
| `dit-tiny-lora-sample-ddim-switch.safetensors` | same loop, A (1.0) for steps 0..24, B (1.0) for steps 25..49; `switch_step` = 25 |

Notes

* diffusers' `DiTTransformer2DModel` has no LoRA API (it does not derive from
  `PeftAdapterMixin`); the references use the class with `PeftAdapterMixin`
  mixed in, i.e. diffusers' own model-level `add_adapter`, `load_lora_adapter`,
  `set_adapters`, `fuse_lora`, `unfuse_lora`, `disable_lora`, `delete_adapters`.
* `set_adapters(names, weights)` sets PEFT's per-layer scaling to
  `weight * lora_alpha / r` (alpha and r after `alpha_pattern` / `rank_pattern`).
* `fuse_lora(lora_scale, adapter_names)` merges `B A * scaling` of the named
  adapters (None = the active ones) into W, i.e. with the weights from the last
  `set_adapters`; `lora_scale` multiplies (A fused with lora_scale 4 == A at 4).
  While fused, PEFT skips the low-rank path of every adapter in that layer.
* PEFT's `unfuse_lora` subtracts the delta (`W -= B A * scaling`); the script
  records in `dit-tiny-lora-forward.safetensors` metadata whether that restored
  the base output bit for bit (`torch_unfuse_bit_exact`). Nodus restores the
  original weights instead, and its tests require bit identity.
* `target_modules` lists (a Python set in LoraConfig) are written sorted, so
  that the files do not depend on the string hash seed.
"""
    (out / "GENERATED-lora-fixtures.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
