"""ResNet encoder: stage strides and channels for basic and bottleneck blocks, BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import abstract_call, materialize, rngs

from dgr_jax.models.encoders.resnet import ResNet


@pytest.mark.parametrize(("depth", "expansion"), [(18, 1), (34, 1), (50, 4), (101, 4)])
def test_stages_at_strides_4_to_32(depth, expansion):
    enc = nnx.eval_shape(lambda: ResNet(depth=depth, width=8, rngs=rngs()))
    feats = abstract_call(
        lambda: ResNet(depth=depth, width=8, rngs=rngs()), jnp.zeros((2, 64, 96, 3))
    )
    for i, name in enumerate(("stage1", "stage2", "stage3", "stage4")):
        stride, channels = 4 * 2**i, 8 * 2**i * expansion
        assert feats[name].shape == (2, 64 // stride, 96 // stride, channels)
        assert enc.out_channels[name] == channels


def test_stage_depths_follow_he_et_al():
    enc = nnx.eval_shape(lambda: ResNet(depth=34, width=4, rngs=rngs()))
    assert [len(s.layers) for s in enc.stages] == [3, 4, 6, 3]
    enc = nnx.eval_shape(lambda: ResNet(depth=101, width=4, rngs=rngs()))
    assert [len(s.layers) for s in enc.stages] == [3, 4, 23, 3]


def test_train_mode_updates_batch_stats_and_eval_does_not():
    enc = materialize(lambda: ResNet(depth=18, width=4, rngs=rngs()))
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3)) + 1.0
    before = jax.tree.map(jnp.copy, nnx.state(enc, nnx.BatchStat))
    enc(x, train=False)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(nnx.state(enc, nnx.BatchStat))):
        np.testing.assert_array_equal(a, b)
    out_train = enc(x, train=True)["stage4"]
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(nnx.state(enc, nnx.BatchStat)))
    ]
    assert all(changed)
    assert not np.allclose(out_train, enc(x, train=False)["stage4"])


def test_unknown_depth_is_rejected():
    with pytest.raises(ValueError, match="18"):
        ResNet(depth=20, rngs=rngs())
