"""Swin Transformer encoder in Flax NNX, in the layout of the NeWCRFs / PixelFormer backbone.

What is whose:
- [paper] Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted
  Windows", ICCV 2021: 4x4 patch embedding, four stages of window attention with relative
  position bias, every second block cyclically shifted by window // 2 with an attention mask,
  patch merging (2x2 -> 1, channels x2) between stages. Variant table (T/S/B/L) from its
  Table 1 / released configs.
- [authors' code] The dense-prediction variant of microsoft/Swin-Transformer that NeWCRFs
  vendors (aliyun/NeWCRFs d327bf7, newcrfs/networks/swin_transformer.py; PixelFormer bb0ae9f
  carries the same file), whose behaviour we
  reproduce exactly: the image is zero-padded to a multiple of the patch size; inside every
  block the LayerNorm-ed tokens are zero-padded at the bottom/right to a multiple of the window
  and the shift mask (-100 between regions) is built on that padded grid; padded tokens take
  part in attention (they are not masked); patch merging zero-pads odd sizes; each stage output
  (before merging) gets its own LayerNorm (`norm0`..`norm3`); stochastic depth grows linearly
  from 0 to `drop_path_rate` over all blocks; no absolute position embedding (NeWCRFs ape=False).
- [ours] NHWC throughout, tokens kept as (B, H, W, C) maps between blocks, window partition
  with einops, masks and relative-position indices computed with numpy at trace time (static
  shapes; these helpers live in `dgr_jax/models/blocks/host_common.py`, shared with the
  NeWCRFs and PixelFormer decoders), no stored RNG: stochastic depth draws from `rngs` passed
  to `__call__`.

Relation to transformers (our CI reference): `SwinBackbone` (always_partition=True) computes
exactly what this module computes. `SwinModel` (classification) instead disables the shift and
shrinks the window when a stage is no larger than the window (`set_shift_and_window_size`);
`clamp_window=True` reproduces that (microsoft's classification code does the same).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dgr_jax.models.blocks.host_common import (
    TRUNC_NORMAL_INIT,
    Mlp,
    layer_norm,
    linear,
    relative_position_index,
    shifted_window_mask,
    window_attention,
    window_partition,
    window_reverse,
)
from dgr_jax.registry import ENCODERS


@dataclasses.dataclass(frozen=True)
class SwinVariant:
    """Width and depth of one Swin size."""

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]


# Swin paper Table 1 / microsoft configs; NeWCRFs NewCRFDepth.__init__ uses T, B, L.
SWIN_VARIANTS: dict[str, SwinVariant] = {
    "T": SwinVariant(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "S": SwinVariant(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "B": SwinVariant(128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "L": SwinVariant(192, (2, 2, 18, 2), (6, 12, 24, 48)),
    # For tests: stage 3 has a second (shifted) block so the mask path is exercised.
    "tiny_test": SwinVariant(16, (1, 1, 2, 1), (1, 1, 2, 2)),
}


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth per sample (timm DropPath): zero a sample's branch, rescale the rest."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


# --------------------------------------------------------------------------------------------
# Modules.
# --------------------------------------------------------------------------------------------
class WindowAttention(nnx.Module):
    """Multi-head self-attention inside windows with a learned relative position bias."""

    def __init__(self, dim: int, num_heads: int, window: int, *, rngs: nnx.Rngs, dtype):
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = linear(dim, 3 * dim, rngs=rngs, dtype=dtype)
        self.proj = linear(dim, dim, rngs=rngs, dtype=dtype)
        self.relative_position_bias_table = nnx.Param(
            TRUNC_NORMAL_INIT(rngs.params(), ((2 * window - 1) ** 2, num_heads), jnp.float32)
        )

    def __call__(self, x: jax.Array, mask: np.ndarray | None, window: int) -> jax.Array:
        """x (B * nW, N, C) with N = window^2 -> (B * nW, N, C)."""
        bw, n, c = x.shape
        # (B*nW, N, 3C) -> (3, B*nW, heads, N, d), channel order [q | k | v] x heads as torch.
        qkv = einops.rearrange(self.qkv(x), "b n (t h d) -> t b h n d", t=3, h=self.num_heads)
        bias = self.relative_position_bias_table[...][relative_position_index(window, self.window)]
        bias = jnp.transpose(bias, (2, 0, 1))  # (N, N, heads) -> (heads, N, N)
        out = window_attention(qkv[0] * self.scale, qkv[1], qkv[2], bias, mask)
        return self.proj(einops.rearrange(out, "b h n d -> b n (h d)"))


class SwinBlock(nnx.Module):
    """LN -> (shifted) window attention -> residual -> LN -> MLP -> residual, on (B, H, W, C)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shift: int,
        *,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        clamp_window: bool = False,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.window = window
        self.shift = shift
        self.drop_path_rate = drop_path_rate
        self.clamp_window = clamp_window
        self.norm1 = layer_norm(dim, rngs=rngs, dtype=dtype)
        self.attn = WindowAttention(dim, num_heads, window, rngs=rngs, dtype=dtype)
        self.norm2 = layer_norm(dim, rngs=rngs, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        _, h, w, _ = x.shape
        window, shift = self.window, self.shift
        if self.clamp_window and min(h, w) <= window:  # transformers SwinModel / classification
            window, shift = min(h, w), 0
        keys = (None, None) if key is None else tuple(jax.random.split(key))
        shortcut = x
        x = self.norm1(x)
        # Zero padding after the norm, bottom/right, to a multiple of the window (official).
        x = jnp.pad(x, ((0, 0), (0, -h % window), (0, -w % window), (0, 0)))
        hp, wp = x.shape[1:3]
        mask = None
        if shift > 0:
            x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
            mask = shifted_window_mask(hp, wp, window, shift)
        x = window_reverse(self.attn(window_partition(x, window), mask, window), window, hp, wp)
        if shift > 0:
            x = jnp.roll(x, (shift, shift), axis=(1, 2))
        x = shortcut + drop_path(x[:, :h, :w], self.drop_path_rate, keys[0])
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, keys[1])


