"""The fast lowerings in layers.py (depthwise and 1x1 convs, x2 upsampling) equal the plain
ones, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import rngs

from dgr_jax.models.blocks import layers

_DN = ("NHWC", "HWIO", "NHWC")


def _grouped_conv(x, kernel, pad_mode):
    """Reference: XLA's depthwise convolution on an explicitly padded input."""
    kh, kw = kernel.shape[:2]
    x = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)), mode=pad_mode)
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=_DN, feature_group_count=x.shape[-1]
    )


def _value_and_grads(fn, x, kernel):
    r = jax.random.normal(jax.random.key(9), fn(x, kernel).shape)
    return jax.value_and_grad(lambda x, k: jnp.sum(fn(x, k) * r), argnums=(0, 1))(x, kernel)


@pytest.mark.parametrize("pad_mode", ["constant", "edge"])
@pytest.mark.parametrize("size", [3, 5])
def test_depthwise_conv_matches_grouped_conv(pad_mode, size):
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 4))
    kernel = jax.random.normal(jax.random.key(1), (size, size, 1, 4))

    def ours(x, k):
        return layers.depthwise_conv(x, k[:, :, 0, :], pad_mode=pad_mode)

    def ref(x, k):
        return _grouped_conv(x, k, pad_mode)

    (v, grads), (v_ref, grads_ref) = (
        _value_and_grads(ours, x, kernel),
        _value_and_grads(ref, x, kernel),
    )
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pad_mode", ["constant", "edge"])
@pytest.mark.parametrize("shape", [(2, 1, 2, 3), (1, 2, 5, 3), (1, 6, 3, 2)])
@pytest.mark.parametrize("shared", [False, True])
def test_depthwise_conv_gradients_on_small_maps(pad_mode, shape, shared):
    """The hand-written VJP equals autodiff of XLA's grouped convolution, also on maps smaller
    than the kernel (every border row is then an edge row) and with a fixed NumPy kernel."""
    x = jax.random.normal(jax.random.key(3), shape)
    c = shape[-1]
    if shared:
        fixed = np.random.default_rng(0).normal(size=(5, 3))
        per_channel = jnp.broadcast_to(
            jnp.asarray(fixed, jnp.float32)[:, :, None, None], (5, 3, 1, c)
        )
        r = jax.random.normal(jax.random.key(4), shape)
        g = jax.grad(lambda x: jnp.sum(layers.depthwise_conv(x, fixed, pad_mode=pad_mode) * r))(x)
        g_ref = jax.grad(lambda x: jnp.sum(_grouped_conv(x, per_channel, pad_mode) * r))(x)
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)
        return
    kernel = jax.random.normal(jax.random.key(5), (5, 3, 1, c))
    (v, grads), (v_ref, grads_ref) = (
        _value_and_grads(
            lambda x, k: layers.depthwise_conv(x, k[:, :, 0, :], pad_mode=pad_mode), x, kernel
        ),
        _value_and_grads(lambda x, k: _grouped_conv(x, k, pad_mode), x, kernel),
    )
    np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-5)
    for g, g_ref in zip(grads, grads_ref):
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)


def test_depthwise_conv_rejects_unknown_pad_mode():
    with pytest.raises(ValueError, match="pad_mode"):
        layers.depthwise_conv(jnp.zeros((1, 4, 4, 2)), np.ones((3, 3)), pad_mode="reflect")


def test_depthwise_conv_shared_numpy_kernel_skips_nothing_it_needs():
    x = jax.random.normal(jax.random.key(2), (1, 6, 5, 3))
    kernel = np.array([[0.0, 1.0, 0.0], [2.0, -4.0, 0.5], [0.0, 0.0, 3.0]])
    per_channel = jnp.broadcast_to(jnp.asarray(kernel, jnp.float32)[:, :, None, None], (3, 3, 1, 3))
    np.testing.assert_allclose(
        layers.depthwise_conv(x, kernel, pad_mode="edge"),
        _grouped_conv(x, per_channel, "edge"),
        rtol=1e-5,
        atol=1e-5,
    )


def test_depthwise_module_has_nnx_conv_parameters():
    ours = layers.DepthwiseConv(6, 3, rngs=rngs(0))
    conv = nnx.Conv(6, 6, (3, 3), feature_group_count=6, rngs=rngs(0))
    assert ours.kernel.shape == conv.kernel.shape and ours.bias.shape == conv.bias.shape
    ours.kernel[...] = conv.kernel[...]
    ours.bias[...] = jnp.arange(6.0)
    conv.bias[...] = jnp.arange(6.0)
    conv.padding = ((1, 1), (1, 1))
    x = jax.random.normal(jax.random.key(3), (2, 5, 4, 6))
    np.testing.assert_allclose(ours(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("kernel_size", "stride"), [(1, 1), (1, 2), (3, 1)])
def test_conv_matmul_lowering_matches_xla(kernel_size, stride):
    """layers.conv runs 1x1 stride-1 kernels as a matmul, everything else as lax's conv."""
    conv = layers.conv(5, 7, kernel_size, stride=stride, rngs=rngs(1))
    reference = nnx.Conv(
        5, 7, (kernel_size,) * 2, strides=stride, padding=conv.padding, rngs=rngs(1)
    )
    reference.kernel[...] = conv.kernel[...]
    reference.bias[...] = jnp.linspace(-1.0, 1.0, 7)
    conv.bias[...] = reference.bias[...]
    x = jax.random.normal(jax.random.key(4), (2, 6, 8, 5))

    def run(module, x):
        return nnx.value_and_grad(lambda m, x: jnp.sum(jnp.sin(m(x))), argnums=(0, 1))(module, x)

    (v, (g_mod, g_x)), (v_ref, (g_mod_ref, g_x_ref)) = run(conv, x), run(reference, x)
    np.testing.assert_allclose(v, v_ref, rtol=1e-5)
    np.testing.assert_allclose(g_x, g_x_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_mod.kernel[...], g_mod_ref.kernel[...], rtol=1e-4, atol=1e-5)
    hlo = jax.jit(lambda x: conv(x)).lower(x).as_text()
    assert ("convolution" in hlo) == (kernel_size > 1 or stride > 1)


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_double_align_corners_matches_gather_taps(n):
    """The slice-based x2 upsampling equals the tap/gather one, values and gradients."""
    x = jax.random.normal(jax.random.key(5), (2, n, 3, 4))
    idx, weights = layers._linear_taps(n, 2 * n, True)

    def gather(x):
        return layers._resize_axis(x, 1, idx, weights)

    def slices(x):
        return layers._double_align_corners(x, 1)

    r = jax.random.normal(jax.random.key(6), (2, 2 * n, 3, 4))
    np.testing.assert_allclose(slices(x), gather(x), rtol=1e-6, atol=1e-6)
    g_gather = jax.grad(lambda x: jnp.sum(gather(x) * r))(x)
    g_slices = jax.grad(lambda x: jnp.sum(slices(x) * r))(x)
    np.testing.assert_allclose(g_slices, g_gather, rtol=1e-5, atol=1e-6)


def test_resize_uses_no_gather_for_dpt_upsampling():
    x = jnp.zeros((1, 6, 10, 2))
    hlo = jax.jit(lambda x: layers.resize(x, (12, 20), align_corners=True)).lower(x).as_text()
    assert "gather" not in hlo
