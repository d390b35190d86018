"""Horizontal-flip test-time augmentation.

What is whose:
- "blend": NeWCRFs `newcrfs/utils.py` `post_process_depth` (after Monodepth's disparity
  post-processing), which the published NeWCRFs / PixelFormer numbers include: with x in
  linspace(0, 1, W) over the columns and p = 0.05, the left p of the columns take the (un-flipped)
  prediction for the flipped image only, the right p the plain prediction only, a linear ramp of
  width p follows each of those strips, and the middle is the mean of the two.
- "mean": the plain average (AdaBins, ZoeDepth, the Toolbox). AdaBins clamps each pass before
  averaging; we average raw predictions and the evaluator clamps afterwards (identical when both
  passes are inside [min, max]).
- "none": the prediction for the original image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dgr_jax import protocol

FLIP_TTA_MODES = ("blend", "mean", "none")
_WIDTH_AXIS = 2  # (B, H, W) or NHWC (B, H, W, C)


def flip_weights(width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """Column weights `(w_flipped, w_plain)` of the blend, each (W,).

    `w_flipped` is 1 on the left pure strip and ramps to 0; `w_plain` is its mirror image. The
    mean of the two predictions gets the remaining weight 1 - w_flipped - w_plain.
    """
    pure = protocol.FLIP_TTA_PURE
    xs = jnp.linspace(0.0, 1.0, width, dtype=dtype)
    # NeWCRFs writes 1 - clamp(20 (x - 0.05), 0, 1): 20 = 1 / pure.
    w_flipped = 1.0 - jnp.clip((1.0 / pure) * (xs - pure), 0.0, 1.0)
    return w_flipped, w_flipped[::-1]


def flip_blend(pred: jax.Array, pred_on_flipped_input: jax.Array, mode: str = "blend") -> jax.Array:
    """Combine a prediction with the raw prediction for the horizontally flipped input.

    Args:
        pred: depth for the original images, (B, H, W) or (B, H, W, C).
        pred_on_flipped_input: the model's output for the flipped images, not flipped back.
        mode: "blend" (NeWCRFs post_process_depth), "mean" or "none".

    Returns:
        The combined depth, same shape as `pred`.
    """
    if pred.shape != pred_on_flipped_input.shape or pred.ndim not in (3, 4):
        raise ValueError(
            f"need two (B, H, W[, C]) arrays of one shape, got {pred.shape} and "
            f"{pred_on_flipped_input.shape}"
        )
    if mode == "none":
        return pred
    unflipped = jnp.flip(pred_on_flipped_input, axis=_WIDTH_AXIS)
    mean = 0.5 * (pred + unflipped)
    if mode == "mean":
        return mean
    if mode != "blend":
        raise ValueError(f"unknown flip TTA mode {mode!r}; valid modes: {FLIP_TTA_MODES}")
    w_flipped, w_plain = flip_weights(pred.shape[_WIDTH_AXIS], pred.dtype)
    # (W,) -> broadcastable along the width axis of (B, H, W) or (B, H, W, C).
    shape = (pred.shape[_WIDTH_AXIS],) + (1,) * (pred.ndim - 1 - _WIDTH_AXIS)
    w_flipped, w_plain = w_flipped.reshape(shape), w_plain.reshape(shape)
    return w_plain * pred + w_flipped * unflipped + (1.0 - w_flipped - w_plain) * mean
