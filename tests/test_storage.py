"""dgr_jax.storage on local paths and on gs:// (a local storage emulator, started here).

Fast: no model is built. The end-to-end run on gs:// paths is tests/test_gcs_end_to_end.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from gcs_emulator import BUCKET, running

from dgr_jax import jsonio, storage
from dgr_jax.data import datasets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"num_train": 8, "num_test": 4, "height": 32, "width": 48}


@pytest.fixture(scope="module")
def gcs():
    with running() as emulator:
        yield emulator


def _objects(prefix: str) -> list[str]:
    """Every object name under `prefix` (fresh listing, no client cache)."""
    fs, key = storage._fsspec(prefix)
    fs.invalidate_cache()
    return sorted(fs.find(key))


# ---- local paths: behaviour unchanged --------------------------------------------------------
def test_local_paths_are_made_absolute_and_urls_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert storage.absolute("run") == str(tmp_path / "run")
    assert storage.absolute("gs://b/run") == "gs://b/run"  # not <cwd>/gs:/b/run
    assert storage.join("gs://b/run", "eval", "x.json") == "gs://b/run/eval/x.json"
    assert storage.is_remote("gs://b/x") and not storage.is_remote(tmp_path)


def test_local_write_is_atomic_and_appender_appends_at_once(tmp_path):
    target = tmp_path / "a" / "b.txt"
    storage.write_text(target, "one")
    storage.write_text(target, "two")
    assert target.read_text() == "two" and os.listdir(target.parent) == ["b.txt"]
    log = storage.Appender(tmp_path / "log.jsonl", flush_secs=1e9)
    log.write(b"1\n")
    assert (tmp_path / "log.jsonl").read_bytes() == b"1\n"  # no buffering on disk


# ---- gs:// -----------------------------------------------------------------------------------
def test_gs_small_files_round_trip(gcs):
    path = gcs.url("files", "m.json")
    jsonio.write(path, {"a": float("nan"), "b": [1, 2]})
    assert jsonio.loads_strict(storage.read_text(path)) == {"a": None, "b": [1, 2]}
    storage.write_bytes(gcs.url("files", "x.bin"), b"\x00\x01")
    assert storage.listdir(gcs.url("files")) == ["m.json", "x.bin"]
    assert storage.isdir(gcs.url("files")) and storage.isfile(path)
    assert not storage.exists(gcs.url("files", "none"))
    storage.makedirs(gcs.url("never", "made"))  # a no-op: object stores have no folders
    assert _objects(gcs.url("never")) == []


def test_gs_appender_buffers_and_composes_without_rewriting(gcs, monkeypatch):
    path = gcs.url("logs", "train.jsonl")
    log = storage.Appender(path, flush_secs=1e9)
    log.write(b'{"step": 1}\n')
    assert not storage.exists(path)  # buffered until a flush
    log.flush()
    uploads = []
    original = storage.write_bytes
    monkeypatch.setattr(storage, "write_bytes", lambda p, d: uploads.append(p) or original(p, d))
    for step in (2, 3):
        log.write(b'{"step": %d}\n' % step)
        log.flush()
    assert uploads == []  # appended by composing, not by rewriting the object
    assert storage.read_text(path).splitlines() == ['{"step": 1}', '{"step": 2}', '{"step": 3}']
    assert _objects(gcs.url("logs")) == [f"{BUCKET}/logs/train.jsonl"]  # segments deleted
    # A segment left by a process killed mid-compose is removed by the next appender.
    storage.write_bytes(gcs.url("logs", "train.jsonl.append-0123"), b'{"step": 4}\n')
    storage.Appender(path)
    assert _objects(gcs.url("logs")) == [f"{BUCKET}/logs/train.jsonl"]


def test_appender_on_stores_without_compose_rewrites(gcs, monkeypatch):
    path = gcs.url("logs", "other.jsonl")
    monkeypatch.setattr(storage, "scheme", lambda p: "s3")  # as on a store without compose
    log = storage.Appender(path, flush_secs=0)  # flush on every write
    for line in (b"a\n", b"b\n"):
        log.write(line)
    assert storage.read_bytes(path) == b"a\nb\n"


def test_check_names_a_missing_bucket_a_denied_one_and_a_missing_input(gcs):
    storage.check(gcs.url("run"), "--workdir")  # the bucket exists; the prefix need not
    with pytest.raises(storage.StorageError, match=r"--workdir gs://no-such-bucket/run: bucket"):
        storage.check("gs://no-such-bucket/run", "--workdir")
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.check(gcs.url("weights"), "config.init_from", must_exist=True)
    with pytest.raises(storage.StorageError, match="no bucket"):
        storage.check("gs:///run", "--workdir")
    with pytest.raises(storage.StorageError, match=r"--workdir gs://denied-x/run: cannot list"):
        storage.check("gs://denied-x/run", "--workdir")  # 403: credentials without access


def test_gs_data_dir_is_built_locally_uploaded_and_read_from_the_bucket(gcs, tmp_path):
    data_dir = gcs.url("tfds")
    remote = datasets.open_split("synthetic_depth/indoor", "train", data_dir, build_args=TINY)
    local = datasets.open_split("synthetic_depth/indoor", "train", str(tmp_path), build_args=TINY)
    assert len(remote) == len(local) == TINY["num_train"]
    for i in range(len(local)):
        for key in ("image", "depth"):
            np.testing.assert_array_equal(remote[i][key], local[i][key])
    names = [n.rsplit("/", 1)[-1] for n in _objects(data_dir)]
    assert "dataset_info.json" in names and any(".array_record-" in n for n in names)
    builder = datasets.get_builder("synthetic_depth/indoor", data_dir, build_args=TINY)
    assert os.fspath(builder.data_path).startswith("gs://")  # read in place, not staged


def test_manual_dir_on_gs_builds(gcs, tmp_path):
    from dgr_jax.data import fake_manual

    fake = fake_manual.make_nyu(tmp_path / "manual")
    storage.copy_tree(fake.root, gcs.url("nyu_manual"))
    data_dir = str(tmp_path / "data")
    src = datasets.open_split(
        "nyu_depth_v2_bts", "test", data_dir, manual_dir=gcs.url("nyu_manual")
    )
    ids = {src[i]["id"].decode() for i in range(len(src))}
    assert ids == set(fake.depth_png["test"])


def test_converted_weights_round_trip_through_gs(gcs):
    import jax
    from flax import nnx

    from dgr_jax import configlib
    from dgr_jax.convert.checkpoint import Converted, load_converted, read_meta, save_converted
    from dgr_jax.models import build_model

    config = configlib.load(os.path.join(ROOT, "configs/synthetic_vit_dgr.py:smoke"))
    model = build_model(config.model, rngs=nnx.Rngs(0))
    out = save_converted(gcs.url("weights"), Converted(model, config.model.to_dict(), ()))
    assert os.fspath(out) == gcs.url("weights")
    assert read_meta(gcs.url("weights"))["model"]["encoder"]["name"] == "vit"
    _, state = load_converted(gcs.url("weights"))
    want = jax.tree.leaves(nnx.to_pure_dict(nnx.state(model)))
    got = jax.tree.leaves(nnx.to_pure_dict(state))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _no_credentials_env(tmp_path) -> dict[str, str]:
    """No emulator and no Google credentials, and no metadata-server lookup (offline)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST")
    }
    (tmp_path / "gcloud").mkdir(exist_ok=True)
    env.update(
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),  # no `gcloud auth application-default login`
        NO_GCE_CHECK="true",  # not a Google Cloud VM
        GCE_METADATA_HOST="127.0.0.1:9",
        GCE_METADATA_IP="127.0.0.1:9",
        PYTHONPATH=ROOT,
    )
    return env


