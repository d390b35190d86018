"""Converters: the official NeWCRFs / microsoft Swin key layouts (golden key lists built from
the architecture, random values), strictness, config inference, the orbax output and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from dgr_jax.convert import newcrfs as conv
from dgr_jax.convert.swin_timm import convert_swin_state_dict, resize_bias_tables
from dgr_jax.convert.torch_layout import assign_pure_dict, flatten
from dgr_jax.models.newcrfs import NeWCRFs, build_newcrfs
from dgr_jax.models.swin import Mlp, Swin, relative_position_index

# A tiny NeWCRFs whose levels mix present and absent projections (in == crf width for level 1).
EMBED, DEPTHS, HEADS, WINDOW = 16, (1, 2, 1, 1), (1, 2, 2, 4), 5
CRF_DIMS, CRF_HEADS, CRF_WINDOW, CRF_DEPTH = (24, 32, 48, 64), (2, 2, 4, 4), 7, 2
PSP, POOLS = 32, (1, 2, 3, 6)


def official_swin_keys(prefix: str, *, classification: bool = False) -> dict[str, tuple]:
    """Key -> shape of the microsoft Swin layout, from the architecture (not from our code)."""
    keys = {
        f"{prefix}patch_embed.proj.weight": (EMBED, 3, 4, 4),
        f"{prefix}patch_embed.proj.bias": (EMBED,),
        f"{prefix}patch_embed.norm.weight": (EMBED,),
        f"{prefix}patch_embed.norm.bias": (EMBED,),
    }
    for i, (depth, heads) in enumerate(zip(DEPTHS, HEADS)):
        d = EMBED * 2**i
        for j in range(depth):
            b = f"{prefix}layers.{i}.blocks.{j}."
            keys.update(
                {
                    b + "norm1.weight": (d,),
                    b + "norm1.bias": (d,),
                    b + "attn.relative_position_bias_table": ((2 * WINDOW - 1) ** 2, heads),
                    b + "attn.relative_position_index": (WINDOW**2, WINDOW**2),
                    b + "attn.qkv.weight": (3 * d, d),
                    b + "attn.qkv.bias": (3 * d,),
                    b + "attn.proj.weight": (d, d),
                    b + "attn.proj.bias": (d,),
                    b + "norm2.weight": (d,),
                    b + "norm2.bias": (d,),
                    b + "mlp.fc1.weight": (4 * d, d),
                    b + "mlp.fc1.bias": (4 * d,),
                    b + "mlp.fc2.weight": (d, 4 * d),
                    b + "mlp.fc2.bias": (d,),
                }
            )
            if classification and j % 2 == 1:
                keys[b + "attn_mask"] = (4, WINDOW**2, WINDOW**2)
        if i < 3:
            keys[f"{prefix}layers.{i}.downsample.reduction.weight"] = (2 * d, 4 * d)
            keys[f"{prefix}layers.{i}.downsample.norm.weight"] = (4 * d,)
            keys[f"{prefix}layers.{i}.downsample.norm.bias"] = (4 * d,)
        if not classification:
            keys[f"{prefix}norm{i}.weight"] = (d,)
            keys[f"{prefix}norm{i}.bias"] = (d,)
    if classification:
        top = EMBED * 8
        keys.update({"norm.weight": (top,), "norm.bias": (top,)})
        keys.update({"head.weight": (1000, top), "head.bias": (1000,)})
    return keys


def official_newcrfs_keys(up_mode: str = "bilinear") -> dict[str, tuple]:
    """Key -> shape of `NewCRFDepth.state_dict()` for the tiny config above."""
    keys = official_swin_keys("backbone.")
    chans = [EMBED * 2**i for i in range(4)]
    for i in range(len(POOLS)):
        keys[f"decoder.psp_modules.{i}.1.conv.weight"] = (PSP, chans[3], 1, 1)
        keys[f"decoder.psp_modules.{i}.1.gn.weight"] = (PSP,)
        keys[f"decoder.psp_modules.{i}.1.gn.bias"] = (PSP,)
    keys["decoder.bottleneck.conv.weight"] = (PSP, chans[3] + len(POOLS) * PSP, 3, 3)
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        keys[f"decoder.bottleneck.bn.{leaf}"] = (PSP,)
    keys["decoder.bottleneck.bn.num_batches_tracked"] = ()
    v_dims = [CRF_DIMS[1] // 4, CRF_DIMS[2] // 4, CRF_DIMS[3] // 4, PSP]
    for k, (c, heads) in enumerate(zip(CRF_DIMS, CRF_HEADS)):
        if chans[k] != c:
            keys[f"crf{k}.proj_x.weight"] = (c, chans[k], 3, 3)
            keys[f"crf{k}.proj_x.bias"] = (c,)
        if v_dims[k] != c:
            keys[f"crf{k}.proj_v.weight"] = (c, v_dims[k], 3, 3)
            keys[f"crf{k}.proj_v.bias"] = (c,)
        for j in range(CRF_DEPTH):
            b = f"crf{k}.crf_layer.blocks.{j}."
            keys.update(
                {
                    b + "norm1.weight": (c,),
                    b + "norm1.bias": (c,),
                    b + "attn.relative_position_bias_table": ((2 * CRF_WINDOW - 1) ** 2, heads),
                    b + "attn.relative_position_index": (CRF_WINDOW**2, CRF_WINDOW**2),
                    b + "attn.qk.weight": (2 * c, c),
                    b + "attn.qk.bias": (2 * c,),
                    b + "attn.proj.weight": (c, c),
                    b + "attn.proj.bias": (c,),
                    b + "norm2.weight": (c,),
                    b + "norm2.bias": (c,),
                    b + "mlp.fc1.weight": (4 * c, c),
                    b + "mlp.fc1.bias": (4 * c,),
                    b + "mlp.fc2.weight": (c, 4 * c),
                    b + "mlp.fc2.bias": (c,),
                }
            )
        keys[f"crf{k}.norm_crf.weight"] = (c,)
        keys[f"crf{k}.norm_crf.bias"] = (c,)
    keys["disp_head1.conv1.weight"] = (1, CRF_DIMS[0], 3, 3)
    keys["disp_head1.conv1.bias"] = (1,)
    if up_mode == "mask":
        keys.update({"mask_head.0.weight": (64, CRF_DIMS[0], 3, 3), "mask_head.0.bias": (64,)})
        keys.update({"mask_head.2.weight": (144, 64, 1, 1), "mask_head.2.bias": (144,)})
    return keys


def synthetic_state_dict(keys: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    rs = np.random.RandomState(seed)
    sd = {}
    for k, shape in keys.items():
        if k.endswith("relative_position_index"):
            sd[k] = relative_position_index(round(np.sqrt(shape[0]))).astype(np.int64)
        elif k.endswith("num_batches_tracked"):
            sd[k] = np.array(1000, np.int64)
        else:
            sd[k] = rs.randn(*shape).astype(np.float32)
    return sd


def released_layout(sd: dict) -> dict:
    """As in model_nyu.ckpt: {"model": DataParallel state dict}."""
    return {"model": {f"module.{k}": v for k, v in sd.items()}, "optimizer": {}, "global_step": 1}


BUFFERS = ("relative_position_index", "num_batches_tracked", "attn_mask")


@pytest.mark.parametrize("up_mode", ["bilinear", "mask"])
def test_every_official_key_is_consumed_once_and_fills_the_model(up_mode):
    keys = official_newcrfs_keys(up_mode)
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
    model = nnx.eval_shape(lambda: NeWCRFs(cfg["encoder"], cfg["decoder"], rngs=nnx.Rngs(0)))
    assign_pure_dict(model, pure)  # strict: all variables filled, shapes equal

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
    sd = synthetic_state_dict(official_newcrfs_keys())
    with pytest.raises(KeyError, match="no target"):
        conv.convert_newcrfs_state_dict({**sd, "crf0.extra.weight": np.zeros(3)})
    cfg = conv.infer_newcrfs_config(sd, max_depth=10.0)
    model = nnx.eval_shape(lambda: NeWCRFs(cfg["encoder"], cfg["decoder"], rngs=nnx.Rngs(0)))
    partial = {k: v for k, v in sd.items() if not k.startswith("disp_head1")}
    with pytest.raises(ValueError, match="missing"):
        assign_pure_dict(model, conv.convert_newcrfs_state_dict(partial))
    bad = dict(sd)
    bad["crf2.crf_layer.blocks.0.attn.relative_position_index"] = np.zeros((49, 49), np.int64)
    with pytest.raises(ValueError, match="relative_position_index"):
        conv.convert_newcrfs_state_dict(bad)


def test_imagenet_swin_checkpoint_layout():
    """swin_*_22k.pth: classification extras are consumed; stage norms stay at their init."""
    sd = synthetic_state_dict(official_swin_keys("", classification=True))
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


def test_allow_missing_keeps_current_values():
    mlp = Mlp(4, 8, rngs=nnx.Rngs(0))
    fc1 = np.asarray(mlp.fc1.kernel[...])
    new = {("fc2", "kernel"): np.ones((8, 4)), ("fc2", "bias"): np.zeros(4)}
    assign_pure_dict(mlp, new, allow_missing=["fc1/*"])
    np.testing.assert_array_equal(np.asarray(mlp.fc1.kernel[...]), fc1)
    np.testing.assert_array_equal(np.asarray(mlp.fc2.kernel[...]), np.ones((8, 4)))


def test_swin_cli_writes_a_partial_checkpoint_for_init_from(tmp_path):
    torch = pytest.importorskip("torch")
    from dgr_jax.convert import swin_timm

    sd = synthetic_state_dict(official_swin_keys("", classification=True), seed=2)
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}
    torch.save({"model": state}, tmp_path / "s.pth")
    out = str(tmp_path / "o")
    swin_timm.main(["--swin-ckpt", str(tmp_path / "s.pth"), "--window", "7", "--out", out])
    params, meta = conv.load_converted_tree(out)
    assert meta["prefix"] == ["encoder"] and meta["model"]["encoder"]["window_size"] == 7
    table = params["layers"][2]["blocks"][0]["attn"]["relative_position_bias_table"]
    assert table.shape == (13 * 13, HEADS[2])  # resized from window 5
    np.testing.assert_array_equal(
        params["layers"][0]["downsample"]["reduction"]["kernel"],
        sd["layers.0.downsample.reduction.weight"].T,
    )
    # init_from semantics: a partial checkpoint fills what it has, the rest keeps its init.
    mlp = Mlp(4, 8, rngs=nnx.Rngs(0))
    fc1 = np.asarray(mlp.fc1.kernel[...])
    fc2 = {"fc2": {"kernel": np.ones((8, 4)), "bias": np.zeros(4)}}
    conv.save_converted_tree(str(tmp_path / "p"), fc2["fc2"], {}, prefix=("fc2",))
    conv.load_into_model(mlp, str(tmp_path / "p"))
    np.testing.assert_array_equal(np.asarray(mlp.fc1.kernel[...]), fc1)
    np.testing.assert_array_equal(np.asarray(mlp.fc2.kernel[...]), np.ones((8, 4)))


def test_cli_writes_orbax_checkpoint_that_rebuilds_the_model(tmp_path):
    torch = pytest.importorskip("torch")
    sd = synthetic_state_dict(official_newcrfs_keys(), seed=1)
    ckpt = released_layout({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()})
    torch.save(ckpt, tmp_path / "model_kittieigen.ckpt")
    out = tmp_path / "converted"
    conv.main(
        [
            "--newcrfs-ckpt",
            str(tmp_path / "model_kittieigen.ckpt"),
            "--variant",
            "kitti",
            "--out",
            str(out),
        ]
    )

    params, meta = conv.load_converted_tree(str(out))
    assert meta["model"]["decoder"]["max_depth"] == 80.0
    assert meta["model"]["encoder"]["name"] == "swin" and meta["prefix"] == []
    assert meta["model"]["head"] == {"name": "identity"}
    model = nnx.eval_shape(lambda: build_newcrfs(meta["model"], rngs=nnx.Rngs(0)))
    conv.load_into_model(model, str(out))  # strict: a whole-model conversion
    np.testing.assert_array_equal(
        np.asarray(model.decoder.disp_head.conv.bias[...]), sd["disp_head1.conv1.bias"]
    )
