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
from dgr_jax.losses import sums
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


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt(max(x, 0)) with a zero (not infinite) gradient where x <= 0."""
    positive = x > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _log_ratio(pred: jax.Array, gt: jax.Array) -> jax.Array:
    pred, gt = as_bhw(pred), as_bhw(gt)
    return jnp.log(jnp.maximum(pred, DEPTH_FLOOR)) - jnp.log(jnp.maximum(gt, DEPTH_FLOOR))


def silog_stats(
    pred: jax.Array,
    gt: jax.Array,
    valid: jax.Array,
    variance_focus: float = protocol.SILOG_VARIANCE_FOCUS,
) -> dict[str, jax.Array]:
    """SILog's batch sums: of d and d^2 over the valid pixels, and their count."""
    del variance_focus  # used by silog_finish only
    return sums.masked_sums(_log_ratio(pred, gt), valid)


def silog_finish(
    stats: dict[str, jax.Array], variance_focus: float = protocol.SILOG_VARIANCE_FOCUS
) -> jax.Array:
    """SILog from (possibly micro-batch-summed) `silog_stats`."""
    mean_d, mean_d2 = sums.masked_means(stats)
    return protocol.SILOG_SCALE * _safe_sqrt(mean_d2 - variance_focus * mean_d**2)


def _sq_err_stats(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    return sums.masked_sums(as_bhw(pred) - as_bhw(gt), valid)


def _abs_err_stats(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    return sums.masked_sums(jnp.abs(as_bhw(pred) - as_bhw(gt)), valid)


def _mean_sq(stats: dict[str, jax.Array]) -> jax.Array:
    return sums.masked_means(stats)[1]


def _mean(stats: dict[str, jax.Array]) -> jax.Array:
    return sums.masked_means(stats)[0]


@LOSSES.register("silog")
@sums.with_batch_sums(silog_stats, silog_finish)
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
    return silog_finish(silog_stats(pred, gt, valid), variance_focus)


@LOSSES.register("mse")
@sums.with_batch_sums(_sq_err_stats, _mean_sq)
def mse(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean squared depth error (m^2) over the valid pixels of the batch; 0 if none."""
    return _mean_sq(_sq_err_stats(pred, gt, valid))


@LOSSES.register("l1")
@sums.with_batch_sums(_abs_err_stats, _mean)
def l1(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean absolute depth error (m) over the valid pixels of the batch; 0 if none."""
    return _mean(_abs_err_stats(pred, gt, valid))
