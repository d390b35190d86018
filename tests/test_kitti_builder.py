"""kitti_depth_eigen: built from fake KITTI copies; exact values, None lines, layouts, errors."""

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from dgr_jax import configlib, protocol
from dgr_jax.data import augment, build, datasets, fake_manual, pipeline
from dgr_jax.data.builders import kitti_depth_eigen
from dgr_jax.data.builders.base import DatasetError

NAME = "kitti_depth_eigen"
GT = kitti_depth_eigen.GT_DIR


def _depth(png: np.ndarray) -> np.ndarray:
    return png.astype(np.float32) / np.float32(protocol.KITTI_DEPTH_PNG_SCALE)


def _records(src) -> dict:
    return {src[i]["id"].decode(): src[i] for i in range(len(src))}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_manual.make_kitti(tmp_path_factory.mktemp("kitti_manual"))


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("kitti_data"))
    datasets.ensure_built(NAME, data_dir, manual_dir=str(fake.root))
    return data_dir


@pytest.mark.parametrize("split", ["train", "test"])
def test_records_hold_full_resolution_pixels_and_depth_png_over_256(fake, built, split):
    records = _records(datasets.open_split(NAME, split, built))
    assert set(records) == set(fake.depth_png[split])  # the None line is not among them
    for ex_id, rec in records.items():
        png = fake.depth_png[split][ex_id]
        assert np.array_equal(rec["depth"], _depth(png))  # exact, float32 / float32
        assert np.array_equal(rec["depth"] > 0, png > 0)  # sparse: invalid stays 0
        with Image.open(fake.image_file[split][ex_id]) as im:
            assert np.array_equal(rec["image"], np.asarray(im))  # never cropped or resized
        assert rec["focal"] == pytest.approx(fake.focal[split][ex_id])  # each line's own


def test_ground_truth_is_found_in_train_val_and_merged_folders(fake):
    drives = kitti_depth_eigen.find_drives(fake.root / GT)
    assert drives["2011_09_26_drive_0001_sync"] == fake.root / GT / "train"
    assert drives["2011_09_26_drive_0009_sync"] == fake.root / GT / "val"
    assert drives["2011_09_28_drive_0037_sync"] == fake.root / GT  # BTS users merge them


