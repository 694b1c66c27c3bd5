#!/usr/bin/env python
"""Generate the committed ONNX fixtures under Tests/Fixtures/onnx/.

    .venv-bench/bin/python tests/reference/make_onnx_fixtures.py [--extra-dir DIR]

Run from the repository root with a venv holding torch, onnx, onnxruntime,
onnxscript and diffusers (`make bench` creates `.venv-bench` with them). The
library versions are recorded in Tests/Fixtures/GENERATED-onnx-fixtures.md and in
every `-io.safetensors` file's metadata.

What it writes (Tests/Fixtures/onnx/):

  <model>-<exporter><opset>.onnx        an export of a small diffusers model, weights inline
  <model>-<exporter><opset>-io.safetensors
      the inputs it was run with (batch 2), keyed by the graph's input names;
      onnxruntime's outputs (CPU EP), keyed by the graph's output names;
      diffusers' torch outputs for the same inputs under `torch.<output name>`.

  models: dit-tiny (Tests/Fixtures/dit-tiny, DiTTransformer2DModel),
          unet-micro (UNet2DConditionModel, UNET_MICRO below),
          vae-micro-decoder / vae-micro-encoder (AutoencoderKL, VAE_MICRO below).
          unet-tiny's and vae-tiny's exports (0.5-1.1 MB and 2.6 MB of weights each) do not fit
          the fixture budget (well under 3 MB in all); the micro models are made here with fixed
          seeds, and `--extra-dir DIR` writes their diffusers folders, for native-vs-ONNX checks.
  exporters: dynamo18 / dynamo17 (`torch.onnx.export(dynamo=True)`; 17 goes through the
          exporter's version conversion, which fails for most models: see the report),
          torchscript17 / torchscript14 (`dynamo=False`).
  Each export has a dynamic batch axis ("batch") on every input and output. Each model is
  wrapped in a Module whose attribute is diffusers' LoRA prefix (`transformer`, `unet`,
  `vae`), so module paths read `transformer.transformer_blocks.0.attn1.to_q`.
  Only the COMMITTED exports are written here; `--extra-dir DIR` writes the others, and every
  export of unet-tiny and vae-tiny, into DIR for local use.

  vae-micro-encoder-dynamo18-external.onnx + .onnx.data
      the same graph as vae-micro-encoder-dynamo18.onnx, every initializer in external data.
  input-default.onnx    a graph input that is also an initializer of the same dtype and shape.
  unsorted.onnx         a valid graph whose nodes are not in topological order.
  external-small.onnx + .onnx.data   a hand-made opset-17 model with external data (the ONNX
      checker runs on it).

  models/<model>-<exporter><opset>.onnx (+ -io.safetensors): the next model families, same
      convention (the torch outputs are those of transformers / the module below / MONAI), in
      their own folder so that test_onnx.py's parity tests keep to the diffusers models;
      bindings/python/tests/test_onnx_models.py runs them:
    clip-text-tiny        transformers CLIPTextModel (CLIP_TEXT_TINY: hidden 32, 2 layers, 2 heads,
                          quick_gelu, 77 positions, SD-1.5's legacy eos_token_id 2, so the pooled
                          output is taken at argmax(input_ids)): input_ids int64 [batch, 77] ->
                          last_hidden_state, pooler_output
    clip-text-tiny-skip1  the same weights: final_layer_norm(hidden_states[-2]), what diffusers'
                          encode_prompt computes for clip_skip=1 -> prompt_embeds
    dit3d-tiny            DiT3D below (MedSyn2-style: Conv3d 2x2x2 patchify of a 4x8x8x8 latent,
                          self- and cross-attention with a sigmoid output gate and RMS-normed q / k,
                          AdaLN-zero modulation from a float timestep, a depthwise Conv3d after
                          each block, unpatchify) -> out_sample
    monai-unet3d-tiny     MONAI DiffusionModelUNet(spatial_dims=3), MONAI_UNET_3D below, on a 4x4x4x4 latent
    monai-vae3d-tiny-decoder  MONAI AutoencoderKL(spatial_dims=3).decode, MONAI_VAE_3D below
          MONAI's models have channels (4, 8) and 2 groups (the UNet's export with channels (8, 16) is
      0.74 MB); they are made only when monai and einops are installed (pip install monai==1.6.1 einops).

  broken/*.onnx (+ data files): one file per validation case of the reader (see BROKEN).
  unsupported/*.onnx: valid files with an op Nodus does not run (the importer's errors).

Of the dynamo exporter's node metadata only `pkg.torch.onnx.name_scopes` (and the rewriter's
rule names) are kept: the stack traces hold absolute paths of this machine, and `namespace`,
`pkg.torch.onnx.class_hierarchy` and `pkg.torch.onnx.fx_node` would triple the file sizes.
"""

from __future__ import annotations

import argparse
import collections
import math
import platform
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import onnxscript
import torch
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_model_fixtures as mmf  # noqa: E402  (helpers only; its main() is not run)

import diffusers  # noqa: E402
from diffusers import AutoencoderKL, DiTTransformer2DModel, UNet2DConditionModel  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

try:  # optional: the MONAI 3D models are exported only when monai (and einops) are installed
    import monai  # noqa: E402
    from monai.networks.nets import AutoencoderKL as MonaiAutoencoderKL  # noqa: E402
    from monai.networks.nets import DiffusionModelUNet  # noqa: E402
except ImportError:  # pragma: no cover
    monai = None

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures"
OUT = FIXTURES / "onnx"
COMMAND = ".venv-bench/bin/python tests/reference/make_onnx_fixtures.py  # from the repository root; make bench creates .venv-bench"
TOLERANCE = 1e-4  # onnxruntime against diffusers, float32

