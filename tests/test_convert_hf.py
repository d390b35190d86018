"""Parity of converted HF transformers models with PyTorch (random init, offline, float32).

Relative error = max|ours - torch| / max|torch| over the whole output; required < 1e-4.
"""

import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx
from model_helpers import max_rel_err, rngs

from configs import synthetic_cnn
from dgr_jax.convert import from_hf, load_converted, merge_state
from dgr_jax.convert.__main__ import main as convert_main
from dgr_jax.models import DepthModel, build_model
from dgr_jax.models.encoders.resnet import ResNet
from dgr_jax.models.encoders.vit import ViT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

_TOL = 1e-4


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)  # HF initialises weights from torch's global RNG


def _randomize(model, seed=0):
    """Perturb every float tensor (HF zero-inits cls/pos embeddings, BN stats are 0/1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
    return model.eval()


def _images(shape, seed=0):
    """(NCHW torch input, the same values NHWC for us)."""
    x = np.random.RandomState(seed).randn(*shape).astype(np.float32)
    return torch.from_numpy(x), jnp.asarray(x.transpose(0, 2, 3, 1))


@nnx.jit
def _forward(model, x):
    return model(x)


def _tiny_dpt(**kw):
    cfg = {
        "hidden_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 32,
        "backbone_out_indices": [0, 1, 2, 3],
        "neck_hidden_sizes": [8, 16, 32, 32],
        "fusion_hidden_size": 16,
        **kw,
    }
    model = _randomize(transformers.DPTForDepthEstimation(transformers.DPTConfig(**cfg)))
    with torch.no_grad():  # mostly positive depth, so the ReLU head is not trivially zero
        model.head.head[4].bias.fill_(0.3)
    return model


# Every readout, with and without batch norm, at the native 32x32 and at 64x64, where the 2x2
# grid of position embeddings is resized to 4x4.
@pytest.mark.parametrize(
    ("readout", "use_bn", "extra", "size"),
    [
        ("ignore", True, {}, 32),
        ("ignore", False, {}, 64),
        ("add", False, {}, 64),
        ("project", False, {}, 32),
        ("project", True, {"backbone_out_indices": [3, 1, 2, 0]}, 64),
        ("add", True, {"use_bias_in_fusion_residual": True, "layer_norm_eps": 1e-6}, 32),
    ],
)
def test_dpt_depth_matches_torch(readout, use_bn, extra, size):
    hf = _tiny_dpt(readout_type=readout, use_batch_norm_in_fusion_residual=use_bn, **extra)
    ours = from_hf(hf)
    assert isinstance(ours, DepthModel)
    x_torch, x = _images((2, 3, size, size))
    with torch.no_grad():
        ref = hf(x_torch)[0].numpy()
    depth, _ = _forward(ours, x)
    assert depth.shape == (2, size, size, 1)
    assert 0.0 < (ref > 0).mean() < 1.0 or ref.max() > 0
    err = max_rel_err(depth[..., 0], ref)
    print(f"DPT readout={readout} bn={use_bn} {extra} {size}x{size}: rel err {err:.2e}")
    assert err < _TOL


def test_dpt_with_head_projection_matches_torch():
    # HF's add_projection is a 256->256 conv, so this needs fusion_hidden_size=256.
    hf = _tiny_dpt(add_projection=True, fusion_hidden_size=256)
    x_torch, x = _images((1, 3, 32, 32), seed=1)
    with torch.no_grad():
        ref = hf(x_torch)[0].numpy()
    err = max_rel_err(_forward(from_hf(hf), x)[0][..., 0], ref)
    print(f"DPT add_projection: rel err {err:.2e}")
    assert err < _TOL


def _tiny_vit(**kw):
    cfg = transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=16,
        **kw,
    )
    return _randomize(transformers.ViTModel(cfg), seed=1)


@pytest.mark.parametrize("size", [(32, 32), (48, 64)])  # (48, 64): bicubic position resize
def test_vit_hidden_states_match_torch(size):
    hf = _tiny_vit()
    ours = from_hf(hf)
    assert isinstance(ours, ViT)
    x_torch, x = _images((2, 3, *size), seed=2)
    with torch.no_grad():
        ref = hf(x_torch, output_hidden_states=True, interpolate_pos_encoding=True)
    out = _forward(ours, x)
    assert len(out.hidden_states) == len(ref.hidden_states)
    errs = [max_rel_err(a, b.numpy()) for a, b in zip(out.hidden_states, ref.hidden_states)]
    errs.append(max_rel_err(out.last_hidden_state, ref.last_hidden_state.numpy()))
    print(f"ViT {size}: rel err per hidden state {[f'{e:.1e}' for e in errs]}")
    assert max(errs) < _TOL


@pytest.mark.parametrize(
    ("layer_type", "hidden_sizes", "extra"),
    [
        ("basic", [8, 16, 32, 64], {}),
        ("bottleneck", [16, 32, 64, 128], {}),
        ("bottleneck", [16, 32, 64, 128], {"downsample_in_bottleneck": True}),
    ],
)
def test_resnet_stages_match_torch(layer_type, hidden_sizes, extra):
    cfg = transformers.ResNetConfig(
        embedding_size=8,
        hidden_sizes=hidden_sizes,
        depths=[1, 2, 1, 1],
        layer_type=layer_type,
        **extra,
    )
    hf = _randomize(transformers.ResNetModel(cfg), seed=3)
    ours = from_hf(hf)
    assert isinstance(ours, ResNet)
    x_torch, x = _images((2, 3, 64, 96), seed=4)
    with torch.no_grad():
        ref = hf(x_torch, output_hidden_states=True).hidden_states
    feats = _forward(ours, x)
    errs = [
        max_rel_err(feats[f"stage{i}"], ref[i].numpy().transpose(0, 2, 3, 1)) for i in range(1, 5)
    ]
    print(f"ResNet {layer_type} {extra}: rel err per stage {[f'{e:.1e}' for e in errs]}")
    assert max(errs) < _TOL


def test_classification_wrappers_and_unsupported_models():
    vit_cls = transformers.ViTForImageClassification(_tiny_vit().config)
    assert isinstance(from_hf(vit_cls), ViT)
    with pytest.raises(ValueError, match="DPTForDepthEstimation"):
        from_hf(torch.nn.Linear(2, 2))


def test_cli_round_trip_depth_model(tmp_path):
    hf = _tiny_dpt(readout_type="project")
    hf.save_pretrained(tmp_path / "hf")  # config.json + model.safetensors
    convert_main(["--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "out")])
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["prefix"] == [] and meta["model"]["head"]["name"] == "relu"

    model_cfg, state = load_converted(tmp_path / "out")
    # Abstract build: every variable is then filled from the converted state.
    model = nnx.eval_shape(lambda: build_model(model_cfg, rngs=rngs()))
    merge_state(model, state)
    x_torch, x = _images((1, 3, 32, 32), seed=5)
    with torch.no_grad():
        ref = hf(x_torch)[0].numpy()
    assert max_rel_err(nnx.jit(lambda m, x: m(x)[0])(model, x)[..., 0], ref) < _TOL


def test_cli_encoder_from_pytorch_bin_into_a_depth_model(tmp_path):
    cfg = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], layer_type="basic"
    )
    hf = _randomize(transformers.ResNetModel(cfg), seed=6)
    hf.config.save_pretrained(tmp_path / "hf")
    torch.save(hf.state_dict(), tmp_path / "hf" / "pytorch_model.bin")
    convert_main(["--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "out")])

    enc_cfg, state = load_converted(tmp_path / "out")
    assert sorted(enc_cfg) == ["encoder"]
    model_cfg = synthetic_cnn.get_config("smoke").model
    with model_cfg.unlocked():
        model_cfg.encoder = enc_cfg.encoder
    model = nnx.eval_shape(lambda: build_model(model_cfg, rngs=rngs()))
    merged = merge_state(model, state)
    assert len(nnx.to_flat_state(merged)) > len(nnx.to_flat_state(state))
    assert all(path[0] == "encoder" for path, _ in nnx.to_flat_state(state))
    x_torch, x = _images((1, 3, 64, 64), seed=7)
    with torch.no_grad():
        ref = hf(x_torch, output_hidden_states=True).hidden_states[4].numpy()
    stage4 = nnx.jit(lambda m, x: m(x)["stage4"])(model.encoder, x)
    assert max_rel_err(stage4, ref.transpose(0, 2, 3, 1)) < _TOL


def test_merge_state_lists_mismatching_paths(tmp_path):
    hf = _tiny_dpt()
    hf.save_pretrained(tmp_path / "hf")
    convert_main(["--hf-dir", str(tmp_path / "hf"), "--out", str(tmp_path / "out")])
    model_cfg, state = load_converted(tmp_path / "out")
    other = ml_collections.ConfigDict(model_cfg.to_dict())
    other.decoder.features = 8
    model = nnx.eval_shape(lambda: build_model(other, rngs=rngs()))
    with pytest.raises(ValueError, match=r"decoder/convs/0/kernel: float32\[3, 3, 8, 16\]"):
        merge_state(nnx.state(model), state)


def test_conversion_reports_unmapped_and_missing_tensors():
    from dgr_jax.convert.hf import _RESNET_RULES, _state_dict, load_weights

    cfg = transformers.ResNetConfig(
        embedding_size=4, hidden_sizes=[4, 8, 16, 32], depths=[1, 1, 1, 1], layer_type="basic"
    )
    state = _state_dict(transformers.ResNetModel(cfg))
    module = from_hf(transformers.ResNetModel(cfg))
    state["encoder.stages.9.layers.0.layer.0.convolution.weight"] = np.zeros((4, 4, 3, 3))
    del state["embedder.embedder.convolution.weight"]
    with pytest.raises(ValueError) as err:
        load_weights(module, state, _RESNET_RULES)
    assert "stages.9" in str(err.value)
    assert "embedder.convolution.kernel: not assigned" in str(err.value)


def _tiny_depth_anything(**kw):
    backbone = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=28,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    cfg = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        **kw,
    )
    model = _randomize(transformers.DepthAnythingForDepthEstimation(cfg), seed=8)
    with torch.no_grad():
        model.head.conv3.bias.fill_(0.3)
    return model


# Native 28x28 and two other sizes (bicubic position embeddings, odd stage sizes).
@pytest.mark.parametrize(
    ("kind", "max_depth", "size"),
    [("relative", 1, (28, 28)), ("relative", 2, (42, 56)), ("metric", 20, (70, 42))],
)
def test_depth_anything_matches_torch(kind, max_depth, size):
    hf = _tiny_depth_anything(depth_estimation_type=kind, max_depth=max_depth)
    ours = from_hf(hf)
    x_torch, x = _images((2, 3, *size), seed=9)
    with torch.no_grad():
        ref = hf(x_torch).predicted_depth.numpy()
    depth, _ = _forward(ours, x)
    assert depth.shape == (2, *size, 1)
    err = max_rel_err(depth[..., 0], ref)
    print(f"Depth Anything {kind} max_depth={max_depth} {size}: rel err {err:.2e}")
    assert err < _TOL
