"""Optimal Transport Depth Loss (OTDL): depth maps as spatial distributions, compared by OT.

What is whose (method.md section 4):
- [paper] Depth maps are treated as spatial probability distributions and the optimal transport
  distance between prediction and ground truth is a training loss.
- [authors' code] P / sum(P) and Q / sum(Q) per sample, cost |i - i'|^2 on row indices only
  (in pixel units), exact EMD (POT `emd2`) on detached arrays (so no gradient), added to an MSE
  term with weight 1.0. With a row-only cost the 2-D problem is exactly the 1-D problem between
  the row marginals, which has a closed form: `geometry="rows"` computes it, differentiably.
- [ours] Everything else: validity masking and validity-weighted area pooling to a coarse OT
  grid, squared-Euclidean cost on pixel centres in units of the grid's longer side (so values
  do not depend on the grid resolution and `epsilon` means the same at 30x40 and 60x80), the
  entropic solver on ott-jax's separable `Grid` geometry (never an n x n matrix), the Sinkhorn
  divergence (`debiased=True`) so that identical maps cost ~0 and a small epsilon approaches
  the exact W2^2, and the numerical guards below.

This is the only module of dgr_jax that imports ott-jax.

Masses. With V the validity mask, P the prediction and Q the ground truth, after pooling:
    a = V * max(P, floor) / sum(...),  b = V * max(Q, floor) / sum(...)
(`mass="inverse_depth"` uses 1 / max(P, floor)). Then both are mixed with a uniform measure of
weight `_UNIFORM_MIX` (1e-6): ott's log-domain Sinkhorn returns a -inf potential, and so a NaN
gradient, wherever a differentiated marginal has zero mass (checked on ott-jax 0.6.0), and
invalid pixels have zero mass. Because both maps get the same mix, identical inputs still give
identical marginals. A sample with no valid pixel gets uniform marginals that do not depend on
its inputs, and its loss is set to 0, so its gradient is exactly zero.

Facts about ott-jax 0.6.0 this module relies on: `Grid`'s default epsilon is computed wrongly,
so epsilon is always passed; online `PointCloud(batch_size=...)` is broken on jax >= 0.9 and
not used; the default `ImplicitDiff()` is used (a custom solver crashes); the gradient of the
regularised cost with respect to the marginals is the dual potential (Danskin), so the backward
pass costs little.

Defaults (configs/base.py `loss.otdl`, measured on 2 CPU cores with smooth synthetic indoor depth
maps in 0.5-10 m and predictions carrying a smooth log-scale error, blur and pixel noise; see
`benchmarks/otdl.py`):
- epsilon = 1e-2 (entropic blur sqrt(eps) = 0.1 of the longer side). The debiased value at 30x40
  and 60x80 changes by < 3% between eps = 1e-2 and 1e-3 and its gradient keeps a cosine > 0.999,
  while the over-relaxed solver needs 50-70 iterations at 1e-2 against 430-670 at 1e-3. What a
  much smaller epsilon adds is the cost of moving pixel-scale noise by a pixel, which SILog
  already penalises pixel by pixel: against POT's exact EMD on the same masses, eps = 1e-2 is
  6-29% below the exact W2^2 at 60x80 and 19-54% below at 30x40, and closing that gap takes
  eps < (pixel spacing)^2, i.e. thousands of iterations. (On a 6x8 grid, where the exact LP is
  cheap, eps = 3e-4 = spacing^2 / 50 is 0.7-2% below it; tests/test_losses_ot.py.)
- threshold = 1e-4, max_iterations = 200. The gradient is the Danskin one (from the dual
  potentials), so it is as good as their convergence: against central finite differences it is
  within 1% at threshold 1e-4 and 3-6% off at 1e-3, for ~1.5x the iterations (the value moves
  by < 0.1%). 200 is ~3x what eps = 1e-2 needs; under vmap the whole batch iterates until its
  slowest sample converges.
- grid_size: 1/8 of the input side (30x40 for 240x320, 60x80 for NYU 480x640).
- lambda_ot = 500 (`protocol.OTDL_WEIGHT`: `loss.terms.otdl` of every config that trains with
  OTDL, synthetic, NYU and KITTI alike). OTDL is a squared distance in units of the image side,
  so it is small (4e-4 when SILog is 1.2) and grows quadratically with the error while SILog
  grows linearly. The norm of its gradient with respect to the predicted depth map is 1.6e-4 to
  1.2e-3 times SILog's (SILog 0.3 to 2.4); with lambda_ot = 500 OTDL contributes 8% to 58% of
  the SILog gradient norm (the share grows with the error, most early in training) and ~15% of
  the loss value at SILog ~1.2. The authors' weight 1.0 multiplied a cost in pixel units
  (x L^2); in our units it would leave OTDL at ~0.1% of the gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import grid as ott_grid
from ott.geometry import pointcloud
from ott.solvers import linear
from ott.solvers.linear import acceleration
from ott.tools import sinkhorn_divergence

from dgr_jax.losses import sums
from dgr_jax.losses.depth import DEPTH_FLOOR, as_bhw
from dgr_jax.registry import LOSSES

GEOMETRIES = ("grid", "pointcloud", "rows")
MASSES = ("depth", "inverse_depth")

# Weight of the uniform measure mixed into both marginals (see the module docstring).
_UNIFORM_MIX = 1e-6
# Sinkhorn iterations between convergence checks (ott's default), and the over-relaxation weight.
_INNER_ITERATIONS = 10
_OVERRELAXATION = 1.5


def area_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix whose row o holds the overlap of each input pixel with output cell o.

    Exact area pooling for any ratio: cell o covers [o * n_in / n_out, (o + 1) * n_in / n_out) in
    input-pixel units; entry (o, i) is the length of its overlap with pixel [i, i + 1).
    """
    edges = np.arange(n_out + 1, dtype=np.float64) * n_in / n_out
    lo = np.maximum(edges[:-1, None], np.arange(n_in)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n_in)[None, :] + 1.0)
    return np.clip(hi - lo, 0.0, None).astype(np.float32)


