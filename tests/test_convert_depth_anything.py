"""Official Depth Anything V2 checkpoints: converter, CLI, and the official position-embedding
interpolation (the parity with the official model code itself: benchmarks/host_parity.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from depth_anything_layout import official_state_dict
from flax import nnx

from dgr_jax.convert import depth_anything as conv
from dgr_jax.convert.__main__ import main as convert_main
from dgr_jax.convert.torch_layout import assign_pure_dict
from dgr_jax.models import build_model
from dgr_jax.models.blocks import layers

torch = pytest.importorskip("torch")


def _model(weights):
    model = nnx.eval_shape(lambda: build_model(weights.model_cfg, rngs=nnx.Rngs(0)))
    assign_pure_dict(model, weights.tree)  # strict: every variable, every shape, nothing extra
    return model


@nnx.jit
def _forward(model, x):
    return model(x)[0][..., 0]


def test_every_key_is_consumed_and_the_two_heads_share_the_logits():
    sd = official_state_dict()
    relative = conv.convert_depth_anything_checkpoint(sd, encoder="tiny_test")
    metric = conv.convert_depth_anything_checkpoint(sd, encoder="tiny_test", max_depth=20.0)
    assert relative.model_cfg["head"]["name"] == "relu"
    assert metric.model_cfg["head"] == {
        "name": "sigmoid", "max_depth": 20.0, "hidden": 32, "upsample": "to_output"
    }  # fmt: skip
    assert list(relative.dropped) == ["pretrained.mask_token"]
    assert relative.model_cfg["encoder"]["pos_embed_offset"] == conv.POS_EMBED_OFFSET
    assert relative.model_cfg["encoder"]["image_size"] == (28, 28)
    x = jnp.asarray(np.random.RandomState(0).randn(1, 42, 56, 3), jnp.float32)
    rel = np.asarray(_forward(_model(relative), x))
    met = np.asarray(_forward(_model(metric), x))
    assert rel.shape == (1, 42, 56) and (rel > 0).mean() > 0.2 and rel.std() > 0
    # Same weights, same logits z: relative relu(z), metric sigmoid(z) * 20.
    pos = rel > 0
    np.testing.assert_allclose(met[pos], 20.0 / (1.0 + np.exp(-rel[pos])), rtol=1e-5)
    # DataParallel fine-tunes ({"model": {"module." + key}}) give the same weights.
    wrapped = {"model": {f"module.{k}": v for k, v in sd.items()}}
    again = conv.convert_depth_anything_checkpoint(wrapped, encoder="tiny_test")
    np.testing.assert_array_equal(
        again.tree["encoder"]["vit"]["layers"][1]["layer_scale2"],
        sd["pretrained.blocks.1.ls2.gamma"],
    )


def test_wrong_encoder_unknown_keys_and_other_files_are_refused():
    sd = official_state_dict()
    with pytest.raises(ValueError, match="tiny_test Depth Anything V2.*pass --encoder tiny_test"):
        conv.convert_depth_anything_checkpoint(sd, encoder="vits")
    extra = {**sd, "depth_head.scratch.extra.weight": np.zeros((2, 2, 1, 1), np.float32)}
    with pytest.raises(KeyError, match="no target"):
        conv.convert_depth_anything_checkpoint(extra, encoder="tiny_test")
    hf_like = {"backbone.embeddings.cls_token": np.zeros((1, 1, 32), np.float32)}
    with pytest.raises(ValueError, match="use --hf-dir"):
        conv.convert_depth_anything_checkpoint(hf_like, encoder="tiny_test")


def test_official_interpolation_offset_equals_torch_scale_factor():
    """DINOv2's torch F.interpolate(scale_factor=(g + 0.1) / G, bicubic) == layers.resize."""
    x = np.random.RandomState(0).randn(1, 37, 37, 5).astype(np.float32)
    for grid in ((34, 45), (37, 37), (20, 74)):
        scales = tuple((g + 0.1) / 37 for g in grid)
        ref = (
            torch.nn.functional.interpolate(
                torch.from_numpy(x.transpose(0, 3, 1, 2)), scale_factor=scales, mode="bicubic"
            )
            .numpy()
            .transpose(0, 2, 3, 1)
        )
        ours = np.asarray(layers.resize(jnp.asarray(x), grid, method="bicubic", scales=scales))
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=2e-5)
    # It is not transformers' size= resize (which the offset 0 gives) away from the stored grid.
    by_size = np.asarray(layers.resize(jnp.asarray(x), (34, 45), method="bicubic"))
    by_scale = np.asarray(
        layers.resize(jnp.asarray(x), (34, 45), method="bicubic", scales=(34.1 / 37, 45.1 / 37))
    )
    assert np.abs(by_size - by_scale).max() > 1e-2


def _save(path, sd):
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, path)
    return str(path)


