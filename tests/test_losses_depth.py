"""SILog / MSE / L1 against numpy references, their guards, and `make_loss` from a config."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs import base
from dgr_jax import protocol
from dgr_jax.losses import make_loss
from dgr_jax.losses.depth import l1, mse, silog


def _batch(seed=0, shape=(3, 12, 16)):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 10.0, shape).astype(np.float32)
    pred = (gt * np.exp(0.2 * rng.standard_normal(shape))).astype(np.float32)
    valid = rng.uniform(size=shape) > 0.3
    return pred, gt, valid


def _silog_numpy(pred, gt, valid, variance_focus):
    # The PyTorch hosts: d = log(pred[mask]) - log(gt[mask]) over the whole batch.
    d = np.log(pred[valid].astype(np.float64)) - np.log(gt[valid].astype(np.float64))
    return 10.0 * np.sqrt(np.mean(d**2) - variance_focus * np.mean(d) ** 2)


@pytest.mark.parametrize("variance_focus", [protocol.SILOG_VARIANCE_FOCUS, 0.5])
def test_silog_matches_numpy_reference(variance_focus):
    pred, gt, valid = _batch()
    got = silog(pred[..., None], gt, valid, variance_focus=variance_focus)  # (B,H,W,1) pred
    np.testing.assert_allclose(got, _silog_numpy(pred, gt, valid, variance_focus), rtol=1e-5)
    assert got.dtype == jnp.float32


def test_mse_and_l1_match_numpy_reference():
    pred, gt, valid = _batch(1)
    err = pred.astype(np.float64) - gt
    np.testing.assert_allclose(mse(pred, gt, valid), np.mean(err[valid] ** 2), rtol=1e-5)
    np.testing.assert_allclose(l1(pred[..., None], gt, valid), np.mean(np.abs(err[valid])), 1e-5)


def test_silog_ignores_invalid_pixels_whatever_they_hold():
    pred, gt, valid = _batch(2)
    ref = silog(pred, gt, valid)
    gt_bad = np.where(valid, gt, 0.0).astype(np.float32)
    pred_bad = np.where(valid, pred, 0.0).astype(np.float32)
    np.testing.assert_allclose(silog(pred_bad, gt_bad, valid), ref, rtol=1e-6)


def test_silog_guards_zero_predictions_all_invalid_and_perfect_maps():
    pred, gt, valid = _batch(3)
    pred[0, :4] = 0.0  # a sigmoid head underflowing to exactly 0
    for p, v, expect_zero in [
        (pred, valid, False),
        (pred, np.zeros_like(valid), True),  # no valid pixel in the batch
        (gt, valid, True),  # perfect prediction: sqrt(0)
    ]:
        value, grad = jax.value_and_grad(silog)(jnp.asarray(p), gt, v)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        if expect_zero:
            assert float(value) == 0.0
            assert np.all(np.asarray(grad) == 0.0)


def test_silog_computes_in_float32_from_bfloat16():
    pred, gt, valid = _batch(4)
    got = silog(jnp.asarray(pred, jnp.bfloat16), gt, valid)
    assert got.dtype == jnp.float32
    pred_rounded = np.asarray(jnp.asarray(pred, jnp.bfloat16).astype(jnp.float32))
    np.testing.assert_allclose(got, _silog_numpy(pred_rounded, gt, valid, 0.85), rtol=1e-5)


def _loss_cfg(**terms):
    cfg = base.base_config().loss
    cfg.terms = ml_collections.ConfigDict(terms)
    cfg.otdl.grid_size = (4, 4)
    return cfg


def test_make_loss_weights_terms_and_skips_zero_weights():
    pred, gt, valid = _batch(5, (2, 16, 16))
    loss_fn = make_loss(_loss_cfg(silog=1.0, mse=0.5, otdl=0.0))
    total, terms = jax.jit(loss_fn)(pred[..., None], gt, valid)
    assert set(terms) == {"silog", "mse"}
    np.testing.assert_allclose(terms["silog"], silog(pred, gt, valid), rtol=1e-6)
    np.testing.assert_allclose(total, terms["silog"] + 0.5 * terms["mse"], rtol=1e-6)


def test_make_loss_unknown_term_lists_valid_names():
    with pytest.raises(KeyError, match="valid names: .*otdl.*silog"):
        make_loss(_loss_cfg(silog=1.0, ssim=1.0))
    with pytest.raises(ValueError, match="non-zero"):
        make_loss(_loss_cfg(silog=0.0))


def test_make_loss_from_the_experiment_configs():
    from configs import nyu_vit_dgr, synthetic_vit_dgr

    cfg = synthetic_vit_dgr.get_config("smoke")
    pred, gt, valid = _batch(6, (2, *cfg.input.size))
    total, terms = jax.jit(make_loss(cfg.loss))(pred, gt, valid)
    assert set(terms) == {name for name, w in cfg.loss.terms.items() if w}
    assert np.isfinite(total) and float(total) > 0
    # The paper-scale NYU recipe: traced (which checks every term's arguments), not run.
    cfg = nyu_vit_dgr.get_config()
    batch = (cfg.batch_size, *cfg.input.size)
    shapes = [jax.ShapeDtypeStruct(batch, t) for t in (jnp.float32, jnp.float32, jnp.bool_)]
    total, terms = jax.eval_shape(make_loss(cfg.loss), *shapes)
    assert total.shape == () and set(terms) == {"silog", "otdl"}


def test_loss_with_batch_sharded_over_data_axis_matches_unsharded():
    assert jax.device_count() == 8, "tests/conftest.py sets 8 fake CPU devices"
    pred, gt, valid = _batch(7, (8, 16, 24))
    pred = pred[..., None]  # (B, H, W, 1), as the model returns it
    loss_fn = make_loss(_loss_cfg(silog=1.0, otdl=500.0, mse=1.0))
    step = jax.jit(jax.value_and_grad(lambda p, g, v: loss_fn(p, g, v)[0]))
    ref_value, ref_grad = step(pred, gt, valid)

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    data = NamedSharding(mesh, P("data"))
    sharded = [jax.device_put(x, data) for x in (pred, gt, valid)]
    value, grad = step(*sharded)
    assert grad.sharding.is_equivalent_to(data, grad.ndim)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-5 * np.abs(ref_grad).max())
