"""Per-image depth metrics against a NumPy transcription of BTS/NeWCRFs compute_errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgr_jax.evaluators.metrics import METRIC_NAMES, aggregate, compute_depth_metrics


def reference_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """compute_errors of BTS utils/eval_with_pngs.py, written from its formulas (float64)."""
    gt, pred = gt.astype(np.float64), pred.astype(np.float64)
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "sq_rel": np.mean((gt - pred) ** 2 / gt),
        "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(gt) - np.log(pred)) ** 2)),
        "log10": np.mean(np.abs(np.log10(pred) - np.log10(gt))),
        "silog": np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100,
        "d1": np.mean(thresh < 1.25),
        "d2": np.mean(thresh < 1.25**2),
        "d3": np.mean(thresh < 1.25**3),
    }


def _random_batch(seed=0, b=4, h=24, w=32):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 10.0, (b, h, w)).astype(np.float32)
    # Predictions around the GT with errors large enough to make d1 < d2 < d3 < 1.
    pred = (gt * np.exp(rng.normal(0.0, 0.3, (b, h, w)))).astype(np.float32)
    valid = rng.uniform(size=(b, h, w)) < np.linspace(0.2, 0.9, b)[:, None, None]
    gt[~valid] = 0.0  # invalid GT as the datasets store it
    return pred, gt, valid


def test_matches_reference_per_image():
    pred, gt, valid = _random_batch()
    got = jax.jit(compute_depth_metrics)(pred, gt, valid)
    assert set(got) == set(METRIC_NAMES)
    for i in range(pred.shape[0]):
        ref = reference_errors(gt[i][valid[i]], pred[i][valid[i]])
        for name in METRIC_NAMES:
            np.testing.assert_allclose(got[name][i], ref[name], rtol=2e-5, err_msg=name)
    # The data were built so the deltas are informative, not all 1.
    assert 0.3 < float(got["d1"].mean()) < float(got["d3"].mean()) < 1.0


def test_nhwc_input_and_invalid_pixels_do_not_leak():
    pred, gt, valid = _random_batch(seed=1)
    base = compute_depth_metrics(pred, gt, valid)
    # Garbage (NaN, 0, inf) in invalid pixels of the prediction must not change anything.
    noisy = np.where(valid, pred, np.nan).astype(np.float32)
    noisy[..., 0] = np.where(valid[..., 0], noisy[..., 0], 0.0)
    got = compute_depth_metrics(noisy[..., None], gt[..., None], valid[..., None])
    for name in METRIC_NAMES:
        np.testing.assert_allclose(got[name], base[name], rtol=1e-6, err_msg=name)


def test_empty_image_is_nan_and_left_out_of_the_mean():
    pred, gt, valid = _random_batch(seed=2, b=3)
    valid[1] = False
    got = {k: np.asarray(v) for k, v in compute_depth_metrics(pred, gt, valid).items()}
    for name in METRIC_NAMES:
        assert np.isnan(got[name][1]) and np.all(np.isfinite(got[name][[0, 2]])), name
    means, counts = aggregate(got)
    assert counts["abs_rel"] == 2
    np.testing.assert_allclose(means["abs_rel"], got["abs_rel"][[0, 2]].mean(), rtol=1e-6)
    all_nan, all_counts = aggregate({"x": np.full(3, np.nan)})
    assert np.isnan(all_nan["x"]) and all_counts["x"] == 0


def test_perfect_and_pure_scale_predictions():
    _, gt, valid = _random_batch(seed=3)
    perfect = compute_depth_metrics(np.where(valid, gt, 1.0), gt, valid)
    for name in ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog"):
        np.testing.assert_allclose(perfect[name], 0.0, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(perfect["d1"], 1.0)
    # silog is scale invariant and must stay finite (no sqrt of a negative rounding error).
    scaled = compute_depth_metrics(np.where(valid, gt, 1.0) * 1.7, gt, valid)
    assert np.all(np.isfinite(scaled["silog"]))
    np.testing.assert_allclose(scaled["silog"], 0.0, atol=2e-3)
    np.testing.assert_allclose(scaled["abs_rel"], 0.7, rtol=1e-5)


def test_rejects_multichannel():
    with pytest.raises(ValueError):
        compute_depth_metrics(
            jnp.ones((1, 4, 4, 2)), jnp.ones((1, 4, 4, 2)), jnp.ones((1, 4, 4, 2))
        )
