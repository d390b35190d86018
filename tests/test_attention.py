"""The CPU attention (hand-written gradient) computes what jax.nn.dot_product_attention does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgr_jax.models.blocks import attention


def _qkv(shape, seed, logit_scale=1.0):
    rs = np.random.RandomState(seed)
    q, k, v, ct = (rs.randn(*shape).astype(np.float32) for _ in range(4))
    return jnp.asarray(q * logit_scale), jnp.asarray(k), jnp.asarray(v), jnp.asarray(ct)


def _value_and_grads(fn, q, k, v, ct):
    def loss(q, k, v):
        return jnp.sum(fn(q, k, v).astype(jnp.float32) * ct)

    out = jax.jit(fn)(q, k, v)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
    return out, grads


def test_cpu_path_is_the_custom_gradient():
    # The tests run on the CPU, so the module's dispatch must pick the hand-written version.
    assert jax.default_backend() == "cpu"
    q, k, v, _ = _qkv((1, 5, 2, 4), seed=0)
    jaxpr = str(jax.make_jaxpr(attention.dot_product_attention)(q, k, v))
    assert "custom_vjp_call" in jaxpr


# (B, T, N, D): a ViT-like case with a class token (odd T), one head, one token; logits scaled
# up to 30x so the softmax saturates and the max subtraction matters.
@pytest.mark.parametrize(
    ("shape", "logit_scale"),
    [((2, 17, 3, 8), 1.0), ((1, 9, 1, 16), 1.0), ((2, 1, 2, 4), 1.0), ((2, 13, 2, 8), 30.0)],
)
def test_matches_jax_nn_forward_and_gradients(shape, logit_scale):
    q, k, v, ct = _qkv(shape, seed=1, logit_scale=logit_scale)
    out, grads = _value_and_grads(attention._cpu_attention, q, k, v, ct)
    ref_out, ref_grads = _value_and_grads(jax.nn.dot_product_attention, q, k, v, ct)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    for ours, ref, name in zip(grads, ref_grads, "qkv"):
        assert np.all(np.isfinite(ours)), name
        # The q and k gradients scale with the logits; so does their float rounding.
        np.testing.assert_allclose(
            ours, ref, rtol=1e-4, atol=1e-5 * logit_scale, err_msg=f"d{name}"
        )


def test_bfloat16_inputs_keep_their_dtype_and_agree():
    q, k, v, ct = _qkv((2, 11, 2, 8), seed=2)
    q16, k16, v16 = (x.astype(jnp.bfloat16) for x in (q, k, v))
    out, grads = _value_and_grads(attention._cpu_attention, q16, k16, v16, ct)
    ref_out, ref_grads = _value_and_grads(jax.nn.dot_product_attention, q16, k16, v16, ct)
    assert out.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in grads)
    # Both round to bf16 at different points; compare at bf16's resolution.
    np.testing.assert_allclose(out.astype(np.float32), ref_out.astype(np.float32), atol=3e-2)
    for ours, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(ours.astype(np.float32), ref.astype(np.float32), atol=6e-2)
