"""Pixel-wise depth losses: SILog (the hosts' training loss) and masked MSE / L1.

What is whose:
- [BTS/NeWCRFs/PixelFormer] SILog = 10 * sqrt(mean(d^2) - variance_focus * mean(d)^2),
  d = log pred - log gt over all valid pixels of the batch, pooled (not averaged per image),
  exactly as the PyTorch hosts compute it (method.md section 5).
- [authors' code] The OTDL module adds an MSE between prediction and ground truth; theirs is
  unmasked, ours (`mse`) is over valid pixels only, pooled over the batch like SILog.
- [ours] The numerical guards: logs of max(depth, DEPTH_FLOOR), since a sigmoid head can
  underflow to exactly 0 in float32; a square root that is 0 with a zero gradient at 0; 0 and
  a zero gradient for a batch without valid pixels; float32 whatever the input dtype.

Every function takes `valid` from the caller (the trainer thresholds gt > loss.min_depth and
applies dataset masks); nothing here re-thresholds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dgr_jax import protocol
from dgr_jax.registry import LOSSES

# Smallest depth (metres) inside a log or a reciprocal: keeps log(0) and 1/0 out of the loss.
DEPTH_FLOOR = 1e-6


def as_bhw(x: jax.Array) -> jax.Array:
    """(B, H, W, 1) or (B, H, W) -> (B, H, W) float32."""
    if x.ndim == 4:
        if x.shape[-1] != 1:
            raise ValueError(f"expected a single-channel depth map, got shape {x.shape}")
        x = x[..., 0]  # (B, H, W, 1) -> (B, H, W)
    if x.ndim != 3:
        raise ValueError(f"expected (B, H, W) or (B, H, W, 1), got shape {x.shape}")
    return x.astype(jnp.float32)


def _masked_means(x: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mean of x and of x^2 over the valid pixels of the whole batch, and the pixel count."""
    v = valid.astype(jnp.float32)
    count = jnp.sum(v)
    denom = jnp.maximum(count, 1.0)
    x = jnp.where(valid, x, 0.0)  # invalid pixels may hold anything, even inf
    return jnp.sum(x) / denom, jnp.sum(x * x) / denom, count


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient where x <= 0."""
    positive = x > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


@LOSSES.register("silog")
def silog(
    pred: jax.Array,
    gt: jax.Array,
    valid: jax.Array,
    variance_focus: float = protocol.SILOG_VARIANCE_FOCUS,
) -> jax.Array:
    """BTS/NeWCRFs scale-invariant log loss, pooled over all valid pixels of the batch.

    Args:
      pred: (B, H, W) or (B, H, W, 1) predicted depth in metres.
      gt: (B, H, W) or (B, H, W, 1) ground-truth depth in metres.
      valid: (B, H, W) bool mask of the pixels that count.
      variance_focus: lambda in mean(d^2) - lambda * mean(d)^2.

    Returns:
      Scalar float32; 0 with a zero gradient when no pixel is valid.
    """
    pred, gt = as_bhw(pred), as_bhw(gt)
    d = jnp.log(jnp.maximum(pred, DEPTH_FLOOR)) - jnp.log(jnp.maximum(gt, DEPTH_FLOOR))
    mean_d, mean_d2, _ = _masked_means(d, valid)
    return protocol.SILOG_SCALE * _safe_sqrt(mean_d2 - variance_focus * mean_d**2)


@LOSSES.register("mse")
def mse(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean squared depth error (m^2) over the valid pixels of the batch; 0 if none."""
    pred, gt = as_bhw(pred), as_bhw(gt)
    _, mean_sq, _ = _masked_means(pred - gt, valid)
    return mean_sq


@LOSSES.register("l1")
def l1(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean absolute depth error (m) over the valid pixels of the batch; 0 if none."""
    pred, gt = as_bhw(pred), as_bhw(gt)
    mean_abs, _, _ = _masked_means(jnp.abs(pred - gt), valid)
    return mean_abs
