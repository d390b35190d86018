"""`python -m dgr_jax.convert` for every source, then `--config.init_from` in eval and training.

Sources are tiny synthetic checkpoints in the official layouts (tests/newcrfs_layout.py,
tests/pixelformer_layout.py) or tiny random transformers models; nothing is downloaded. Data:
the synthetic dataset at 64x96 (sides multiples of 32, as NeWCRFs and PixelFormer need), built
once per session.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from json_helpers import assert_strict_json_tree
from newcrfs_layout import (
    arch_of,
    official_newcrfs_keys,
    official_swin_keys,
    released_layout,
    synthetic_state_dict,
    to_torch,
)
from pixelformer_layout import official_pixelformer_keys, pf_arch_of
from pixelformer_layout import released_layout as pixelformer_released

from dgr_jax import checkpoint, configlib, optim, sharding, steps, weights
from dgr_jax.convert import load_converted
from dgr_jax.convert.__main__ import main as convert_main
from dgr_jax.evaluate import evaluate_checkpoint
from dgr_jax.trainer import TrainingError, train_and_evaluate

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config(tmp_path, name: str = "nyu_newcrfs", **overrides):
    """configs/<name>.py:smoke on the synthetic dataset at 64x96, one device, batch 2."""
    config = configlib.load(os.path.join(ROOT, f"configs/{name}.py:smoke"))
    with config.unlocked():
        config.data_dir = str(tmp_path.parent / "convert_cli_data")
        config.input.dataset = "synthetic_depth/indoor"
        config.input.build.update({"num_train": 4, "num_test": 2, "height": 64, "width": 96})
        config.mesh.data = 1
        config.batch_size = 2
        config.evals.test.update({"dataset": "synthetic_depth/indoor", "kb_crop": False})
        config.evals.test.update({"batch_size": 2, "num_pictures": 1})
        for key, value in overrides.items():
            configlib.set_by_path(config, key, value)
    return config


def convert(capsys, *argv: str) -> dict:
    """Run the CLI in-process; its one JSON line."""
    assert convert_main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def zeros_state(config):
    """(params/rest of `config.model` as zeros, their shardings): a stand-in for the fresh
    initialisation that needs no compilation (whole-model random init takes tens of seconds)."""
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, config.seed))
    state_sh = sharding.state_shardings(abstract, sharding.make_mesh(config.mesh), config.sharding)
    zeros = {
        k: jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract[k])
        for k in ("params", "rest")
    }
    return zeros, state_sh


@pytest.mark.slow
def test_newcrfs_released_checkpoint_to_eval(tmp_path, capsys):
    """Official-layout .ckpt -> CLI -> eval.py's evaluate_checkpoint with init_from."""
    config = smoke_config(tmp_path)
    sd = synthetic_state_dict(official_newcrfs_keys(arch_of(config.model)), seed=1)
    torch.save(to_torch(released_layout(sd)), tmp_path / "model_nyu.ckpt")
    out = tmp_path / "newcrfs_nyu"
    summary = convert(
        capsys, "--newcrfs-ckpt", str(tmp_path / "model_nyu.ckpt"), "--variant", "nyu",
        "--out", str(out),
    )  # fmt: skip
    assert summary["prefix"] == [] and summary["kept_init"] == []
    assert summary["values"] == sum(v.size for k, v in sd.items() if v.dtype == np.float32)
    assert summary["model"]["decoder"]["max_depth"] == 10.0

    # The converted values are what the configured DepthModel starts from, in both pure dicts.
    state, state_sh = zeros_state(config)
    loaded, report = weights.load_init_weights(
        state, state_sh, str(out), config.model, complete=True
    )
    assert "kept" not in report
    kernel = loaded["params"]["encoder"]["layers"][2]["blocks"][1]["attn"]["qkv"]["kernel"]
    np.testing.assert_array_equal(kernel, sd["backbone.layers.2.blocks.1.attn.qkv.weight"].T)
    np.testing.assert_array_equal(
        loaded["rest"]["decoder"]["psp"]["bottleneck"]["norm"]["var"],
        sd["decoder.bottleneck.bn.running_var"],
    )

    with config.unlocked():
        config.init_from = str(out)
    metrics = evaluate_checkpoint(config, str(tmp_path / "eval_run"))
    assert metrics["test/num_images"] == 2
    assert np.isfinite(metrics["test/abs_rel"]) and metrics["test/abs_rel"] > 0
    assert "eval/test/metrics.json" in assert_strict_json_tree(tmp_path / "eval_run")
    assert "model.json" in assert_strict_json_tree(out)
    written = json.loads((tmp_path / "eval_run/eval/test/metrics.json").read_text())
    assert written["abs_rel"] == pytest.approx(metrics["test/abs_rel"])


