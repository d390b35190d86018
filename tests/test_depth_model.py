"""DepthModel from configs: every encoder/decoder/DGR combination, modes, jit, dtypes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from model_helpers import materialize, rngs

from configs import nyu_cnn, nyu_vit_dgr, synthetic_cnn, synthetic_vit_dgr
from dgr_jax.models import build_model

_SMOKE = {
    "synthetic_vit_dgr": synthetic_vit_dgr,
    "synthetic_cnn": synthetic_cnn,
    "nyu_vit_dgr": nyu_vit_dgr,
    "nyu_cnn": nyu_cnn,
}


def _model_cfg(encoder, positions=("reassemble",), head="sigmoid"):
    cfg = synthetic_vit_dgr.get_config("smoke").model
    with cfg.unlocked():
        cfg.encoder = ml_collections.ConfigDict(encoder)
        cfg.dgr.enabled = bool(positions)
        cfg.dgr.positions = positions
        cfg.head.name = head
    return cfg


def _abstract_depth(model_cfg, images, **kw):
    model = nnx.eval_shape(lambda: build_model(model_cfg, rngs=rngs(), **kw))
    return nnx.eval_shape(lambda m, x: m(x)[0], model, images)


@pytest.mark.parametrize("name", sorted(_SMOKE))
def test_smoke_configs_give_full_resolution_depth(name):
    config = _SMOKE[name].get_config("smoke")
    depth = _abstract_depth(config.model, jnp.zeros((2, *config.input.size, 3)))
    assert depth.shape == (2, *config.input.size, 1)
    assert depth.dtype == jnp.float32


_ENCODERS = [
    {"name": "vit", "variant": "tiny_test", "readout": "ignore", "image_size": (32, 32)},
    {"name": "vit", "variant": "tiny_test", "readout": "add", "image_size": (32, 32)},
    {"name": "vit", "variant": "tiny_test", "readout": "project", "image_size": (32, 32)},
    {"name": "resnet", "depth": 18, "width": 8},
    {"name": "resnet", "depth": 50, "width": 8},
]


@pytest.mark.parametrize("encoder", _ENCODERS, ids=lambda e: "-".join(map(str, e.values()))[:24])
@pytest.mark.parametrize("positions", [(), ("reassemble",), ("fusion",)])
def test_every_encoder_decoder_combination(encoder, positions):
    depth = _abstract_depth(_model_cfg(encoder, positions), jnp.zeros((1, 32, 48, 3)))
    assert depth.shape == (1, 32, 48, 1)


def test_bfloat16_compute_returns_float32_depth():
    cfg = synthetic_vit_dgr.get_config("smoke").model
    depth = _abstract_depth(cfg, jnp.zeros((1, 32, 48, 3)), dtype=jnp.bfloat16)
    assert depth.dtype == jnp.float32


def test_forward_values_modes_and_single_compilation():
    config = synthetic_cnn.get_config("smoke")  # ResNet: BatchNorm makes train/eval differ
    model = materialize(lambda: build_model(config.model, rngs=rngs(0)))
    graphdef, state = nnx.split(model)
    traces = []

    @jax.jit(static_argnames="train")
    def forward(state, images, train):
        traces.append(1)
        return nnx.merge(graphdef, state)(images, train=train)[0]

    x = jax.random.normal(jax.random.key(0), (2, *config.input.size, 3))
    d_eval = forward(state, x, train=False)
    d_eval2 = forward(state, x + 1.0, train=False)
    assert len(traces) == 1  # same shapes: compiled once
    assert np.all(np.isfinite(d_eval)) and float(d_eval.min()) > 0
    assert float(d_eval.max()) <= config.model.head.max_depth
    assert not np.allclose(d_eval, d_eval2)

    d_train = forward(state, x, train=True)  # batch statistics instead of running ones
    assert not np.allclose(d_train, d_eval, atol=1e-4)


def test_return_features_in_aux():
    cfg = _model_cfg(_ENCODERS[0])
    model = nnx.eval_shape(lambda: build_model(cfg, rngs=rngs()))
    _, aux = nnx.eval_shape(
        lambda m, x: m(x, return_features=True), model, jnp.zeros((1, 32, 32, 3))
    )
    assert sorted(aux["features"]) == ["stage1", "stage2", "stage3", "stage4"]


def test_unknown_component_lists_valid_names():
    cfg = _model_cfg({"name": "vgg"})
    with pytest.raises(KeyError, match="resnet, swin, vit"):
        build_model(cfg, rngs=rngs())