def test_cli_relative_and_metric_files_and_refusals(tmp_path, capsys):
    good = _save(tmp_path / "depth_anything_v2_tiny.pth", official_state_dict())
    for extra, head in (([], "relu"), (["--max-depth", "80"], "sigmoid")):
        out = tmp_path / f"out_{head}"
        assert convert_main(
            ["--depth-anything-ckpt", good, "--encoder", "tiny_test", *extra, "--out", str(out)]
        ) == 0  # fmt: skip
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert line["model"]["head"]["name"] == head and line["prefix"] == []
        assert line["source"]["kind"] == ("relative" if head == "relu" else "metric")
        assert list(line["dropped"]) == ["pretrained.mask_token"]
    (tmp_path / "truncated.pth").write_bytes(Path(good).read_bytes()[:4000])
    sd = official_state_dict()
    del sd["depth_head.scratch.refinenet2.out_conv.bias"]
    missing = _save(tmp_path / "missing.pth", sd)
    swin = _save(tmp_path / "swin.pth", {"patch_embed.proj.weight": np.zeros((4, 3, 4, 4))})
    out = str(tmp_path / "refused")
    cases = [
        ([str(tmp_path / "truncated.pth"), "--encoder", "tiny_test"], "not a PyTorch checkpoint"),
        ([missing, "--encoder", "tiny_test"], "missing"),
        ([swin, "--encoder", "vits"], "not an official Depth Anything V2"),
        ([good, "--encoder", "vitb"], "pass --encoder tiny_test"),
        ([good, "--encoder", "tiny_test", "--max-depth", "-1"], "max_depth must be positive"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            convert_main(["--depth-anything-ckpt", *argv, "--out", out])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in err, (argv, err)
        assert "Traceback" not in err and err.startswith("error: ") and err.count("error: ") == 1
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--depth-anything-ckpt", good, "--out", out])
    assert exit_info.value.code == 2 and "needs --encoder" in capsys.readouterr().err
    assert not os.path.exists(out)  # nothing written


_HF_TO_OFFICIAL = [
    (r"^backbone\.embeddings\.patch_embeddings\.projection\.", "pretrained.patch_embed.proj."),
    (r"^backbone\.embeddings\.position_embeddings$", "pretrained.pos_embed"),
    (r"^backbone\.embeddings\.", "pretrained."),
    (r"^backbone\.encoder\.layer\.(\d+)\.", r"pretrained.blocks.\1."),
    (r"^backbone\.layernorm\.", "pretrained.norm."),
    (r"\.attention\.(output\.dense|o_proj)\.", ".attn.proj."),
    (r"\.layer_scale([12])\.lambda1$", r".ls\1.gamma"),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.projection\.", r"depth_head.projects.\1."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.resize\.", r"depth_head.resize_layers.\1."),
    (r"^neck\.convs\.(\d)\.", lambda m: f"depth_head.scratch.layer{int(m[1]) + 1}_rn."),
    (
        r"^neck\.fusion_stage\.layers\.(\d)\.residual_layer([12])\.convolution([12])\.",
        lambda m: f"depth_head.scratch.refinenet{4 - int(m[1])}.resConfUnit{m[2]}.conv{m[3]}.",
    ),
    (
        r"^neck\.fusion_stage\.layers\.(\d)\.projection\.",
        lambda m: f"depth_head.scratch.refinenet{4 - int(m[1])}.out_conv.",
    ),
    (r"^head\.conv1\.", "depth_head.scratch.output_conv1."),
    (r"^head\.conv2\.", "depth_head.scratch.output_conv2.0."),
    (r"^head\.conv3\.", "depth_head.scratch.output_conv2.2."),
]


@pytest.mark.slow
def test_official_layout_with_offset_zero_matches_transformers():
    """The same weights through transformers' DepthAnythingForDepthEstimation and, renamed to
    the official layout, through this converter with transformers' interpolation (offset 0):
    the same depth at a size where the position embeddings are resized."""
    import re

    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    backbone = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=4,
        image_size=28, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
    )  # fmt: skip
    hf = transformers.DepthAnythingForDepthEstimation(
        transformers.DepthAnythingConfig(
            backbone_config=backbone,
            reassemble_hidden_size=32,
            neck_hidden_sizes=[8, 16, 32, 32],
            fusion_hidden_size=16,
            head_hidden_size=32,
        )  # fmt: skip
    ).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in hf.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.randn(t.shape, generator=gen))
        hf.head.conv3.bias.fill_(0.3)
    sd, qkv = {}, {}
    for key, value in hf.state_dict().items():
        value = value.numpy()
        # transformers names them attention.attention.{query,key,value} or attention.{q,k,v}_proj.
        m = re.search(
            r"\.attention\.(?:attention\.)?(query|key|value|[qkv]_proj)\.(weight|bias)$", key
        )
        if m:
            part = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}.get(m[1], m[1])
            qkv.setdefault((key[: m.start()], m[2]), {})[part] = value
            continue
        for pattern, repl in _HF_TO_OFFICIAL:
            key = re.sub(pattern, repl, key)
        sd[key] = value
    for (prefix, leaf), parts in qkv.items():
        block = re.sub(r"^backbone\.encoder\.layer\.(\d+)", r"pretrained.blocks.\1", prefix)
        sd[f"{block}.attn.qkv.{leaf}"] = np.concatenate(
            [parts[k] for k in ("query", "key", "value")]
        )
    weights = conv.convert_depth_anything_checkpoint(sd, encoder="tiny_test")
    weights.model_cfg["encoder"]["pos_embed_offset"] = 0.0
    x = np.random.RandomState(2).randn(1, 3, 42, 56).astype(np.float32)
    with torch.no_grad():
        ref = hf(torch.from_numpy(x)).predicted_depth.numpy()
    ours = np.asarray(_forward(_model(weights), jnp.asarray(x.transpose(0, 2, 3, 1))))
    assert (ref > 0).mean() > 0.2
    np.testing.assert_allclose(ours, ref, atol=1e-4 * np.abs(ref).max())
