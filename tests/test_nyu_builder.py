"""nyu_depth_v2_bts: built from fake BTS-layout copies; exact values, counts, every error path."""

import dataclasses
import functools
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgr_jax import configlib, protocol
from dgr_jax.data import augment, build, datasets, fake_manual
from dgr_jax.data.builders import manual, nyu_depth_v2_bts, nyu_mat
from dgr_jax.data.builders.base import DatasetError

NAME = "nyu_depth_v2_bts"


def _depth(png: np.ndarray) -> np.ndarray:
    return png.astype(np.float32) / np.float32(protocol.NYU_DEPTH_PNG_SCALE)


def _records(src) -> dict:
    return {src[i]["id"].decode(): src[i] for i in range(len(src))}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return fake_manual.make_nyu(tmp_path_factory.mktemp("nyu_manual"))


@pytest.fixture(scope="module")
def built(fake, tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("nyu_data"))
    datasets.ensure_built(NAME, data_dir, manual_dir=str(fake.root))
    return data_dir


@pytest.mark.parametrize("split", ["train", "test"])
def test_records_hold_the_files_pixels_and_depth_png_over_1000(fake, built, split):
    records = _records(datasets.open_split(NAME, split, built))
    assert set(records) == set(fake.depth_png[split])
    for ex_id, rec in records.items():
        png = fake.depth_png[split][ex_id]
        assert rec["depth"].dtype == np.float32 and rec["image"].dtype == np.uint8
        assert np.array_equal(rec["depth"], _depth(png))  # exact, float32 / float32
        assert np.array_equal(rec["depth"] == 0, png == 0)  # invalid stays 0
        # The stored JPEG decodes to exactly the pixels PIL gives for the user's file.
        with Image.open(fake.image_file[split][ex_id]) as im:
            assert np.array_equal(rec["image"], np.asarray(im))
        assert rec["focal"] == pytest.approx(protocol.NYU_FOCAL)


def test_dense_list_uses_the_second_column_and_ignores_the_dense_path(fake, tmp_path):
    # The fake has no dense/ depth files at all: the build only succeeds if column 3 is ignored.
    src = datasets.open_split(f"{NAME}/dense", "train", str(tmp_path), manual_dir=str(fake.root))
    records = _records(src)
    assert set(records) == set(fake.depth_png["train"])
    for ex_id, rec in records.items():
        assert np.array_equal(rec["depth"], _depth(fake.depth_png["train"][ex_id]))
        assert rec["focal"] == pytest.approx(protocol.NYU_FOCAL)
    builder = datasets.get_builder(f"{NAME}/dense", str(tmp_path))
    assert builder.data_path != datasets.get_builder(NAME, str(tmp_path)).data_path


def test_official_mat_gives_the_bts_extraction(tmp_path):
    fake = fake_manual.make_nyu(tmp_path / "m", test_folder=False, mat=True, mat_images=5)
    records = _records(datasets.open_split(NAME, "test", str(tmp_path), manual_dir=str(fake.root)))
    expected = fake.depth_png["test_mat"]
    assert set(records) == set(expected) and len(records) == 2  # 0-based images 1 and 3
    top, bottom, left, right = protocol.NYU_TEST_RGB_BOX
    for ex_id, rec in records.items():
        # rawDepths hold png + 0.7 mm: BTS's uint16 cast truncates to the png value.
        assert np.array_equal(rec["depth"], _depth(expected[ex_id]))
        rgb = fake.rgb["test_mat"][ex_id]
        assert np.array_equal(rec["image"][top:bottom, left:right], rgb[top:bottom, left:right])
        outside = np.ones(rgb.shape[:2], bool)
        outside[top:bottom, left:right] = False
        assert outside.any() and not rec["image"][outside].any()  # black border


def test_a_v73_mat_without_h5py_says_how_to_install_it(tmp_path, monkeypatch):
    fake = fake_manual.make_nyu(tmp_path / "m", test_folder=False, mat=True)
    header = b"MATLAB 7.3 MAT-file".ljust(124, b" ") + b"\x00\x02IM"  # an HDF5-based .mat
    (fake.root / nyu_mat.MAT_FILE).write_bytes(header + bytes(512))
    monkeypatch.setattr(nyu_mat, "_h5py_module", lambda: None)
    with pytest.raises(DatasetError, match="pip install h5py"):
        datasets.ensure_built(NAME, str(tmp_path / "d"), manual_dir=str(fake.root))


