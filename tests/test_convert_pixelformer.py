"""PixelFormer converter: the official key layout (golden key list built from the architecture,
tests/pixelformer_layout.py) onto the DepthModel that `build_model` makes, the unused
`samN.proj` dropped and reported, config inference, refusal of damaged and wrong-kind state
dicts. The CLI and init_from flows: test_convert_cli.py."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from newcrfs_layout import (
    Arch,
    official_newcrfs_keys,
    official_swin_keys,
    synthetic_state_dict,
    zero_state_dict,
)
from pixelformer_layout import (
    LARGE07,
    PFArch,
    official_pixelformer_keys,
    pf_arch_of,
    released_layout,
)

from configs import kitti_pixelformer_dgr, nyu_pixelformer
from dgr_jax import protocol
from dgr_jax.convert import newcrfs
from dgr_jax.convert import pixelformer as conv
from dgr_jax.convert.checkpoint import check_weights
from dgr_jax.convert.torch_layout import assign_pure_dict, flatten
from dgr_jax.models import build_model
from dgr_jax.weights import config_differences

ARCH = PFArch()
BUFFERS = ("relative_position_index", "num_batches_tracked")
UNUSED = [f"sam{k}.proj.{leaf}" for k in range(1, 5) for leaf in ("weight", "bias")]
# parameters() of the official PixelFormer("large07"), 485 state-dict entries
# (shared/notes/pixelformer.md, re-counted by benchmarks/host_parity.py), of which 12,535,680
# are the four unused `samN.proj` convs that our model does not have.
OFFICIAL_LARGE07_PARAMS = 270_895_920
UNUSED_LARGE07_PARAMS = 12_535_680


def test_the_golden_layout_is_the_released_one():
    keys = official_pixelformer_keys(LARGE07)
    assert len(keys) == 485
    assert sum(int(np.prod(s)) for k, s in keys.items() if k.endswith(BUFFERS)) == 28 * 49 * 49 + 1
    assert sum(int(np.prod(keys[k])) for k in UNUSED) == UNUSED_LARGE07_PARAMS


def test_every_official_key_is_consumed_once_and_fills_the_model():
    sd = synthetic_state_dict(official_pixelformer_keys(ARCH))
    ckpt = released_layout(sd)
    cfg = conv.infer_pixelformer_config(ckpt, max_depth=10.0)
    assert cfg["encoder"]["depths"] == ARCH.depths and cfg["encoder"]["window_size"] == 5
    dec = cfg["decoder"]
    assert dec["sam_dims"] == ARCH.sam_dims and dec["sam_heads"] == ARCH.sam_heads
    assert dec["sam_window"] == 7 and dec["num_bins"] == ARCH.bins
    assert dec["bcp_hidden"] == ARCH.bcp_hidden and dec["psp_channels"] == ARCH.psp
    assert dec["min_depth"] == protocol.PIXELFORMER_MIN_DEPTH == 0.1

    pure = flatten(conv.convert_pixelformer_state_dict(ckpt))
    # One target per key except the buffers and the unused convs: nothing else dropped.
    assert len(pure) == sum(not k.endswith(BUFFERS) and k not in UNUSED for k in sd)
    weights = conv.convert_pixelformer_checkpoint(ckpt, variant="nyu")
    assert sorted(weights.dropped) == sorted(UNUSED)
    assert weights.model_cfg["decoder"]["name"] == "pixelformer" and weights.prefix == ()
    model = nnx.eval_shape(lambda: build_model(weights.model_cfg, rngs=nnx.Rngs(0)))
    assign_pure_dict(model, pure)  # strict: every variable filled, shapes equal
    assert check_weights(weights) == []
    assert model.decoder.sam1.proj_e is None and model.decoder.sam2.proj_e is not None

    def got(*path):
        return pure[("decoder", *path)]

    blk = "sam3.sam_block."
    np.testing.assert_array_equal(
        got("sam3", "sam_block", "attn", "kv", "kernel"), sd[blk + "attn.kv.weight"].T
    )  # [K | V] columns, as torch's rows
    np.testing.assert_array_equal(
        got("sam3", "sam_block", "normv", "scale"), sd[blk + "normv.weight"]
    )
    np.testing.assert_array_equal(
        got("sam2", "proj_q", "kernel"), sd["sam2.proj_q.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(got("bcp", "fc2", "bias"), sd["bcp.fc2.bias"])
    np.testing.assert_array_equal(
        got("disp_head", "conv", "kernel"), sd["disp_head1.conv1.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        got("psp", "bottleneck", "norm", "mean"), sd["decoder.bottleneck.bn.running_mean"]
    )


def test_damaged_and_wrong_kind_state_dicts_are_refused():
    sd = synthetic_state_dict(official_pixelformer_keys(ARCH), seed=1)
    with pytest.raises(KeyError, match="no target"):
        conv.convert_pixelformer_state_dict({**sd, "sam2.extra.weight": np.zeros(3)})
    missing = {k: v for k, v in sd.items() if k != "sam4.sam_block.attn.q.weight"}
    with pytest.raises(ValueError, match=r"missing from the weights \(1\)"):
        check_weights(conv.convert_pixelformer_checkpoint(missing, variant="kitti"))
    reshaped = {**sd, "bcp.fc1.bias": np.zeros(7, np.float32)}
    with pytest.raises(ValueError, match="shape mismatch"):
        check_weights(conv.convert_pixelformer_checkpoint(reshaped, variant="nyu"))
    no_table = {k: v for k, v in sd.items() if "sam2.sam_block.attn.relative_position_b" not in k}
    with pytest.raises(ValueError, match="damaged PixelFormer checkpoint: no sam2"):
        conv.convert_pixelformer_checkpoint(no_table, variant="nyu")
    bad_index = {**sd, "sam1.sam_block.attn.relative_position_index": np.zeros((49, 49), int)}
    with pytest.raises(ValueError, match="relative_position_index"):
        conv.convert_pixelformer_state_dict(bad_index)
    # Each host's converter names the other one's files; a Swin classifier is neither.
    newcrfs_sd = synthetic_state_dict(official_newcrfs_keys(Arch()))
    with pytest.raises(ValueError, match="use --newcrfs-ckpt"):
        conv.convert_pixelformer_checkpoint(newcrfs_sd, variant="nyu")
    with pytest.raises(ValueError, match="use --pixelformer-ckpt"):
        newcrfs.convert_newcrfs_checkpoint(sd, variant="nyu")
    swin = synthetic_state_dict(official_swin_keys(Arch(), classification=True))
    with pytest.raises(ValueError, match="not an official PixelFormer checkpoint.*--swin-ckpt"):
        conv.convert_pixelformer_checkpoint(swin, variant="nyu")
    with pytest.raises(ValueError, match="variant"):
        conv.convert_pixelformer_checkpoint(sd, variant="nyu_v2")


@pytest.mark.parametrize(
    ("config", "variant"), [(nyu_pixelformer, "nyu"), (kitti_pixelformer_dgr, "kitti")]
)
def test_released_checkpoint_layout_fits_the_full_size_configs(config, variant):
    """The released large07 layout converts into exactly the variables of the DepthModel that
    configs/{nyu,kitti}_pixelformer[_dgr].py build (plus nothing but the DGR blocks), with the
    same settings, so `--config.init_from` works on them; paths and shapes only, no memory."""
    cfg = config.get_config()
    assert pf_arch_of(cfg.model) == LARGE07
    weights = conv.convert_pixelformer_checkpoint(
        zero_state_dict(official_pixelformer_keys(LARGE07)), variant=variant
    )
    assert config_differences(cfg.model, weights.model_cfg) == []
    model = nnx.eval_shape(lambda: build_model(cfg.model, rngs=nnx.Rngs(0)))
    want = {p: v.shape for p, v in flatten(nnx.to_pure_dict(nnx.state(model))).items()}
    got = {p: np.shape(v) for p, v in flatten(weights.tree).items()}
    extra = {p for p in want if p[:2] == ("decoder", "dgr")}
    assert bool(extra) == cfg.model.dgr.enabled
    assert got == {p: s for p, s in want.items() if p not in extra}
    if not extra:
        params = flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
        n_params = sum(int(np.prod(v.shape)) for v in params.values())
        assert n_params == OFFICIAL_LARGE07_PARAMS - UNUSED_LARGE07_PARAMS
