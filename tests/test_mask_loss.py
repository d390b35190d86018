"""The mask loss of method.md section 2 against a NumPy transcription of Hu et al.'s formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dgr_jax.analysis.sparse_pixel import mask_loss as ml
from dgr_jax.evaluators.edges import sobel

# Hu et al.'s kernels, applied as cross-correlation (torch conv2d) with zero padding.
KX = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float64)
KY = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)


def np_sobel(d):
    """(B, H, W) -> gx, gy by scipy's correlate, zero padding."""
    gx = np.stack([ndimage.correlate(x, KX, mode="constant", cval=0.0) for x in d])
    gy = np.stack([ndimage.correlate(x, KY, mode="constant", cval=0.0) for x in d])
    return gx, gy


def np_loss(pred_masked, pred_full, mask, lam):
    """L_rec + lambda * mean(M), every term written out from the spec."""
    gx_m, gy_m = np_sobel(pred_masked)
    gx, gy = np_sobel(pred_full)
    depth = np.mean(np.log(np.abs(pred_masked - pred_full) + 0.5))
    grad_x = np.mean(np.log(np.abs(gx_m - gx) + 0.5))
    grad_y = np.mean(np.log(np.abs(gy_m - gy) + 0.5))
    n_m = np.stack([-gx_m, -gy_m, np.ones_like(gx_m)], -1)
    n = np.stack([-gx, -gy, np.ones_like(gx)], -1)
    cos = (n_m * n).sum(-1) / (np.linalg.norm(n_m, axis=-1) * np.linalg.norm(n, axis=-1))
    normal = np.mean(1.0 - cos)
    terms = {"depth": depth, "grad_x": grad_x, "grad_y": grad_y, "normal": normal}
    return sum(terms.values()) + lam * mask.mean(), terms


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    full = rng.uniform(1.0, 8.0, (2, 7, 9))
    masked = full + rng.normal(0.0, 0.7, full.shape)
    mask = rng.uniform(0.0, 1.0, full.shape)
    return masked, full, mask


def test_evaluators_sobel_is_hu_convention():
    x = np.random.default_rng(1).normal(size=(2, 6, 8))
    gx, gy = sobel(jnp.asarray(x, jnp.float32))
    rx, ry = np_sobel(x)
    np.testing.assert_allclose(np.asarray(gx), rx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(gy), ry, rtol=1e-5, atol=1e-5)


def test_mask_loss_matches_numpy(maps):
    masked, full, mask = maps
    lam = 2.5
    loss, terms = ml.mask_loss(
        jnp.asarray(masked, jnp.float32),
        jnp.asarray(full, jnp.float32),
        jnp.asarray(mask, jnp.float32),
        lam,
    )
    ref, ref_terms = np_loss(masked, full, mask, lam)
    np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
    for k, v in ref_terms.items():
        np.testing.assert_allclose(float(terms[k]), v, rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(float(terms["mask_mean"]), mask.mean(), rtol=1e-6)
    np.testing.assert_allclose(float(terms["rec"]), ref - lam * mask.mean(), rtol=1e-5)


def test_channel_axis_is_accepted(maps):
    masked, full, _ = maps
    a, _ = ml.reconstruction_loss(jnp.asarray(masked[..., None]), jnp.asarray(full[..., None]))
    b, _ = ml.reconstruction_loss(jnp.asarray(masked), jnp.asarray(full))
    np.testing.assert_allclose(float(a), float(b), rtol=1e-6)


def test_perfect_reconstruction_is_the_minimum(maps):
    _, full, _ = maps
    f = jnp.asarray(full, jnp.float32)
    rec, terms = ml.reconstruction_loss(f, f)
    np.testing.assert_allclose(float(rec), 3 * np.log(0.5), rtol=1e-5)
    assert abs(float(terms["normal"])) < 1e-6
    worse, _ = ml.reconstruction_loss(f + 0.3, f)
    assert float(worse) > float(rec)


def test_normals_differ_only_in_slope():
    # Parallel surfaces at different depths: same normals -> zero normal loss, positive depth term.
    ramp = np.tile(np.linspace(1.0, 3.0, 8), (1, 6, 1))
    gx, gy = np_sobel(ramp)
    a = ml.normal_loss(*map(jnp.asarray, (gx, gy, gx, gy)))
    assert abs(float(a)) < 1e-6
    flat = np.zeros_like(gx)
    b = ml.normal_loss(*map(jnp.asarray, (flat, flat, gx, gy)))
    assert float(b) > 0.01


def test_sparsity_gradient_is_lambda_over_n(maps):
    masked, full, mask = maps
    lam = 3.0

    def only_mask_term(m):
        # the reconstruction does not depend on M here (Y' fixed), so dL/dM = lambda / N
        return ml.mask_loss(jnp.asarray(masked), jnp.asarray(full), m, lam)[0]

    g = jax.grad(only_mask_term)(jnp.asarray(mask, jnp.float32))
    np.testing.assert_allclose(np.asarray(g), lam / mask.size, rtol=1e-6)
