"""The ablation study's continuity metrics: a flat or blurred prediction cannot win them
(tests/test_continuity.py checks the continuity metrics on noisy and blocky predictions too)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from dgr_jax import configlib
from dgr_jax.analysis.ablation.stats import better_direction
from dgr_jax.evaluators.continuity import continuity_metrics
from dgr_jax.evaluators.edges import compute_edge_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY_CONFIGS = [
    "configs/ablation_synthetic.py",
    "configs/ablation_nyu_newcrfs.py",
    "configs/ablation_kitti_newcrfs.py",
]


def _scene(h: int = 48, w: int = 64) -> np.ndarray:
    """An indoor-like depth map: a floor receding to a wall at 6 m, a box, a slanted box."""
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    horizon = h // 3
    depth = np.where(yy > horizon, 1.2 * h / np.maximum(yy - horizon, 1) + 0.8, 6.0)
    depth = np.minimum(depth, 6.0)
    depth[20:36, 8:24] = 2.5
    depth[12:30, 40:56] = 3.5 + 0.02 * (xx[12:30, 40:56] - 40)
    return depth.astype(np.float32)


@jax.jit
def _metrics(pred, gt, valid):
    # A nominal focal of 0.75 W (the scene is not rendered from a camera).
    focal = 0.75 * gt.shape[-1]
    return {
        **compute_edge_metrics(pred, gt, valid),
        **continuity_metrics(pred, gt, valid, focal=focal),
    }


def _scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    valid = np.ones(gt.shape, bool)[None]
    out = _metrics(jnp.asarray(pred[None]), jnp.asarray(gt[None]), jnp.asarray(valid))
    return {k: float(v[0]) for k, v in out.items()}


def _worse(name: str, score: float, truth: float, margin: float = 0.0) -> bool:
    if better_direction(name) == "higher":
        return score <= truth - margin
    return score >= truth + margin


def _continuity_metrics() -> tuple[str, ...]:
    names = set()
    for spec in STUDY_CONFIGS:
        names |= set(configlib.load(os.path.join(ROOT, spec)).metrics.continuity)
    return tuple(sorted(names))


@pytest.fixture(scope="module")
def predictions():
    gt = _scene()
    rng = np.random.default_rng(0)
    # Sharp edges in the right places, 10% too far overall, with smooth per-pixel noise: what a
    # trained model's output looks like next to a flat one.
    noise = 2.0 * gaussian_filter(rng.normal(0.0, 0.1, gt.shape), 1.0)
    return {
        "ground truth": gt,
        "constant": np.full_like(gt, np.median(gt)),
        "blurred": gaussian_filter(gt, 1.5).astype(np.float32),
        "sharp, noisy": (1.1 * gt * np.exp(noise)).astype(np.float32),
    }


def test_the_configs_name_computed_continuity_metrics():
    names = _continuity_metrics()
    assert names and "grad_err" not in names
    some = _scores(_scene(), _scene())
    for name in names:
        assert name in some
    for name in ("edge_f1_0.25", "edge_f1_0.50", "normal_within_11.25"):
        assert better_direction(name) == "higher"
    for name in ("normal_err_mean", "seam_ratio_16", "laplacian_err"):
        assert better_direction(name) == "lower"


def test_constant_and_blurred_predictions_score_worse_than_the_ground_truth(predictions):
    gt = predictions["ground truth"]
    truth = _scores(gt, gt)
    for name in _continuity_metrics():
        # Strictly worse, except on seams: a constant or blurred map has none (1 = no seams).
        margin = 0.15 if name.startswith("edge_f1") else 0.0 if name.startswith("seam") else 1e-3
        for kind in ("constant", "blurred"):
            score = _scores(predictions[kind], gt)[name]
            assert _worse(name, score, truth[name], margin), (name, kind, score, truth[name])
        if name.startswith("edge_f1"):
            assert _scores(predictions["constant"], gt)[name] == 0.0  # no edge at all


def test_grad_err_prefers_a_flat_prediction_the_continuity_metrics_do_not(predictions):
    """Why grad_err judges no claim: it ranks a constant above a sharp, slightly noisy
    prediction (as the constant depth beats the main job's model on it)."""
    gt = predictions["ground truth"]
    flat = _scores(predictions["constant"], gt)
    sharp = _scores(predictions["sharp, noisy"], gt)
    assert flat["grad_err"] < sharp["grad_err"]  # lower is better: the flat one "wins"
    for name in ("edge_f1_0.25", "edge_f1_0.50"):
        assert sharp[name] > flat[name] + 0.3, (name, sharp[name], flat[name])
    # The normals judge the other way here, and rightly: the sharp map's 5% per-pixel noise
    # tilts its surfaces (48.7 degrees mean error) more than a flat map, right on every
    # fronto-parallel wall, does (33.2 degrees). Continuity is not edge sharpness.
    np.testing.assert_allclose(
        [sharp["normal_err_mean"], flat["normal_err_mean"]], [48.729, 33.187], rtol=1e-3
    )
