"""The evaluation frame (issue 26): the model sees the frame the official evaluation feeds.

KITTI recipes evaluate at the KB-cropped 352x1216 frame, not the 352x1120 training crop; frames
that are not a multiple of the model's stride are resized to the nearest multiple (the hosts'
demo.py) or zero-padded (their Swin backbone), as `fit` says, and the protocol says which.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from configs import base
from dgr_jax import configlib, evaluate, protocol
from dgr_jax.evaluators import crops, frame
from dgr_jax.evaluators.depth_eval import DepthEvaluator

RECIPES = {
    "kitti_newcrfs": (352, 1216),
    "kitti_newcrfs_dgr": (352, 1216),
    "kitti_pixelformer": (352, 1216),
    "kitti_pixelformer_dgr": (352, 1216),
    "kitti_vit_dgr": (352, 1216),
    "nyu_newcrfs": (480, 640),
    "nyu_pixelformer": (480, 640),
    "nyu_vit_dgr": (480, 640),
    "nyu_cnn": (480, 640),
    "synthetic_vit_dgr": (128, 160),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_evaluates_at_the_official_frame_not_the_training_crop(name):
    config = configlib.load(f"configs/{name}.py")
    for eval_name, ev in config.evals.items():
        assert ev.input_size is None and ev.fit == "resize"
        assert evaluate.eval_frame_size(config, eval_name) == RECIPES[name]
    if name.startswith("kitti"):
        assert tuple(config.input.size) == protocol.KITTI_TRAIN_CROP  # training stays 352x1120


def test_eval_frame_size_follows_input_size_fit_and_the_model_stride():
    config = configlib.load("configs/nyu_newcrfs.py:smoke")  # Swin host: multiples of 32
    with config.unlocked():
        config.evals.test.update({"dataset": "synthetic_depth/indoor", "input_size": None})
        config.input.build.update({"height": 40, "width": 56})
    assert evaluate.data_frame(config, "test") == (40, 56)
    assert evaluate.eval_frame_size(config, "test") == (32, 64)  # nearest multiples
    with config.unlocked():
        config.evals.test.fit = "pad"
    assert evaluate.eval_frame_size(config, "test") == (64, 64)  # next multiples
    with config.unlocked():
        config.evals.test.fit = "none"
    with pytest.raises(ValueError, match="not a multiple of 32"):
        evaluate.eval_frame_size(config, "test")
    vit = configlib.load("configs/synthetic_vit_dgr.py:smoke")  # ViT patch 16
    with vit.unlocked():
        vit.input.build.update({"height": 40, "width": 56})
    assert evaluate.eval_frame_size(vit, "test") == (48, 64)  # 2.5 and 3.5 patches round up
    with vit.unlocked():
        vit.evals.test.input_size = (32, 48)
    assert evaluate.eval_frame_size(vit, "test") == (32, 48)
    assert frame.input_multiple({"encoder": {"name": "resnet"}}) == 1


FRAME = (40, 56)  # not a multiple of 32


def _records(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.integers(0, 256, (*FRAME, 3), dtype=np.uint8),
            "depth": rng.uniform(0.5, 9.0, FRAME).astype(np.float32),
            "id": f"im{i}",
        }
        for i in range(n)
    ]


def _evaluator(fit, seen, source):
    cfg = base.depth_eval("nyu_depth_v2_bts", crop="none", max_depth=10.0, fit=fit)
    cfg.update({"batch_size": 2, "num_pictures": 0})
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    evaluator = DepthEvaluator(
        cfg, name=fit, source=source, input_size=FRAME, mesh=mesh, multiple=32
    )

    def predict_fn(x):  # a per-pixel, flip-equivariant 'model' that records what it sees
        seen.append(tuple(x.shape[1:3]))
        return 3.0 + 0.5 * x[..., :1]

    return evaluator, predict_fn


def _direct(records, depth_of):
    """The nine-metric abs_rel / rmse of predictions made directly on each frame (numpy)."""
    abs_rel, rmse = [], []
    for r in records:
        pred = np.clip(depth_of(r["image"]), 1e-3, 10.0)
        gt = r["depth"]
        abs_rel.append(np.mean(np.abs(gt - pred) / gt))
        rmse.append(np.sqrt(np.mean((gt - pred) ** 2)))
    return np.mean(abs_rel), np.mean(rmse)


def _normalised_red(image):
    mean, std = protocol.IMAGENET_MEAN[0], protocol.IMAGENET_STD[0]
    return (image[..., 0].astype(np.float32) / 255.0 - mean) / std


def test_pad_feeds_the_frame_plus_zeros_and_crops_the_prediction_back(tmp_path):
    records, seen = _records(), []
    evaluator, predict_fn = _evaluator("pad", seen, records)
    metrics = evaluator.run(jax.jit(predict_fn), out_dir=str(tmp_path))
    assert set(seen) == {(64, 64)}
    abs_rel, rmse = _direct(records, lambda im: 3.0 + 0.5 * _normalised_red(im))
    assert metrics["abs_rel"] == pytest.approx(abs_rel, abs=1e-6)
    assert metrics["rmse"] == pytest.approx(rmse, abs=1e-5)
    written = json.loads((tmp_path / "metrics.json").read_text())["protocol"]
    assert written["resize"] == "none" and written["input_size"] == [64, 64]
    assert "zero-padded" in written["input"] and "40x56" in written["input"]


def test_resize_goes_to_the_nearest_multiple_and_back_and_says_so(tmp_path):
    records, seen = _records(), []
    evaluator, predict_fn = _evaluator("resize", seen, records)
    metrics = evaluator.run(jax.jit(predict_fn), out_dir=str(tmp_path))
    assert set(seen) == {(32, 64)}

    def round_trip(image):
        small = jax.image.resize(image.astype(np.float32), (32, 64, 3), "linear", antialias=False)
        depth = 3.0 + 0.5 * _normalised_red(np.asarray(small))
        return np.asarray(jax.image.resize(depth, FRAME, "linear", antialias=False))

    abs_rel, _ = _direct(records, round_trip)
    assert metrics["abs_rel"] == pytest.approx(abs_rel, abs=1e-5)
    written = json.loads((tmp_path / "metrics.json").read_text())["protocol"]
    assert "image -> 32x64 model input" in written["resize"]
    assert "prediction -> ground-truth size" in written["resize"]
    assert written["input"].startswith("the 40x56 frame resized (bilinear) to 32x64")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        _evaluator("none", [], records)


@pytest.mark.slow
def test_kitti_recipe_with_converted_checkpoint_sees_the_kb_frame_unresized(tmp_path, capsys):
    """Official-layout NeWCRFs .ckpt -> CLI -> the KITTI recipe's evaluator on 375x1242 frames:
    no resize in the protocol, and the same metrics as the KB-cropped frame fed directly."""
    torch = pytest.importorskip("torch")
    from newcrfs_layout import (
        arch_of,
        official_newcrfs_keys,
        released_layout,
        synthetic_state_dict,
        to_torch,
    )

    from dgr_jax import sharding
    from dgr_jax.convert.__main__ import main as convert_main
    from dgr_jax.data import fake_manual
    from dgr_jax.evaluators.tta import flip_blend

    config = configlib.load("configs/kitti_newcrfs.py:smoke")
    sd = synthetic_state_dict(official_newcrfs_keys(arch_of(config.model)), seed=3)
    torch.save(to_torch(released_layout(sd)), tmp_path / "model_kittieigen.ckpt")
    weights_dir = tmp_path / "converted"
    assert convert_main(["--newcrfs-ckpt", str(tmp_path / "model_kittieigen.ckpt"),
                         "--variant", "kitti", "--out", str(weights_dir)]) == 0  # fmt: skip
    capsys.readouterr()
    fake = fake_manual.make_kitti(tmp_path / "m", size=protocol.KITTI_FULL_FRAME, frames=1)
    with config.unlocked():
        config.init_from = str(weights_dir)
        config.data_dir = str(tmp_path / "d")
        config.input.manual_dir = str(fake.root)
        config.mesh.data = 1
        config.evals.test.update({"input_size": None, "batch_size": 1, "num_pictures": 0})
        config.evals.test.flip_tta = "blend"
    assert evaluate.eval_frame_size(config, "test") == (352, 1216)

    model_def, mesh, state, state_sh, _ = evaluate.restore_for_inference(config, str(tmp_path))
    evaluators = evaluate.make_evaluators(config, config.data_dir, mesh)
    predict = evaluate.make_predict_fn(model_def, state_sh, sharding.batch_sharding(mesh))
    out_root = str(tmp_path / "eval")
    flat = evaluate.run_all(evaluators, predict, state, step=0, out_root=out_root)
    written = json.loads((tmp_path / "eval/test/metrics.json").read_text())["protocol"]
    assert written["resize"] == "none" and written["input_size"] == [352, 1216]
    assert written["input"] == "the 352x1216 frame as read, unchanged"
    assert flat["test/num_images"] == 2  # the None line is not in the split

    # Directly: KB crop, normalise, the model at 352x1216 (and mirrored), blend, clamp, Garg.
    source = evaluators["test"].source
    mean, std = np.asarray(protocol.IMAGENET_MEAN), np.asarray(protocol.IMAGENET_STD)
    abs_rel, rmse = [], []
    for i in range(len(source)):
        image = crops.kb_crop(np.asarray(source[i]["image"]))
        gt = crops.kb_crop(np.asarray(source[i]["depth"], np.float32))
        x = ((image / 255.0 - mean) / std).astype(np.float32)[None]
        pred = predict(state["params"], state["rest"], x)
        pred_flipped = predict(state["params"], state["rest"], np.ascontiguousarray(x[:, :, ::-1]))
        depth = np.asarray(flip_blend(pred[..., 0], pred_flipped[..., 0]))[0]
        depth = np.clip(depth, protocol.MIN_DEPTH_EVAL, protocol.KITTI_MAX_DEPTH)
        valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < protocol.KITTI_MAX_DEPTH)
        valid &= crops.garg_crop_mask(*gt.shape)
        g, p = gt[valid], depth[valid]
        abs_rel.append(np.mean(np.abs(g - p) / g))
        rmse.append(np.sqrt(np.mean((g - p) ** 2)))
    assert flat["test/abs_rel"] == pytest.approx(np.mean(abs_rel), rel=1e-5)
    assert flat["test/rmse"] == pytest.approx(np.mean(rmse), rel=1e-5)


def test_input_size_none_from_the_command_line_means_the_frame():
    assert frame.configured_size((None,)) is None and frame.configured_size(None) is None
    assert frame.configured_size(()) is None
    assert frame.configured_size([352, 1216]) == (352, 1216)
    config = configlib.load("configs/kitti_newcrfs.py:smoke")
    with config.unlocked():
        config.evals.test.input_size = (None,)  # what --config.evals.test.input_size=None gives
    assert evaluate.eval_frame_size(config, "test") == (352, 1216)


def test_the_protocol_words_say_how_the_frame_reached_the_model():
    assert frame.describe((352, 1216), (352, 1216), "resize", explicit=False) == (
        "the 352x1216 frame as read, unchanged"
    )
    explicit = frame.describe((352, 1120), (352, 1120), "resize", explicit=True)
    assert explicit.startswith("frames resized (bilinear) to the configured input_size 352x1120")
    assert "zero-padded to 64x64" in frame.describe((40, 56), (64, 64), "pad", explicit=True)


def test_predict_feeds_images_as_read_fitted_to_the_model():
    from dgr_jax.predict import model_input_size

    swin = configlib.load("configs/kitti_newcrfs.py").model
    assert model_input_size((352, 1216), swin) == (352, 1216)  # not the 352x1120 training crop
    assert model_input_size((375, 1242), swin) == (384, 1248)  # nearest multiples of 32
    assert model_input_size((375, 1242), swin, (352, 1216)) == (352, 1216)
    resnet = configlib.load("configs/nyu_cnn.py").model
    assert model_input_size((375, 1242), resnet) == (375, 1242)
