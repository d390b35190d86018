"""Edge metrics against NumPy transcriptions of Hu et al. (Sobel edges) and Depth Pro (SI F1)."""

import jax
import numpy as np
from scipy import ndimage

from dgr_jax import protocol
from dgr_jax.evaluators.edges import (
    compute_edge_metrics,
    edge_metric_names,
    scaled_threshold,
    sobel,
    valid_3x3,
)

# ----- Depth Pro boundary_metrics.py, written from its formulas (whole map, no mask) ---------


def fgbg(d, t):
    return (
        d[:, :-1] / d[:, 1:] > t,  # left
        d[:-1, :] / d[1:, :] > t,  # top
        d[:, 1:] / d[:, :-1] > t,  # right
        d[1:, :] / d[:-1, :] > t,  # bottom
    )


def boundary_f1_reference(pr, gt, t, pairs=None):
    """Depth Pro boundary_f1; `pairs` (ours) restricts each direction to valid pairs."""
    bp, bg = fgbg(pr, t), fgbg(gt, t)
    if pairs is not None:
        bp = [x & m for x, m in zip(bp, pairs)]
        bg = [x & m for x, m in zip(bg, pairs)]
    r = 0.25 * sum(np.count_nonzero(p & g) / max(np.count_nonzero(g), 1) for p, g in zip(bp, bg))
    p = 0.25 * sum(np.count_nonzero(p & g) / max(np.count_nonzero(p), 1) for p, g in zip(bp, bg))
    return 0.0 if r + p == 0 else 2 * r * p / (r + p)


def si_boundary_f1_reference(pred, target, pairs=None):
    thresholds = np.linspace(1.05, 1.25, 10)
    weights = thresholds / thresholds.sum()
    inv_p, inv_t = 1.0 / pred.clip(min=1e-6), 1.0 / target.clip(min=1e-6)
    return sum(
        w * boundary_f1_reference(inv_p, inv_t, t, pairs) for t, w in zip(thresholds, weights)
    )


# ----- Hu et al. test.py edge detection: torch conv2d (cross-correlation), padding 1 ---------
KX = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float64)
KY = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)


def sobel_reference(x):
    gx = ndimage.correlate(x, KX, mode="constant", cval=0.0)
    gy = ndimage.correlate(x, KY, mode="constant", cval=0.0)
    return gx, gy


def hu_reference(pred, gt, region, t):
    mp = np.hypot(*sobel_reference(pred))
    mg = np.hypot(*sobel_reference(gt))
    ep, eg = (mp > t) & region, (mg > t) & region
    tp = np.sum(ep & eg)
    p, r = tp / np.sum(ep), tp / np.sum(eg)
    return p, r, 2 * p * r / (p + r)


