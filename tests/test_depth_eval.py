"""DepthEvaluator end to end on tiny in-memory sources and fake devices."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from configs import base
from dgr_jax import protocol
from dgr_jax.evaluators import crops
from dgr_jax.evaluators.continuity import continuity_metric_names, continuity_metrics
from dgr_jax.evaluators.depth_eval import DepthEvaluator
from dgr_jax.evaluators.edges import compute_edge_metrics
from dgr_jax.registry import EVALUATORS

INPUT = (16, 24)


def _normalised_red(image):
    return (
        image[..., 0].astype(np.float32) / 255.0 - protocol.IMAGENET_MEAN[0]
    ) / protocol.IMAGENET_STD[0]


@jax.jit
def predict_fn(x):
    """A flip-equivariant 'model': depth = 3 + 0.5 * normalised red channel, (B, H, W, 1)."""
    return 3.0 + 0.5 * x[..., :1]


def expected_prediction(image, gt_shape):
    """The evaluator's prediction for `predict_fn`: same formula; images of another size are
    constant, so the resize round trip leaves the value unchanged."""
    if image.shape[:2] != gt_shape:
        return np.full(gt_shape, 3.0 + 0.5 * _normalised_red(image)[0, 0], np.float32)
    return 3.0 + 0.5 * _normalised_red(image)


def reference_metrics(gt, pred):
    thresh = np.maximum(gt / pred, pred / gt)
    err = np.log(pred) - np.log(gt)
    return {
        "abs_rel": np.mean(np.abs(gt - pred) / gt),
        "rmse": np.sqrt(np.mean((gt - pred) ** 2)),
        "silog": 100 * np.sqrt(np.mean(err**2) - np.mean(err) ** 2),
        "d1": np.mean(thresh < 1.25),
    }


def _source(seed=0):
    """5 records: three at the model input size with random content, two smaller and flat."""
    rng = np.random.default_rng(seed)
    records = []
    for i, size in enumerate([INPUT, (12, 20), INPUT, (12, 20), INPUT]):
        if size == INPUT:
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        else:
            image = np.full((*size, 3), 40 + 60 * i, np.uint8)
        depth = rng.uniform(0.5, 12.0, size).astype(np.float32)  # some above the 10 m cap
        depth[rng.uniform(size=size) < 0.2] = 0.0
        records.append(
            {
                "image": image,
                "depth": depth,
                "focal": np.float32(500.0),
                "id": f"img{i}".encode() if i % 2 else f"img{i}",
            }
        )
    return records


def _config(**kw):
    c = base.depth_eval(
        "synthetic_depth/indoor",
        crop="eigen",
        max_depth=protocol.NYU_MAX_DEPTH,
        batch_size=4,
        num_pictures=1,
    )
    c.update(kw)
    return c


def test_registered():
    assert EVALUATORS.get("depth") is DepthEvaluator


def test_counts_each_image_once_and_matches_numpy(tmp_path):
    source = _source()
    mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))  # batch 4 -> steps of 4 and 1 (+3 pad)
    evaluator = DepthEvaluator(_config(), name="test", source=source, input_size=INPUT, mesh=mesh)
    out = str(tmp_path / "eval" / "test")
    result = evaluator.run(predict_fn, out_dir=out, step=7)

    assert result["num_images"] == 5 and result["num_valid_images"] == 5
    expected, edges = {k: [] for k in ("abs_rel", "rmse", "silog", "d1")}, []
    continuity = []
    for r in source:
        gt = r["depth"]
        pred = np.clip(expected_prediction(r["image"], gt.shape), protocol.MIN_DEPTH_EVAL, 10.0)
        valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < 10.0) & crops.eigen_crop_mask(*gt.shape)
        for k, v in reference_metrics(gt[valid].astype(np.float64), pred[valid]).items():
            expected[k].append(v)
        edges.append(compute_edge_metrics(pred[None], gt[None], valid[None])["si_boundary_f1"])
        # The record's focal (500 px) reaches the continuity metrics.
        cont = continuity_metrics(pred[None], gt[None], valid[None], focal=r["focal"])
        continuity.append({k: float(v[0]) for k, v in cont.items()})
    for k, values in expected.items():
        np.testing.assert_allclose(result[k], np.mean(values), rtol=1e-4, err_msg=k)
    np.testing.assert_allclose(result["si_boundary_f1"], np.mean(edges), rtol=1e-4)
    for k in continuity_metric_names():
        # Random, holey ground truth: some metrics have no smooth pixel in any image (NaN).
        values = [c[k] for c in continuity if not np.isnan(c[k])]
        mean = np.mean(values) if values else np.nan
        np.testing.assert_allclose(result[k], mean, rtol=1e-3, err_msg=k)

    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["step"] == 7 and metrics["num_images"] == 5
    assert metrics["protocol"]["crop"] == "eigen" and metrics["protocol"]["flip_tta"] == "blend"
    assert (
        metrics["protocol"]["kb_crop"] is False
        and "image -> 16x24" in metrics["protocol"]["resize"]
    )
    assert {"abs_rel", "d3", "grad_err", "edge_f1_0.25", "si_boundary_f1"} <= set(metrics)
    assert set(continuity_metric_names()) <= set(metrics)
    with open(os.path.join(out, "per_image.csv")) as f:
        rows = list(csv.DictReader(f))
    assert set(continuity_metric_names()) <= set(rows[0])
    assert sorted(int(r["index"]) for r in rows) == [0, 1, 2, 3, 4]
    assert [r["id"] for r in rows] == [f"img{i}" for i in range(5)]
    np.testing.assert_allclose([float(r["abs_rel"]) for r in rows], expected["abs_rel"], rtol=1e-4)
    with open(os.path.join(out, "report.md")) as f:
        text = f.read()
    assert "## Protocol" in text and "Eigen crop" in text and "No published numbers" in text
    assert "| normal_err_mean |" in text and "| seam_ratio_16 |" in text
    pictures = sorted(os.listdir(os.path.join(out, "images")))
    assert len(pictures) == 2 and all(p.endswith(".png") for p in pictures)
    worst = int(np.argmax(expected["abs_rel"]))
    assert any(p.startswith(f"worst_{worst:05d}") for p in pictures)


def test_predictions_are_what_the_metrics_see():
    """`predictions` (the ablation study's figures) returns the clamped final prediction."""
    source = _source()
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
    evaluator = DepthEvaluator(_config(), name="t", source=source, input_size=INPUT, mesh=mesh)
    out = evaluator.predictions(predict_fn, [4, 1, 0])  # 3 images in batches of 4
    assert [o["id"] for o in out] == ["img4", "img1", "img0"]
    for o, i in zip(out, (4, 1, 0)):
        gt = source[i]["depth"]
        pred = np.clip(expected_prediction(source[i]["image"], gt.shape), 1e-3, 10.0)
        np.testing.assert_allclose(o["depth"], pred, rtol=1e-5)
        valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < 10.0) & crops.eigen_crop_mask(*gt.shape)
        np.testing.assert_array_equal(o["valid"], valid)
        assert o["image"].shape == (*gt.shape, 3) and o["gt"] is not None


