"""PixelFormer's skip attention module (SAM), Flax NNX.

What is whose:
- [paper] Agarwal & Arora, "Attention Attention Everywhere: Monocular Depth Prediction with Skip
  Attention", WACV 2023, Sec. 3.2: the skip connection between encoder and decoder is a window
  cross-attention; the queries come from the decoder's pixel queries, the keys and values from
  the encoder feature of the same scale.
- [authors' code] ashutosh1807/PixelFormer bb0ae9f, pixelformer/networks/SAM.py (`SAM`,
  `SAMBLOCK`, `WindowAttention` with `q` and `kv` projections): per level, 3x3 convs project the
  encoder feature e (`proj_e`, absent when the widths agree) and the decoder query map q
  (`proj_q`, likewise) to the level's width C; one block (no list, no shift, no mask):
  LN(qp) -> Q (`attn.q`, C -> C), LN(ep) -> K, V (`attn.kv`, C -> 2C, K first), both zero-padded
  at the bottom/right to multiples of the window AFTER the norms, so the padded tokens enter
  the attention as keys and values (k = bias_k, v = bias_v), unmasked; softmax(Q K^T * d^-0.5 +
  relative position bias) V, heads merged head-major, `attn.proj`; the residual stream is the
  DECODER: x = qp + attn, x = x + MLP(LN x); the level output is LN(x) + ep + qp (`norm_sam`),
  so qp enters twice. SAM's window is 7 whatever the Swin window. A third conv `proj` (C -> C)
  is built but never called; the released checkpoints hold it with random values, and we have
  no such variable (the converter drops it and says so).
- [ours] NHWC maps; window helpers from `dgr_jax/models/blocks/host_common.py`. Kernels of the
  convs and Linears use torch's default init (the official decoder keeps it; biases start at 0
  here), the bias table truncated normal 0.02 as upstream.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.blocks.host_common import (
    TORCH_DEFAULT_INIT,
    TRUNC_NORMAL_INIT,
    Mlp,
    conv3x3,
    layer_norm,
    linear,
    relative_position_index,
    window_attention,
    window_partition,
    window_reverse,
)

MLP_RATIO = 4  # SAMBLOCK(mlp_ratio=4.)


class SAMAttention(nnx.Module):
    """Window cross-attention: queries from the decoder tokens, keys/values from the encoder's."""

    def __init__(self, dim: int, num_heads: int, window: int, *, rngs: nnx.Rngs, dtype):
        if dim % num_heads:
            raise ValueError(f"SAM width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window = window
        self.scale = (dim // num_heads) ** -0.5
        kw = {"rngs": rngs, "dtype": dtype, "kernel_init": TORCH_DEFAULT_INIT}
        self.q = linear(dim, dim, **kw)
        self.kv = linear(dim, 2 * dim, **kw)
        self.proj = linear(dim, dim, **kw)
        self.relative_position_bias_table = nnx.Param(
            TRUNC_NORMAL_INIT(rngs.params(), ((2 * window - 1) ** 2, num_heads), jnp.float32)
        )

    def __call__(self, q: jax.Array, e: jax.Array) -> jax.Array:
        """q (decoder), e (encoder) (B * nW, N, C) -> (B * nW, N, C)."""
        # (B*nW, N, C) -> (B*nW, heads, N, d), head h owning channels h*d .. h*d + d - 1.
        qh = einops.rearrange(self.q(q), "b n (h d) -> b h n d", h=self.num_heads)
        # (B*nW, N, 2C) -> (2, B*nW, heads, N, d): channels [K | V], heads inside each.
        kv = einops.rearrange(self.kv(e), "b n (t h d) -> t b h n d", t=2, h=self.num_heads)
        bias = self.relative_position_bias_table[...][relative_position_index(self.window)]
        bias = jnp.transpose(bias, (2, 0, 1))  # (N, N, heads) -> (heads, N, N)
        out = window_attention(qh * self.scale, kv[0], kv[1], bias, None)
        return self.proj(einops.rearrange(out, "b h n d -> b n (h d)"))


class SAMBlock(nnx.Module):
    """q <- q + attn(LN q; LN e), q <- q + MLP(LN q) on (B, H, W, C), windows neither shifted
    nor masked (official `SAMBLOCK`)."""

    def __init__(self, dim: int, num_heads: int, window: int, *, rngs: nnx.Rngs, dtype):
        self.window = window
        self.norm1 = layer_norm(dim, rngs=rngs, dtype=dtype)  # decoder queries
        self.normv = layer_norm(dim, rngs=rngs, dtype=dtype)  # encoder keys / values
        self.attn = SAMAttention(dim, num_heads, window, rngs=rngs, dtype=dtype)
        self.norm2 = layer_norm(dim, rngs=rngs, dtype=dtype)
        self.mlp = Mlp(dim, MLP_RATIO * dim, rngs=rngs, dtype=dtype, kernel_init=TORCH_DEFAULT_INIT)

    def __call__(self, q: jax.Array, e: jax.Array) -> jax.Array:
        _, h, w, _ = q.shape
        win = self.window
        # Zero padding after the norms, bottom/right; padded tokens are attended to (official).
        pad = ((0, 0), (0, -h % win), (0, -w % win), (0, 0))
        qs, es = jnp.pad(self.norm1(q), pad), jnp.pad(self.normv(e), pad)
        hp, wp = qs.shape[1:3]
        out = self.attn(window_partition(qs, win), window_partition(es, win))
        x = q + window_reverse(out, win, hp, wp)[:, :h, :w]
        return x + self.mlp(self.norm2(x))


class SAM(nnx.Module):
    """One PixelFormer level: e (B, H, W, input_dim), q (B, H, W, v_dim) -> (B, H, W, embed_dim)."""

    def __init__(
        self,
        input_dim: int,
        embed_dim: int,
        v_dim: int,
        *,
        window: int = 7,
        num_heads: int = 4,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.proj_e = (
            conv3x3(input_dim, embed_dim, rngs=rngs, dtype=dtype)
            if input_dim != embed_dim
            else None
        )
        self.proj_q = (
            conv3x3(v_dim, embed_dim, rngs=rngs, dtype=dtype) if v_dim != embed_dim else None
        )
        self.sam_block = SAMBlock(embed_dim, num_heads, window, rngs=rngs, dtype=dtype)
        self.norm_sam = layer_norm(embed_dim, rngs=rngs, dtype=dtype)

    def __call__(self, e: jax.Array, q: jax.Array) -> jax.Array:
        if e.shape[1:3] != q.shape[1:3]:
            raise ValueError(
                f"SAM level: encoder feature {e.shape[1:3]} and decoder queries {q.shape[1:3]} "
                "differ; PixelFormer needs input sizes that are multiples of 32"
            )
        qp = self.proj_q(q) if self.proj_q is not None else q
        ep = self.proj_e(e) if self.proj_e is not None else e
        return self.norm_sam(self.sam_block(qp, ep)) + ep + qp