EXPORTS = [("dynamo", 18), ("dynamo", 17), ("torchscript", 17), ("torchscript", 14)]
# (model, exporter, opset) written into Tests/Fixtures/onnx; the rest only with --extra-dir.
# Every exporter and opset is covered once per model family; the budget (committed fixtures
# well under 3 MB) leaves out dit-tiny-torchscript14, unet-micro-torchscript14,
# vae-micro-decoder-torchscript14 and vae-micro-encoder-torchscript17 (the VAE's TorchScript
# graphs at 14 and 17 are the same but for the opset number).
COMMITTED = {
    ("dit-tiny", "dynamo", 18), ("dit-tiny", "dynamo", 17), ("dit-tiny", "torchscript", 17),
    ("unet-micro", "dynamo", 18), ("unet-micro", "dynamo", 17), ("unet-micro", "torchscript", 17),
    ("vae-micro-decoder", "dynamo", 18), ("vae-micro-decoder", "dynamo", 17),
    ("vae-micro-decoder", "torchscript", 17),
    ("vae-micro-encoder", "dynamo", 18), ("vae-micro-encoder", "dynamo", 17),
    ("vae-micro-encoder", "torchscript", 14),
}
# The dynamo exporter's node metadata kept: `pkg.torch.onnx.name_scopes` (module paths) and the
# rewriter's rule names. Dropped: `pkg.torch.onnx.stack_trace` (machine paths), and `namespace`,
# `pkg.torch.onnx.class_hierarchy`, `pkg.torch.onnx.fx_node`, which would triple the file sizes.
KEPT_METADATA = {"pkg.torch.onnx.name_scopes", "pkg.onnxscript.rewriter.rule_name"}

# The next model families (CLIP text encoder, 3D volumes), written to Tests/Fixtures/onnx/models.
NEXT = OUT / "models"
NEXT_EXPORTS = [("dynamo", 18), ("torchscript", 17)]
# Committed (the budget: all of models/ well under 1.5 MB): both exporters of CLIP and the 3D DiT,
# the dynamo exports of the MONAI models; the rest (clip-text-tiny-skip1, which only adds an output
# taken one layer earlier, and MONAI's TorchScript exports, 0.5 MB for the UNet) with --extra-dir.
NEXT_COMMITTED = {
    ("clip-text-tiny", "dynamo", 18), ("clip-text-tiny", "torchscript", 17),
    ("dit3d-tiny", "dynamo", 18), ("dit3d-tiny", "torchscript", 17),
    ("monai-unet3d-tiny", "dynamo", 18),
    ("monai-vae3d-tiny-decoder", "dynamo", 18),
}

CLIP_TEXT_TINY = dict(
    vocab_size=128,  # the only size that is not tiny otherwise (the token table)
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=32,
    # SD-1.5's text_encoder/config.json: the legacy eos_token_id 2 pools at argmax(input_ids),
    # the position of the end-of-text token (the largest id) in CLIP's vocabulary.
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)

MONAI_UNET_3D = dict(
    spatial_dims=3,
    in_channels=4,
    out_channels=4,
    num_res_blocks=1,
    channels=(4, 8),  # (8, 16) makes a 0.74 MB export, 3D kernels are 27 weights
    attention_levels=(False, True),
    norm_num_groups=2,  # 2 and 4 channels per group (not 1: a group norm that were an instance norm)
    num_head_channels=4,  # 2 heads on the second level
    with_conditioning=True,
    cross_attention_dim=16,
    transformer_num_layers=1,
)

MONAI_VAE_3D = dict(
    spatial_dims=3,
    in_channels=1,
    out_channels=1,
    num_res_blocks=1,
    channels=(4, 8),
    attention_levels=(False, False),
    latent_channels=4,
    norm_num_groups=2,
    with_encoder_nonlocal_attn=False,
    with_decoder_nonlocal_attn=True,
)

UNET_MICRO = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[8, 16],
    layers_per_block=1,
    attention_head_dim=2,
    cross_attention_dim=32,
    norm_num_groups=4,
)

VAE_MICRO = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
    up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
    block_out_channels=[8, 16],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=16,
)


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": onnxscript.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def next_versions() -> dict:
    """The libraries of the next model families (recorded in their -io files and the report)."""
    extra = {"transformers": transformers.__version__}
    if monai is not None:
        extra["monai"] = monai.__version__
    return extra


# ---------------------------------------------------------------- models


class DiTForward(torch.nn.Module):
    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, sample, timestep, class_labels):
        return self.transformer(sample, timestep=timestep, class_labels=class_labels).sample


class UNetForward(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states).sample


class VAEDecode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample).sample


class VAEEncode(torch.nn.Module):
    """vae.encode(x).latent_dist: the posterior mean and the (clamped) logvar."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        posterior = self.vae.encode(sample).latent_dist
        return posterior.mean, posterior.logvar


class CLIPText(torch.nn.Module):
    """CLIPTextModel(input_ids) as a diffusers pipeline calls it (no attention mask)."""

    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        output = self.text_encoder(input_ids)
        return output.last_hidden_state, output.pooler_output


class CLIPTextSkip1(torch.nn.Module):
    """diffusers' encode_prompt with clip_skip=1: final_layer_norm(hidden_states[-2])."""

    def __init__(self, text_encoder):
        super().__init__()
        self.text_encoder = text_encoder

    def forward(self, input_ids):
        hidden_states = self.text_encoder(input_ids, output_hidden_states=True).hidden_states
        # diffusers reads text_encoder.text_model.final_layer_norm; transformers 5 has no text_model
        text_model = getattr(self.text_encoder, "text_model", self.text_encoder)
        return text_model.final_layer_norm(hidden_states[-2])


