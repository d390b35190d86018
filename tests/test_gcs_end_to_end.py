"""A pod-style run on gs:// paths, against a local storage emulator started by the test.

train.py with `--workdir gs://...` and `--config.data_dir=gs://...` (the dataset is built
locally, uploaded and then read from the bucket), killed with SIGKILL after a checkpoint and
rerun: the losses equal those of the same run on local disk step for step. Then eval.py and
`python -m dgr_jax.predict` read that gs:// work dir and write their outputs to the bucket.
The smallest smoke config (ResNet width 8, 32x48 images, 12 steps) keeps it to a few
compilations, shared with tests/test_trainer.py through the persistent compilation cache.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from gcs_emulator import running
from PIL import Image

from dgr_jax import jsonio, storage
from dgr_jax.metric_writer import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_cmd(workdir, data_dir):
    return [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--config={os.path.join(ROOT, 'configs/synthetic_cnn.py')}:smoke",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        "--config.total_steps=12",
        "--config.log_every=1",
        "--config.ckpt_every=2",
        "--config.eval_every=0",
    ]


def _fresh_listing(url: str) -> list[str]:
    fs, key = storage._fsspec(url)
    fs.invalidate_cache()
    return [os.path.basename(p.rstrip("/")) for p in fs.ls(key)] if fs.exists(key) else []


def _event_steps(data: bytes) -> set[int]:
    """Steps of the train/loss scalars in a TensorBoard event file (the record format)."""
    from tensorboard.compat.proto import event_pb2

    steps, offset = set(), 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        if any(v.tag == "train/loss" for v in event.summary.value):
            steps.add(event.step)
    return steps


@pytest.mark.slow
def test_gs_workdir_and_data_dir_train_kill_resume_eval_predict(tmp_path):
    with running() as gcs:
        env = gcs.env(
            {
                **os.environ,
                "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
                "PYTHONPATH": ROOT,
            }
        )
        data_dir, workdir = gcs.url("tfds"), gcs.url("run")

        # The same run on local disk: the losses a resumed gs:// run must reproduce.
        reference = tmp_path / "reference"
        done = subprocess.run(
            _train_cmd(reference, data_dir), env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert storage.exists(f"{data_dir}/synthetic_depth")  # built locally, uploaded

        proc = subprocess.Popen(  # killed below: its output is not needed (and no pipe fills)
            _train_cmd(workdir, data_dir),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            names = _fresh_listing(f"{workdir}/checkpoints")
            if any(n.isdigit() and int(n) >= 4 for n in names):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = subprocess.run(
            _train_cmd(workdir, data_dir), env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "resuming from checkpoint step" in done.stdout
        want = {r["step"]: r["loss"] for r in read_jsonl(reference / "train_metrics.jsonl")}
        got = {r["step"]: r["loss"] for r in read_jsonl(f"{workdir}/train_metrics.jsonl")}
        assert sorted(got) == list(range(1, 13))  # one line per step, no duplicates
        np.testing.assert_allclose(
            [got[s] for s in sorted(got)], [want[s] for s in sorted(got)], rtol=1e-6
        )
        summary = jsonio.loads_strict(storage.read_text(f"{workdir}/metrics.json"))
        assert summary["step"] == 12 and np.isfinite(summary["eval"]["test"]["abs_rel"])
        assert storage.exists(f"{workdir}/config.json")
        assert storage.exists(f"{workdir}/train_curves.png")
        events = storage.listdir(f"{workdir}/tb")
        assert len(events) == 2  # the killed run's and the resumed run's
        assert set().union(
            *(_event_steps(storage.read_bytes(f"{workdir}/tb/{e}")) for e in events)
        ) == set(range(1, 13))
        assert not [n for n in _fresh_listing(workdir) if ".append-" in n]  # segments removed

        # eval.py on the gs:// work dir: outputs in the bucket.
        done = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, "eval.py"),
                f"--config={os.path.join(ROOT, 'configs/synthetic_cnn.py')}:smoke",
                f"--workdir={workdir}",
                f"--config.data_dir={data_dir}",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        metrics = jsonio.loads_strict(storage.read_text(f"{workdir}/eval/test/metrics.json"))
        assert metrics["step"] == 12
        assert metrics["abs_rel"] == pytest.approx(summary["eval"]["test"]["abs_rel"], rel=1e-5)
        for name in ("report.md", "per_image.csv"):
            assert storage.exists(f"{workdir}/eval/test/{name}"), name
        assert storage.listdir(f"{workdir}/eval/test/images")

        # predict: gs:// work dir, gs:// input folder, gs:// output folder.
        rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        storage.write_bytes(gcs.url("photos", "room.png"), buf.getvalue())
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dgr_jax.predict",
                f"--workdir={workdir}",
                f"--input={gcs.url('photos')}",
                f"--output={gcs.url('pred')}",
                "--focal=50",
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert storage.listdir(gcs.url("pred")) == [
            "room.npy",
            "room.ply",
            "room_color.png",
            "room_depth.png",
        ]
        depth = np.load(io.BytesIO(storage.read_bytes(gcs.url("pred", "room.npy"))))
        assert depth.shape == (40, 56) and np.all(depth > 0)
