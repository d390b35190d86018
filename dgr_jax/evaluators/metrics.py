"""The nine standard monocular-depth metrics, per image and mask-aware, in jnp.

What is whose:
- Formulas: BTS `utils/eval_with_pngs.py` / NeWCRFs `newcrfs/utils.py` `compute_errors`
  (method.md section 5): over one image's valid pixels,
  abs_rel = mean(|g - p| / g), sq_rel = mean((g - p)^2 / g), rmse = sqrt(mean((g - p)^2)),
  rmse_log = sqrt(mean((log g - log p)^2)), log10 = mean(|log10 p - log10 g|),
  silog = 100 sqrt(mean(e^2) - mean(e)^2) with e = log p - log g,
  d_k = mean(max(g / p, p / g) < 1.25^k), k = 1, 2, 3.
  The hosts average these per-image values over the test images.
- Ours: the masked, batched jnp form; silog's variance is computed as mean((e - mean e)^2),
  which equals the hosts' mean(e^2) - mean(e)^2 exactly in real arithmetic but cannot go
  negative in float32 (the hosts' form gives NaN for a perfect or pure-scale prediction when
  rounding makes it slightly negative).

Nothing here clamps: the evaluator clamps predictions to [min, max] and builds `valid` (range
and crop) before calling. Edge case: an image with no valid pixel gets NaN for every metric;
`aggregate` leaves NaN images out of the means and counts them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dgr_jax import protocol

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")
# Metrics where larger is better (the rest are errors); used by reports and best-checkpoint logic.
HIGHER_IS_BETTER = frozenset({"d1", "d2", "d3"})


def as_bhw(x: jax.Array) -> jax.Array:
    """Accept (B, H, W) or (B, H, W, 1)."""
    if x.ndim == 4:
        if x.shape[-1] != 1:
            raise ValueError(f"expected one channel, got shape {x.shape}")
        x = x[..., 0]
    if x.ndim != 3:
        raise ValueError(f"expected (B, H, W) or (B, H, W, 1), got shape {x.shape}")
    return x


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-image mean of `x` over `mask` (B, H, W) -> (B,); NaN where the mask is empty."""
    total = jnp.sum(jnp.where(mask, x, 0.0), axis=(1, 2))
    count = jnp.sum(mask, axis=(1, 2))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def compute_depth_metrics(pred: jax.Array, gt: jax.Array, valid: jax.Array) -> dict[str, jax.Array]:
    """The nine BTS/NeWCRFs metrics of each image over its valid pixels.

    Args:
        pred: predicted depth in metres, (B, H, W) or (B, H, W, 1); must be > 0 where valid
            (the evaluator clamps to [min_depth, max_depth] first).
        gt: ground-truth depth in metres, same shape.
        valid: bool, same shape: pixels that count (range and crop masks already applied).

    Returns:
        {name: (B,) float32} for `METRIC_NAMES`. An image without valid pixels gets NaN.
    """
    pred = as_bhw(pred).astype(jnp.float32)
    gt = as_bhw(gt).astype(jnp.float32)
    valid = as_bhw(valid).astype(bool)
    # Replace invalid pixels by 1 before any log/division so NaN/inf cannot leak into the sums.
    p = jnp.where(valid, pred, 1.0)
    g = jnp.where(valid, gt, 1.0)

    def mean(x: jax.Array) -> jax.Array:
        return masked_mean(x, valid)

    diff = g - p
    log_diff = jnp.log(p) - jnp.log(g)  # e of the silog metric
    ratio = jnp.maximum(g / p, p / g)
    mean_e = mean(log_diff)
    var_e = mean(jnp.square(log_diff - mean_e[:, None, None]))
    out = {
        "abs_rel": mean(jnp.abs(diff) / g),
        "sq_rel": mean(jnp.square(diff) / g),
        "rmse": jnp.sqrt(mean(jnp.square(diff))),
        "rmse_log": jnp.sqrt(mean(jnp.square(log_diff))),
        "log10": mean(jnp.abs(jnp.log10(p) - jnp.log10(g))),
        "silog": protocol.SILOG_METRIC_SCALE * jnp.sqrt(var_e),
    }
    for k in (1, 2, 3):
        out[f"d{k}"] = mean((ratio < protocol.DELTA_THRESHOLD**k).astype(jnp.float32))
    return out


def aggregate(per_image: dict[str, np.ndarray]) -> tuple[dict[str, float], dict[str, int]]:
    """Mean over images of per-image metrics, as the hosts average them.

    NaN entries (images without valid pixels, or an edge metric that is undefined for an image)
    are left out of that metric's mean; an all-NaN metric averages to NaN.

    Args:
        per_image: {name: (N,) array} over the N evaluated images.

    Returns:
        (means, counts): {name: float mean}, {name: number of images that entered the mean}.
    """
    means, counts = {}, {}
    for name, values in per_image.items():
        values = np.asarray(values, dtype=np.float64)
        defined = ~np.isnan(values)
        counts[name] = int(defined.sum())
        means[name] = float(values[defined].mean()) if counts[name] else float("nan")
    return means, counts