def test_padding_and_empty_ground_truth_on_8_devices(tmp_path):
    source = _source(seed=1)[:3]
    source[1] = dict(source[1], depth=np.zeros_like(source[1]["depth"]))  # no valid pixel
    evaluator = DepthEvaluator(
        _config(flip_tta="none", crop="none", num_pictures=0),
        name="t",
        source=source,
        input_size=INPUT,
    )
    assert evaluator.global_batch == 8  # batch 4 padded to the 8-device data axis
    result = evaluator.run(predict_fn)
    assert result["num_images"] == 3 and result["num_valid_images"] == 2
    assert np.isfinite(result["abs_rel"])
    # num_images keeps the first N; an empty source gives NaN means, not a crash.
    first = DepthEvaluator(
        _config(flip_tta="none", crop="none", num_pictures=0, num_images=1),
        name="t",
        source=source,
        input_size=INPUT,
    )
    np.testing.assert_allclose(first.run(predict_fn)["abs_rel"], per_image_abs_rel(source[0]))
    empty = DepthEvaluator(_config(), name="e", source=[], input_size=INPUT)
    result = empty.run(predict_fn, out_dir=str(tmp_path / "empty"))
    assert result["num_images"] == 0 and np.isnan(result["abs_rel"])
    assert os.path.exists(tmp_path / "empty" / "report.md")


def per_image_abs_rel(record):
    gt = record["depth"]
    pred = expected_prediction(record["image"], gt.shape)
    valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < 10.0)
    return reference_metrics(gt[valid].astype(np.float64), pred[valid])["abs_rel"]


