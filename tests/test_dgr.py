"""DGR block: identity at initialisation, analytic stencil responses, gradient flow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import rngs

from dgr_jax.models.blocks.dgr import DGR, STENCILS, apply_stencil

_H, _W = 9, 11


def _field(fn) -> jax.Array:
    """fn(x, y) on an integer grid, x = column, y = row, as a (1, H, W, 1) map."""
    y, x = np.mgrid[0:_H, 0:_W].astype(np.float64)
    x, y = x - _W // 2, y - _H // 2
    return jnp.asarray(fn(x, y), jnp.float32)[None, :, :, None]


def _interior(a: jax.Array, border: int = 2) -> np.ndarray:
    return np.asarray(a)[0, border:-border, border:-border, 0]


def test_dgr_is_identity_at_init():
    x = jax.random.normal(jax.random.key(0), (2, 6, 8, 16))
    np.testing.assert_array_equal(DGR(16, rngs=rngs(0))(x), x)


def test_dgr_identity_for_every_stencil_learnable():
    x = jax.random.normal(jax.random.key(1), (1, 5, 7, 8))
    block = DGR(8, stencils=tuple(STENCILS), learnable_stencils=True, rngs=rngs(1))
    np.testing.assert_array_equal(block(x), x)


@pytest.mark.parametrize(
    ("name", "fn", "expected"),
    [
        # authors' 8-neighbour kernel = -3 * Laplacian on quadratics: lap(x^2 + y^2) = 4.
        ("laplacian8", lambda x, y: x**2 + y**2, -12.0),
        ("laplacian8", lambda x, y: 3 * x**2 - 3 * y**2 + x * y, 0.0),
        ("laplacian8", lambda x, y: 2 * x - 5 * y + 1, 0.0),
        # mixed fourth-order kernel = -d4/dx2dy2: on x^2 y^2 that is -4; zero on x^2 + y^2.
        ("mixed4", lambda x, y: x**2 * y**2, -4.0),
        ("mixed4", lambda x, y: x**2 + y**2 + x * y, 0.0),
        # |grad f| of a plane.
        ("sobel_mag", lambda x, y: 3 * x + 4 * y, 5.0),
        # |grad lap f|: lap(x^3 + y^3) = 6x + 6y, so |grad| = 6 sqrt(2).
        ("grad_laplacian", lambda x, y: x**3 + y**3, 6 * np.sqrt(2)),
        ("grad_laplacian", lambda x, y: x**2 + y**2, 0.0),
    ],
)
def test_stencil_analytic_response(name, fn, expected):
    out = apply_stencil(_field(fn), name)
    np.testing.assert_allclose(_interior(out), expected, atol=2e-3)


def test_stencils_are_per_channel():
    f = jnp.concatenate([_field(lambda x, y: x**2 + y**2), _field(lambda x, y: x + y)], -1)
    out = apply_stencil(f, "laplacian8")
    interior = np.asarray(out)[0, 2:-2, 2:-2]
    np.testing.assert_allclose(interior, np.broadcast_to([-12.0, 0.0], interior.shape), atol=1e-4)


def test_edge_padding_keeps_constant_field_flat():
    out = apply_stencil(jnp.full((1, 5, 5, 2), 3.0), "laplacian8")
    np.testing.assert_allclose(np.asarray(out), 0.0, atol=1e-5)


def test_gradients_reach_input_and_projection():
    block = DGR(8, rngs=rngs(0))
    x = jax.random.normal(jax.random.key(2), (2, 6, 6, 8))
    r = jax.random.normal(jax.random.key(3), x.shape)

    def loss(model, x):
        return jnp.sum(model(x) * r)

    grads_model, grads_x = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(block, x)
    # At init only the residual path carries signal to x, but the zero projection gets a
    # non-zero gradient, so training leaves the identity.
    np.testing.assert_allclose(grads_x, r, atol=1e-6)
    assert float(jnp.abs(grads_model.proj.kernel[...]).max()) > 0

    # Off the identity, the refinement path also reaches the input.
    block.proj.kernel[...] = 0.1 * jax.random.normal(jax.random.key(4), block.proj.kernel.shape)
    grads_x = nnx.jit(nnx.grad(loss, argnums=1))(block, x)
    assert np.all(np.isfinite(grads_x))
    assert float(jnp.abs(grads_x - r).max()) > 1e-3


def test_unknown_stencil_is_rejected():
    with pytest.raises(ValueError, match="laplacian8"):
        DGR(4, stencils=("laplacian9",), rngs=rngs(0))