def test_init_from_rejects_a_model_that_does_not_fit(tmp_path, capsys):
    config = smoke_config(tmp_path)
    sd = synthetic_state_dict(official_newcrfs_keys(arch_of(config.model)), seed=2)
    torch.save(to_torch(released_layout(sd)), tmp_path / "k.ckpt")
    out = str(tmp_path / "kitti")
    convert(capsys, "--newcrfs-ckpt", str(tmp_path / "k.ckpt"), "--variant", "kitti", "--out", out)
    state, state_sh = zeros_state(config)
    # Same shapes, but the weights were converted for KITTI (80 m): evaluation refuses,
    # training warns.
    with pytest.raises(ValueError, match=r"max_depth: config 10.0 vs weights 80.0"):
        weights.load_init_weights(state, state_sh, out, config.model, complete=True)
    _, report = weights.load_init_weights(state, state_sh, out, config.model, complete=False)
    assert "WARNING" in report and "max_depth" in report
    # One CRF block per level instead of two: unknown paths, listed.
    small = smoke_config(tmp_path, **{"model.decoder.crf_depth": 1})
    state, state_sh = zeros_state(small)
    with pytest.raises(ValueError, match=r"not in the configured model \(52\)") as err:
        weights.load_init_weights(state, state_sh, out, small.model, complete=False)
    assert "decoder/crf0/blocks/1/attn/proj/bias (params)" in str(err.value)


def test_swin_imagenet_checkpoint_into_a_newcrfs_dgr_model(tmp_path, capsys):
    """ImageNet Swin (window 5, resized to 7) -> CLI -> init_from of NeWCRFs + DGR: the encoder
    comes from the file; its stage norms, the decoder and the DGR blocks keep their init."""
    config = smoke_config(tmp_path, "nyu_newcrfs_dgr")
    arch = dataclasses.replace(arch_of(config.model), window=5)
    sd = synthetic_state_dict(official_swin_keys(arch, classification=True), seed=3)
    torch.save({"model": to_torch(sd)}, tmp_path / "swin.pth")
    out = str(tmp_path / "swin")
    summary = convert(
        capsys, "--swin-ckpt", str(tmp_path / "swin.pth"), "--window", "7", "--out", out
    )
    assert summary["prefix"] == ["encoder"] and len(summary["kept_init"]) == 8
    assert summary["model"]["encoder"]["window_size"] == 7
    assert summary["source"]["layout"] == "microsoft"

    state, state_sh = zeros_state(config)
    loaded, report = weights.load_init_weights(state, state_sh, out, config.model, complete=False)
    assert "encoder/norms (8)" in report and "decoder/dgr" in report and "decoder/crf0" in report
    encoder = loaded["params"]["encoder"]
    np.testing.assert_array_equal(
        encoder["layers"][0]["downsample"]["reduction"]["kernel"],
        sd["layers.0.downsample.reduction.weight"].T,
    )
    table = encoder["layers"][2]["blocks"][1]["attn"]["relative_position_bias_table"]
    assert table.shape == (13 * 13, arch.heads[2]) and np.abs(table).max() > 0  # from 9x9
    assert not np.any(encoder["norms"][0]["scale"])  # kept (zeros stand in for the init)
    assert not np.any(loaded["params"]["decoder"]["crf0"]["norm"]["scale"])
    with pytest.raises(ValueError, match=r"not in the weights \(would stay random\)"):
        weights.load_init_weights(state, state_sh, out, config.model, complete=True)


@pytest.fixture
def rbg_keys():
    """rbg PRNG keys for one test: the trainer's jit-compiled random initialisation then takes
    ~7 s instead of ~25 s on 2 shared CPU cores (threefry), for the same code path."""
    previous = jax.config.jax_default_prng_impl
    jax.config.update("jax_default_prng_impl", "rbg")
    yield
    jax.config.update("jax_default_prng_impl", previous)


