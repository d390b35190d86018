"""The synthetic_depth TFDS builder: exact round trip, determinism, CLI, clear errors."""

import numpy as np
import pytest

from dgr_jax.data import build, datasets, synthetic
from dgr_jax.data.builders import synthetic_depth
from dgr_jax.data.builders.base import DatasetError

ARGS = {"num_train": 5, "num_test": 2, "seed": 3, "height": 24, "width": 32}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("data"))
    datasets.ensure_built("synthetic_depth/indoor", data_dir, build_args=ARGS)
    return data_dir


def test_round_trip_gives_back_the_rendered_arrays(built):
    src = datasets.open_split("synthetic_depth/indoor", "train", built, build_args=ARGS)
    assert len(src) == 5
    for i in range(len(src)):
        rec = src[i]
        index = int(rec["id"].decode().rsplit("_", 1)[1])
        ref = synthetic.render_example("indoor", ARGS["seed"], index, 24, 32)
        assert rec["image"].dtype == np.uint8 and rec["depth"].dtype == np.float32
        assert np.array_equal(rec["image"], ref["image"])
        assert np.array_equal(rec["depth"], ref["depth"])
        assert rec["focal"] == pytest.approx(float(ref["focal"]))


def test_test_split_is_disjoint_from_train(built):
    train = datasets.open_split("synthetic_depth/indoor", "train", built, build_args=ARGS)
    test = datasets.open_split("synthetic_depth/indoor", "test", built, build_args=ARGS)
    train_ids = {train[i]["id"] for i in range(len(train))}
    test_ids = {test[i]["id"] for i in range(len(test))}
    assert len(test_ids) == 2 and not train_ids & test_ids
    indices = [int(t.decode().rsplit("_", 1)[1]) for t in test_ids]
    assert min(indices) >= synthetic_depth.TEST_OFFSET


def test_two_builds_are_identical(built, tmp_path):
    other = datasets.open_split("synthetic_depth/indoor", "train", str(tmp_path), build_args=ARGS)
    first = datasets.open_split("synthetic_depth/indoor", "train", built, build_args=ARGS)
    by_id = {first[i]["id"]: first[i] for i in range(len(first))}
    for i in range(len(other)):
        rec = other[i]
        assert np.array_equal(rec["image"], by_id[rec["id"]]["image"])
        assert np.array_equal(rec["depth"], by_id[rec["id"]]["depth"])


def test_different_build_arguments_live_side_by_side(built):
    a = datasets.get_builder("synthetic_depth/indoor", built, build_args=ARGS)
    b = datasets.get_builder("synthetic_depth/indoor", built, build_args={**ARGS, "num_train": 6})
    assert a.data_path != b.data_path
    assert datasets.is_prepared(a) and not datasets.is_prepared(b)


def test_cli_builds_and_reports(tmp_path, capsys):
    rc = build.main(
        [
            "synthetic_depth/outdoor",
            "--data_dir",
            str(tmp_path),
            "--num_train",
            "2",
            "--num_test",
            "1",
            "--height",
            "16",
            "--width",
            "48",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "train: 2" in out and "test: 1" in out


def test_unknown_dataset_and_config_errors(tmp_path, capsys):
    assert build.main(["nosuch_dataset", "--data_dir", str(tmp_path)]) == 2
    assert "valid names" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="synthetic_depth/indoor"):
        datasets.get_builder("synthetic_depth/underwater", str(tmp_path))