class RMSNorm(torch.nn.Module):
    """diffusers' RMSNorm (over the last axis, with a weight)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(variance + self.eps) * self.weight


class GatedAttention(torch.nn.Module):
    """Multi-head attention with RMS-normed q / k and a sigmoid output gate:
    to_out(attention * sigmoid(to_gate(x))); cross-attention when a context is given."""

    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        context_dim = context_dim or dim
        self.to_q = torch.nn.Linear(dim, dim)
        self.to_k = torch.nn.Linear(context_dim, dim)
        self.to_v = torch.nn.Linear(context_dim, dim)
        self.norm_q = RMSNorm(dim // heads)
        self.norm_k = RMSNorm(dim // heads)
        self.to_gate = torch.nn.Linear(dim, dim)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(dim, dim), torch.nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        batch, _, dim = x.shape
        head = dim // self.heads
        q = self.to_q(x).view(batch, -1, self.heads, head).transpose(1, 2)
        k = self.to_k(context).view(batch, -1, self.heads, head).transpose(1, 2)
        v = self.to_v(context).view(batch, -1, self.heads, head).transpose(1, 2)
        out = torch.nn.functional.scaled_dot_product_attention(self.norm_q(q), self.norm_k(k), v)
        out = out.transpose(1, 2).reshape(batch, -1, dim)
        out = out * torch.sigmoid(self.to_gate(x))
        return self.to_out[1](self.to_out[0](out))


class FeedForward(torch.nn.Module):
    """diffusers' FeedForward with GELU (tanh): net.0.proj, net.2."""

    def __init__(self, dim, mult):
        super().__init__()
        gelu = torch.nn.Module()
        gelu.proj = torch.nn.Linear(dim, dim * mult)
        self.net = torch.nn.ModuleList([gelu, torch.nn.Dropout(0.0), torch.nn.Linear(dim * mult, dim)])

    def forward(self, x):
        x = torch.nn.functional.gelu(self.net[0].proj(x), approximate="tanh")
        return self.net[2](self.net[1](x))


class DiT3DBlock(torch.nn.Module):
    def __init__(self, dim, heads, context_dim):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn1 = GatedAttention(dim, heads)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.attn2 = GatedAttention(dim, heads, context_dim)
        self.norm3 = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, 2)
        self.scale_shift_table = torch.nn.Parameter(torch.randn(6, dim) / dim ** 0.5)
        self.conv = torch.nn.Conv3d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, modulation, context, grid):
        batch, _, dim = x.shape
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + modulation.reshape(batch, 6, dim)).chunk(6, dim=1)
        x = x + gate_msa * self.attn1(self.norm1(x) * (1 + scale_msa) + shift_msa)
        x = x + self.attn2(self.norm2(x), context)
        x = x + gate_mlp * self.ff(self.norm3(x) * (1 + scale_mlp) + shift_mlp)
        volume = x.transpose(1, 2).reshape(batch, dim, *grid)
        return x + self.conv(volume).flatten(2).transpose(1, 2)