def _scene(seed, h=40, w=56):
    """Piecewise-constant depth with smooth ramps and noise: boundaries at many strengths."""
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(1.0, 6.0, (4, 5))
    gt = np.kron(blocks, np.ones((h // 4 + 1, w // 5 + 1)))[:h, :w]
    gt = gt + np.linspace(0, 0.5, w)[None] + rng.normal(0, 0.01, (h, w))
    pred = ndimage.uniform_filter(gt, 3) * rng.uniform(0.95, 1.05, (h, w))
    return pred.astype(np.float32), gt.astype(np.float32)


def test_sobel_matches_conv2d_reference():
    _, gt = _scene(0)
    gx, gy = sobel(gt[None])  # float32 (JAX default)
    rx, ry = sobel_reference(gt.astype(np.float64))
    np.testing.assert_allclose(gx[0], rx, atol=2e-5)
    np.testing.assert_allclose(gy[0], ry, atol=2e-5)


def test_si_boundary_f1_dense_equals_depth_pro():
    preds, gts = zip(*[_scene(s) for s in range(3)])
    pred, gt = np.stack(preds), np.stack(gts)
    got = jax.jit(compute_edge_metrics)(pred, gt, np.ones_like(gt, bool))["si_boundary_f1"]
    for i in range(3):
        ref = si_boundary_f1_reference(pred[i].astype(np.float64), gt[i].astype(np.float64))
        np.testing.assert_allclose(got[i], ref, rtol=1e-5)
    assert float(np.min(got)) > 0.05 and float(np.max(got)) < 0.99  # informative, not 0 or 1
    # Scale invariance and a perfect prediction.
    scaled = compute_edge_metrics(pred * 3.0, gt, np.ones_like(gt, bool))["si_boundary_f1"]
    np.testing.assert_allclose(scaled, got, rtol=1e-5)
    perfect = compute_edge_metrics(gt, gt, np.ones_like(gt, bool))["si_boundary_f1"]
    np.testing.assert_allclose(perfect, 1.0, rtol=1e-6)


def test_masked_metrics_match_references():
    pred, gt = _scene(5)
    rng = np.random.default_rng(5)
    valid = np.ones_like(gt, bool)
    valid[:, :6] = False  # a crop
    valid &= rng.uniform(size=gt.shape) > 0.03  # sparse holes
    gt_stored = np.where(valid, gt, 0.0).astype(np.float32)  # invalid GT stored as 0
    got = compute_edge_metrics(pred[None], gt_stored[None], valid[None])
    assert set(got) == set(edge_metric_names())
    pairs = (
        valid[:, :-1] & valid[:, 1:],
        valid[:-1, :] & valid[1:, :],
        valid[:, :-1] & valid[:, 1:],
        valid[:-1, :] & valid[1:, :],
    )
    ref = si_boundary_f1_reference(pred.astype(np.float64), gt.astype(np.float64), pairs)
    np.testing.assert_allclose(got["si_boundary_f1"][0], ref, rtol=1e-5)
    region = ndimage.binary_erosion(valid, np.ones((3, 3)), border_value=0)
    np.testing.assert_array_equal(valid_3x3(valid[None])[0], region)
    p64, g64 = pred.astype(np.float64), gt.astype(np.float64)
    for t in (0.25, 0.5, 1.0):
        # Hu et al.'s threshold at the reference width, scaled to this map's width.
        t_w = t * protocol.EDGE_REFERENCE_WIDTH / gt.shape[1]
        p, r, f = hu_reference(p64, g64, region, t_w)
        np.testing.assert_allclose(got[f"edge_precision_{t:.2f}"][0], p, rtol=1e-5)
        np.testing.assert_allclose(got[f"edge_recall_{t:.2f}"][0], r, rtol=1e-5)
        np.testing.assert_allclose(got[f"edge_f1_{t:.2f}"][0], f, rtol=1e-5)
    (px, py), (gx, gy) = sobel_reference(p64), sobel_reference(g64)
    grad_err = np.hypot(px - gx, py - gy)[region].mean() / 8.0
    np.testing.assert_allclose(got["grad_err"][0], grad_err, rtol=1e-5)


def test_thresholds_are_hu_at_the_reference_width():
    assert protocol.EDGE_REFERENCE_WIDTH == 304
    assert [scaled_threshold(t, 304) for t in (0.25, 0.5, 1.0)] == [0.25, 0.5, 1.0]
    np.testing.assert_allclose(scaled_threshold(0.25, 128), 0.59375)
    np.testing.assert_allclose(scaled_threshold(0.5, 608), 0.25)


def test_linear_ramp_gradient_and_undefined_cases():
    # At the reference width (304) the thresholds are Hu et al.'s.
    w = protocol.EDGE_REFERENCE_WIDTH
    ramp = np.tile(np.linspace(1.0, 1.0 + 0.1 * (w - 1), w, dtype=np.float32), (12, 1))[None]
    ones = np.ones_like(ramp, bool)
    # Slope 0.1 m/px against a flat prediction: grad_err = 0.1 m/px.
    flat = np.full_like(ramp, 2.0)
    got = compute_edge_metrics(flat, ramp, ones)
    np.testing.assert_allclose(got["grad_err"], 0.1, rtol=1e-5)
    # Sobel magnitude of the ramp is 0.8 > 0.5: GT edges everywhere, none predicted.
    assert np.isnan(got["edge_precision_0.50"][0]) and got["edge_recall_0.50"][0] == 0.0
    assert got["edge_f1_0.50"][0] == 0.0
    # Neither map has an edge above 1.0: F1 undefined.
    assert np.isnan(got["edge_f1_1.00"][0])
    # No valid pixel at all: everything NaN, nothing crashes.
    empty = compute_edge_metrics(flat, ramp, np.zeros_like(ones))
    assert all(np.isnan(v[0]) for v in empty.values())
