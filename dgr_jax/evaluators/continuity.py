"""Gradient-continuity metrics (issue 29): surface normals, smoothness residual, patch seams.

All ours (jnp, per image, mask-aware, jit-able); depth in metres, (B, H, W), principal point at
the image centre ((W - 1) / 2, (H - 1) / 2), focal length in pixels of the map's resolution.

- Normals (`normal_err_mean`, `normal_err_median` in degrees, `normal_within_{11.25,22.5,30}` as
  fractions; the standard normal metrics of the depth / normal literature). Scheme: each pixel is
  back-projected, P = ((u - cx) z / f, (v - cy) z / f, z); the normal is the normalised cross
  product of the central differences P(u+1) - P(u-1) and P(v+1) - P(v-1) (the usual
  "normal from depth by central differences"). Compared on pixels whose whole 3x3 neighbourhood
  is valid (inside the image, valid ground truth and crop), where both normals are defined.
- `laplacian_err`: mean over ground-truth-smooth pixels of (|r_uu| + |r_vv|) / 2 with r =
  pred - gt and r_uu, r_vv the 3-point second differences, multiplied by W^2: second
  derivatives with respect to the image coordinate u / W, in metres per (image width)^2, so a
  given surface gives the same value at every resolution. Ground-truth-smooth pixels: the
  3x3-valid pixels not within one pixel of a ground-truth discontinuity, a pixel where the
  relative curvature of inverse depth, max(|d2_u (1/g)|, |d2_v (1/g)|) * g, exceeds
  `protocol.CONTINUITY_DISC_REL` (5%: a 5% depth step). Inverse depth is affine in (u, v) on any
  plane, so slanted planes are smooth, and the test is invariant to the depth's scale.
- `seam_ratio_{patch}`: mean |finite difference of r| over the neighbour pairs that straddle a
  patch-grid line (columns / rows k * patch - 1 and k * patch) divided by the mean |finite
  difference| of the two pairs inside the patches on either side of each (the pairs k-1..k and
  k+1..k+2); all four pixels ground-truth-smooth. Comparing each line with its own neighbours
  keeps the scene's layout out of the ratio: a residual that is smooth or white noise gives
  about 1, per-patch offsets give more. Both means get a floor of
  `protocol.CONTINUITY_SEAM_FLOOR_REL` (0.1%) of the image's mean smooth ground-truth depth, a
  step too small to be a seam, so that nearly perfect residuals give about 1 instead of a ratio
  of rounding errors. Per image the ratio is floored at 1: a seam-free residual scatters around
  1 (a blurred scene's smooth residual gave 0.79 on a scene whose grid lines happened to fall
  where the residual bends, white noise 0.99), and a line where the error steps less than
  beside it is no "anti-seam" to reward; so 1 = no seams, more = seams, lower is better, and a
  perfect prediction (r = 0) gives 1. The patch is the ViT recipes' (16); hosts without a
  patch grid (CNNs, Swin) get seam_ratio_16 too, where it measures nothing specific to them
  and should be near 1, as a control.

NaN where undefined (no pixel / pair for that metric in an image); `metrics.aggregate` leaves NaN
images out of the means.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dgr_jax import protocol
from dgr_jax.evaluators.edges import valid_3x3
from dgr_jax.evaluators.metrics import as_bhw, masked_mean

NORMAL_WITHIN = (11.25, 22.5, 30.0)


def continuity_metric_names(patch: int = protocol.CONTINUITY_PATCH) -> tuple[str, ...]:
    """Names of the keys `continuity_metrics` returns, in report order."""
    return (
        "normal_err_mean",
        "normal_err_median",
        *(f"normal_within_{t:g}" for t in NORMAL_WITHIN),
        "laplacian_err",
        f"seam_ratio_{patch}",
    )


# Continuity metrics where larger is better (the within-angle fractions); the rest are errors.
HIGHER_IS_BETTER_CONTINUITY = frozenset(f"normal_within_{t:g}" for t in NORMAL_WITHIN)


def record_focal(record, width: int) -> float:
    """A record's focal length in pixels; without intrinsics, NYU's field of view at `width`
    (a nominal focal for the normals, used by the evaluator and the sparse-pixel study)."""
    focal = record.get("focal")
    if focal is None:
        return width * protocol.NYU_FOCAL / protocol.NYU_WIDTH
    return float(np.asarray(focal))


def _shift(x: jax.Array, dy: int, dx: int) -> jax.Array:
    """x[:, i + dy, j + dx] at every (i, j), edge-replicated (B, H, W)."""
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[1], x.shape[2]
    return xp[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def normals(depth: jax.Array, focal: jax.Array) -> jax.Array:
    """Unit surface normals (B, H, W, 3) by central differences of back-projected points."""
    b, h, w = depth.shape
    f = jnp.broadcast_to(jnp.asarray(focal, jnp.float32).reshape(-1), (b,))[:, None, None]
    u = jnp.arange(w, dtype=jnp.float32)[None, None, :] - (w - 1) / 2.0
    v = jnp.arange(h, dtype=jnp.float32)[None, :, None] - (h - 1) / 2.0
    pts = jnp.stack([u * depth / f, v * depth / f, depth], axis=-1)  # (B, H, W, 3)

    pp = jnp.pad(pts, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    du = pp[:, 1:-1, 2:] - pp[:, 1:-1, :-2]  # P(u + 1) - P(u - 1)
    dv = pp[:, 2:, 1:-1] - pp[:, :-2, 1:-1]  # P(v + 1) - P(v - 1)
    n = jnp.cross(du, dv)
    return n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def masked_median(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-image median of `x` over `mask`, (B,); NaN where the mask is empty. Jit-able: the
    masked-out values are filled with +inf, sorted to the end, and the middle of the first n
    sorted values is read with a per-image gather."""
    flat = jnp.where(mask, x, jnp.inf).reshape(x.shape[0], -1)
    s = jnp.sort(flat, axis=1)
    n = jnp.sum(mask.reshape(x.shape[0], -1), axis=1)
    lo = jnp.maximum((n - 1) // 2, 0)
    hi = jnp.maximum(n // 2, 0)
    a = jnp.take_along_axis(s, lo[:, None], axis=1)[:, 0]
    c = jnp.take_along_axis(s, hi[:, None], axis=1)[:, 0]
    return jnp.where(n > 0, 0.5 * (a + c), jnp.nan)


def smooth_region(gt: jax.Array, valid: jax.Array) -> jax.Array:
    """Ground-truth-smooth pixels (module docstring), (B, H, W) bool."""
    region = valid_3x3(valid)
    inv = 1.0 / jnp.where(valid, gt, 1.0)
    d2u = _shift(inv, 0, 1) - 2.0 * inv + _shift(inv, 0, -1)
    d2v = _shift(inv, 1, 0) - 2.0 * inv + _shift(inv, -1, 0)
    rel = jnp.maximum(jnp.abs(d2u), jnp.abs(d2v)) * jnp.where(valid, gt, 1.0)
    disc = region & (rel > protocol.CONTINUITY_DISC_REL)
    # Within one pixel (3x3) of a discontinuity: one max-pool.
    near = jax.lax.reduce_window(
        disc.astype(jnp.float32), 0.0, jax.lax.max, (1, 3, 3), (1, 1, 1), "SAME"
    )
    return region & (near == 0)


def _seam_sums(r: jax.Array, ok: jax.Array, patch: int, axis: int) -> tuple[jax.Array, ...]:
    """Along `axis` (2: u, 1: v): (sum |d| across grid lines, sum of the mean |d| of the two
    pairs beside each, count); d the finite difference of r, over four-pixel runs k-1..k+2 whose
    middle pair (k, k+1) straddles a grid line (k + 1 a multiple of `patch`) and all four
    pixels are `ok`."""
    n = r.shape[axis]

    def at(x, start):  # x at k + start for k = 1 .. n - 3
        return jax.lax.slice_in_dim(x, 1 + start, n - 2 + start, axis=axis)

    mid = jnp.abs(at(r, 1) - at(r, 0))
    beside = 0.5 * (jnp.abs(at(r, 0) - at(r, -1)) + jnp.abs(at(r, 2) - at(r, 1)))
    line = (jnp.arange(2, n - 1) % patch) == 0
    line = line[None, :, None] if axis == 1 else line[None, None, :]
    m = line & at(ok, -1) & at(ok, 0) & at(ok, 1) & at(ok, 2)
    return (
        jnp.sum(jnp.where(m, mid, 0.0), axis=(1, 2)),
        jnp.sum(jnp.where(m, beside, 0.0), axis=(1, 2)),
        jnp.sum(m, axis=(1, 2)),
    )


def continuity_metrics(
    pred: jax.Array,
    gt: jax.Array,
    valid: jax.Array,
    *,
    focal: jax.Array | float,
    patch: int = protocol.CONTINUITY_PATCH,
) -> dict[str, jax.Array]:
    """The continuity metrics of `continuity_metric_names(patch)` per image.

    Args:
        pred: clamped predicted depth in metres, (B, H, W) or (B, H, W, 1).
        gt: ground-truth depth in metres, same shape.
        valid: bool, same shape (range and crop masks applied).
        focal: focal length in pixels at this resolution, scalar or (B,).
        patch: the patch grid of `seam_ratio_{patch}` (static).

    Returns:
        {name: (B,) float32}; NaN where a metric is undefined for an image.
    """
    pred = as_bhw(pred).astype(jnp.float32)
    gt = as_bhw(gt).astype(jnp.float32)
    valid = as_bhw(valid).astype(bool)
    width = gt.shape[2]
    # Invalid pixels are replaced by a finite depth so nothing undefined reaches the means.
    p = jnp.where(valid, pred, 1.0)
    g = jnp.where(valid, gt, 1.0)
    region = valid_3x3(valid)
    cos = jnp.sum(normals(p, focal) * normals(g, focal), axis=-1)
    angle = jnp.degrees(jnp.arccos(jnp.clip(cos, -1.0, 1.0)))
    out = {
        "normal_err_mean": masked_mean(angle, region),
        "normal_err_median": masked_median(angle, region),
    }
    for t in NORMAL_WITHIN:
        out[f"normal_within_{t:g}"] = masked_mean((angle < t).astype(jnp.float32), region)
    smooth = smooth_region(g, valid)
    r = p - g
    r_uu = _shift(r, 0, 1) - 2.0 * r + _shift(r, 0, -1)
    r_vv = _shift(r, 1, 0) - 2.0 * r + _shift(r, -1, 0)
    second = 0.5 * (jnp.abs(r_uu) + jnp.abs(r_vv)) * float(width) ** 2
    out["laplacian_err"] = masked_mean(second, smooth)
    au, bu, nu = _seam_sums(r, smooth, patch, axis=2)
    av, bv, nv = _seam_sums(r, smooth, patch, axis=1)
    # The floor: a step below SEAM_FLOOR_REL of the image's mean depth is no seam (keeps the
    # ratio of two near-zero means, a nearly perfect residual's, near 1 rather than noise).
    floor = protocol.CONTINUITY_SEAM_FLOOR_REL * masked_mean(g, smooth) * (nu + nv)
    floor = jnp.where(jnp.isnan(floor), 0.0, floor)
    across, inside = au + av + floor, bu + bv + floor
    ratio = jnp.where(
        inside > 0, across / jnp.where(inside > 0, inside, 1.0), jnp.where(across > 0, jnp.inf, 1.0)
    )
    out[f"seam_ratio_{patch}"] = jnp.where(nu + nv > 0, jnp.maximum(ratio, 1.0), jnp.nan)
    return out
