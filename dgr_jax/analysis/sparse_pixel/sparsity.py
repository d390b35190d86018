"""Masks on images: applying a mask, exact-sparsity binarisation, where a mask keeps its pixels.

[paper / method.md section 2] The image is multiplied element-wise by the mask before the
frozen depth network; to report RMSE at an exact sparsity s, keep the top (1 - s) fraction of
mask values and zero the rest.

[ours]
- Where the mask applies: on the [0, 1] RGB before ImageNet normalisation, so a zeroed pixel is
  black (its normalised value is -mean / std, what a black pixel gives), not the mean colour.
- Exact sparsity: per image, k = round((1 - s) * H * W) pixels are kept; ties are broken by the
  flat (row-major) pixel index, lower first, so the count is exact even for a constant mask.
  s = 0 keeps every pixel (the unmasked image).
- Pixel classes for "where does the mask put its pixels" (all per image, on the test images):
    image edge   Sobel magnitude of the grey image (Rec. 601 luma of [0, 1] RGB, borders
                 replicated) in the top `image_edge_fraction` of the image's pixels;
    depth edge   relative depth slope |Sobel(gt)| / 8 / gt > `depth_edge_rel` (metres per pixel
                 per metre; 0.05 ~ a 5% depth change between neighbours, the lowest threshold of
                 the scale-invariant boundary F1), on pixels whose 3x3 neighbourhood is valid;
    texture      local intensity standard deviation (a `texture_window` box) above
                 `texture_std`, at least `depth_edge_margin` pixels away from any depth edge:
                 intensity variation that is not geometry.
  The Sobel convention is the edge metrics' (`dgr_jax.evaluators.edges.sobel`). For each class
  we report the fraction of kept pixels in it and its chance rate (the fraction of all valid
  pixels in it); their ratio is the enrichment (1 = the mask ignores that class).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dgr_jax import protocol
from dgr_jax.analysis.common.edges import SOBEL_NORM, sobel_magnitude
from dgr_jax.evaluators.edges import sobel, valid_3x3

PIXEL_CLASSES = ("image_edge", "depth_edge", "texture")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def normalise(rgb01: jax.Array) -> jax.Array:
    """[0, 1] RGB (..., 3) -> ImageNet-normalised float32."""
    mean = jnp.asarray(protocol.IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(protocol.IMAGENET_STD, jnp.float32)
    return (rgb01.astype(jnp.float32) - mean) / std


def masked_input(rgb01: jax.Array, mask: jax.Array) -> jax.Array:
    """The network input for a masked image: normalise(I * M); (B, H, W, 3), (B, H, W)."""
    return normalise(rgb01 * mask[..., None])


def keep_count(num_pixels: int, sparsity: float) -> int:
    """Pixels kept at sparsity s: round((1 - s) * n), clipped to [0, n]."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return int(min(num_pixels, max(0, round((1.0 - sparsity) * num_pixels))))


@jax.jit
def _keep_top_k(mask: jax.Array, k: jax.Array) -> jax.Array:
    b, h, w = mask.shape
    flat = mask.reshape(b, h * w)  # (B, H, W) -> (B, H*W)
    order = jnp.argsort(flat, axis=-1, descending=True, stable=True)
    ranks = jnp.argsort(order, axis=-1)  # the inverse permutation: rank of every pixel
    return (ranks < k).astype(jnp.float32).reshape(b, h, w)  # (B, H*W) -> (B, H, W)


def binarize_top_fraction(mask: jax.Array, sparsity: float) -> jax.Array:
    """Keep the top (1 - s) fraction of each image's mask values: (B, H, W) -> {0, 1} float32.

    Exactly `keep_count(H * W, s)` ones per image; equal values are kept in row-major order.
    Compiled once per mask shape (k is a traced argument).
    """
    _, h, w = mask.shape
    return _keep_top_k(jnp.asarray(mask), jnp.int32(keep_count(h * w, sparsity)))


def grey(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma in [0, 1] of RGB (..., 3), uint8 or [0, 1] float -> float32 (...)."""
    rgb = np.asarray(rgb)
    scale = 1.0 / 255.0 if rgb.dtype == np.uint8 else 1.0
    luma = np.tensordot(rgb.astype(np.float32), np.asarray(_LUMA, np.float32), axes=([-1], [0]))
    return luma * np.float32(scale)


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    """Mean over a size x size window (edge-replicated), (B, H, W) -> (B, H, W)."""
    r = size // 2
    p = np.pad(x, ((0, 0), (r, r), (r, r)), mode="edge")
    c = np.cumsum(np.cumsum(p, axis=1), axis=2)
    c = np.pad(c, ((0, 0), (1, 0), (1, 0)))
    h, w = x.shape[1:]
    total = c[:, size:, size:] - c[:, :-size, size:] - c[:, size:, :-size] + c[:, :-size, :-size]
    return total[:, :h, :w] / float(size * size)


def _dilate(x: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return x
    return _box_mean(x.astype(np.float64), 2 * radius + 1) > 0


def pixel_classes(
    rgb: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray,
    *,
    image_edge_fraction: float,
    depth_edge_rel: float,
    texture_std: float,
    texture_window: int,
    depth_edge_margin: int,
) -> dict[str, np.ndarray]:
    """The module docstring's pixel classes: {name: (B, H, W) bool} (valid pixels only).

    Args:
        rgb: (B, H, W, 3) uint8 or [0, 1] float.
        gt: (B, H, W) metres; valid: (B, H, W) bool.
        image_edge_fraction, depth_edge_rel, texture_std, texture_window, depth_edge_margin:
            the class definitions of the module docstring.
    """
    gt = np.asarray(gt, np.float32)
    valid = np.asarray(valid, bool)
    luma = grey(rgb).astype(np.float64)  # (B, H, W)
    mag = sobel_magnitude(luma)
    b = mag.shape[0]
    cut = np.quantile(mag.reshape(b, -1), 1.0 - image_edge_fraction, axis=1)  # (B,)
    image_edge = (mag > cut[:, None, None]) & valid

    region = np.asarray(valid_3x3(jnp.asarray(valid)))
    dgx, dgy = (np.asarray(g, np.float64) for g in sobel(jnp.asarray(np.where(valid, gt, 0.0))))
    slope = np.hypot(dgx, dgy) / SOBEL_NORM / np.where(valid, gt, 1.0)
    depth_edge = (slope > depth_edge_rel) & region

    var = _box_mean(luma**2, texture_window) - _box_mean(luma, texture_window) ** 2
    local_std = np.sqrt(np.maximum(var, 0.0))
    texture = (local_std > texture_std) & ~_dilate(depth_edge, depth_edge_margin) & valid
    return {"image_edge": image_edge, "depth_edge": depth_edge, "texture": texture}


def placement_stats(
    keep: np.ndarray, classes: dict[str, np.ndarray], valid: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per class: kept fraction on it, chance rate and enrichment, pooled over all images.

    Args:
        keep: (B, H, W) bool, the kept pixels of a binarised mask.
        classes: `pixel_classes(...)`.
        valid: (B, H, W) bool; only valid pixels count.
    """
    keep = np.asarray(keep, bool) & valid
    n_keep, n_valid = max(int(keep.sum()), 1), max(int(valid.sum()), 1)
    out = {}
    for name, cls in classes.items():
        kept = float((keep & cls).sum()) / n_keep
        chance = float((valid & cls).sum()) / n_valid
        out[name] = {
            "kept_fraction": kept,
            "chance": chance,
            "enrichment": kept / chance if chance > 0 else float("nan"),
        }
    return out