class DiT3D(torch.nn.Module):
    """A MedSyn2-style 3D DiT, tiny: a [B, C, D, H, W] latent patchified by a Conv3d (kernel = stride
    = patch) into tokens, a learned position table, a sinusoidal timestep embedding (float timesteps,
    as rectified flow uses) through an MLP, blocks of gated self-attention, gated cross-attention to
    text tokens [B, L, context_dim] and a GELU MLP, AdaLN-zero modulated as PixArt is (one shared
    `adaln_single` Linear to 6 x width, plus each block's `scale_shift_table`), each block followed
    by a depthwise Conv3d over the token grid; a modulated final norm, a Linear to patch^3 * C values
    per token and the unpatchify back to [B, C, D, H, W]. Module names follow diffusers."""

    def __init__(self, in_channels=4, size=(8, 8, 8), patch=2, dim=32, depth=2, heads=2, context_dim=16,
                 frequency_dim=16):
        super().__init__()
        self.patch, self.in_channels, self.frequency_dim = patch, in_channels, frequency_dim
        self.grid = tuple(s // patch for s in size)
        self.pos_embed = torch.nn.Module()
        self.pos_embed.proj = torch.nn.Conv3d(in_channels, dim, patch, stride=patch)
        self.pos_embed.table = torch.nn.Parameter(torch.randn(1, math.prod(self.grid), dim) * 0.02)
        self.time_embedding = torch.nn.Module()
        self.time_embedding.linear_1 = torch.nn.Linear(frequency_dim, dim)
        self.time_embedding.linear_2 = torch.nn.Linear(dim, dim)
        self.adaln_single = torch.nn.Module()
        self.adaln_single.linear = torch.nn.Linear(dim, 6 * dim)
        self.transformer_blocks = torch.nn.ModuleList([DiT3DBlock(dim, heads, context_dim) for _ in range(depth)])
        self.norm_out = torch.nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = torch.nn.Parameter(torch.randn(2, dim) / dim ** 0.5)
        self.proj_out = torch.nn.Linear(dim, patch ** 3 * in_channels)

    def timestep_embedding(self, timestep):
        half = self.frequency_dim // 2
        exponent = torch.arange(half, dtype=torch.float32, device=timestep.device) / half
        angles = timestep.float()[:, None] * torch.exp(-math.log(10000.0) * exponent)[None]
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)

    def forward(self, sample, timestep, encoder_hidden_states):
        batch = sample.shape[0]
        x = self.pos_embed.proj(sample).flatten(2).transpose(1, 2) + self.pos_embed.table
        temb = self.time_embedding.linear_1(self.timestep_embedding(timestep))
        temb = self.time_embedding.linear_2(torch.nn.functional.silu(temb))
        modulation = self.adaln_single.linear(torch.nn.functional.silu(temb))
        for block in self.transformer_blocks:
            x = block(x, modulation, encoder_hidden_states, self.grid)
        shift, scale = (self.scale_shift_table[None] + temb[:, None]).chunk(2, dim=1)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)
        p, c = self.patch, self.in_channels
        d, h, w = self.grid
        x = x.reshape(batch, d, h, w, p, p, p, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(batch, c, d * p, h * p, w * p)


class DiT3DForward(torch.nn.Module):
    def __init__(self, transformer):
        super().__init__()
        self.transformer = transformer

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.transformer(sample, timestep, encoder_hidden_states)


class MonaiUNetForward(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, context=encoder_hidden_states)


class MonaiVAEDecode(torch.nn.Module):
    """MONAI AutoencoderKL.decode(z): post_quant_conv, then the decoder."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample)


def micro_model(cls, config: dict, seed: int, folder: Path):
    """A small model made here (random init, constant tensors re-drawn), saved as a diffusers
    folder beside its exports and reloaded from it."""
    torch.manual_seed(seed)
    model = cls(**config).eval()
    mmf.make_nonconstant(model, seed + 1)
    mmf.save_model(model, folder)
    return cls.from_pretrained(str(folder), torch_dtype=torch.float32).eval()


def models(micro: bool, folders: Path):
    """(name, wrapper, inputs {name: tensor}, output names) for each exported model: dit-tiny,
    then unet / vae: the micro ones made here (micro=True) or the existing tiny ones."""
    g = mmf.gen(7000)
    if micro:
        dit = DiTTransformer2DModel.from_pretrained(str(FIXTURES / "dit-tiny"), torch_dtype=torch.float32).eval()
        yield ("dit-tiny", DiTForward(dit).eval(),
               {"sample": torch.randn(2, 4, 8, 8, generator=g),
                "timestep": torch.tensor([10, 500], dtype=torch.int64),
                "class_labels": torch.tensor([3, 10], dtype=torch.int64)},
               ["out_sample"])
        unet_name, vae_name = "unet-micro", "vae-micro"
        unet = micro_model(UNet2DConditionModel, UNET_MICRO, 7200, folders / unet_name)
        vae = micro_model(AutoencoderKL, VAE_MICRO, 7100, folders / vae_name)
    else:
        unet_name, vae_name = "unet-tiny", "vae-tiny"
        unet = UNet2DConditionModel.from_pretrained(str(FIXTURES / unet_name), torch_dtype=torch.float32).eval()
        vae = AutoencoderKL.from_pretrained(str(FIXTURES / vae_name), torch_dtype=torch.float32).eval()
    size = unet.config.sample_size
    yield (unet_name, UNetForward(unet).eval(),
           {"sample": torch.randn(2, 4, size, size, generator=g),
            "timestep": torch.tensor([10, 500], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(2, 5, unet.config.cross_attention_dim, generator=g)},
           ["out_sample"])
    size = vae.config.sample_size
    latent = size // 2 ** (len(vae.config.block_out_channels) - 1)
    yield (f"{vae_name}-decoder", VAEDecode(vae).eval(),
           {"latent_sample": torch.randn(2, 4, latent, latent, generator=g)}, ["sample"])
    yield (f"{vae_name}-encoder", VAEEncode(vae).eval(),
           {"sample": torch.rand(2, 3, size, size, generator=g) * 2 - 1}, ["latent_mean", "latent_logvar"])


def clip_input_ids(batch: int, lengths, vocab: int, generator) -> torch.Tensor:
    """Token ids as CLIP's tokenizer lays them out: start-of-text (vocab - 2), the prompt's tokens,
    end-of-text (vocab - 1, the largest id) padded to 77 with end-of-text."""
    ids = torch.full((batch, 77), vocab - 1, dtype=torch.int64)
    for row, length in enumerate(lengths):
        ids[row, 0] = vocab - 2
        ids[row, 1:1 + length] = torch.randint(3, vocab - 2, (length,), generator=generator)
    return ids


def next_models():
    """(name, wrapper, inputs, output names, source of the torch outputs) for the next model families (Tests/Fixtures/onnx/models):
    CLIP's text encoder, the 3D DiT, MONAI's 3D UNet and VAE decoder; each with its own seeds."""
    g = mmf.gen(7500)
    torch.manual_seed(7510)
    clip = CLIPTextModel(CLIPTextConfig(**CLIP_TEXT_TINY)).eval()
    mmf.make_nonconstant(clip, 7511)
    ids = clip_input_ids(2, [5, 11], CLIP_TEXT_TINY["vocab_size"], g)
    yield ("clip-text-tiny", CLIPText(clip).eval(), {"input_ids": ids}, ["last_hidden_state", "pooler_output"],
           "transformers")
    yield ("clip-text-tiny-skip1", CLIPTextSkip1(clip).eval(), {"input_ids": ids}, ["prompt_embeds"], "transformers")

    g = mmf.gen(7600)
    torch.manual_seed(7610)
    dit3d = DiT3D().eval()
    mmf.make_nonconstant(dit3d, 7611)
    yield ("dit3d-tiny", DiT3DForward(dit3d).eval(),
           {"sample": torch.randn(2, 4, 8, 8, 8, generator=g),
            "timestep": torch.tensor([250.0, 875.5], dtype=torch.float32),
            "encoder_hidden_states": torch.randn(2, 6, 16, generator=g)},
           ["out_sample"], "torch (DiT3D in make_onnx_fixtures.py)")

    if monai is None:
        print("  monai is not installed: the MONAI 3D models are skipped (pip install monai==1.6.1 einops)")
        return
    g = mmf.gen(7700)
    torch.manual_seed(7710)
    unet = DiffusionModelUNet(**MONAI_UNET_3D).eval()
    mmf.make_nonconstant(unet, 7711)  # MONAI zero-initialises the output conv and the attention projections
    yield ("monai-unet3d-tiny", MonaiUNetForward(unet).eval(),
           {"sample": torch.randn(2, 4, 4, 4, 4, generator=g),
            "timestep": torch.tensor([10, 500], dtype=torch.int64),
            "encoder_hidden_states": torch.randn(2, 6, MONAI_UNET_3D["cross_attention_dim"], generator=g)},
           ["out_sample"], "monai")
    torch.manual_seed(7720)
    vae = MonaiAutoencoderKL(**MONAI_VAE_3D).eval()
    mmf.make_nonconstant(vae, 7721)
    yield ("monai-vae3d-tiny-decoder", MonaiVAEDecode(vae).eval(),
           {"latent_sample": torch.randn(2, 4, 4, 4, 4, generator=g)}, ["sample"], "monai")


# ---------------------------------------------------------------- export


def strip_metadata(model: onnx.ModelProto) -> None:
    def clean(props):
        kept = [p for p in props if p.key in KEPT_METADATA]
        del props[:]
        props.extend(kept)

    for node in model.graph.node:
        clean(node.metadata_props)
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        clean(info.metadata_props)


def export(wrapper, inputs: dict, output_names: list, exporter: str, opset: int, path: Path) -> onnx.ModelProto:
    args = tuple(inputs.values())
    names = list(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=64)
            torch.onnx.export(wrapper, args, str(path), dynamo=True, opset_version=opset, external_data=False,
                              input_names=names, output_names=output_names,
                              dynamic_shapes={name: {0: batch} for name in names}, verbose=False)
        else:
            axes = {name: {0: "batch"} for name in names + output_names}
            torch.onnx.export(wrapper, args, str(path), dynamo=False, opset_version=opset,
                              input_names=names, output_names=output_names, dynamic_axes=axes)
    model = onnx.load(str(path))
    strip_metadata(model)
    onnx.save(model, str(path))
    data = path.read_bytes()
    for marker in (b"/work/", b"/root/", b"/home/", b"/tmp/"):
        assert marker not in data, f"{path.name} holds a machine path ({marker!r})"
    return model


def run_onnxruntime(path: Path, inputs: dict) -> dict:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name].numpy() for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))


def op_counts(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter((n.domain + "::" if n.domain else "") + n.op_type for n in model.graph.node)


def write_export(name, wrapper, inputs, output_names, exporter, opset, out: Path, source: str = "diffusers") -> dict:
    stem = f"{name}-{exporter}{opset}"
    path = out / f"{stem}.onnx"
    model = export(wrapper, inputs, output_names, exporter, opset, path)
    actual = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert actual == opset, f"{stem}: asked for opset {opset}, the exporter wrote {actual}"
    with torch.no_grad():
        reference = wrapper(*inputs.values())
    reference = reference if isinstance(reference, tuple) else (reference,)
    ours = run_onnxruntime(path, inputs)
    tensors = {key: value for key, value in inputs.items()}
    errors = {}
    for output_name, expected in zip(output_names, reference):
        got = torch.from_numpy(ours[output_name])
        errors[output_name] = mmf.rel_err(got, expected)
        assert errors[output_name] < TOLERANCE, f"{stem}: onnxruntime {output_name} differs by {errors[output_name]:.2e}"
        tensors[output_name] = got
        tensors[f"torch.{output_name}"] = expected.float()
    # The batch axis is dynamic: onnxruntime runs batch 1 too.
    single = run_onnxruntime(path, {key: value[:1] for key, value in inputs.items()})
    for output_name, expected in zip(output_names, reference):
        assert mmf.rel_err(torch.from_numpy(single[output_name]), expected[:1]) < TOLERANCE, f"{stem}: batch 1"
    library_versions = versions()
    if source != "diffusers":  # the diffusers exports' metadata stays as it was
        library_versions.update(next_versions())
    mmf.save_tensors(out / f"{stem}-io.safetensors", tensors, {
        "description": f"{stem}.onnx run with these inputs: onnxruntime (CPU EP) outputs by graph output name, "
                       f"{source} outputs as torch.<output name>",
        "generator": "tests/reference/make_onnx_fixtures.py",
        "versions": str(sorted(library_versions.items())),
    })
    print(f"  {stem}: ir {model.ir_version}, opset {opset}, {len(model.graph.node)} nodes, "
          f"{len(model.graph.initializer)} initializers, ort vs torch {max(errors.values()):.1e}")
    return {"stem": stem, "model": model, "errors": errors}


# ---------------------------------------------------------------- broken and hand-made files


def tiny_model(nodes, inputs, outputs, initializers=(), opset=17, ir_version=8) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="make_onnx_fixtures")
    model.ir_version = ir_version
    return model


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def weight(name, values, dims) -> TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, dims, np.asarray(values, np.float32).tobytes(), raw=True)


def external(name, dims, location, offset, length, data_type=TensorProto.FLOAT) -> TensorProto:
    tensor = TensorProto(name=name, data_type=data_type, dims=dims)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def add_model(initializer: TensorProto, shape=(2, 3)) -> onnx.ModelProto:
    """y = x + w, w the given initializer."""
    return tiny_model([helper.make_node("Add", ["x", initializer.name], ["y"], name="add")],
                      [float_input("x", list(shape))], [float_input("y", list(shape))], [initializer])


# Exports the exporter could not make valid: (stem, reason).
FAILED = []
# The same for the next model families (any exporter): (stem, reason).
NEXT_FAILED = []

# name -> (description, what the reader must say)
BROKEN = {}


def broken(name, description, expected):
    BROKEN[name] = (description, expected)
    return name


def write_broken(out: Path) -> None:
    folder = out / "broken"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)

    def save(name, model):
        (folder / name).write_bytes(model.SerializeToString())

    # A valid model with 4 KB of weights, cut in the middle of the weights.
    good = add_model(weight("w", np.arange(1024, dtype=np.float32), [1024]), shape=(1024,))
    data = good.SerializeToString()
    (folder / broken("truncated.onnx", "a valid model cut in the middle of its weights",
                     "truncated or garbled")).write_bytes(data[: len(data) // 2])
    (folder / broken("not-onnx.onnx", "a text file", "not an ONNX model")).write_bytes(
        b"This is a text file, not an ONNX model.\n" * 4)

    # External data whose location escapes the model's folder.
    save(broken("external-absolute.onnx", "external data location '/etc/hostname'", "absolute"),
         add_model(external("w", [2, 3], "/etc/hostname", 0, 24)))
    save(broken("external-dotdot.onnx", "external data location '../onnx/outside.bin'", "outside the model's folder"),
         add_model(external("w", [2, 3], "../onnx/outside.bin", 0, 24)))
    # The test links external-symlink.onnx.data to a file outside the folder at run time.
    save(broken("external-symlink.onnx", "location 'external-symlink.onnx.data', a symlink the test points outside",
                "outside the model's folder"),
         add_model(external("w", [2, 3], "external-symlink.onnx.data", 0, 24)))
    (folder / "short-external.onnx.data").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    save(broken("short-external.onnx", "offset 0 + length 24 of a 16-byte data file", "past the end"),
         add_model(external("w", [2, 3], "short-external.onnx.data", 0, 24)))
    (folder / "external-length.onnx.data").write_bytes(np.arange(8, dtype=np.float32).tobytes())
    save(broken("external-length.onnx", "external length 32 for a [2, 3] float tensor (24 bytes)", "needs 24"),
         add_model(external("w", [2, 3], "external-length.onnx.data", 0, 32)))
    save(broken("external-missing.onnx", "a location that does not exist", "cannot open"),
         add_model(external("w", [2, 3], "no-such-file.data", 0, 24)))

    # Data that disagrees with dims or dtype.
    mismatched = TensorProto(name="w", data_type=TensorProto.INT64, dims=[2, 3])
    mismatched.float_data.extend([1, 2, 3, 4, 5, 6])
    save(broken("dtype-data-mismatch.onnx", "an INT64 initializer holding float_data", "float_data"),
         tiny_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                    [helper.make_tensor_value_info("x", TensorProto.INT64, [2, 3])],
                    [helper.make_tensor_value_info("y", TensorProto.INT64, [2, 3])], [mismatched]))
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[536870913, 1], raw_data=b"\0" * 16)
    save(broken("inline-2gb.onnx", "a [536870913, 1] float tensor (2 GB + 4 bytes) declared inline, 16 bytes of raw_data",
                "2147483652"), add_model(huge, shape=(536870913, 1)))
    save(broken("raw-size.onnx", "a [2, 3] float tensor with 20 bytes of raw_data", "needs 24"),
         add_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3], raw_data=b"\0" * 20)))
    save(broken("negative-dim.onnx", "dims [2, -3]", "negative"),
         add_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, -3], raw_data=b"")))
    save(broken("overflow-dims.onnx", "dims [2^40, 2^40]", "too large"),
         add_model(TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 40, 1 << 40], raw_data=b"")))
    save(broken("unsupported-dtype.onnx", "an INT8 initializer", "INT8"),
         add_model(TensorProto(name="w", data_type=TensorProto.INT8, dims=[2, 3], raw_data=b"\1" * 6)))

    # Graph structure.
    conflict = add_model(weight("w", np.zeros(6), [3, 2]))
    conflict.graph.input.append(float_input("w", [2, 3]))
    save(broken("input-initializer-conflict.onnx", "graph input 'w' [2, 3] and initializer 'w' [3, 2]",
                "initializer"), conflict)
    save(broken("duplicate-producer.onnx", "two nodes write 'y'", "produced twice"),
         tiny_model([helper.make_node("Relu", ["x"], ["y"], name="first"),
                     helper.make_node("Sigmoid", ["x"], ["y"], name="second")],
                    [float_input("x", [2])], [float_input("y", [2])]))
    save(broken("undefined-input.onnx", "node 'add' reads 'nowhere', which nothing produces", "nowhere"),
         tiny_model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")],
                    [float_input("x", [2])], [float_input("y", [2])]))
    save(broken("missing-output.onnx", "graph output 'z' that no node produces", "missing output"),
         tiny_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                    [float_input("x", [2])], [float_input("y", [2]), float_input("z", [2])]))
    save(broken("cycle.onnx", "a = Add(x, c); c = Relu(a)", "cycle"),
         tiny_model([helper.make_node("Add", ["x", "c"], ["a"], name="add"),
                     helper.make_node("Relu", ["a"], ["c"], name="relu")],
                    [float_input("x", [2])], [float_input("a", [2])]))
    then_graph = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [], [float_input("t", [2])])
    save(broken("graph-attribute.onnx", "an If node (GRAPH attributes)", "GRAPH"),
         tiny_model([helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_graph,
                                      else_branch=then_graph)],
                    [float_input("x", [2]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                    [float_input("y", [2])]))


def write_unsupported(out: Path) -> None:
    """Valid ONNX that Nodus cannot run: the importer must name the op, its node and the opset."""
    folder = out / "unsupported"
    folder.mkdir(parents=True, exist_ok=True)
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 4, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 4])
    selected = helper.make_tensor_value_info("selected", TensorProto.INT64, [None, 3])
    onnx.save(tiny_model([helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["selected"], name="nms")],
                         [boxes, scores], [selected]), str(folder / "unsupported-op.onnx"))
    custom = tiny_model([helper.make_node("FancyGelu", ["x"], ["y"], name="fancy", domain="com.example")],
                        [float_input("x", [2])], [float_input("y", [2])])
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(custom, str(folder / "custom-domain.onnx"))


def write_input_default(out: Path) -> None:
    """A graph input 'w' that is also an initializer of the same dtype and shape: a constant with a
    default (onnxruntime uses the initializer unless the input is fed)."""
    model = add_model(weight("w", np.arange(6), [2, 3]))
    model.graph.input.append(float_input("w", [2, 3]))
    onnx.save(model, str(out / "input-default.onnx"))


def write_unsorted(out: Path) -> None:
    """A valid graph whose nodes are not in topological order: s = Sigmoid(r) comes before r = Relu(x)."""
    onnx.save(tiny_model([helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
                          helper.make_node("Relu", ["x"], ["r"], name="relu")],
                         [float_input("x", [2])], [float_input("s", [2])]), str(out / "unsorted.onnx"))


def write_external_small(out: Path) -> None:
    """y = x + w with w [2, 3] = 0..5 in external data, at opset 17 / IR 8 (the checker's versions)."""
    (out / "external-small.onnx.data").write_bytes(b"\0" * 8 + np.arange(6, dtype=np.float32).tobytes())
    onnx.save(add_model(external("w", [2, 3], "external-small.onnx.data", 8, 24)), str(out / "external-small.onnx"))


def write_external(out: Path, stem: str) -> str:
    model = onnx.load(str(out / f"{stem}.onnx"))
    name = f"{stem}-external"
    onnx.save(model, str(out / f"{name}.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{name}.onnx.data", size_threshold=0)
    return name


# ---------------------------------------------------------------- report


def size(path: Path) -> int:
    return path.stat().st_size


def write_report(out: Path, results: list, external_name: str, next_results: list) -> None:
    v = versions()
    lines = [
        "# ONNX fixtures (generated)",
        "",
        "Generated by `tests/reference/make_onnx_fixtures.py`; do not edit by hand.",
        "",
        "Regenerate (about two minutes on 2 cores):",
        "",
        f"    {COMMAND}",
        "",
        "Versions: " + ", ".join(f"{k} {v[k]}" for k in v) + ".",
        "Of the dynamo exporter's node metadata only `pkg.torch.onnx.name_scopes` and",
        "`pkg.onnxscript.rewriter.rule_name` are kept (the stack traces hold machine paths; `namespace`,",
        "`class_hierarchy` and `fx_node` would triple the sizes). `unet-micro` and `vae-micro` are small",
        "models made by the script (UNET_MICRO, VAE_MICRO; unet-tiny's and vae-tiny's exports do not fit",
        "the fixture budget); `--extra-dir DIR` writes their diffusers folders, the exports left out here",
        "and those of unet-tiny and vae-tiny.",
        "",
        "## Exports (`onnx/`)",
        "",
        "| file | bytes | ir | opset | nodes | initializers | onnxruntime vs diffusers |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        model = result["model"]
        stem = result["stem"]
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        lines.append(f"| `{stem}.onnx` (+ `-io.safetensors`) | {size(out / (stem + '.onnx'))} | {model.ir_version} | "
                     f"{opset} | {len(model.graph.node)} | {len(model.graph.initializer)} | "
                     f"{max(result['errors'].values()):.1e} |")
    lines += [
        f"| `{external_name}.onnx` + `.onnx.data` | {size(out / (external_name + '.onnx'))} + "
        f"{size(out / (external_name + '.onnx.data'))} | | | | | (same graph, external data) |",
        f"| `input-default.onnx` | {size(out / 'input-default.onnx')} | | | | | graph input 'w' also an initializer |",
        f"| `unsorted.onnx` | {size(out / 'unsorted.onnx')} | 8 | 17 | 2 | 0 | nodes out of topological order |",
        f"| `external-small.onnx` + `.onnx.data` | {size(out / 'external-small.onnx')} + "
        f"{size(out / 'external-small.onnx.data')} | 8 | 17 | 1 | 1 | w [2, 3] = 0..5 at offset 8 |",
        "",
        *(["## Exports the exporter could not make", "",
           "The dynamo exporter builds opset 18 and converts down to 17 with ONNX's version converter:", ""]
          + [f"* `{stem}`: {reason}" for stem, reason in FAILED] + [""] if FAILED else []),
        "## Broken files (`onnx/broken/`)",
        "",
        "| file | what is wrong | the error says |",
        "|---|---|---|",
    ]
    for name, (description, expected) in BROKEN.items():
        lines.append(f"| `{name}` | {description} | `{expected}` |")
    lines += ["", "## Ops per export", ""]
    for result in results:
        counts = op_counts(result["model"])
        lines.append(f"* `{result['stem']}`: " + ", ".join(f"{op} {n}" for op, n in sorted(counts.items())))
    lines += ["", "## The next model families (`onnx/models/`)", "",
              "CLIP's text encoder (transformers), a MedSyn2-style 3D DiT (`DiT3D` in the script) and MONAI's 3D",
              "DiffusionModelUNet and AutoencoderKL decoder; `bindings/python/tests/test_onnx_models.py` runs them.",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in next_versions().items()) + ".", "",
              "| file | bytes | ir | opset | nodes | initializers | onnxruntime vs torch |",
              "|---|---|---|---|---|---|---|"]
    for result in next_results:
        model = result["model"]
        stem = result["stem"]
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        lines.append(f"| `models/{stem}.onnx` (+ `-io.safetensors`) | {size(NEXT / (stem + '.onnx'))} | "
                     f"{model.ir_version} | {opset} | {len(model.graph.node)} | {len(model.graph.initializer)} | "
                     f"{max(result['errors'].values()):.1e} |")
    if NEXT_FAILED:
        lines += ["", "Exports the exporter could not make (or onnxruntime could not run right):", ""]
        lines += [f"* `{stem}`: {reason}" for stem, reason in NEXT_FAILED]
    lines += ["", "Ops per export:", ""]
    for result in next_results:
        counts = op_counts(result["model"])
        lines.append(f"* `{result['stem']}`: " + ", ".join(f"{op} {n}" for op, n in sorted(counts.items())))
    next_total = sum(size(p) for p in NEXT.rglob("*") if p.is_file()) if NEXT.exists() else 0
    lines += ["", f"Size of `onnx/models/`: {next_total} bytes."]
    total = sum(size(p) for p in out.rglob("*") if p.is_file())
    lines += ["", f"Total size of `onnx/`: {total} bytes.", ""]
    (FIXTURES / "GENERATED-onnx-fixtures.md").write_text("\n".join(lines))


def write_unet_lora(folders: Path) -> None:
    """A diffusers LoRA for unet-micro (the model of the unet-micro exports) and diffusers' output with it on
    the exports' inputs: adapters apply to an ONNX export without re-exporting it (test_onnx.py)."""
    from diffusers.loaders.lora_pipeline import StableDiffusionLoraLoaderMixin
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file as load_torch, save_file as save_torch

    unet = UNet2DConditionModel.from_pretrained(str(folders / "unet-micro"), torch_dtype=torch.float32).eval()
    torch.manual_seed(7300)  # PEFT initialises lora_A from the global RNG
    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]), adapter_name="A")
    g = mmf.gen(7301)
    with torch.no_grad():
        for name, module in sorted(unet.named_modules(), key=lambda item: item[0]):
            if hasattr(module, "lora_B") and "A" in module.lora_B:
                weight = module.lora_B["A"].weight
                weight.copy_(torch.randn(weight.shape, generator=g) * 0.2)
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionLoraLoaderMixin.save_lora_weights(
            tmp, unet_lora_layers=get_peft_model_state_dict(unet, adapter_name="A"),
            unet_lora_adapter_metadata=unet.peft_config["A"].to_dict())
        shutil.copy(Path(tmp) / "pytorch_lora_weights.safetensors", OUT / "unet-micro-lora-A.safetensors")
    io = load_torch(str(OUT / "unet-micro-dynamo18-io.safetensors"))
    inputs = {name: io[name] for name in ("sample", "timestep", "encoder_hidden_states")}
    with torch.no_grad():
        output = unet(inputs["sample"], inputs["timestep"], encoder_hidden_states=inputs["encoder_hidden_states"]).sample
    save_torch({**inputs, "A": output.contiguous()}, str(OUT / "unet-micro-lora-A-forward.safetensors"),
               metadata={"generator": "tests/reference/make_onnx_fixtures.py",
                         "description": "diffusers UNet2DConditionModel unet-micro with LoRA A (r 4, alpha 8, "
                                        "to_q/to_k/to_v/to_out.0) on the unet-micro exports' inputs"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--extra-dir", type=Path, help="also write the exports not committed (and vae-tiny's) here")
    parser.add_argument("--only", help="comma-separated model names (for quick local runs)")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*"):
        if stale.is_file():
            stale.unlink()
        elif stale.name not in ("broken", "ops"):  # ops/: make_onnx_op_fixtures.py
            shutil.rmtree(stale)
    results = []
    if arguments.extra_dir:
        arguments.extra_dir.mkdir(parents=True, exist_ok=True)
    folders = arguments.extra_dir or Path(tempfile.mkdtemp(prefix="onnx-fixture-models-"))
    for micro in (True, False) if arguments.extra_dir else (True,):
        for name, wrapper, inputs, output_names in models(micro, folders):
            if arguments.only and name not in arguments.only.split(","):
                continue
            for exporter, opset in EXPORTS:
                committed = (name, exporter, opset) in COMMITTED
                target = OUT if committed else arguments.extra_dir
                if target is None:
                    continue
                try:
                    result = write_export(name, wrapper, inputs, output_names, exporter, opset, target)
                except Exception as error:  # noqa: BLE001  (recorded, not hidden)
                    if (exporter, opset) != ("dynamo", 17):
                        raise
                    # The dynamo exporter builds opset 18 and converts down; the conversion can
                    # leave opset-18 attributes behind (Split num_outputs), which onnxruntime rejects.
                    stem = f"{name}-{exporter}{opset}"
                    for leftover in (target / f"{stem}.onnx", target / f"{stem}-io.safetensors"):
                        leftover.unlink(missing_ok=True)
                    text = str(error)
                    reason = (text[text.index("Error "):].split("\n")[0] if "Error " in text
                              else text.split("\n")[0].split(": ", 1)[-1])
                    if committed:
                        FAILED.append((stem, reason))
                    print(f"  {stem}: not usable: {reason}")
                    continue
                if committed:
                    results.append(result)
    if not arguments.only or "unet-micro" in arguments.only.split(","):
        write_unet_lora(folders)
    next_results = []
    NEXT.mkdir(parents=True, exist_ok=True)
    for name, wrapper, inputs, output_names, source in next_models():
        if arguments.only and name not in arguments.only.split(","):
            continue
        for exporter, opset in NEXT_EXPORTS:
            committed = (name, exporter, opset) in NEXT_COMMITTED
            target = NEXT if committed else arguments.extra_dir
            if target is None:
                continue
            try:
                result = write_export(name, wrapper, inputs, output_names, exporter, opset, target, source)
            except Exception as error:  # noqa: BLE001  (recorded in the report, not hidden)
                stem = f"{name}-{exporter}{opset}"
                for leftover in (target / f"{stem}.onnx", target / f"{stem}-io.safetensors"):
                    leftover.unlink(missing_ok=True)
                reason = f"{type(error).__name__}: " + (str(error).strip().split("\n")[0] or "(no message)")
                if committed:
                    NEXT_FAILED.append((stem, reason))
                print(f"  {stem}: not usable: {reason}")
                continue
            if committed:
                next_results.append(result)
    external_name = write_external(OUT, "vae-micro-encoder-dynamo18")
    write_input_default(OUT)
    write_external_small(OUT)
    write_unsorted(OUT)
    write_broken(OUT)
    write_unsupported(OUT)
    write_report(OUT, results, external_name, next_results)
    total = sum(size(p) for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT.relative_to(REPO)} ({total} bytes) and Tests/Fixtures/GENERATED-onnx-fixtures.md")


if __name__ == "__main__":
    main()
