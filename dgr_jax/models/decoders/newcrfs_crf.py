"""Neural window fully-connected CRF (FC-CRF) layer of NeWCRFs, in Flax NNX.

What is whose:
- [paper] Yuan et al., "Neural Window Fully-connected CRFs for Monocular Depth Estimation",
  CVPR 2022, Sec. 3: inside each window every pixel i is connected to every pixel j; the
  pairwise potential is computed by multi-head attention, psi_p = softmax(Q K^T + P) X, with
  queries and keys from the image feature F and the values X from the (upsampled) prediction
  of the coarser level; the unary potential is produced by the network and the optimisation
  step is a residual update followed by an MLP. Windows alternate with shifted windows.
- [authors' code] aliyun/NeWCRFs d327bf7, newcrfs/networks/newcrf_layers.py (`NewCRF`,
  `BasicCRFLayer`, `CRFBlock`, `WindowAttention` with a `qk` projection): per level, optional
  3x3 convs project the feature (`proj_x`) and the coarse prediction (`proj_v`) to the level's
  width; `depth` (2) blocks, the second shifted by window // 2 with the Swin mask; per block
  x <- x + proj(attn(LN(x) -> q, k; v)), x <- x + MLP(LN(x)); the SAME v feeds every block (it
  is never normalised or updated); final LayerNorm (`norm_crf`). Padding to window multiples is
  applied to both LN(x) and v, exactly as the Swin blocks.
- [ours] NHWC maps between blocks; window partition / masks shared with the Swin encoder
  (`dgr_jax/models/blocks/host_common.py`).
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dgr_jax.models.blocks.host_common import (
    TRUNC_NORMAL_INIT,
    Mlp,
    conv3x3,
    layer_norm,
    linear,
    relative_position_index,
    shifted_window_mask,
    window_attention,
    window_partition,
    window_reverse,
)


class CRFAttention(nnx.Module):
    """Window attention with queries/keys from x and externally given values v."""

    def __init__(self, dim: int, num_heads: int, window: int, *, rngs: nnx.Rngs, dtype):
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        self.qk = linear(dim, 2 * dim, rngs=rngs, dtype=dtype)
        self.proj = linear(dim, dim, rngs=rngs, dtype=dtype)
        self.relative_position_bias_table = nnx.Param(
            TRUNC_NORMAL_INIT(rngs.params(), ((2 * window - 1) ** 2, num_heads), jnp.float32)
        )

    def __call__(self, x: jax.Array, v: jax.Array, mask: np.ndarray | None) -> jax.Array:
        """x, v (B * nW, N, C) -> (B * nW, N, C)."""
        # (B*nW, N, 2C) -> (2, B*nW, heads, N, d), channel order [q | k] x heads as torch.
        qk = einops.rearrange(self.qk(x), "b n (t h d) -> t b h n d", t=2, h=self.num_heads)
        vh = einops.rearrange(v, "b n (h d) -> b h n d", h=self.num_heads)
        bias = self.relative_position_bias_table[...][relative_position_index(self.window)]
        bias = jnp.transpose(bias, (2, 0, 1))  # (N, N, heads) -> (heads, N, N)
        out = window_attention(qk[0] * self.scale, qk[1], vh, bias, mask)
        return self.proj(einops.rearrange(out, "b h n d -> b n (h d)"))


class CRFBlock(nnx.Module):
    """One (shifted-)window FC-CRF update of x given the coarse prediction v, on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, *, rngs: nnx.Rngs, dtype):
        self.window = window
        self.shift = shift
        self.norm1 = layer_norm(dim, rngs=rngs, dtype=dtype)
        self.attn = CRFAttention(dim, num_heads, window, rngs=rngs, dtype=dtype)
        self.norm2 = layer_norm(dim, rngs=rngs, dtype=dtype)
        self.mlp = Mlp(dim, 4 * dim, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, v: jax.Array) -> jax.Array:
        _, h, w, _ = x.shape
        win, shift = self.window, self.shift
        pad = ((0, 0), (0, -h % win), (0, -w % win), (0, 0))
        shortcut = x
        xs, vs = jnp.pad(self.norm1(x), pad), jnp.pad(v, pad)
        hp, wp = xs.shape[1:3]
        mask = None
        if shift > 0:
            xs = jnp.roll(xs, (-shift, -shift), axis=(1, 2))
            vs = jnp.roll(vs, (-shift, -shift), axis=(1, 2))
            mask = shifted_window_mask(hp, wp, win, shift)
        out = self.attn(window_partition(xs, win), window_partition(vs, win), mask)
        out = window_reverse(out, win, hp, wp)
        if shift > 0:
            out = jnp.roll(out, (shift, shift), axis=(1, 2))
        x = shortcut + out[:, :h, :w]
        return x + self.mlp(self.norm2(x))


class NewCRF(nnx.Module):
    """One NeWCRFs level: project x and v to `embed_dim`, `depth` CRF blocks, LayerNorm."""

    def __init__(
        self,
        input_dim: int,
        embed_dim: int,
        v_dim: int,
        *,
        window: int = 7,
        num_heads: int = 4,
        depth: int = 2,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        if embed_dim % num_heads:
            raise ValueError(f"CRF width {embed_dim} is not divisible by {num_heads} heads")
        self.proj_x = (
            conv3x3(input_dim, embed_dim, rngs=rngs, dtype=dtype)
            if input_dim != embed_dim
            else None
        )
        self.proj_v = (
            conv3x3(v_dim, embed_dim, rngs=rngs, dtype=dtype) if v_dim != embed_dim else None
        )
        self.blocks = nnx.List(
            [
                CRFBlock(
                    embed_dim,
                    num_heads,
                    window,
                    0 if i % 2 == 0 else window // 2,
                    rngs=rngs,
                    dtype=dtype,
                )
                for i in range(depth)
            ]
        )
        self.norm = layer_norm(embed_dim, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, v: jax.Array) -> jax.Array:
        """x (B, H, W, input_dim), v (B, H, W, v_dim) -> (B, H, W, embed_dim)."""
        if x.shape[1:3] != v.shape[1:3]:
            raise ValueError(
                f"CRF level: feature {x.shape[1:3]} and coarse prediction {v.shape[1:3]} differ;"
                " NeWCRFs needs input sizes that are multiples of 32"
            )
        if self.proj_x is not None:
            x = self.proj_x(x)
        if self.proj_v is not None:
            v = self.proj_v(v)
        for block in self.blocks:
            x = block(x, v)
        return self.norm(x)