class PatchMerging(nnx.Module):
    """2x2 neighbourhood concat [(0,0), (1,0), (0,1), (1,1)] -> LN -> Linear(4C, 2C)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.norm = layer_norm(4 * dim, rngs=rngs, dtype=dtype)
        self.reduction = linear(4 * dim, 2 * dim, use_bias=False, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        _, h, w, _ = x.shape
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        # Order (row offset, col offset) = (0,0), (1,0), (0,1), (1,1), as torch's cat.
        parts = [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]]
        return self.reduction(self.norm(jnp.concatenate(parts, axis=-1)))


class PatchEmbed(nnx.Module):
    """Non-overlapping p x p patches -> Linear (as a strided conv) -> LayerNorm."""

    def __init__(self, patch: int, in_chans: int, dim: int, *, rngs: nnx.Rngs, dtype):
        self.patch = patch
        self.proj = nnx.Conv(
            in_chans, dim, (patch, patch), strides=patch, padding="VALID", dtype=dtype, rngs=rngs
        )
        self.norm = layer_norm(dim, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        _, h, w, _ = x.shape
        x = jnp.pad(x, ((0, 0), (0, -h % self.patch), (0, -w % self.patch), (0, 0)))
        return self.norm(self.proj(x))


class SwinStage(nnx.Module):
    """`depth` blocks, alternating plain and shifted windows (official `BasicLayer`)."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window: int,
        drop_path_rates: Sequence[float],
        *,
        downsample: bool,
        mlp_ratio: float,
        clamp_window: bool,
        rngs: nnx.Rngs,
        dtype,
    ):
        self.blocks = nnx.List(
            [
                SwinBlock(
                    dim,
                    num_heads,
                    window,
                    0 if i % 2 == 0 else window // 2,
                    mlp_ratio=mlp_ratio,
                    drop_path_rate=drop_path_rates[i],
                    clamp_window=clamp_window,
                    rngs=rngs,
                    dtype=dtype,
                )
                for i in range(depth)
            ]
        )
        self.downsample = PatchMerging(dim, rngs=rngs, dtype=dtype) if downsample else None


