"""MedSyn2Transformer3DModel: a MedSyn2-style volumetric DiT, written here as a diffusers model.

MedSyn2's code is not public. This module follows the seed's description of it, so that users
can train or export their own and Nodus has a torch reference to match:

* the noisy latent and a segmentation-mask latent, channel-concatenated by the pipeline
  (`in_channels` = latent channels + mask channels), patchified by a Conv3d with kernel =
  stride = `patch_size` into tokens in (depth, height, width) order;
* positions, computed (not stored), as `pos_embed_type` says: "sincos" (default) adds a 3D sin-cos
  embedding (a third of the width per axis, each diffusers' `get_1d_sincos_pos_embed_from_grid` of
  the integer positions); "rope" rotates q and k of the self-attention instead (3D RoPE: each head's
  width split as Wan's `WanRotaryPosEmbed` splits it, depth d - 4 (d // 6), height and width 2 (d // 6)
  each; per axis the frequencies theta^(-2j / axis width), applied to interleaved pairs in float32);
* the timestep (float, sigma * 1000 as diffusers' flow-matching schedulers give it) through
  diffusers' `Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)` and
  `TimestepEmbedding`;
* text tokens [B, L, cross_attention_dim] projected by `context_embedder` to the model width;
* blocks of AdaLN-modulated (shift, scale, gate) self-attention, cross-attention and a GELU
  (tanh) feed-forward, with PixArt's layout: one shared `adaln_single` Linear to 9 x width plus
  each block's `scale_shift_table` [9, width];
* gated attention in both attentions (Qiu et al. 2025, diffusers' `Krea2Attention`): q and k
  RMS-normed per head, the attention output times sigmoid(`to_gate`(x)) before `to_out`;
* a depthwise-separable Conv3d after each block over the token grid (`conv.depthwise`,
  3x3x3 groups = width, then `conv.pointwise`, 1x1x1), added to the residual;
* PixArt's final layer: `norm_out` modulated by `scale_shift_table` [2, width] + the timestep
  embedding, `proj_out` to patch^3 x out_channels values per token, and the unpatchify.

Module names follow diffusers (`transformer_blocks.N.attn1.to_q`, `attn2`, `ff.net.0.proj`, ...)
so that PEFT LoRAs target it. The model predicts what its scheduler's `prediction_type` says
(x0, "sample", in MedSyn2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import TimestepEmbedding, Timesteps, get_1d_sincos_pos_embed_from_grid
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin


def rope_3d(head_width: int, grid: tuple[int, int, int], theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [d h w, head_width / 2] float32: per token the angles of its depth, row and column index
    over the three parts of the head width (pairs of channels)."""
    side = 2 * (head_width // 6)
    parts = [head_width - 2 * side, side, side]
    axes = [torch.arange(size, dtype=torch.float64) for size in grid]
    depth, row, column = (positions.reshape(-1) for positions in torch.meshgrid(*axes, indexing="ij"))
    angles = []
    for positions, part in zip((depth, row, column), parts):
        frequencies = 1.0 / theta ** (torch.arange(0, part, 2, dtype=torch.float64) / part)
        angles.append(torch.outer(positions, frequencies))
    angle = torch.cat(angles, dim=1)
    return torch.cos(angle).float(), torch.sin(angle).float()


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x [B, heads, N, head width] with each pair (2i, 2i + 1) rotated by its angle."""
    cos, sin = rope
    pairs = x.unflatten(-1, (-1, 2))
    real, imaginary = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([real * cos - imaginary * sin, real * sin + imaginary * cos], dim=-1)
    return rotated.flatten(-2)


def sincos_3d(width: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """[d h w, width] float32: per token, the 1-D sin-cos embeddings of its depth, row and column
    index, each `width / 3` wide, concatenated in that order."""
    if width % 6:
        raise ValueError(f"the 3D sin-cos embedding needs a width divisible by 6, got {width}")
    axes = [torch.arange(size, dtype=torch.float64) for size in grid]
    depth, row, column = torch.meshgrid(*axes, indexing="ij")
    parts = [get_1d_sincos_pos_embed_from_grid(width // 3, positions.reshape(-1), output_type="pt")
             for positions in (depth, row, column)]
    return torch.cat(parts, dim=1).float()


class RMSNorm(torch.nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class GatedAttention(torch.nn.Module):
    """to_out(attention(norm_q(q), norm_k(k), v) * sigmoid(to_gate(x))); keys and values from the
    context when one is given."""

    def __init__(self, width: int, heads: int, bias: bool, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q = torch.nn.Linear(width, width, bias=bias)
        self.to_k = torch.nn.Linear(width, width, bias=bias)
        self.to_v = torch.nn.Linear(width, width, bias=bias)
        self.norm_q = RMSNorm(width // heads, eps)
        self.norm_k = RMSNorm(width // heads, eps)
        self.to_gate = torch.nn.Linear(width, width, bias=bias)
        self.to_out = torch.nn.ModuleList([torch.nn.Linear(width, width), torch.nn.Dropout(0.0)])

    def forward(self, x, context=None, rope=None):
        source = x if context is None else context
        batch, _, width = x.shape

        def heads(t):
            return t.view(batch, -1, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(source)), heads(self.to_v(source))
        q, k = self.norm_q(q), self.norm_k(k)
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(batch, -1, width) * torch.sigmoid(self.to_gate(x))
        return self.to_out[1](self.to_out[0](out))


class DepthwiseSeparableConv3d(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.depthwise = torch.nn.Conv3d(width, width, 3, padding=1, groups=width)
        self.pointwise = torch.nn.Conv3d(width, width, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class MedSyn2Block(torch.nn.Module):
    def __init__(self, width: int, heads: int, bias: bool, eps: float, ff_mult: int):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn1 = GatedAttention(width, heads, bias, eps)
        self.norm2 = torch.nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn2 = GatedAttention(width, heads, bias, eps)
        self.norm3 = torch.nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(width, mult=ff_mult, activation_fn="gelu-approximate")
        self.scale_shift_table = torch.nn.Parameter(torch.randn(9, width) / width**0.5)
        self.conv = DepthwiseSeparableConv3d(width)

    def forward(self, x, modulation, context, grid, rope=None):
        batch, _, width = x.shape
        (shift_msa, scale_msa, gate_msa, shift_mca, scale_mca, gate_mca, shift_mlp, scale_mlp, gate_mlp) = (
            self.scale_shift_table[None] + modulation.reshape(batch, 9, width)).chunk(9, dim=1)
        x = x + gate_msa * self.attn1(self.norm1(x) * (1 + scale_msa) + shift_msa, rope=rope)
        x = x + gate_mca * self.attn2(self.norm2(x) * (1 + scale_mca) + shift_mca, context)
        x = x + gate_mlp * self.ff(self.norm3(x) * (1 + scale_mlp) + shift_mlp)
        volume = x.transpose(1, 2).reshape(batch, width, *grid)
        return x + self.conv(volume).flatten(2).transpose(1, 2)


class MedSyn2Transformer3DModel(ModelMixin, ConfigMixin):
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,
        out_channels: int = 4,
        patch_size: int = 2,
        num_layers: int = 8,
        num_attention_heads: int = 6,
        attention_head_dim: int = 64,
        cross_attention_dim: int = 768,
        ff_mult: int = 4,
        attention_bias: bool = True,
        qk_norm_eps: float = 1e-6,
        sample_size: tuple[int, int, int] = (16, 32, 32),
        pos_embed_type: str = "sincos",
        rope_theta: float = 10000.0,
    ):
        super().__init__()
        width = num_attention_heads * attention_head_dim
        if pos_embed_type not in ("sincos", "rope"):
            raise ValueError(f"pos_embed_type must be 'sincos' or 'rope', got {pos_embed_type!r}")
        self.pos_embed = torch.nn.Module()
        self.pos_embed.proj = torch.nn.Conv3d(in_channels, width, patch_size, stride=patch_size)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(256, width)
        self.context_embedder = torch.nn.Linear(cross_attention_dim, width)
        self.adaln_single = torch.nn.Module()
        self.adaln_single.linear = torch.nn.Linear(width, 9 * width)
        self.transformer_blocks = torch.nn.ModuleList(
            [MedSyn2Block(width, num_attention_heads, attention_bias, qk_norm_eps, ff_mult) for _ in range(num_layers)])
        self.norm_out = torch.nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = torch.nn.Parameter(torch.randn(2, width) / width**0.5)
        self.proj_out = torch.nn.Linear(width, patch_size**3 * out_channels)

    def forward(self, sample, timestep, encoder_hidden_states, return_dict: bool = True):
        batch, _, depth, height, width_voxels = sample.shape
        patch = self.config.patch_size
        grid = (depth // patch, height // patch, width_voxels // patch)
        x = self.pos_embed.proj(sample).flatten(2).transpose(1, 2)
        rope = None
        if self.config.pos_embed_type == "rope":
            rope = rope_3d(self.config.attention_head_dim, grid, self.config.rope_theta)
        else:
            x = x + sincos_3d(x.shape[-1], grid).to(x.dtype)[None]
        temb = self.time_embed(self.time_proj(timestep.reshape(-1).expand(batch)).to(x.dtype))
        modulation = self.adaln_single.linear(F.silu(temb))
        context = self.context_embedder(encoder_hidden_states)
        for block in self.transformer_blocks:
            x = block(x, modulation, context, grid, rope)
        shift, scale = (self.scale_shift_table[None] + temb[:, None]).chunk(2, dim=1)
        x = self.proj_out(self.norm_out(x) * (1 + scale) + shift)
        channels = self.config.out_channels
        d, h, w = grid
        x = x.reshape(batch, d, h, w, patch, patch, patch, channels).permute(0, 7, 1, 4, 2, 5, 3, 6)
        x = x.reshape(batch, channels, d * patch, h * patch, w * patch)
        return Transformer2DModelOutput(sample=x) if return_dict else (x,)
