"""Array ops NeWCRFs needs, with PyTorch's exact semantics, NHWC.

What is whose:
- [authors' code] NeWCRFs (aliyun/NeWCRFs d327bf7) uses torch `F.interpolate(mode="bilinear")`
  (PSP branches, the final x4 upsampling), `nn.AdaptiveAvgPool2d` (PSP), `nn.PixelShuffle(2)`
  between CRF levels, and an optional convex ("mask") upsampling (`NewCRFDepth.upsample_mask`).
- [ours] Resizing and adaptive pooling are written as separable (out, in) matrices built with
  numpy at trace time: they reproduce torch bit-for-bit in structure (same taps and weights,
  no anti-aliasing when shrinking, which `jax.image.resize` would add) and are plain einsums
  that shard and differentiate like any matmul.
"""

from __future__ import annotations

import functools

import einops
import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=128)
def bilinear_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1-D linear interpolation (`upsample_bilinear2d`)."""
    m = np.zeros((n_out, n_in), np.float64)
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros_like(dst)
    else:
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)  # torch clamps below at 0
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m.astype(np.float32)


def resize_bilinear(x: jax.Array, size: tuple[int, int], *, align_corners: bool = False):
    """torch `F.interpolate(x, size, mode="bilinear", align_corners=...)` on (B, H, W, C)."""
    _, h, w, _ = x.shape
    if (h, w) == tuple(size):
        return x
    mh = jnp.asarray(bilinear_matrix(h, size[0], align_corners), x.dtype)
    mw = jnp.asarray(bilinear_matrix(w, size[1], align_corners), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)


@functools.lru_cache(maxsize=128)
def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) averaging weights of torch adaptive pooling: bin i covers
    [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out))."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """torch `nn.AdaptiveAvgPool2d(size)` on (B, H, W, C) -> (B, size[0], size[1], C)."""
    _, h, w, _ = x.shape
    mh = jnp.asarray(adaptive_pool_matrix(h, size[0]), x.dtype)
    mw = jnp.asarray(adaptive_pool_matrix(w, size[1]), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """torch `nn.PixelShuffle(r)`, NHWC: channel c r^2 + i r + j -> pixel (h r + i, w r + j)."""
    return einops.rearrange(x, "b h w (c i j) -> b (h i) (w j) c", i=r, j=r)


def convex_upsample(disp: jax.Array, mask: jax.Array, r: int = 4) -> jax.Array:
    """Upsample (B, H, W, 1) by r with per-pixel convex weights over the 3x3 neighbourhood.

    `mask` (B, H, W, 9 r^2), channel k r^2 + i r + j holds the logit of neighbour k (row-major
    3x3, zero padding outside) for sub-pixel (i, j); softmax over k (NeWCRFs upsample_mask, after
    RAFT). Returns (B, r H, r W, 1).
    """
    b, h, w, _ = disp.shape
    # (B, H, W, 9 r^2) -> (B, H, W, 9, r, r), softmax over the 9 neighbours.
    weights = jax.nn.softmax(
        einops.rearrange(mask, "b h w (k i j) -> b h w k i j", k=9, i=r, j=r), axis=3
    )
    padded = jnp.pad(disp[..., 0], ((0, 0), (1, 1), (1, 1)))
    neighbours = jnp.stack(
        [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1
    )  # (B, H, W, 9)
    up = jnp.einsum("bhwkij,bhwk->bhwij", weights, neighbours)
    return einops.rearrange(up, "b h w i j -> b (h i) (w j) 1")
