"""Flip TTA against a NumPy transcription of NeWCRFs post_process_depth."""

import jax
import numpy as np
import pytest

from dgr_jax.evaluators.tta import flip_blend, flip_weights


def reference_post_process(depth, depth_flipped):
    """NeWCRFs utils.post_process_depth on (B, 1, H, W) arrays, from its formulas."""
    w = depth.shape[-1]
    hat = depth_flipped[..., ::-1]
    fused = 0.5 * (depth + hat)
    xs = np.broadcast_to(np.linspace(0.0, 1.0, w, dtype=np.float32), depth.shape)
    mask = 1.0 - np.clip(20.0 * (xs - 0.05), 0.0, 1.0)
    mask_hat = mask[..., ::-1]
    return mask_hat * depth + mask * hat + (1.0 - mask - mask_hat) * fused


def test_blend_matches_reference_nchw_and_nhwc():
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 5, (2, 1, 6, 640)).astype(np.float32)
    b = rng.uniform(1, 5, (2, 1, 6, 640)).astype(np.float32)
    ref = reference_post_process(a, b)[:, 0]  # (B, H, W)
    got = jax.jit(flip_blend)(a[:, 0], b[:, 0])
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    got_nhwc = flip_blend(a.transpose(0, 2, 3, 1), b.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(got_nhwc[..., 0], ref, rtol=1e-6)


def test_weights_at_640_columns():
    w_flipped, w_plain = (np.asarray(x) for x in flip_weights(640))
    # 32 pure columns of the flipped prediction on the left, then a 32-column ramp.
    assert np.all(w_flipped[:32] == 1.0) and w_flipped[32] < 1.0
    assert np.all(w_flipped[64:] == 0.0) and w_flipped[63] > 0.0
    np.testing.assert_array_equal(w_plain, w_flipped[::-1])
    assert np.all(w_flipped + w_plain <= 1.0)


def test_mean_none_and_symmetry():
    rng = np.random.default_rng(1)
    a = rng.uniform(1, 5, (1, 4, 50)).astype(np.float32)
    b = rng.uniform(1, 5, (1, 4, 50)).astype(np.float32)
    np.testing.assert_allclose(flip_blend(a, b, "mean"), 0.5 * (a + b[..., ::-1]), rtol=1e-6)
    np.testing.assert_array_equal(flip_blend(a, b, "none"), a)
    # A model that is exactly flip-equivariant gets its own prediction back.
    np.testing.assert_allclose(flip_blend(a, a[..., ::-1]), a, rtol=1e-6)
    with pytest.raises(ValueError):
        flip_blend(a, b, "max")
    with pytest.raises(ValueError):
        flip_blend(a, b[:, :, :10])
