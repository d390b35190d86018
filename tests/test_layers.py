"""Torch-exact building blocks: resizing, strided transposed conv, torch-style conv padding."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dgr_jax.models.blocks import layers

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _nchw_to_nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


@pytest.mark.parametrize(
    ("method", "align_corners"), [("bilinear", False), ("bilinear", True), ("bicubic", False)]
)
@pytest.mark.parametrize(("size_in", "size_out"), [((5, 7), (10, 14)), ((9, 6), (4, 11))])
def test_resize_matches_torch_interpolate(method, align_corners, size_in, size_out):
    x = np.random.RandomState(0).randn(2, 3, *size_in).astype(np.float32)
    ref = F.interpolate(
        torch.from_numpy(x), size=size_out, mode=method, align_corners=align_corners
    ).numpy()
    ours = layers.resize(
        jnp.asarray(_nchw_to_nhwc(x)), size_out, method=method, align_corners=align_corners
    )
    np.testing.assert_allclose(np.asarray(ours), _nchw_to_nhwc(ref), atol=1e-5)


def test_resize_same_size_is_identity():
    x = jnp.asarray(np.random.RandomState(1).randn(1, 4, 5, 2), jnp.float32)
    np.testing.assert_array_equal(layers.resize(x, (4, 5), align_corners=True), x)


@pytest.mark.parametrize("factor", [2, 4])
def test_conv_transpose_strided_matches_torch(factor):
    rs = np.random.RandomState(2)
    up = layers.ConvTransposeStrided(3, 5, factor, rngs=nnx.Rngs(0))
    ref = torch.nn.ConvTranspose2d(3, 5, kernel_size=factor, stride=factor)
    with torch.no_grad():
        up.kernel[...] = jnp.asarray(ref.weight.numpy().transpose(2, 3, 0, 1))
        up.bias[...] = jnp.asarray(ref.bias.numpy())
        x = rs.randn(2, 3, 3, 4).astype(np.float32)
        expected = _nchw_to_nhwc(ref(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(np.asarray(up(jnp.asarray(_nchw_to_nhwc(x)))), expected, atol=1e-5)


def test_conv_stride2_uses_torch_padding():
    conv = layers.conv(3, 4, 3, stride=2, rngs=nnx.Rngs(0))
    ref = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.kernel[...] = jnp.asarray(ref.weight.numpy().transpose(2, 3, 1, 0))
        conv.bias[...] = jnp.asarray(ref.bias.numpy())
        x = np.random.RandomState(3).randn(1, 3, 8, 6).astype(np.float32)
        expected = _nchw_to_nhwc(ref(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(np.asarray(conv(jnp.asarray(_nchw_to_nhwc(x)))), expected, atol=1e-5)
