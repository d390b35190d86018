"""Converters: the official NeWCRFs / microsoft Swin key layouts (golden key lists built from
the architecture, random values) onto the DepthModel that `build_model` makes, strictness,
config inference and the pre-write check. The CLI and init_from flows: test_convert_cli.py."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx
from newcrfs_layout import (
    Arch,
    arch_of,
    official_newcrfs_keys,
    official_swin_keys,
    released_layout,
    synthetic_state_dict,
    zero_state_dict,
)

from configs import kitti_newcrfs_dgr, nyu_newcrfs
from dgr_jax.convert import newcrfs as conv
from dgr_jax.convert.checkpoint import check_weights
from dgr_jax.convert.swin_timm import (
    convert_swin_checkpoint,
    convert_swin_state_dict,
    resize_bias_tables,
)
from dgr_jax.convert.torch_layout import assign_pure_dict, flatten
from dgr_jax.models import DepthModel, build_model
from dgr_jax.models.blocks.host_common import Mlp
from dgr_jax.models.encoders.swin import Swin
from dgr_jax.weights import config_differences

ARCH = Arch()
EMBED, DEPTHS, HEADS, WINDOW = ARCH.embed, ARCH.depths, ARCH.heads, ARCH.window
CRF_DIMS, CRF_HEADS, CRF_WINDOW, PSP = ARCH.crf_dims, ARCH.crf_heads, ARCH.crf_window, ARCH.psp
BUFFERS = ("relative_position_index", "num_batches_tracked", "attn_mask")
# parameters() of the official NewCRFDepth("large07") (Swin-L window 7), the released NYU and
# KITTI architecture, as counted by benchmarks/host_parity.py (benchmarks/README.md).
OFFICIAL_LARGE07_PARAMS = 270_444_877


def abstract_model(model_cfg) -> DepthModel:
    return nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("up_mode", ["bilinear", "mask"])
def test_every_official_key_is_consumed_once_and_fills_the_model(up_mode):
    keys = official_newcrfs_keys(ARCH, up_mode)
    sd = synthetic_state_dict(keys)
    ckpt = released_layout(sd)
    cfg = conv.infer_newcrfs_config(ckpt, max_depth=10.0)
    assert cfg["encoder"]["depths"] == DEPTHS and cfg["encoder"]["window_size"] == WINDOW
    assert cfg["decoder"]["crf_dims"] == CRF_DIMS and cfg["decoder"]["crf_heads"] == CRF_HEADS
    assert cfg["decoder"]["crf_window"] == CRF_WINDOW and cfg["decoder"]["up_mode"] == up_mode
    assert cfg["decoder"]["ppm_norm_groups"] == PSP // 2  # 256 upstream, for 512 channels

    pure = flatten(conv.convert_newcrfs_state_dict(ckpt))
    # One target per non-buffer key: nothing dropped silently, nothing merged.
    assert len(pure) == sum(not k.endswith(BUFFERS) for k in keys)
    # The model.json config builds, through the registries, a DepthModel with exactly these
    # variables (strict: all filled, shapes equal; the identity head has none).
    weights = conv.convert_newcrfs_checkpoint(ckpt, variant="nyu")
    assert weights.model_cfg["head"] == {"name": "identity"} and weights.prefix == ()
    model = abstract_model(weights.model_cfg)
    assign_pure_dict(model, pure)
    assert check_weights(weights) == []  # nothing left at init

    # Values land where they should, with the right layout change.
    qkv = sd["backbone.layers.1.blocks.1.attn.qkv.weight"]
    np.testing.assert_array_equal(
        pure[("encoder", "layers", 1, "blocks", 1, "attn", "qkv", "kernel")], qkv.T
    )
    w = sd["crf0.proj_v.weight"]
    np.testing.assert_array_equal(
        pure[("decoder", "crf0", "proj_v", "kernel")], w.transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(
        pure[("decoder", "psp", "bottleneck", "norm", "var")],
        sd["decoder.bottleneck.bn.running_var"],
    )
    np.testing.assert_array_equal(
        pure[("decoder", "psp", "stages", 3, "norm", "scale")],
        sd["decoder.psp_modules.3.1.gn.weight"],
    )
    assert model.decoder.crf1.proj_x is None and model.decoder.crf0.proj_x is not None


def test_unknown_missing_and_inconsistent_keys_fail_loudly():
    sd = synthetic_state_dict(official_newcrfs_keys(ARCH))
    with pytest.raises(KeyError, match="no target"):
        conv.convert_newcrfs_state_dict({**sd, "crf0.extra.weight": np.zeros(3)})
    weights = conv.convert_newcrfs_checkpoint(sd, variant="kitti")
    assert weights.model_cfg["decoder"]["max_depth"] == 80.0
    weights.tree["decoder"].pop("disp_head")
    with pytest.raises(ValueError, match=r"missing from the weights \(2\)"):
        check_weights(weights)  # what save_converted runs before writing anything
    with pytest.raises(ValueError, match="NeWCRFs"):  # a Swin classifier is not NeWCRFs
        conv.convert_newcrfs_checkpoint(
            synthetic_state_dict(official_swin_keys(ARCH, classification=True)), variant="nyu"
        )
    bad = dict(sd)
    bad["crf2.crf_layer.blocks.0.attn.relative_position_index"] = np.zeros((49, 49), np.int64)
    with pytest.raises(ValueError, match="relative_position_index"):
        conv.convert_newcrfs_state_dict(bad)


def test_imagenet_swin_checkpoint_layout():
    """swin_*_22k.pth: classification extras are consumed; stage norms stay at their init."""
    sd = synthetic_state_dict(official_swin_keys(ARCH, classification=True))
    pure = convert_swin_state_dict({"model": sd})
    assert "norms" not in pure and len(flatten(pure)) == sum(
        not k.endswith(BUFFERS) and not k.startswith(("norm.", "head.")) for k in sd
    )
    model = nnx.eval_shape(
        lambda: Swin(
            "tiny_test", window_size=WINDOW, depths=DEPTHS, num_heads=HEADS, rngs=nnx.Rngs(0)
        )
    )
    with pytest.raises(ValueError, match=r"missing \(8\)"):  # norm0..3 scale and bias
        assign_pure_dict(model, pure)
    flat = flatten(pure)
    for i in range(4):  # what NeWCRFs' loader leaves them at: the LayerNorm init
        d = EMBED * 2**i
        flat[("norms", i, "scale")], flat[("norms", i, "bias")] = np.ones(d), np.zeros(d)
    assign_pure_dict(model, flat)
    np.testing.assert_array_equal(
        np.asarray(model.patch_embed.norm.scale[...]), sd["patch_embed.norm.weight"]
    )
    # Window 5 -> 12 (as NeWCRFs' loader does for *_window12 models): tables resized bicubically.
    resized = resize_bias_tables(pure, 12)
    table = resized["layers"][0]["blocks"][0]["attn"]["relative_position_bias_table"]
    assert table.shape == ((2 * 12 - 1) ** 2, HEADS[0])
    # What the CLI writes: the encoder of a DepthModel, stage norms recorded as left at init.
    weights = convert_swin_checkpoint({"model": sd}, window=7)
    assert weights.prefix == ("encoder",) and weights.model_cfg["encoder"]["window_size"] == 7
    assert check_weights(weights) == [
        f"norms/{i}/{leaf}" for i in range(4) for leaf in ("bias", "scale")
    ]
    with pytest.raises(ValueError, match="--newcrfs-ckpt"):
        convert_swin_checkpoint(synthetic_state_dict(official_newcrfs_keys(ARCH)))


def test_allow_missing_keeps_current_values():
    mlp = Mlp(4, 8, rngs=nnx.Rngs(0))
    fc1 = np.asarray(mlp.fc1.kernel[...])
    new = {("fc2", "kernel"): np.ones((8, 4)), ("fc2", "bias"): np.zeros(4)}
    assign_pure_dict(mlp, new, allow_missing=["fc1/*"])
    np.testing.assert_array_equal(np.asarray(mlp.fc1.kernel[...]), fc1)
    np.testing.assert_array_equal(np.asarray(mlp.fc2.kernel[...]), np.ones((8, 4)))


@pytest.mark.parametrize(
    ("config", "variant"), [(nyu_newcrfs, "nyu"), (kitti_newcrfs_dgr, "kitti")]
)
def test_released_checkpoint_layout_fits_the_full_size_configs(config, variant):
    """The released large07 layout converts into exactly the variables of the DepthModel that
    configs/{nyu,kitti}_newcrfs[_dgr].py build (plus nothing but the DGR blocks), with the same
    settings, so `--config.init_from` works on them; paths and shapes only, no memory."""
    cfg = config.get_config()
    weights = conv.convert_newcrfs_checkpoint(
        zero_state_dict(official_newcrfs_keys(arch_of(cfg.model))), variant=variant
    )
    assert config_differences(cfg.model, weights.model_cfg) == []
    model = abstract_model(cfg.model)
    want = {p: v.shape for p, v in flatten(nnx.to_pure_dict(nnx.state(model))).items()}
    got = {p: np.shape(v) for p, v in flatten(weights.tree).items()}
    extra = {p for p in want if p[:2] == ("decoder", "dgr")}
    assert bool(extra) == cfg.model.dgr.enabled
    assert got == {p: s for p, s in want.items() if p not in extra}
    if not extra:
        params = nnx.state(model, nnx.Param)
        assert sum(int(np.prod(v.shape)) for v in flatten(nnx.to_pure_dict(params)).values()) == (
            OFFICIAL_LARGE07_PARAMS
        )