def _run_block(block: SwinBlock, x: jax.Array, key: jax.Array | None) -> jax.Array:
    return block(x, key)


@ENCODERS.register("swin")
class Swin(nnx.Module):
    """Swin encoder returning {"stage1".."stage4"} NHWC maps at strides 4, 8, 16, 32.

    Inputs are ImageNet-normalised float images (B, H, W, 3); sizes that are not multiples of
    the patch size or of the window are zero-padded as in the official dense-prediction code,
    and stage k has spatial size ceil(H / 2^(k+1)) x ceil(W / 2^(k+1)).
    """

    def __init__(
        self,
        variant: str = "T",
        *,
        window_size: int = 7,
        patch_size: int = 4,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,  # NeWCRFs trains Swin-L with 0.3
        clamp_window: bool = False,  # True: transformers SwinModel / classification behaviour
        embed_dim: int | None = None,  # overrides of the variant table
        depths: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        remat: bool = False,
    ):
        if variant not in SWIN_VARIANTS:
            raise KeyError(f"unknown Swin variant {variant!r}; valid: {sorted(SWIN_VARIANTS)}")
        base = SWIN_VARIANTS[variant]
        embed_dim = embed_dim or base.embed_dim
        depths = tuple(depths or base.depths)
        num_heads = tuple(num_heads or base.num_heads)
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"Swin needs 4 stages, got depths={depths}, num_heads={num_heads}")
        self.remat = remat
        self.drop_path_rate = drop_path_rate
        dims = [embed_dim * 2**i for i in range(4)]
        self.out_channels = {f"stage{i + 1}": d for i, d in enumerate(dims)}
        rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
        starts = np.cumsum((0, *depths)).tolist()

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, rngs=rngs, dtype=dtype)
        self.layers = nnx.List(
            [
                SwinStage(
                    dims[i],
                    depths[i],
                    num_heads[i],
                    window_size,
                    rates[starts[i] : starts[i + 1]],
                    downsample=i < 3,
                    mlp_ratio=mlp_ratio,
                    clamp_window=clamp_window,
                    rngs=rngs,
                    dtype=dtype,
                )
                for i in range(4)
            ]
        )
        # Per-stage output norms (official `norm0`..`norm3`, out_indices=(0, 1, 2, 3)).
        self.norms = nnx.List([layer_norm(d, rngs=rngs, dtype=dtype) for d in dims])

    def __call__(
        self, images: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> dict[str, jax.Array]:
        """images (B, H, W, C_in) -> {"stage1": (B, H/4, W/4, C), ..., "stage4": (.., 8C)}.

        Stochastic depth is active only with `train=True`, a non-zero `drop_path_rate` and
        `rngs` (its `dropout` stream); training with a non-zero rate and no rngs is an error so
        that the recipe is never silently changed.
        """
        key = None
        if train and self.drop_path_rate > 0.0:
            if rngs is None:
                raise ValueError("Swin: drop_path_rate > 0 in training needs `rngs` (dropout)")
            key = rngs.dropout()
        run = nnx.remat(_run_block) if self.remat else _run_block
        x = self.patch_embed(images)
        feats = {}
        i_block = 0
        for i, (stage, norm) in enumerate(zip(self.layers, self.norms)):
            for block in stage.blocks:
                x = run(block, x, None if key is None else jax.random.fold_in(key, i_block))
                i_block += 1
            feats[f"stage{i + 1}"] = norm(x)
            if stage.downsample is not None:
                x = stage.downsample(x)
        return feats