def pool_sum(x: jax.Array, grid_size: tuple[int, int] | None) -> jax.Array:
    """Area-weighted sum of (B, H, W) `x` over the cells of a `grid_size` grid; None: identity."""
    if grid_size is None:
        return x
    _, height, width = x.shape
    rows = jnp.asarray(area_pool_matrix(height, grid_size[0]))  # (h, H)
    cols = jnp.asarray(area_pool_matrix(width, grid_size[1]))  # (w, W)
    # (B, H, W) -> (B, h, w); HIGHEST so that pooling is exact in float32 on every backend.
    return jnp.einsum("hH,bHW,wW->bhw", rows, x, cols, precision=jax.lax.Precision.HIGHEST)


def ot_masses(
    pred: jax.Array,
    gt: jax.Array,
    valid: jax.Array,
    *,
    grid_size: tuple[int, int] | None = None,
    mass: str = "depth",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """OT marginals of prediction and ground truth on the (pooled) grid.

    Args:
      pred: (B, H, W) or (B, H, W, 1) predicted depth, any float dtype.
      gt: (B, H, W) ground-truth depth.
      valid: (B, H, W) bool mask of pixels that count.
      grid_size: (h, w) OT grid, or None for the input resolution.
      mass: "depth" or "inverse_depth".

    Returns:
      a, b: (B, h, w) float32 marginals, each summing to 1 and strictly positive.
      has_valid: (B,) bool, whether the sample has any valid pixel.
    """
    if mass not in MASSES:
        raise ValueError(f"unknown OT mass {mass!r}; valid: {', '.join(MASSES)}")
    pred, gt = as_bhw(pred), as_bhw(gt)
    v = valid.astype(jnp.float32)
    p = jnp.maximum(pred.astype(jnp.float32), DEPTH_FLOOR)
    q = jnp.maximum(gt.astype(jnp.float32), DEPTH_FLOOR)
    if mass == "inverse_depth":
        p, q = 1.0 / p, 1.0 / q
    has_valid = jnp.any(valid, axis=(1, 2))
    return (
        _normalise(pool_sum(v * p, grid_size), has_valid),
        _normalise(pool_sum(v * q, grid_size), has_valid),
        has_valid,
    )


def _normalise(w: jax.Array, has_valid: jax.Array) -> jax.Array:
    """(B, h, w) non-negative weights -> probability maps mixed with a little uniform mass."""
    total = jnp.sum(w, axis=(1, 2), keepdims=True)
    uniform = 1.0 / (w.shape[1] * w.shape[2])
    ok = has_valid[:, None, None]
    # The `where` on the denominator keeps an all-invalid sample free of 0 / 0.
    prob = w / jnp.where(ok, total, 1.0)
    mixed = (1.0 - _UNIFORM_MIX) * prob + _UNIFORM_MIX * uniform
    return jnp.where(ok, mixed, uniform)


def pixel_centres(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Pixel-centre coordinates ((i + 0.5) / L, (j + 0.5) / L), L = max(h, w), of an h x w grid."""
    side = float(max(h, w))
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / side
    xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / side
    return ys, xs


def w2_1d_sorted(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    """Exact W2^2 between two 1-D distributions on the same sorted support `x`.

    Closed form through quantile functions: W2^2 = int_0^1 |F_a^-1(t) - F_b^-1(t)|^2 dt. The
    merged CDF levels cut [0, 1] into at most 2n intervals on which both quantiles are constant.
    Differentiable (through the interval lengths), O(n log n).

    Args:
      a, b: (n,) probability vectors.
      x: (n,) increasing support.

    Returns:
      Scalar W2^2.
    """
    n = x.shape[0]
    ca, cb = jnp.cumsum(a), jnp.cumsum(b)
    levels = jnp.sort(jnp.concatenate([ca, cb]))  # (2n,)
    # Both CDFs end at 1 up to rounding; the last interval is closed at the smaller end.
    levels = jnp.minimum(levels, jnp.minimum(ca[-1], cb[-1]))
    lengths = jnp.diff(levels, prepend=0.0)
    mid = levels - 0.5 * lengths  # inside each interval (its end where the length is 0)
    ia = jnp.clip(jnp.searchsorted(jax.lax.stop_gradient(ca), jax.lax.stop_gradient(mid)), 0, n - 1)
    ib = jnp.clip(jnp.searchsorted(jax.lax.stop_gradient(cb), jax.lax.stop_gradient(mid)), 0, n - 1)
    return jnp.sum(lengths * (x[ia] - x[ib]) ** 2)


def _solve_kwargs(max_iterations: int, threshold: float) -> dict:
    # Over-relaxed Sinkhorn (Thibault et al. 2021; ott's Momentum): same values, 2.5-3x fewer
    # iterations (130-190 -> 50-70 at eps = 1e-2, 30x40). A fixed weight of 1.5 stayed finite on
    # every case tried (eps 1e-4..1, spikes, zero maps, 1xN to 30x40 grids); ott's adaptive
    # weight (Momentum(start=20)) returned -inf on a 6x8 grid at eps <= 1e-3, so it is not used.
    # ott's divergence keeps its own symmetric updates for OT(a, a) and OT(b, b).
    return {
        "max_iterations": int(max_iterations),
        "threshold": float(threshold),
        "momentum": acceleration.Momentum(value=_OVERRELAXATION),
        "inner_iterations": _INNER_ITERATIONS,
    }


def _entropic_single(
    a: jax.Array,
    b: jax.Array,
    *,
    geometry: str,
    epsilon: float,
    debiased: bool,
    solve_kwargs: dict,
) -> jax.Array:
    """Entropic OT between two (h, w) marginals on the pixel-centre support."""
    h, w = a.shape
    ys, xs = pixel_centres(h, w)
    a, b = a.reshape(-1), b.reshape(-1)  # (h, w) -> (h*w,), row-major like both geometries
    if geometry == "grid":
        geom_cls, geom_args, geom_kwargs = ott_grid.Grid, (), {"x": [ys, xs]}
    else:
        yy, xx = jnp.meshgrid(ys, xs, indexing="ij")
        points = jnp.stack([yy.reshape(-1), xx.reshape(-1)], axis=-1)  # (h*w, 2), row-major
        geom_cls, geom_args, geom_kwargs = pointcloud.PointCloud, (points, points), {}
    if debiased:
        value, _ = sinkhorn_divergence.sinkhorn_divergence(
            geom_cls,
            *geom_args,
            a=a,
            b=b,
            epsilon=epsilon,
            solve_kwargs=solve_kwargs,
            **geom_kwargs,
        )
        return value
    geom = geom_cls(*geom_args, epsilon=epsilon, **geom_kwargs)
    return linear.solve(geom, a=a, b=b, **solve_kwargs).reg_ot_cost


def _rows_single(a: jax.Array, b: jax.Array) -> jax.Array:
    """Exact OT with the row-only squared cost: 1-D W2^2 between the row marginals."""
    h, w = a.shape
    ys, _ = pixel_centres(h, w)
    return w2_1d_sorted(jnp.sum(a, axis=1), jnp.sum(b, axis=1), ys)


def otdl(
    pred: jax.Array,
    gt: jax.Array,
    valid: jax.Array,
    *,
    geometry: str = "grid",
    grid_size: tuple[int, int] | None = None,
    mass: str = "depth",
    epsilon: float = 1e-2,
    debiased: bool = True,
    max_iterations: int = 200,
    threshold: float = 1e-4,
) -> jax.Array:
    """Per-sample Optimal Transport Depth Loss.

    Args:
      pred: (B, H, W) or (B, H, W, 1) predicted depth (any float dtype; computed in float32).
      gt: (B, H, W) ground-truth depth.
      valid: (B, H, W) bool mask; nothing else is thresholded here.
      geometry: "grid" (ott Grid, separable), "pointcloud" (dense cross-check) or "rows"
        (the authors' row-only cost, exact closed form; ignores the entropic settings).
      grid_size: (h, w) OT grid after validity-weighted area pooling; None: no pooling.
      mass: "depth" or "inverse_depth".
      epsilon: entropic regularisation, absolute, in squared units of the grid's longer side.
      debiased: Sinkhorn divergence OT_e(a,b) - (OT_e(a,a) + OT_e(b,b)) / 2 instead of OT_e(a,b).
      max_iterations: Sinkhorn iteration cap.
      threshold: Sinkhorn stopping threshold on the marginal error (L1).

    Returns:
      (B,) float32 losses; 0 (with zero gradient) for samples without valid pixels.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown OT geometry {geometry!r}; valid: {', '.join(GEOMETRIES)}")
    grid_size = None if grid_size is None else (int(grid_size[0]), int(grid_size[1]))
    a, b, has_valid = ot_masses(pred, gt, valid, grid_size=grid_size, mass=mass)
    b = jax.lax.stop_gradient(b)
    if geometry == "rows":
        single = _rows_single
    else:
        single = functools.partial(
            _entropic_single,
            geometry=geometry,
            epsilon=float(epsilon),
            debiased=debiased,
            solve_kwargs=_solve_kwargs(max_iterations, threshold),
        )
    values = jax.vmap(single)(a, b)
    return jnp.where(has_valid, values, 0.0).astype(jnp.float32)


def otdl_stats(pred: jax.Array, gt: jax.Array, valid: jax.Array, **kwargs) -> dict:
    """OTDL's batch sums: of the per-sample losses, and the count of samples with valid pixels."""
    return {
        "sum": jnp.sum(otdl(pred, gt, valid, **kwargs)),
        "count": jnp.sum(jnp.any(valid, axis=(1, 2)).astype(jnp.float32)),
    }


def otdl_finish(stats: dict, **unused) -> jax.Array:
    """Batch OTDL from (possibly micro-batch-summed) `otdl_stats`."""
    return stats["sum"] / jnp.maximum(stats["count"], 1.0)


@LOSSES.register("otdl")
@sums.with_batch_sums(otdl_stats, otdl_finish)
def otdl_loss(pred: jax.Array, gt: jax.Array, valid: jax.Array, **kwargs) -> jax.Array:
    """Batch OTDL: mean of `otdl` over the samples that have valid pixels (0 if none has)."""
    return otdl_finish(otdl_stats(pred, gt, valid, **kwargs))
