"""The depth evaluator's on-device steps: input preparation and the per-image metric step.

Split out of `depth_eval.py` (ours; the protocol is described there): ImageNet normalisation
and padding of model inputs, the final prediction the metrics see (flip TTA, resize, clamp,
KB paste), and the jitted metric step: the nine standard metrics (`metrics.py`), the edge
metrics (`edges.py`) and the continuity metrics (`continuity.py`) per image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from dgr_jax import protocol
from dgr_jax.evaluators import crops
from dgr_jax.evaluators.continuity import continuity_metric_names, continuity_metrics
from dgr_jax.evaluators.edges import compute_edge_metrics, edge_metric_names
from dgr_jax.evaluators.metrics import METRIC_NAMES, as_bhw, compute_depth_metrics
from dgr_jax.evaluators.tta import flip_blend
from dgr_jax.models.blocks import layers

# Every per-image metric the depth evaluator reports, in report order.
ALL_METRIC_NAMES = (*METRIC_NAMES, *edge_metric_names(), *continuity_metric_names())


def global_batch_size(batch_size: int, data_size: int) -> int:
    """The evaluation batch: `batch_size` rounded up to a multiple of the data-parallel size."""
    return math.ceil(batch_size / data_size) * data_size


@functools.partial(jax.jit, static_argnums=(1, 2))
def resize_image(image: jax.Array, size: tuple[int, int], method: str = "bilinear") -> jax.Array:
    """uint8 (H, W, 3) -> float32 (h, w, 3) in [0, 255] (not clipped), bilinear or bicubic
    (torch / cv2 cubic, a = -0.75: Depth Anything V2's evaluation resize)."""
    if method == "bicubic":
        x = layers.resize(image.astype(jnp.float32)[None], size, method="bicubic")
        return x[0]
    return jax.image.resize(image.astype(jnp.float32), (*size, 3), "linear", antialias=False)


def _normalise(
    images: jax.Array, flip: bool, pad: tuple[int, int] = (0, 0)
) -> tuple[jax.Array, jax.Array | None]:
    """(B, H, W, 3) uint8 / float in [0, 255] -> ImageNet-normalised float32 (and its mirror),
    each zero-padded by `pad` rows / columns at the bottom / right (after the flip)."""
    mean = jnp.asarray(protocol.IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(protocol.IMAGENET_STD, jnp.float32)
    x = (images.astype(jnp.float32) / 255.0 - mean) / std
    x_flipped = jnp.flip(x, axis=2) if flip else None
    if pad != (0, 0):
        widths = ((0, 0), (0, pad[0]), (0, pad[1]), (0, 0))
        x = jnp.pad(x, widths)
        x_flipped = None if x_flipped is None else jnp.pad(x_flipped, widths)
    return x, x_flipped


@functools.cache
def jitted_normalise(sharding: NamedSharding, flip: bool, pad: tuple[int, int]) -> Callable:
    # Cached so evaluators built repeatedly (periodic eval, tests) share compilations.
    return jax.jit(functools.partial(_normalise, flip=flip, pad=pad), out_shardings=sharding)


def final_prediction(
    pred: jax.Array,
    pred_flipped: jax.Array | None,
    *,
    flip_tta: str,
    gt_size: tuple[int, int],
    paste_kb: bool,
    min_depth: float,
    max_depth: float,
    crop_to: tuple[int, int] | None = None,
    align_corners: bool = False,
) -> jax.Array:
    """Raw model outputs -> the prediction the metrics see, (B, H_gt, W_gt).

    The top-left `crop_to` (the frame of a zero-padded input), flip TTA, bilinear resize to
    the ground-truth size (or to the 352x1216 KB window when `paste_kb`), clamp to
    [min_depth, max_depth] (NaN -> min, inf -> max), then for `paste_kb` paste into zeros of
    the full frame (BTS clamps before pasting, so the outside stays 0). `align_corners`: the
    resize maps corner to corner (Depth Anything V2's evaluation) instead of pixel centres.
    """
    pred = as_bhw(pred).astype(jnp.float32)
    if crop_to is not None:
        pred = pred[:, : crop_to[0], : crop_to[1]]
    if pred_flipped is not None and flip_tta != "none":
        pred_flipped = as_bhw(pred_flipped).astype(jnp.float32)
        if crop_to is not None:
            pred_flipped = pred_flipped[:, : crop_to[0], : crop_to[1]]
        pred = flip_blend(pred, pred_flipped, flip_tta)
    target = (protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH) if paste_kb else tuple(gt_size)
    if pred.shape[1:] != target and align_corners:
        pred = layers.resize(pred[..., None], target, align_corners=True)[..., 0]
    elif pred.shape[1:] != target:
        pred = jax.image.resize(pred, (pred.shape[0], *target), "linear", antialias=False)
    pred = jnp.where(jnp.isnan(pred), min_depth, jnp.clip(pred, min_depth, max_depth))
    if paste_kb:
        pred = crops.kb_uncrop(pred, *gt_size)
    return pred


def _metric_step(
    pred,
    pred_flipped,
    gt,
    region,
    focal,
    *,
    min_depth,
    max_depth,
    edge_reference_width=protocol.EDGE_REFERENCE_WIDTH,
    **static,
):
    """Per-image metrics of one batch whose ground truth shares one size; (B,) each.

    `focal`: (B,) focal lengths in pixels of the ground truth's resolution (continuity normals).
    `edge_reference_width`: the width the Sobel edge thresholds hold at (0: per pixel).
    """
    depth = final_prediction(pred, pred_flipped, min_depth=min_depth, max_depth=max_depth, **static)
    valid = (gt > min_depth) & (gt < max_depth) & region[None]
    out = compute_depth_metrics(depth, gt, valid)
    out.update(compute_edge_metrics(depth, gt, valid, reference_width=edge_reference_width))
    out.update(continuity_metrics(depth, gt, valid, focal=focal))
    return out


@functools.cache
def jitted_metric_step(**static) -> Callable:
    """The metric step compiled for one static configuration (ground-truth size, TTA, ...)."""
    return jax.jit(functools.partial(_metric_step, **static))