def test_lines_without_ground_truth_are_skipped_and_counted(fake, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dgr_jax.data"):
        builder = datasets.ensure_built(NAME, str(tmp_path), manual_dir=str(fake.root))
    assert builder.info.splits["test"].num_examples == 4
    assert "1 of 5 lines of eigen_test_files_with_gt.txt have no ground truth" in caplog.text
    for count in (protocol.KITTI_EIGEN_TRAIN_COUNT, protocol.KITTI_EIGEN_TEST_LINES):
        assert f"standard copies have {count:,}" in caplog.text


def test_bts_kitti_dataset_layout_without_raw_folder(tmp_path):
    fake = fake_manual.make_kitti(tmp_path / "m", raw_subdir=False)
    records = _records(datasets.open_split(NAME, "train", str(tmp_path), manual_dir=str(fake.root)))
    assert set(records) == set(fake.depth_png["train"])


def test_config_pipeline_on_kitti_sized_records(tmp_path):
    config = configlib.load("configs/kitti_vit_dgr.py")
    assert config.input.pp_train.startswith("kb_crop|")
    assert config.loss.min_depth == protocol.KITTI_MIN_DEPTH_LOSS
    assert config.model.head.max_depth == protocol.KITTI_MAX_DEPTH
    assert config.evals.test.crop == "garg" and config.evals.test.kb_crop
    assert config.evals.test_bts_full_res.crop == "garg_full_res"
    assert config.evals.test.max_depth == protocol.KITTI_MAX_DEPTH
    fake = fake_manual.make_kitti(tmp_path / "m", size=(375, 1242), frames=1)
    src = datasets.open_split(NAME, "train", str(tmp_path / "d"), manual_dir=str(fake.root))
    assert src[0]["image"].shape == (375, 1242, 3)  # stored uncropped
    batch = next(pipeline.train_iterator(src, pp=config.input.pp_train, global_batch=2, seed=0))
    assert batch["image"].shape == (2, *protocol.KITTI_TRAIN_CROP, 3)
    assert batch["depth"].shape == (2, *protocol.KITTI_TRAIN_CROP)
    assert augment.parse(configlib.load("configs/kitti_vit_dgr.py:smoke").input.pp_train)


# ----------------------------------------------------------------------------------------------
# Error paths.
# ----------------------------------------------------------------------------------------------


def _copy(fake, tmp_path):
    manual_dir = tmp_path / "m"
    shutil.copytree(fake.root, manual_dir)
    return manual_dir


def _build(manual_dir, data_dir, **build_args):
    return datasets.ensure_built(
        NAME, str(data_dir), manual_dir=str(manual_dir), build_args=build_args
    )


def test_unbuilt_without_manual_dir_says_what_to_place_where(tmp_path):
    with pytest.raises(DatasetError) as e:
        datasets.open_split(NAME, "test", str(tmp_path))
    msg = str(e.value)
    assert "no manual dir was given" in msg
    for part in ("M/raw/<date>/", f"M/{GT}/[train/|val/]", kitti_depth_eigen.TEST_LIST):
        assert part in msg
    assert f"python -m dgr_jax.data.build {NAME} --manual_dir M" in msg
    assert "KITTI website" in msg and "train_test_inputs" in msg


def test_missing_ground_truth_file_names_it_and_its_line(fake, tmp_path, caplog):
    manual_dir = _copy(fake, tmp_path)
    ex_id = sorted(fake.depth_png["test"])[0]
    drive, frame = ex_id.split("/")[1], ex_id.rsplit("/", 1)[1]
    gone = next((manual_dir / GT).rglob(f"{drive}/proj_depth/groundtruth/image_02/{frame}.png"))
    gone.unlink()
    with pytest.raises(DatasetError) as e:
        _build(manual_dir, tmp_path / "d")
    msg = str(e.value)
    assert str(gone) in msg and "line " in msg and kitti_depth_eigen.TEST_LIST in msg
    with caplog.at_level(logging.WARNING, logger="dgr_jax.data"):
        builder = _build(manual_dir, tmp_path / "d", skip_missing=True)
    assert builder.info.splits["test"].num_examples == 3
    assert "left out (--skip_missing)" in caplog.text


def test_missing_raw_image_and_missing_annotation_folder(fake, tmp_path):
    manual_dir = _copy(fake, tmp_path)
    image = fake.image_file["train"][sorted(fake.image_file["train"])[0]]
    (manual_dir / image.relative_to(fake.root)).unlink()
    with pytest.raises(DatasetError, match="do not exist") as e:
        _build(manual_dir, tmp_path / "d")
    assert str(manual_dir / image.relative_to(fake.root)) in str(e.value)
    shutil.rmtree(manual_dir / GT)
    with pytest.raises(DatasetError, match=f"{GT} does not exist"):
        _build(manual_dir, tmp_path / "d")


def test_missing_list(fake, tmp_path):
    manual_dir = _copy(fake, tmp_path)
    (manual_dir / "splits" / kitti_depth_eigen.TRAIN_LIST).unlink()
    with pytest.raises(DatasetError, match="not found") as e:
        _build(manual_dir, tmp_path / "d")
    assert str(manual_dir / "splits" / kitti_depth_eigen.TRAIN_LIST) in str(e.value)


def test_corrupt_png_fails_the_build_with_its_name(fake, tmp_path, capsys):
    manual_dir = _copy(fake, tmp_path)
    image = manual_dir / fake.image_file["test"][sorted(fake.image_file["test"])[-1]].relative_to(
        fake.root
    )
    image.write_bytes(image.read_bytes()[:100])
    rc = build.main([NAME, "--data_dir", str(tmp_path / "d"), "--manual_dir", str(manual_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot decode {image}" in err and "Traceback" not in err
    assert not datasets.is_prepared(datasets.get_builder(NAME, str(tmp_path / "d")))


def test_depth_and_image_of_different_sizes(fake, tmp_path):
    manual_dir = _copy(fake, tmp_path)
    depth = next((manual_dir / GT / "train").rglob("*.png"))
    fake_manual.save_depth_png(depth, np.ones((10, 10), np.uint16))
    with pytest.raises(DatasetError, match="same size"):
        _build(manual_dir, tmp_path / "d")


def test_kitti_has_no_configs(tmp_path):
    with pytest.raises(DatasetError, match="no configs"):
        datasets.get_builder(f"{NAME}/benchmark", str(tmp_path))
