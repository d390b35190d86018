"""depth_files: your own RGB + depth pairs from file lists; formats, None lines, errors, gs://,
the smoke recipe end to end (build, train, evaluate, predict on the test list)."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
from depth_files_helpers import SCALE, make_pairs
from gcs_emulator import running
from PIL import Image

from dgr_jax import configlib, storage
from dgr_jax.data import build, datasets, input_size
from dgr_jax.data.builders.base import DatasetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "depth_files"
ARGS = {"depth_scale": SCALE, "max_depth": 10.0}


def _records(src) -> dict:
    return {src[i]["id"].decode(): src[i] for i in range(len(src))}


def _expected_depth(root: pathlib.Path, depth_name: str) -> np.ndarray:
    path = root / depth_name
    if depth_name.endswith(".png"):
        with Image.open(path) as im:
            depth = np.asarray(im).astype(np.float32) / np.float32(SCALE)
    elif depth_name.endswith(".npy"):
        depth = np.load(path)
    else:
        with Image.open(path) as im:
            depth = np.asarray(im, np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


def _data_files(data_dir) -> list[str]:
    return [f for _, _, files in os.walk(data_dir) for f in files]


def test_every_depth_format_and_the_none_line_build_exactly(pairs, tmp_path):
    builder = datasets.ensure_built(NAME, str(tmp_path), manual_dir=str(pairs), build_args=ARGS)
    splits = builder.info.metadata["splits"]
    assert splits["train"]["examples"] == 8 and splits["train"]["without_depth"] == 0
    assert splits["test"]["examples"] == 4 and splits["test"]["without_depth"] == 1
    assert splits["train"]["min_size"] == [32, 64]
    for split in ("train", "test"):
        records = _records(datasets.open_split(NAME, split, str(tmp_path), manual_dir=str(pairs)))
        lines = (pairs / f"{split}.txt").read_text().split("\n")
        for line in filter(None, lines):
            rgb, depth_name, focal = line.split()
            rec = records[rgb.rsplit(".", 1)[0]]
            with Image.open(pairs / rgb) as im:
                np.testing.assert_array_equal(rec["image"], np.asarray(im))
            if depth_name == "None":
                assert not rec["depth"].any()  # all invalid: left out of the metrics
            else:
                np.testing.assert_array_equal(rec["depth"], _expected_depth(pairs, depth_name))
                assert rec["depth"].max() > 0 and np.isfinite(rec["depth"]).all()
            assert rec["focal"] == pytest.approx(float(focal))
    kinds = {n.rsplit(".", 1)[-1] for n in os.listdir(pairs / "depth")}
    assert kinds == {"png", "npy", "tiff"}


def test_build_arguments_name_the_build_and_crop_and_cap_the_depth(pairs, tmp_path):
    a = datasets.get_builder(NAME, str(tmp_path), manual_dir=str(pairs), build_args=ARGS)
    args = dict(ARGS, depth_scale=2 * SCALE, max_depth=4.0, test_crop="4,8,16,32")
    b = datasets.ensure_built(NAME, str(tmp_path), manual_dir=str(pairs), build_args=args)
    assert a.data_path != b.data_path  # two scales never share a build
    assert "scale2000_max4_testcrop4x8x16x32" in os.fspath(b.data_path)
    test = _records(
        datasets.open_split(NAME, "test", str(tmp_path), manual_dir=str(pairs), build_args=args)
    )
    rec = test["rgb/test_000"]  # its depth is the 16-bit PNG
    assert rec["image"].shape == (16, 32, 3) and rec["depth"].shape == (16, 32)
    full = _expected_depth(pairs, "depth/test_000.png")[4:20, 8:40] / 2
    np.testing.assert_allclose(rec["depth"], np.where(full > 4.0, 0, full), rtol=1e-6)
    assert b.info.metadata["splits"]["test"]["max_size"] == [16, 32]


def _broken(pairs, tmp_path, kind: str) -> pathlib.Path:
    root = tmp_path / "broken"
    storage.copy_tree(pairs, root)
    if kind == "missing":
        (root / "depth" / "train_001.npy").unlink()
    elif kind == "mismatch":
        Image.fromarray(np.zeros((30, 64), np.uint16)).save(root / "depth" / "test_000.png")
    else:  # unreadable
        (root / "rgb" / "train_002.png").write_bytes(b"not an image")
    return root


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", r"1 missing files:\n    .*train_001\.npy  \(line 2 of .*train\.txt\)"),
        ("mismatch", r"1 RGB / depth size mismatches.*\n.* is 32x64, its depth .* is 30x64"),
        ("unreadable", r"1 unreadable files:\n    .*train_002\.png: "),
    ],
)
def test_a_bad_line_fails_before_anything_is_written(pairs, tmp_path, kind, message):
    root = _broken(pairs, tmp_path, kind)
    data_dir = tmp_path / "data"
    with pytest.raises(DatasetError, match=message) as info:
        datasets.ensure_built(NAME, str(data_dir), manual_dir=str(root), build_args=ARGS)
    text = str(info.value)
    assert "train: " in text and "test: " in text and "Nothing was written" in text
    assert not any(".array_record" in f or f == "dataset_info.json" for f in _data_files(data_dir))


def test_the_build_command_prints_one_error_without_a_traceback(pairs, tmp_path, capsys):
    root = _broken(pairs, tmp_path, "missing")
    code = build.main([NAME, "--manual_dir", str(root), "--data_dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: depth_files: the file lists have problems")
    assert "Traceback" not in err
    code = build.main(
        [
            NAME,
            "--manual_dir",
            str(pairs),
            "--data_dir",
            str(tmp_path / "d"),
            "--depth_scale",
            "256",
        ]
    )
    assert code == 0 and "test: 4, train: 8" in capsys.readouterr().out


def test_list_format_errors_name_the_line(pairs, tmp_path):
    root = tmp_path / "lists"
    storage.copy_tree(pairs, root)
    (root / "test.txt").write_text("rgb/test_000.png depth/test_000.jpg\n")
    with pytest.raises(DatasetError, match=r"line 1 of .*test\.txt: depth file .* unknown suffix"):
        datasets.ensure_built(NAME, str(tmp_path / "d"), manual_dir=str(root), build_args=ARGS)
    (root / "test.txt").unlink()
    with pytest.raises(DatasetError, match=r"test\.txt not found"):
        datasets.ensure_built(NAME, str(tmp_path / "d"), manual_dir=str(root), build_args=ARGS)


def test_input_size_from_the_data(pairs, tmp_path):
    config = configlib.load(os.path.join(ROOT, "configs/depth_files_vit_dgr.py:smoke"))
    with config.unlocked():
        config.input.manual_dir = str(pairs)
        config.input.build.test_crop = ""
    assert input_size.from_data(config)
    resolved = input_size.resolve(config, str(tmp_path))
    assert tuple(resolved.input.size) == (32, 64)
    assert "random_crop(32,64)" in resolved.input.pp_train
    assert tuple(resolved.model.encoder.image_size) == (32, 64)
    assert tuple(resolved.loss.otdl.grid_size) == (4, 8)
    assert tuple(config.input.size) == (0, 0)  # the caller's config is untouched


def test_max_depth_override_reaches_model_evaluation_and_build():
    config = configlib.load(
        os.path.join(ROOT, "configs/depth_files_vit_dgr.py"), ["input.max_depth=20"]
    )
    assert config.model.head.max_depth == config.evals.test.max_depth == 20
    assert config.input.build.max_depth == 20
    assert config.evals.test.crop == "none"


def test_manual_dir_and_data_dir_on_gs(pairs, tmp_path):
    with running() as gcs:
        storage.copy_tree(pairs, gcs.url("pairs"))
        data_dir = gcs.url("tfds")
        src = datasets.open_split(
            NAME, "test", data_dir, manual_dir=gcs.url("pairs"), build_args=ARGS
        )
        local = datasets.open_split(
            NAME, "test", str(tmp_path), manual_dir=str(pairs), build_args=ARGS
        )
        remote_records, local_records = _records(src), _records(local)
        assert remote_records.keys() == local_records.keys()
        for key, rec in local_records.items():
            np.testing.assert_array_equal(remote_records[key]["depth"], rec["depth"])


@pytest.mark.slow
def test_smoke_recipe_trains_evaluates_and_predicts_the_test_list(pairs, tmp_path):
    from dgr_jax import predict
    from dgr_jax.trainer import train_and_evaluate

    config = configlib.load(
        os.path.join(ROOT, "configs/depth_files_vit_dgr.py:smoke"),
        [f"input.manual_dir={pairs}", "input.build.depth_scale=1000", "input.max_depth=10"],
    )
    workdir = tmp_path / "run"
    metrics = train_and_evaluate(config, str(workdir))
    assert np.isfinite(metrics["test/abs_rel"])
    saved = json.loads((workdir / "eval" / "test" / "metrics.json").read_text())
    assert saved["num_images"] == 4 and saved["num_valid_images"] == 3  # the None line counted
    assert json.loads((workdir / "config.json").read_text())["input"]["size"] == [32, 64]
    out = tmp_path / "pred"
    code = predict.main(
        ["--workdir", str(workdir), "--input", str(pairs / "test.txt"), "--output", str(out)]
    )
    assert code == 0
    assert sorted(p.name for p in out.glob("*_depth.png")) == [
        f"test_{i:03d}_depth.png" for i in range(4)
    ]
    depth = np.load(out / "test_003.npy")  # the line without ground truth is predicted too
    assert depth.shape == (32, 64) and (depth > 0).all()


@pytest.mark.slow
def test_smoke_recipe_fine_tunes_converted_weights(pairs, tmp_path, capsys):
    from flax import nnx

    from dgr_jax.convert.checkpoint import Converted, save_converted
    from dgr_jax.models import build_model
    from dgr_jax.trainer import train_and_evaluate

    source = configlib.load(os.path.join(ROOT, "configs/synthetic_vit_dgr.py:smoke"))
    weights = tmp_path / "weights"
    model = build_model(source.model, rngs=nnx.Rngs(0))
    save_converted(weights, Converted(model, source.model.to_dict(), ()))
    config = configlib.load(
        os.path.join(ROOT, f"configs/depth_files_vit_dgr.py:smoke,weights={weights}"),
        [f"input.manual_dir={pairs}", "total_steps=2", "evals.test.num_pictures=0"],
    )
    assert config.init_from == str(weights) and config.model.encoder.variant == "tiny_test"
    assert config.input.max_depth == source.model.head.max_depth  # the weights' range
    metrics = train_and_evaluate(config, str(tmp_path / "run"))
    assert np.isfinite(metrics["test/abs_rel"])
    assert "loaded" in capsys.readouterr().out  # the weights' report