@pytest.mark.slow
@pytest.mark.usefixtures("rbg_keys")
def test_encoder_only_conversion_then_two_training_steps(tmp_path, capsys):
    """HF ResNet -> CLI -> train.py's loop with init_from (ResNet arm smoke config, 2 steps):
    the encoder starts from the converted weights, the decoder and head from their init."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], layer_type="basic"
    )
    torch.manual_seed(0)
    transformers.ResNetModel(cfg).save_pretrained(tmp_path / "hf")
    out = str(tmp_path / "resnet")
    summary = convert(capsys, "--hf-dir", str(tmp_path / "hf"), "--out", out)
    assert summary["prefix"] == ["encoder"] and summary["kept_init"] == []

    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    with config.unlocked():
        config.data_dir = str(tmp_path.parent / "convert_cli_cnn_data")
        config.model.encoder = ml_collections.ConfigDict(summary["model"]["encoder"])
        config.update({"total_steps": 2, "log_every": 1, "ckpt_every": 2, "eval_every": 0})
        config.update({"batch_size": 2, "mesh": {"data": 1, "model": 1}})  # one compile, small
        config.evals = ml_collections.ConfigDict()
        config.best_metric = ""
        config.init_from = out
    workdir = tmp_path / "run"
    train_and_evaluate(config, str(workdir))
    kept = capsys.readouterr().out.split("kept the fresh initialisation")[1].splitlines()[0]
    assert "decoder/" in kept and "encoder" not in kept

    _, converted = load_converted(out)
    stem = np.asarray(converted["encoder"]["embedder"]["convolution"]["kernel"][...])
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, 0))
    ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True)
    state, _ = ckpt.restore(2, abstract)
    trained = np.asarray(state["params"]["encoder"]["embedder"]["convolution"]["kernel"])
    # Two Adam steps move each weight by at most ~2 lr; a fresh init would differ by ~0.1.
    np.testing.assert_allclose(trained, stem, atol=3 * config.optim.lr)
    assert np.abs(trained - stem).max() > 0


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    out = str(tmp_path / "out")
    cases = [
        (["--newcrfs-ckpt", str(tmp_path / "notes.txt"), "--variant", "nyu"], "not a PyTorch"),
        (["--newcrfs-ckpt", str(tmp_path / "missing.ckpt"), "--variant", "nyu"], "no such file"),
        (["--newcrfs-ckpt", str(tmp_path / "notes.txt")], "needs --variant"),
        (["--swin-ckpt", str(tmp_path / "notes.txt"), "--variant", "nyu"], "belongs to"),
        (["--hf-dir", str(tmp_path)], "no config.json"),
    ]
    sd = synthetic_state_dict(official_newcrfs_keys(arch_of(smoke_config(tmp_path).model)))
    sd["crf1.extra.weight"] = np.zeros(3, np.float32)
    torch.save(to_torch(released_layout(sd)), tmp_path / "extra.ckpt")
    cases.append(
        (["--newcrfs-ckpt", str(tmp_path / "extra.ckpt"), "--variant", "nyu"], "no target")
    )
    torch.save({"model": to_torch(sd)}, tmp_path / "newcrfs_as_swin.pth")
    cases.append((["--swin-ckpt", str(tmp_path / "newcrfs_as_swin.pth")], "--newcrfs-ckpt"))
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            convert_main([*argv, "--out", out])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in err, (argv, err)
        # One message line (after argparse's usage lines for command-line mistakes).
        assert "Traceback" not in err and err.strip().splitlines()[-1].count("error: ") == 1
    assert not os.path.exists(out)  # nothing written
    # The real entry point: status 2, the message, no traceback.
    proc = subprocess.run(
        [sys.executable, "-m", "dgr_jax.convert", "--newcrfs-ckpt", str(tmp_path / "notes.txt"),
         "--variant", "kitti", "--out", out],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and "not a PyTorch checkpoint" in proc.stderr


def test_train_refuses_weights_that_do_not_fit_with_a_short_error(tmp_path, capsys):
    config = smoke_config(tmp_path)
    sd = synthetic_state_dict(official_newcrfs_keys(arch_of(config.model)))
    torch.save(to_torch(released_layout(sd)), tmp_path / "n.ckpt")
    out = str(tmp_path / "n")
    convert(capsys, "--newcrfs-ckpt", str(tmp_path / "n.ckpt"), "--variant", "nyu", "--out", out)
    with config.unlocked():
        config.init_from = out
        config.model.decoder.psp_channels = 16
        config.model.decoder.ppm_norm_groups = 8
    with pytest.raises(TrainingError, match="shape mismatch"):
        train_and_evaluate(config, str(tmp_path / "run"))


def _pixelformer_ckpt(tmp_path, config, name: str, seed: int = 0) -> tuple[dict, str]:
    sd = synthetic_state_dict(official_pixelformer_keys(pf_arch_of(config.model)), seed=seed)
    torch.save(to_torch(pixelformer_released(sd)), tmp_path / name)
    return sd, str(tmp_path / name)


def test_pixelformer_released_checkpoint_to_init_from(tmp_path, capsys):
    """Official-layout .pth -> CLI (the unused samN.proj reported as dropped) -> eval.py's
    init_from check and values, for configs/nyu_pixelformer.py; KITTI weights refused there."""
    config = smoke_config(tmp_path, "nyu_pixelformer")
    sd, path = _pixelformer_ckpt(tmp_path, config, "nyu.pth", seed=4)
    out = str(tmp_path / "pixelformer_nyu")
    summary = convert(capsys, "--pixelformer-ckpt", path, "--variant", "nyu", "--out", out)
    unused = sorted(f"sam{k}.proj.{leaf}" for k in range(1, 5) for leaf in ("bias", "weight"))
    assert sorted(summary["dropped"]) == unused
    assert "never called" in summary["dropped"]["sam1.proj.weight"]
    assert summary["prefix"] == [] and summary["kept_init"] == []
    assert summary["values"] == sum(
        v.size for k, v in sd.items() if v.dtype == np.float32 and k not in unused
    )
    assert summary["model"]["decoder"]["name"] == "pixelformer"
    assert summary["model"]["decoder"]["max_depth"] == 10.0
    assert summary["model"]["decoder"]["min_depth"] == 0.1
    assert json.loads((tmp_path / "pixelformer_nyu/model.json").read_text())["dropped"]

    state, state_sh = zeros_state(config)
    loaded, report = weights.load_init_weights(state, state_sh, out, config.model, complete=True)
    assert "kept" not in report
    decoder = loaded["params"]["decoder"]
    np.testing.assert_array_equal(
        decoder["sam4"]["sam_block"]["attn"]["q"]["kernel"], sd["sam4.sam_block.attn.q.weight"].T
    )
    np.testing.assert_array_equal(decoder["bcp"]["fc1"]["bias"], sd["bcp.fc1.bias"])
    kitti = str(tmp_path / "pixelformer_kitti")
    convert(capsys, "--pixelformer-ckpt", path, "--variant", "kitti", "--out", kitti)
    with pytest.raises(ValueError, match=r"max_depth: config 10.0 vs weights 80.0"):
        weights.load_init_weights(state, state_sh, kitti, config.model, complete=True)


def test_swin_imagenet_checkpoint_starts_pixelformer_dgr_training(tmp_path, capsys):
    """--swin-ckpt output into configs/nyu_pixelformer_dgr.py (train.py's init_from check): the
    encoder comes from the file; stage norms, PSP, SAMs, BCP, head and DGR keep their init."""
    config = smoke_config(tmp_path, "nyu_pixelformer_dgr")
    swin_arch = pf_arch_of(config.model).swin()
    sd = synthetic_state_dict(official_swin_keys(swin_arch, classification=True))
    torch.save({"model": to_torch(sd)}, tmp_path / "swin.pth")
    out = str(tmp_path / "swin")
    summary = convert(capsys, "--swin-ckpt", str(tmp_path / "swin.pth"), "--out", out)
    assert summary["prefix"] == ["encoder"] and summary["dropped"] == {}
    state, state_sh = zeros_state(config)
    loaded, report = weights.load_init_weights(state, state_sh, out, config.model, complete=False)
    for part in ("encoder/norms (8)", "decoder/sam1", "decoder/bcp", "decoder/dgr", "decoder/psp"):
        assert part in report, report
    np.testing.assert_array_equal(
        loaded["params"]["encoder"]["patch_embed"]["proj"]["bias"], sd["patch_embed.proj.bias"]
    )


def test_pixelformer_cli_refuses_damaged_and_wrong_kind_files(tmp_path, capsys):
    config = smoke_config(tmp_path, "nyu_pixelformer")
    _, good = _pixelformer_ckpt(tmp_path, config, "nyu.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "nyu.pth").read_bytes()[:5000])
    sd = synthetic_state_dict(official_pixelformer_keys(pf_arch_of(config.model)))
    del sd["sam3.sam_block.mlp.fc2.bias"]
    torch.save(to_torch(pixelformer_released(sd)), tmp_path / "missing.pth")
    newcrfs_sd = synthetic_state_dict(official_newcrfs_keys(arch_of(smoke_config(tmp_path).model)))
    torch.save(to_torch(released_layout(newcrfs_sd)), tmp_path / "model_nyu.ckpt")
    out = str(tmp_path / "out")
    cases = [
        (["--pixelformer-ckpt", str(tmp_path / "truncated.pth")], "not a PyTorch checkpoint"),
        (["--pixelformer-ckpt", str(tmp_path / "missing.pth")], "missing from the weights (1)"),
        (["--pixelformer-ckpt", str(tmp_path / "model_nyu.ckpt")], "use --newcrfs-ckpt"),
        (["--newcrfs-ckpt", good], "use --pixelformer-ckpt"),
        (["--swin-ckpt", good], "--pixelformer-ckpt"),
    ]
    for argv, expected in cases:
        variant = [] if argv[0] == "--swin-ckpt" else ["--variant", "nyu"]
        with pytest.raises(SystemExit) as exit_info:
            convert_main([*argv, *variant, "--out", out])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in err, (argv, err)
        assert "Traceback" not in err and err.startswith("error: ") and err.count("error: ") == 1
    for argv, expected in [
        (["--pixelformer-ckpt", good], "--pixelformer-ckpt needs --variant"),
        (["--pixelformer-ckpt", good, "--variant", "nyu", "--window", "7"], "belongs to"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            convert_main([*argv, "--out", out])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and expected in err.strip().splitlines()[-1], err
    assert not os.path.exists(out)  # nothing written
