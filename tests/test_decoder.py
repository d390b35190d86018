"""DPT decoder (with DGR at its positions) and the depth heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import abstract_call, rngs

from dgr_jax.models.decoders.dpt import DPTDecoder, ReLUDepthHead, SigmoidDepthHead

_CHANNELS = {"stage1": 8, "stage2": 16, "stage3": 32, "stage4": 32}
_DGR = {"stencils": ("laplacian8", "mixed4"), "se_reduction": 8, "learnable_stencils": False}


def _feats(h, w, key=0):
    keys = jax.random.split(jax.random.key(key), 4)
    return {
        name: jax.random.normal(k, (2, h // s, w // s, c))
        for k, (name, c), s in zip(keys, _CHANNELS.items(), (4, 8, 16, 32))
    }


@pytest.mark.parametrize("positions", [(), ("reassemble",), ("fusion",), ("reassemble", "fusion")])
@pytest.mark.parametrize("use_bn", [False, True])
def test_decoder_output_is_half_resolution(positions, use_bn):
    dgr = {**_DGR, "positions": positions}
    out = abstract_call(
        lambda: DPTDecoder(_CHANNELS, features=16, use_bn=use_bn, dgr=dgr, rngs=rngs()),
        _feats(64, 96),
    )
    assert out.shape == (2, 32, 48, 16)


def test_decoder_handles_sides_not_multiple_of_32():
    # 32x48 input: stage4 is 1x2 (ceil), the fused map is resized to the 2x3 stage3.
    feats = {
        "stage1": jnp.zeros((1, 8, 12, 8)),
        "stage2": jnp.zeros((1, 4, 6, 16)),
        "stage3": jnp.zeros((1, 2, 3, 32)),
        "stage4": jnp.zeros((1, 1, 2, 32)),
    }
    out = abstract_call(lambda: DPTDecoder(_CHANNELS, features=16, rngs=rngs()), feats)
    assert out.shape == (1, 16, 24, 16)


def test_to_next_upsampling_follows_the_stage_sizes():
    # Depth Anything style: a 5x3 patch grid gives stages 20x12, 10x6, 5x3 and 3x2.
    feats = {
        "stage1": jnp.zeros((1, 20, 12, 8)),
        "stage2": jnp.zeros((1, 10, 6, 16)),
        "stage3": jnp.zeros((1, 5, 3, 32)),
        "stage4": jnp.zeros((1, 3, 2, 32)),
    }
    dec = lambda: DPTDecoder(_CHANNELS, features=16, upsample="to_next", rngs=rngs())  # noqa: E731
    assert abstract_call(dec, feats).shape == (1, 40, 24, 16)


def test_dgr_in_the_decoder_starts_as_identity():
    dgr = {**_DGR, "positions": ("reassemble", "fusion")}
    with_dgr = DPTDecoder(_CHANNELS, features=16, dgr=dgr, rngs=rngs(0))
    plain = nnx.eval_shape(lambda: DPTDecoder(_CHANNELS, features=16, rngs=rngs(1)))
    shared = nnx.state(with_dgr)
    del shared["dgr_reassemble"], shared["dgr_fusion"]
    nnx.update(plain, shared)
    feats = _feats(64, 64)
    forward = nnx.jit(lambda m, f: m(f))
    np.testing.assert_allclose(forward(with_dgr, feats), forward(plain, feats), atol=1e-6)
    n_dgr = sum(x.size for x in jax.tree.leaves(nnx.state(with_dgr, nnx.Param)))
    n_plain = sum(x.size for x in jax.tree.leaves(nnx.state(plain, nnx.Param)))
    assert n_dgr > n_plain


def test_unknown_dgr_position_is_rejected():
    with pytest.raises(ValueError, match="reassemble"):
        DPTDecoder(_CHANNELS, features=16, dgr={**_DGR, "positions": ("head",)}, rngs=rngs())


def test_heads_map_features_to_bounded_depth():
    x = 10.0 * jax.random.normal(jax.random.key(0), (2, 8, 12, 16))
    sig = SigmoidDepthHead(16, max_depth=10.0, rngs=rngs(0))
    relu = ReLUDepthHead(16, rngs=rngs(0))
    d_sig = nnx.jit(lambda m, x: m(x, (16, 24)))(sig, x)
    d_relu = nnx.jit(lambda m, x: m(x, (16, 24)))(relu, x)
    assert d_sig.shape == d_relu.shape == (2, 16, 24, 1)
    assert d_sig.dtype == jnp.float32
    assert float(d_sig.min()) > 0 and float(d_sig.max()) < 10.0
    assert float(d_relu.min()) == 0.0 and float(d_relu.max()) > 0
    # The same convolutions, so the two heads differ only in the final activation.
    logits = jnp.log(d_sig / (10.0 - d_sig))
    np.testing.assert_allclose(jax.nn.relu(logits), d_relu, rtol=1e-3, atol=1e-3)


def test_head_resizes_to_any_output_size():
    head = nnx.eval_shape(lambda: SigmoidDepthHead(16, rngs=rngs()))
    out = nnx.eval_shape(lambda m, x: m(x, (17, 23)), head, jnp.zeros((1, 8, 12, 16)))
    assert out.shape == (1, 17, 23, 1)