def test_no_credentials_fail_the_check_naming_the_path(tmp_path):
    check = "from dgr_jax import storage; storage.check('gs://some-bucket/run', '--workdir')"
    done = subprocess.run(
        [sys.executable, "-c", check],
        env=_no_credentials_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "StorageError: --workdir gs://some-bucket/run: no Google Cloud credentials" in (
        done.stderr
    )


def test_trainer_with_a_gs_workdir_in_a_missing_bucket_fails_first(gcs):
    from dgr_jax import configlib
    from dgr_jax.trainer import TrainingError, train_and_evaluate

    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    with pytest.raises(TrainingError, match=r"^--workdir gs://no-such-bucket/run: bucket .* does"):
        train_and_evaluate(config, "gs://no-such-bucket/run")
    fs, _ = storage._fsspec("gs://no-such-bucket")
    assert not fs.exists("no-such-bucket")  # not created as a side effect either


def test_train_with_a_missing_bucket_fails_before_building_anything(gcs, tmp_path):
    workdir = tmp_path / "run"
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--config={os.path.join(ROOT, 'configs/synthetic_cnn.py')}:smoke",
        f"--workdir={workdir}",
        "--config.data_dir=gs://no-such-bucket/tfds",
    ]
    env = gcs.env({**os.environ, "PYTHONPATH": ROOT})
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert (
        "config.data_dir gs://no-such-bucket/tfds: bucket gs://no-such-bucket does not exist"
        in (done.stderr)
    )
    assert not workdir.exists()  # checked before the work dir, the data or the model