def test_a_v73_mat_read_with_h5py_equals_the_v5_one(tmp_path):
    pytest.importorskip("h5py")
    import scipy.io

    fake = fake_manual.make_nyu(tmp_path / "m", test_folder=False, mat=True)
    v5 = _records(datasets.open_split(NAME, "test", str(tmp_path / "a"), manual_dir=str(fake.root)))
    mat = scipy.io.loadmat(fake.root / nyu_mat.MAT_FILE)
    scenes = [str(np.asarray(c).ravel()[0]) for c in mat["sceneTypes"].ravel()]
    fake_manual.write_mat_v73(fake.root / nyu_mat.MAT_FILE, mat["images"], mat["rawDepths"], scenes)
    v73 = _records(
        datasets.open_split(NAME, "test", str(tmp_path / "b"), manual_dir=str(fake.root))
    )
    assert set(v73) == set(v5)
    for ex_id, rec in v73.items():
        assert np.array_equal(rec["image"], v5[ex_id]["image"])
        assert np.array_equal(rec["depth"], v5[ex_id]["depth"])


def test_counts_that_differ_from_the_standard_copies_are_warned_not_refused(fake, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dgr_jax.data"):
        builder = datasets.ensure_built(NAME, str(tmp_path), manual_dir=str(fake.root))
    assert builder.info.splits["train"].num_examples == 4
    text = caplog.text
    assert f"{protocol.NYU_TRAIN_COUNT_BTS:,} or {protocol.NYU_TRAIN_COUNT_DENSE:,}" in text
    assert f"{protocol.NYU_TEST_COUNT}" in text


def test_config_pp_runs_on_a_built_nyu_record(fake, built):
    config = configlib.load("configs/nyu_vit_dgr.py")
    assert config.input.pp_train.startswith("nyu_train_box|")
    assert config.input.dataset == NAME and config.evals.test.dataset == NAME
    dense = configlib.load("configs/nyu_vit_dgr.py:dense")
    assert dense.input.dataset == dense.evals.test.dataset == f"{NAME}/dense"
    rec = datasets.open_split(NAME, "train", built)[0]
    # The pp string's crop needs 480x640; pad the tiny fake record to the NYU frame.
    h, w = protocol.NYU_HEIGHT, protocol.NYU_WIDTH
    rec = {"image": np.resize(rec["image"], (h, w, 3)), "depth": np.resize(rec["depth"], (h, w))}
    out = augment.Preprocess(config.input.pp_train)(rec, np.random.default_rng(0))
    top, bottom, left, right = protocol.NYU_TRAIN_VALID_BOX
    assert out["image"].shape == (h, w, 3) and out["depth"].shape == (h, w)
    # Zeroed outside the box, then rotated by at most 2.5 deg: the border stays nearly empty.
    assert (rec["depth"][:top] > 0).mean() > 0.5
    assert (out["depth"][:top] > 0).mean() < 0.2 and (out["depth"][bottom:] > 0).mean() < 0.2


# ----------------------------------------------------------------------------------------------
# Error paths: a short DatasetError that names the file and says what is expected where.
# ----------------------------------------------------------------------------------------------


def _build(manual_dir, data_dir, **build_args):
    return datasets.ensure_built(
        NAME, str(data_dir), manual_dir=str(manual_dir), build_args=build_args
    )


def test_unbuilt_without_manual_dir_says_what_to_place_where(tmp_path):
    with pytest.raises(DatasetError) as e:
        datasets.open_split(NAME, "train", str(tmp_path))
    msg = str(e.value)
    assert "no manual dir was given" in msg
    for part in (
        "M/sync/<scene>/rgb_<id>.jpg",
        "M/official_splits/test/",
        nyu_depth_v2_bts.TRAIN_LIST,
    ):
        assert part in msg
    assert f"python -m dgr_jax.data.build {NAME} --manual_dir M --data_dir {tmp_path}" in msg
    assert "cleinc/bts" in msg and "data_splits" in msg and "http" not in msg


def test_missing_manual_dir(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as e:
        _build(tmp_path / "nowhere", tmp_path / "d")
    assert str(tmp_path / "nowhere") in str(e.value) and "M/sync/" in str(e.value)


def test_missing_list_names_it(fake, tmp_path):
    manual_dir = tmp_path / "m"
    shutil.copytree(fake.root, manual_dir)
    (manual_dir / "splits" / nyu_depth_v2_bts.TEST_LIST).unlink()
    with pytest.raises(DatasetError, match="not found") as e:
        _build(manual_dir, tmp_path / "d")
    msg = str(e.value)
    assert str(manual_dir / "splits" / nyu_depth_v2_bts.TEST_LIST) in msg
    assert "official_splits" in msg and "Expected" in msg and "data_splits" in msg


def test_missing_referenced_file_names_it_and_its_line(fake, tmp_path, caplog):
    manual_dir = tmp_path / "m"
    shutil.copytree(fake.root, manual_dir)
    gone = manual_dir / "sync" / "kitchen_0028b" / "sync_depth_00001.png"
    gone.unlink()
    list_path = manual_dir / "splits" / nyu_depth_v2_bts.TRAIN_LIST
    with pytest.raises(DatasetError) as e:
        _build(manual_dir, tmp_path / "d")
    msg = str(e.value)
    assert str(gone) in msg and f"line 2 of {list_path}" in msg and "--skip_missing" in msg
    # With skip_missing the line is left out and counted.
    with caplog.at_level(logging.WARNING, logger="dgr_jax.data"):
        builder = _build(manual_dir, tmp_path / "d", skip_missing=True)
    assert builder.info.splits["train"].num_examples == 3
    assert "1 of 4 lines" in caplog.text


@pytest.mark.parametrize(
    "target, content, match",
    [
        ("sync/bedroom_0130/rgb_00001.jpg", "truncate", "cannot decode"),
        ("official_splits/test/office/sync_depth_00001.png", b"not a png", "cannot decode"),
        ("sync/bedroom_0130/sync_depth_00000.png", "8bit", "not a single-channel 16-bit PNG"),
    ],
)
def test_corrupt_files_fail_with_their_name(fake, tmp_path, target, content, match):
    manual_dir = tmp_path / "m"
    shutil.copytree(fake.root, manual_dir)
    path = manual_dir / target
    if content == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif content == "8bit":
        Image.fromarray(np.zeros((24, 32), np.uint8)).save(path)
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=match) as e:
        _build(manual_dir, tmp_path / "d")
    assert str(path) in str(e.value) and "line " in str(e.value)
    assert not datasets.is_prepared(datasets.get_builder(NAME, str(tmp_path / "d")))


def test_mat_without_splits_mat(tmp_path):
    fake = fake_manual.make_nyu(tmp_path / "m", test_folder=False, mat=True)
    (fake.root / nyu_mat.SPLITS_FILE).unlink()
    with pytest.raises(DatasetError, match=nyu_mat.SPLITS_FILE):
        _build(fake.root, tmp_path / "d")


def test_unknown_config(tmp_path):
    with pytest.raises(DatasetError, match="nyu_depth_v2_bts/dense"):
        datasets.get_builder(f"{NAME}/sparse", str(tmp_path))


def test_cli_prints_a_short_error_without_traceback(tmp_path, capsys):
    rc = build.main([NAME, "--data_dir", str(tmp_path), "--manual_dir", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: nyu_depth_v2_bts: the manual dir")
    assert "Traceback" not in err


def test_cli_builds_and_logs_counts(fake, tmp_path, capsys):
    rc = build.main([NAME, "--data_dir", str(tmp_path), "--manual_dir", str(fake.root)])
    captured = capsys.readouterr()
    assert rc == 0 and "test: 2" in captured.out and "train: 4" in captured.out
    assert "standard copies have" in captured.err


# ----------------------------------------------------------------------------------------------
# Large builds: worker processes, in order, nothing lost, bounded memory, errors come back.
# ----------------------------------------------------------------------------------------------


def test_worker_pool_keeps_order_and_every_example_bounds_work_and_returns_errors(fake, tmp_path):
    manual_dir = tmp_path / "m"
    shutil.copytree(fake.root, manual_dir)
    jobs = nyu_depth_v2_bts.NyuDepthV2Bts.from_args(None, str(tmp_path))._list_jobs(
        manual_dir, nyu_depth_v2_bts.TRAIN_LIST, manual_dir / "sync", "train"
    )
    bad = dataclasses.replace(jobs[0], image=str(tmp_path / "bad.jpg"), origin="line 99 of x")
    Path(bad.image).write_bytes(b"garbage")
    good = jobs * 3  # 12 jobs, then one that fails in its worker
    pulled = []

    def feed():
        for job in [*good, bad]:
            pulled.append(job)
            yield job

    fn = functools.partial(manual.load_example, ctx=nyu_depth_v2_bts.CTX)
    results = manual.ordered_map(fn, feed(), workers=2, window=3)
    got = [next(results)]
    assert len(pulled) <= 4  # the window plus one refill: never all jobs at once
    with pytest.raises(DatasetError, match="cannot decode") as e:
        got.extend(results)
    assert bad.image in str(e.value) and "line 99 of x" in str(e.value)
    assert [r["id"] for r in got] == [j.id for j in good]  # in order, none lost
    for r, job in zip(got, good, strict=True):
        assert np.array_equal(r["depth"], manual.load_example(job, nyu_depth_v2_bts.CTX)["depth"])
