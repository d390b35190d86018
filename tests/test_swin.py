"""Swin encoder: parity with transformers (random init, offline), padding, masks, contract."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from dgr_jax.convert.swin_timm import convert_swin_state_dict, infer_swin_config
from dgr_jax.convert.torch_layout import assign_pure_dict
from dgr_jax.models.blocks.host_common import shifted_window_mask
from dgr_jax.models.encoders.swin import SWIN_VARIANTS, Swin
from dgr_jax.registry import ENCODERS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

STAGES = ("stage1", "stage2", "stage3", "stage4")


def randomize_torch(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial values everywhere (LayerNorm scales around 1, the rest around 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = 0.2 * torch.randn(p.shape, generator=g)
            p.copy_(1.0 + noise if name.endswith("weight") and p.ndim == 1 else noise)


def abstract_swin(**kwargs) -> Swin:
    """A Swin with shapes only; weights are assigned from the reference afterwards."""
    return nnx.eval_shape(lambda: Swin("tiny_test", embed_dim=16, rngs=nnx.Rngs(0), **kwargs))


def run(model: Swin, images_nchw: np.ndarray) -> dict[str, np.ndarray]:
    out = nnx.jit(lambda m, x: m(x))(model, images_nchw.transpose(0, 2, 3, 1))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize(
    ("window", "size", "depths", "heads"),
    [
        # every stage padded to the window (16->18, 8->9, 4->6, 2->3), shifts of 1
        (3, (64, 96), (1, 2, 1, 2), (1, 2, 2, 4)),
        # input not a multiple of the patch (60x92), odd sizes into patch merging, window 7
        (7, (60, 92), (2, 2, 2, 2), (1, 1, 2, 2)),
        # window 12 (Swin-B/L 384 checkpoints), windows larger than the stages
        (12, (64, 96), (2, 1, 1, 1), (1, 1, 2, 2)),
    ],
)
def test_matches_transformers_swin_backbone(window, size, depths, heads):
    cfg = transformers.SwinConfig(
        image_size=size[0],
        embed_dim=16,
        depths=list(depths),
        num_heads=list(heads),
        window_size=window,
        out_features=list(STAGES),
    )
    ref_model = transformers.SwinBackbone(cfg).eval()
    randomize_torch(ref_model, seed=window)
    images = np.random.RandomState(window).randn(2, 3, *size).astype(np.float32)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(images)).feature_maps

    model = abstract_swin(window_size=window, depths=depths, num_heads=heads)
    assign_pure_dict(model, convert_swin_state_dict(ref_model.state_dict()))
    out = run(model, images)
    for stage, r in zip(STAGES, ref):
        r = r.numpy().transpose(0, 2, 3, 1)
        assert out[stage].shape == r.shape
        np.testing.assert_allclose(out[stage], r, atol=5e-5, rtol=0)


def test_clamp_window_matches_transformers_swin_model():
    """SwinModel turns the shift off where a stage is no larger than the window."""
    window, size, depths, heads = 3, (96, 96), (1, 1, 1, 2), (1, 1, 2, 2)
    cfg = transformers.SwinConfig(
        image_size=size[0],
        embed_dim=16,
        depths=list(depths),
        num_heads=list(heads),
        window_size=window,
    )
    ref_model = transformers.SwinModel(cfg, add_pooling_layer=False).eval()
    randomize_torch(ref_model, seed=1)
    images = np.random.RandomState(1).randn(2, 3, *size).astype(np.float32)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(images)).last_hidden_state.numpy()
    ref = ref.reshape(2, 3, 3, -1)  # (B, L, C) -> (B, H, W, C); stage 4 is 3x3 == window

    pure = convert_swin_state_dict(ref_model.state_dict(), final_norm="norm3")
    for i in range(3):  # SwinModel has no per-stage output norms for stages 1-3
        dim = 16 * 2**i
        pure["norms"][i] = {"scale": np.ones(dim, np.float32), "bias": np.zeros(dim, np.float32)}
    outs = {}
    for clamp in (True, False):
        model = abstract_swin(
            window_size=window, depths=depths, num_heads=heads, clamp_window=clamp
        )
        assign_pure_dict(model, pure)
        outs[clamp] = run(model, images)["stage4"]
    np.testing.assert_allclose(outs[True], ref, atol=5e-5, rtol=0)
    # The dense-prediction default keeps the shift there, and that is a different function.
    assert np.abs(outs[False] - ref).max() > 1e-2


def _official_mask(hp: int, wp: int, window: int, shift: int) -> np.ndarray:
    """The official construction: 9 slice regions labelled in a loop, then pairwise compare."""
    img = np.zeros((hp, wp))
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[hs, ws] = cnt
            cnt += 1
    win = img.reshape(hp // window, window, wp // window, window).transpose(0, 2, 1, 3)
    win = win.reshape(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return np.where(diff != 0, -100.0, 0.0)


@pytest.mark.parametrize(
    ("hp", "wp", "window", "shift"), [(14, 21, 7, 3), (24, 36, 12, 6), (6, 3, 3, 1)]
)
def test_shift_mask_matches_official_construction(hp, wp, window, shift):
    np.testing.assert_array_equal(
        shifted_window_mask(hp, wp, window, shift), _official_mask(hp, wp, window, shift)
    )


def test_contract_shapes_and_registry():
    assert ENCODERS.get("swin") is Swin
    model = nnx.eval_shape(lambda: Swin("tiny_test", window_size=7, rngs=nnx.Rngs(0)))
    feats = nnx.eval_shape(
        lambda m, x: m(x), model, jax.ShapeDtypeStruct((2, 100, 130, 3), np.float32)
    )
    # ceil(H / s) x ceil(W / s): padding never drops pixels.
    expected = {"stage1": (25, 33), "stage2": (13, 17), "stage3": (7, 9), "stage4": (4, 5)}
    for stage, hw in expected.items():
        assert feats[stage].shape == (2, *hw, model.out_channels[stage])
    assert model.out_channels == {"stage1": 16, "stage2": 32, "stage3": 64, "stage4": 128}


def test_variant_table_and_inferred_config():
    assert SWIN_VARIANTS["L"].embed_dim == 192 and SWIN_VARIANTS["L"].num_heads == (6, 12, 24, 48)
    model = nnx.eval_shape(lambda: Swin("B", window_size=12, rngs=nnx.Rngs(0)))
    assert model.out_channels["stage4"] == 1024
    cfg = transformers.SwinConfig(
        embed_dim=16, depths=[1, 2, 1, 1], num_heads=[1, 2, 2, 4], window_size=5
    )
    ref_model = transformers.SwinModel(cfg, add_pooling_layer=False)
    from dgr_jax.convert.swin_timm import hf_to_microsoft

    inferred = infer_swin_config(hf_to_microsoft(ref_model.state_dict()))
    assert inferred == {
        "embed_dim": 16,
        "depths": (1, 2, 1, 1),
        "num_heads": (1, 2, 2, 4),
        "window_size": 5,
        "patch_size": 4,
    }


def test_drop_path_needs_rngs_and_is_random_in_training():
    model = nnx.eval_shape(lambda: Swin("tiny_test", drop_path_rate=0.5, rngs=nnx.Rngs(0)))
    pure = jax.tree.map(
        lambda s: np.random.RandomState(0).randn(*s.shape).astype(np.float32) * 0.1,
        nnx.to_pure_dict(nnx.state(model)),
    )
    assign_pure_dict(model, pure)
    x = np.random.RandomState(1).randn(2, 32, 32, 3).astype(np.float32)
    with pytest.raises(ValueError, match="rngs"):
        model(x, train=True)
    train = nnx.jit(lambda m, x, rngs: m(x, train=True, rngs=rngs)["stage4"])
    a = np.asarray(train(model, x, nnx.Rngs(dropout=0)))
    b = np.asarray(train(model, x, nnx.Rngs(dropout=1)))
    evaluated = np.asarray(nnx.jit(lambda m, x: m(x)["stage4"])(model, x))
    assert np.abs(a - b).max() > 1e-4  # different draws
    assert np.abs(a - evaluated).max() > 1e-4  # and no drop path outside training
