"""ViT backbone and the "vit" encoder (DPT reassemble): shapes, strides, position embeddings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import abstract_call, materialize, max_rel_err, rngs

from dgr_jax.models.encoders.vit import VARIANTS, ViTEncoder, sincos_2d

_STRIDES = {"stage1": 4, "stage2": 8, "stage3": 16, "stage4": 32}


def _encoder(**kw):
    kw = {"variant": "tiny_test", "image_size": (32, 48), **kw}
    return ViTEncoder(**kw, rngs=rngs(0))


@pytest.mark.parametrize("variant", ["tiny_test", "S", "B"])
@pytest.mark.parametrize("readout", ["ignore", "add", "project"])
def test_encoder_returns_stages_at_strides(variant, readout):
    feats = abstract_call(
        lambda: _encoder(variant=variant, readout=readout), jnp.zeros((2, 64, 128, 3))
    )
    channels = VARIANTS[variant].neck_hidden_sizes
    assert list(feats) == list(_STRIDES)
    for (name, stride), c in zip(_STRIDES.items(), channels):
        assert feats[name].shape == (2, 64 // stride, 128 // stride, c)


def test_variant_table_matches_the_vit_papers():
    # (width, depth, heads, mlp): DeiT Ti/S, ViT B/L.
    sizes = {k: (v.width, v.depth, v.num_heads, v.mlp_dim) for k, v in VARIANTS.items()}
    assert sizes["Ti"] == (192, 12, 3, 768)
    assert sizes["S"] == (384, 12, 6, 1536)
    assert sizes["B"] == (768, 12, 12, 3072)
    assert sizes["L"] == (1024, 24, 16, 4096)


def test_hidden_states_and_position_embedding_resize():
    enc = materialize(_encoder)
    x = jax.random.normal(jax.random.key(0), (1, 32, 48, 3))
    out = nnx.jit(lambda m, x: m(x))(enc.vit, x)
    assert len(out.hidden_states) == VARIANTS["tiny_test"].depth + 1
    assert out.hidden_states[0].shape == (1, 1 + 2 * 3, 32)
    # A different input size resizes the stored 2x3 grid of position embeddings.
    out = nnx.eval_shape(lambda m, x: m(x), enc.vit, jnp.zeros((1, 64, 64, 3)))
    assert out.last_hidden_state.shape == (1, 1 + 4 * 4, 32)
    emb = enc.vit.embeddings
    pos = emb._positions((2, 3))
    np.testing.assert_array_equal(pos, emb.position_embeddings[...])


def test_sincos2d_position_embeddings_are_fixed_and_follow_the_grid():
    enc = materialize(lambda: _encoder(pos_embed="sincos2d"))
    emb = enc.vit.embeddings
    assert emb.position_embeddings is None  # nothing to learn, nothing in checkpoints
    assert not any("position" in str(path) for path, _ in nnx.to_flat_state(nnx.state(enc)))
    pos = emb._positions((2, 3))
    assert pos.shape == (1, 1 + 6, 32)
    np.testing.assert_array_equal(pos[0, 0], 0.0)  # class token
    # Patch (row 1, col 2): x = 2 in the first half of the features, y = 1 in the second.
    omega = 1.0 / 10_000.0 ** (np.arange(8) / 8)
    want = np.concatenate([np.sin(2 * omega), np.cos(2 * omega), np.sin(omega), np.cos(omega)])
    np.testing.assert_allclose(pos[0, 1 + 1 * 3 + 2], want, rtol=1e-6, atol=1e-6)
    # Another input size gets its own grid's embeddings, not a resize of the stored grid.
    np.testing.assert_array_equal(emb._positions((4, 4))[:, 1:], sincos_2d((4, 4), 32))
    out = nnx.jit(lambda m, x: m(x))(enc.vit, jnp.ones((1, 64, 64, 3)))
    assert np.isfinite(np.asarray(out.last_hidden_state)).all()
    with pytest.raises(ValueError, match="pos_embed"):
        nnx.eval_shape(lambda: _encoder(pos_embed="rope"))


def test_dinov2_options_patch14_layer_scale_and_normed_features():
    make = lambda: _encoder(  # noqa: E731
        patch_size=14, image_size=(28, 28), layer_scale=1.0, norm_features=True, readout="ignore"
    )
    enc = nnx.eval_shape(make)
    assert enc.vit.layers[0].layer_scale1.shape == (VARIANTS["tiny_test"].width,)
    feats = abstract_call(make, jnp.zeros((1, 56, 42, 3)))  # 4x3 patches: stride 3.5 .. 28
    assert [feats[s].shape[1:3] for s in _STRIDES] == [(16, 12), (8, 6), (4, 3), (2, 2)]


def test_input_not_divisible_by_patch_is_rejected():
    with pytest.raises(ValueError, match="patch"):
        abstract_call(_encoder, jnp.zeros((1, 40, 48, 3)))


def test_remat_gives_the_same_output_and_gradient():
    x = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))

    def loss(model):
        return sum(jnp.sum(v**2) for v in model(x).values())

    plain = materialize(_encoder)
    remat = nnx.eval_shape(lambda: _encoder(remat=True))
    nnx.update(remat, nnx.state(plain))
    g_plain = nnx.jit(nnx.grad(loss))(plain)
    g_remat = nnx.jit(nnx.grad(loss))(remat)
    flat = [jnp.concatenate([g.ravel() for g in jax.tree.leaves(t)]) for t in (g_remat, g_plain)]
    assert max_rel_err(*flat) < 1e-5


def test_bfloat16_compute_keeps_float32_params():
    enc = nnx.eval_shape(lambda: _encoder(dtype=jnp.bfloat16))
    feats = nnx.eval_shape(lambda m, x: m(x), enc, jnp.zeros((1, 32, 32, 3)))
    assert feats["stage1"].dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(enc, nnx.Param)))


def test_conv_stem_replaces_patchify_and_keeps_the_token_grid():
    enc = materialize(lambda: _encoder(stem="conv", pos_embed="sincos2d", patch_size=8))
    emb = enc.vit.embeddings
    assert emb.projection is None and len(emb.stem.convs) == 3  # 8 = 2^3: three stride-2 convs
    assert [c.out_features for c in emb.stem.convs] == [8, 16, 32]  # doubling up to the width
    x = jax.random.normal(jax.random.key(1), (2, 32, 48, 3))
    tokens = nnx.jit(lambda e, x: e(x))(emb, x)
    assert tokens.shape == (2, 1 + 4 * 6, 32)
    # Locality: a pixel change moves only the tokens whose receptive field holds it.
    y = x.at[:, 0, 0].add(10.0)
    changed = np.abs(np.asarray(nnx.jit(lambda e, x: e(x))(emb, y) - tokens)).max(-1) > 0
    assert changed[:, 1].all() and not changed[:, 2:].any()
    with pytest.raises(ValueError, match="power-of-two"):
        nnx.eval_shape(lambda: _encoder(stem="conv", patch_size=14, image_size=(28, 28)))