def test_kitti_kb_crop_variants():
    """KB crop + Garg on the cropped GT (NeWCRFs) and on the full-resolution GT (BTS)."""
    rng = np.random.default_rng(2)
    source = []
    for i, size in enumerate([(375, 1242), (370, 1224)]):
        gt = np.where(rng.uniform(size=size) < 0.3, rng.uniform(1, 90, size), 0).astype(np.float32)
        source.append(
            {
                "image": np.full((*size, 3), 100 + 50 * i, np.uint8),
                "depth": gt,
                "focal": np.float32(721.0),
                "id": str(i),
            }
        )
    kb = (protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH)
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))  # keep the big frames' batch at 2
    for crop in ("garg", "garg_full_res"):
        cfg = _config(
            crop=crop,
            kb_crop=True,
            max_depth=protocol.KITTI_MAX_DEPTH,
            num_pictures=0,
            batch_size=2,
            dataset="kitti_depth",
        )
        evaluator = DepthEvaluator(cfg, name=crop, source=source, input_size=kb, mesh=mesh)
        result = evaluator.run(predict_fn)
        expected = []
        for r in source:
            value = 3.0 + 0.5 * _normalised_red(r["image"])[0, 0]
            gt = r["depth"] if crop == "garg_full_res" else crops.kb_crop(r["depth"])
            valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < 80) & crops.garg_crop_mask(*gt.shape)
            g = gt[valid].astype(np.float64)
            expected.append(np.mean(np.abs(g - value) / g))
        np.testing.assert_allclose(result["abs_rel"], np.mean(expected), rtol=1e-4, err_msg=crop)


def test_invalid_config():
    with pytest.raises(ValueError, match="kb_crop"):
        DepthEvaluator(_config(crop="garg_full_res"), name="x", source=[], input_size=INPUT)
    with pytest.raises(ValueError, match="unknown crop"):
        DepthEvaluator(_config(crop="garg2"), name="x", source=[], input_size=INPUT)


@pytest.mark.parametrize("mode", ["blend", "mean", "none"])
def test_flip_tta_modes(mode):
    """A model that is not flip-equivariant: the evaluator must blend pred(x) and pred(flip x)."""
    ramp = jnp.linspace(1.0, 4.0, INPUT[1])[None, None, :, None]

    @jax.jit
    def ramp_fn(x):
        return ramp + 0.1 * x[..., :1]

    source = [r for r in _source(seed=3) if r["image"].shape[:2] == INPUT][:2]
    cfg = _config(flip_tta=mode, crop="none", num_pictures=0)
    mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
    result = DepthEvaluator(cfg, name=mode, source=source, input_size=INPUT, mesh=mesh).run(ramp_fn)
    w = INPUT[1]
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)
    w_flipped = 1.0 - np.clip(20.0 * (xs - 0.05), 0.0, 1.0)  # NeWCRFs post_process_depth
    expected = []
    for r in source:
        x = _normalised_red(r["image"])
        plain = np.asarray(ramp)[0, 0, :, 0] + 0.1 * x
        unflipped = (np.asarray(ramp)[0, 0, :, 0] + 0.1 * x[:, ::-1])[:, ::-1]
        mean = 0.5 * (plain + unflipped)
        pred = {
            "blend": w_flipped[::-1] * plain
            + w_flipped * unflipped
            + (1 - w_flipped - w_flipped[::-1]) * mean,
            "mean": mean,
            "none": plain,
        }[mode]
        gt = r["depth"]
        valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < 10.0)
        expected.append(reference_metrics(gt[valid].astype(np.float64), pred[valid])["abs_rel"])
    np.testing.assert_allclose(result["abs_rel"], np.mean(expected), rtol=1e-4)


def test_two_processes_match_one(tmp_path):
    """2 processes x 2 CPU devices (gloo on loopback) give the single-process numbers; only
    process 0 writes files."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    # No persistent compilation cache across processes (dgr_jax/compile_cache.py: only process 0
    # writes it, so a warm process 0 would reach the first collective long before process 1).
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    worker = os.path.join(os.path.dirname(__file__), "multiprocess_eval_worker.py")
    outs = [str(tmp_path / f"p{i}") for i in range(2)]
    log_paths = [tmp_path / f"process{i}.log" for i in range(2)]
    procs = []
    for i in range(2):  # output to files: a full pipe would stall both at a collective
        with open(log_paths[i], "w") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, worker, str(port), str(i), outs[i]],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    for p in procs:
        p.wait(timeout=240)
    logs = [path.read_text() for path in log_paths]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    results = [
        json.loads(line[len("RESULT ") :])
        for log in logs
        for line in log.splitlines()
        if line.startswith("RESULT ")
    ]
    single = DepthEvaluator(_config(), name="sp", source=_source(), input_size=INPUT).run(
        predict_fn
    )
    assert len(results) == 2 and results[0]["num_images"] == 5
    for key, value in single.items():
        for result in results:
            np.testing.assert_allclose(result[key], value, rtol=1e-5, err_msg=key)
    assert os.path.exists(os.path.join(outs[0], "metrics.json"))
    assert not os.path.exists(os.path.join(outs[1], "metrics.json"))
    with open(os.path.join(outs[0], "per_image.csv")) as f:
        assert [r["id"] for r in csv.DictReader(f)] == [f"img{i}" for i in range(5)]
