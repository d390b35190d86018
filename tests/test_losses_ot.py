"""OTDL against exact linear programs (scipy), between geometries, and its guards."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from dgr_jax.losses.ot import (
    area_pool_matrix,
    ot_masses,
    otdl,
    otdl_loss,
    pixel_centres,
    pool_sum,
    w2_1d_sorted,
)

# One compiled function per distinct static setting and shape, shared by the tests below: a
# debiased Sinkhorn costs ~2-3 s to compile on CPU, and eager ott is much slower than that.
_STATIC = ("geometry", "grid_size", "mass", "epsilon", "debiased", "max_iterations", "threshold")
jit_otdl = jax.jit(otdl, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC)
def otdl_value_and_grad(pred, gt, valid, **kw):
    """Per-sample values and the gradient of their sum with respect to `pred`."""
    values, vjp = jax.vjp(lambda p: otdl(p, gt, valid, **kw), pred)
    return values, vjp(jnp.ones_like(values))[0]


def _smooth_maps(seed, shape):
    """(B, h, w) smooth positive 'depth' fields in metres with some noise."""
    rng = np.random.default_rng(seed)
    b, h, w = shape
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = [
        2.0 + 4.0 * yy * rng.uniform() + np.sin(3 * xx + rng.uniform(0, 6)) + 0.3 * rng.uniform()
        for _ in range(b)
    ]
    return (np.stack(out) + 0.2 * rng.standard_normal(shape)).astype(np.float32)


def _exact_ot(a, b, cost):
    """Exact OT cost between probability vectors a, b by the transport LP (HiGHS)."""
    n, m = len(a), len(b)
    rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j P_ij = a_i
    cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_i P_ij = b_j
    res = linprog(
        cost.ravel(),
        A_eq=np.vstack([rows, cols]),
        b_eq=np.concatenate([a, b]),
        bounds=(0, None),
        method="highs",
    )
    assert res.status == 0
    return res.fun


def _costs(h, w):
    ys, xs = (np.asarray(c, np.float64) for c in pixel_centres(h, w))
    pts = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)  # (h*w, 2) row-major
    full = ((pts[:, None] - pts[None]) ** 2).sum(-1)
    rows_only = (pts[:, None, 0] - pts[None, :, 0]) ** 2
    return full, rows_only


@pytest.fixture(scope="module")
def tiny_problem():
    """Three 6x8 samples with partial validity and their exact LP costs (full and row-only)."""
    pred, gt = _smooth_maps(0, (3, 6, 8)), _smooth_maps(1, (3, 6, 8))
    valid = np.ones(pred.shape, bool)
    valid[1, :2, :3] = False
    valid[2, :, -2:] = False
    a, b, _ = ot_masses(pred, gt, valid)
    full, rows_only = _costs(6, 8)
    exact, exact_rows = [], []
    for s in range(3):
        pa, pb = np.asarray(a[s], np.float64).ravel(), np.asarray(b[s], np.float64).ravel()
        pa, pb = pa / pa.sum(), pb / pb.sum()
        exact.append(_exact_ot(pa, pb, full))
        exact_rows.append(_exact_ot(pa, pb, rows_only))
    return pred, gt, valid, np.array(exact), np.array(exact_rows)


def test_rows_equals_the_exact_lp_with_the_row_only_cost(tiny_problem):
    pred, gt, valid, _, exact_rows = tiny_problem
    got = jit_otdl(pred, gt, valid, geometry="rows")
    np.testing.assert_allclose(got, exact_rows, rtol=1e-4, atol=1e-8)


def test_debiased_grid_sinkhorn_at_small_epsilon_approaches_exact_w2(tiny_problem):
    pred, gt, valid, exact, _ = tiny_problem
    # Pixel spacing 1/8: eps = spacing^2 / 50. The remaining gap is the entropic bias of a
    # discrete plan, -eps * (H(P) - (H(a) + H(b)) / 2), which shrinks linearly with eps.
    got = np.asarray(jit_otdl(pred, gt, valid, epsilon=3e-4, max_iterations=5000, threshold=1e-5))
    assert np.all(np.abs(got / exact - 1) < 0.03), (got, exact)  # measured: 0.7-2% below


def test_grid_equals_pointcloud_values_and_gradients():
    pred, gt = _smooth_maps(2, (2, 5, 7)), _smooth_maps(3, (2, 5, 7))
    valid = np.ones(pred.shape, bool)
    valid[0, 1:3, 2:5] = False
    g_val, g_grad = otdl_value_and_grad(pred, gt, valid, geometry="grid")
    p_val, p_grad = otdl_value_and_grad(pred, gt, valid, geometry="pointcloud")
    np.testing.assert_allclose(g_val, p_val, rtol=1e-4)
    np.testing.assert_allclose(g_grad, p_grad, rtol=1e-3, atol=1e-4 * np.abs(p_grad).max())
    # The plain regularised cost (debiased=False) keeps the entropic bias: it is larger.
    plain = jit_otdl(pred, gt, valid, geometry="grid", debiased=False)
    assert np.all(np.asarray(plain) > np.asarray(g_val) + 1e-3)


def test_mass_moved_by_k_pixels_costs_k_over_L_squared():
    h, w = 10, 14  # L = 14 for both axes: units of the longer side
    blob = np.zeros((h, w), np.float32)
    blob[3:5, 4:7] = [[2.0, 3.0, 1.0], [4.0, 2.0, 5.0]]  # lumpy, away from the border
    moves = [(0, 1), (0, 3), (1, 2), (1, 5)]  # (axis, k): rows, then columns
    pred = np.stack([np.roll(blob, k, axis=axis) for axis, k in moves])
    gt = np.stack([blob] * len(moves))
    valid = np.ones(gt.shape, bool)
    expected = np.array([(k / max(h, w)) ** 2 for _, k in moves])
    # Debiased: a translation by t costs |t|^2 for any epsilon.
    got = jit_otdl(pred, gt, valid, threshold=1e-6)
    np.testing.assert_allclose(got, expected, rtol=2e-3)
    rows = jit_otdl(pred, gt, valid, geometry="rows", threshold=1e-6)
    row_moves = np.array([axis == 0 for axis, _ in moves])
    np.testing.assert_allclose(rows, np.where(row_moves, expected, 0.0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("geometry", ["grid", "rows"])
def test_identical_maps_cost_about_zero(geometry):
    # Same shapes and settings as the translation test above: one compilation for both.
    gt = _smooth_maps(4, (2, 10, 14))
    gt = np.concatenate([gt, gt])
    pred = np.concatenate([gt[:2], _smooth_maps(5, (2, 10, 14))])  # identical, then different
    valid = np.ones(gt.shape, bool)
    valid[1::2, :3] = False
    got = np.asarray(jit_otdl(pred, gt, valid, geometry=geometry, threshold=1e-6))
    assert np.all(np.abs(got[:2]) < 1e-6)
    assert np.all(got[2:] > 1e3 * np.abs(got[:2]).max() + 1e-5)


@pytest.mark.parametrize(
    ("geometry", "mass", "dtype"),
    [
        ("grid", "depth", jnp.bfloat16),  # a mixed-precision head underflows to 0 more easily
        ("pointcloud", "depth", jnp.float32),
        ("rows", "depth", jnp.float32),
        ("grid", "inverse_depth", jnp.float32),
    ],
)
def test_all_invalid_samples_and_zero_predictions_stay_finite(geometry, mass, dtype):
    rng = np.random.default_rng(6)
    pred = rng.uniform(0.5, 5.0, (4, 16, 16, 1)).astype(np.float32)  # (B, H, W, 1) as the model
    gt = rng.uniform(0.5, 5.0, (4, 16, 16)).astype(np.float32)
    valid = np.ones(gt.shape, bool)
    valid[0, :8] = False  # zero mass on half the grid
    valid[1] = False  # no valid pixel at all
    pred[2, :4] = 0.0  # a sigmoid head that underflowed
    pred[3] = 0.0
    values, grad = otdl_value_and_grad(
        jnp.asarray(pred, dtype), gt, valid, geometry=geometry, mass=mass, grid_size=(8, 8)
    )
    grad = np.asarray(grad, np.float32)
    assert values.dtype == jnp.float32 and grad.shape == pred.shape
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grad))
    assert values[1] == 0.0 and np.all(grad[1] == 0.0)
    assert np.all(grad[0, :8] == 0.0)  # invalid pixels get no gradient
    assert np.all(np.asarray(values)[[0, 2, 3]] > 0)


def test_outer_vmap_and_batch_mean_match_the_batched_call():
    pred, gt = _smooth_maps(7, (3, 16, 24)), _smooth_maps(8, (3, 16, 24))
    valid = gt > 2.0
    valid[1] = False  # otdl_loss averages over the samples that have valid pixels
    kw = {"grid_size": (4, 6)}
    batched = np.asarray(jit_otdl(pred, gt, valid, **kw))

    @jax.jit
    def other_routes(p, g, v):
        per_sample = jax.vmap(lambda p, g, v: otdl(p[None], g[None], v[None], **kw)[0])(p, g, v)
        return per_sample, otdl_loss(p, g, v, **kw)

    per_sample, mean = other_routes(pred, gt, valid)
    np.testing.assert_allclose(per_sample, batched, rtol=1e-5)
    np.testing.assert_allclose(mean, (batched[0] + batched[2]) / 2, rtol=1e-5)
    assert batched[1] == 0.0 and np.all(batched[[0, 2]] > 0)


# The exact (rows) cost is piecewise linear in the masses, as any LP value: a small step stays
# on one piece. The entropic cost is smooth. Same shapes and settings as the grid-vs-pointcloud
# test: no new compilation.
@pytest.mark.parametrize(("geometry", "step"), [("grid", 3e-2), ("rows", 1e-3)])
def test_gradient_matches_finite_differences(geometry, step):
    pred, gt = _smooth_maps(9, (2, 5, 7)), _smooth_maps(10, (2, 5, 7))
    valid = np.ones(pred.shape, bool)
    valid[0, 0, :3] = False
    direction = np.random.default_rng(11).standard_normal(pred.shape).astype(np.float32)
    plus, _ = otdl_value_and_grad(pred + step * direction, gt, valid, geometry=geometry)
    minus, _ = otdl_value_and_grad(pred - step * direction, gt, valid, geometry=geometry)
    _, grad = otdl_value_and_grad(pred, gt, valid, geometry=geometry)
    # Default solver settings: the Danskin gradient is as good as the potentials' convergence.
    fd = np.sum(plus - minus) / (2 * step)
    np.testing.assert_allclose(np.sum(grad * direction), fd, rtol=0.01)


def test_pooling_is_exact_area_weighting():
    m = area_pool_matrix(10, 4)  # non-integer ratio 2.5
    np.testing.assert_allclose(m.sum(axis=0), 1.0)  # every input pixel is fully distributed
    np.testing.assert_allclose(m.sum(axis=1), 2.5)  # every cell covers 2.5 pixels
    x = np.random.default_rng(12).uniform(size=(2, 12, 16)).astype(np.float32)
    blocks = x.reshape(2, 3, 4, 4, 4).sum(axis=(2, 4))  # (B, 12, 16) -> (B, 3, 4) block sums
    np.testing.assert_allclose(pool_sum(x, (3, 4)), blocks, rtol=1e-6)


def test_masses_follow_validity_weighted_pooling():
    pred, gt = _smooth_maps(13, (1, 8, 8)), _smooth_maps(14, (1, 8, 8))
    valid = np.ones(pred.shape, bool)
    valid[0, :4, :4] = False  # the whole top-left cell of the 2x2 OT grid
    a, b, has_valid = ot_masses(pred, gt, valid, grid_size=(2, 2), mass="inverse_depth")
    expected = (np.where(valid, 1.0 / pred, 0.0)).reshape(2, 4, 2, 4).sum(axis=(1, 3))
    np.testing.assert_allclose(a[0], expected / expected.sum(), atol=1e-6)
    assert a[0, 0, 0] > 0  # strictly positive even where nothing is valid
    np.testing.assert_allclose(np.sum(b), 1.0, rtol=1e-6)
    assert bool(has_valid[0])


def test_closed_form_1d_w2_against_the_lp():
    rng = np.random.default_rng(15)
    x = np.sort(rng.uniform(size=9))
    a, b = rng.dirichlet(np.ones(9)), rng.dirichlet(np.ones(9))
    a[3] = 0.0
    a /= a.sum()
    exact = _exact_ot(a, b, (x[:, None] - x[None]) ** 2)
    got = w2_1d_sorted(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(x))
    np.testing.assert_allclose(got, exact, rtol=1e-4)
