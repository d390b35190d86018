"""The trainer end to end: outputs, sharding equivalence, exact resume, failure behaviour.

Tiny configs (ResNet width 8 or ViT tiny_test, 32x48 images) keep every run to seconds plus
one compilation. Subprocess tests exercise the real `train.py` command line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
from json_helpers import assert_strict_json_tree

from dgr_jax import checkpoint, configlib, steps
from dgr_jax.data import pipeline
from dgr_jax.trainer import TrainingError, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cnn_config(tmp_path, **overrides) -> ml_collections.ConfigDict:
    """ResNet arm smoke config; data shared across tests through one data dir."""
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    with config.unlocked():
        config.data_dir = str(tmp_path.parent / "shared_data")
        config.total_steps = 6
        config.log_every = 1
        config.ckpt_every = 3
        config.eval_every = 0
        config.evals = ml_collections.ConfigDict()
        config.best_metric = ""
        config.loss.terms.otdl = 0.0  # trainer mechanics only; OTDL trains in the smoke test
        for key, value in overrides.items():
            configlib.set_by_path(config, key, value)
    return config


def _losses(workdir) -> dict[int, float]:
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.mark.slow
def test_smoke_main_job_writes_every_output(tmp_path):
    workdir = tmp_path / "run"
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_vit_dgr.py:smoke"))
    metrics = train_and_evaluate(config, str(workdir))
    for name in ("metrics.json", "train_metrics.jsonl", "train_curves.png", "config.json"):
        assert (workdir / name).exists(), name
    assert any((workdir / "tb").iterdir())
    assert (workdir / "eval" / "test" / "metrics.json").exists()
    summary = json.loads((workdir / "metrics.json").read_text())
    assert summary["step"] == config.total_steps
    assert summary["train_step_compilations"] == 1  # no retrace across steps
    baseline = summary["baseline_constant_depth"]["test"]
    assert baseline["depth"] > 0 and np.isfinite(baseline["abs_rel"])
    assert np.isfinite(metrics["test/abs_rel"])
    steps_saved = checkpoint.Checkpointer(str(workdir / "checkpoints"), read_only=True).all_steps()
    assert config.total_steps in steps_saved
    # Every JSON file parses strictly; the constant baseline's undefined edge precision (no
    # predicted edges) is written as null, not as a bare NaN.
    checked = assert_strict_json_tree(workdir)
    assert {"metrics.json", "config.json", "train_metrics.jsonl", "eval/test/metrics.json"} <= set(
        checked
    )
    assert baseline["edge_precision_0.25"] is None


@pytest.mark.slow
def test_eight_devices_match_one_device_for_both_policies(tmp_path):
    runs = {
        "one": {"mesh.data": 1, "sharding": "data_parallel"},
        "eight_dp": {"mesh.data": -1, "sharding": "data_parallel"},
        "eight_fsdp": {"mesh.data": -1, "sharding": "fsdp"},
    }
    losses = {}
    for name, overrides in runs.items():
        train_and_evaluate(_cnn_config(tmp_path, **overrides), str(tmp_path / name))
        losses[name] = _losses(tmp_path / name)
    assert losses["one"].keys() == set(range(1, 7))
    for name in ("eight_dp", "eight_fsdp"):
        assert losses[name].keys() == losses["one"].keys()
        got = [losses[name][s] for s in sorted(losses["one"])]
        want = [losses["one"][s] for s in sorted(losses["one"])]
        np.testing.assert_allclose(got, want, rtol=2e-5, err_msg=name)


def test_fsdp_shards_large_arrays_over_data(tmp_path):
    from dgr_jax import optim, sharding

    config = _cnn_config(tmp_path)
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, 0))
    mesh = sharding.make_mesh(config.mesh)
    specs = jax.tree.leaves(
        jax.tree.map(lambda s: s.spec, sharding.state_shardings(abstract, mesh, "fsdp"))
    )
    assert any("data" in tuple(spec) for spec in specs)


def test_nan_batch_stops_the_run_and_keeps_checkpoints_restorable(tmp_path, monkeypatch):
    original = pipeline.train_iterator

    class Poisoned:
        """Wraps the real iterator; the 5th batch gets a NaN image."""

        def __init__(self, it):
            self.it, self.n = it, 0

        def __next__(self):
            batch = next(self.it)
            self.n += 1
            if self.n == 5:
                batch = dict(batch, image=np.full_like(batch["image"], np.nan))
            return batch

        def get_state(self):
            return self.it.get_state()

        def set_state(self, state):
            self.it.set_state(state)

    monkeypatch.setattr(pipeline, "train_iterator", lambda *a, **k: Poisoned(original(*a, **k)))
    config = _cnn_config(tmp_path, total_steps=8)
    with pytest.raises(TrainingError, match=r"step 5\b.*Last good checkpoint: step 3"):
        train_and_evaluate(config, str(tmp_path / "nan"))
    ckpt = checkpoint.Checkpointer(str(tmp_path / "nan" / "checkpoints"), read_only=True)
    assert ckpt.all_steps() == [3]
    from dgr_jax import optim

    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, 0))
    state, data = ckpt.restore(3, abstract)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
    assert int(state["step"]) == 3 and "iterator" in data


def test_batch_not_divisible_by_devices_fails_at_start(tmp_path):
    config = _cnn_config(tmp_path, batch_size=6)
    with pytest.raises(TrainingError, match="not divisible by the 8"):
        train_and_evaluate(config, str(tmp_path / "bad"))


def _train_cmd(workdir, *extra):
    return [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--config={os.path.join(ROOT, 'configs/synthetic_cnn.py')}:smoke",
        f"--workdir={workdir}",
        "--config.total_steps=12",
        "--config.log_every=1",
        "--config.ckpt_every=2",
        "--config.eval_every=0",
        *extra,
    ]


def _env(devices=8, *, processes=1):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = ROOT
    if processes > 1:  # as train.py does by default: no per-host cache across processes
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


@pytest.mark.slow
def test_sigkill_and_resume_reproduces_the_uninterrupted_losses(tmp_path):
    data = f"--config.data_dir={tmp_path / 'data'}"
    ref = tmp_path / "reference"
    subprocess.run(_train_cmd(ref, data), env=_env(), check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(killed, data), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    ckpts = killed / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        if ckpts.exists() and any(p.name.isdigit() and int(p.name) >= 4 for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run(_train_cmd(killed, data), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from checkpoint step" in done.stdout
    a, b = _losses(ref), _losses(killed)
    assert sorted(b) == list(range(1, 13))  # one line per step, no duplicates after resume
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(b)], rtol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_match_one_process(tmp_path):
    data = f"--config.data_dir={tmp_path / 'data'}"
    one = tmp_path / "one"
    subprocess.run(
        [*_train_cmd(one, data), "--config.total_steps=4"],
        env=_env(8),
        check=True,
        capture_output=True,
    )
    two = tmp_path / "two"
    port = _free_port()
    # Output to files, not pipes: waiting on one process while the other blocks on a full pipe
    # would stall both at their next collective.
    logs = [tmp_path / f"process{pid}.log" for pid in range(2)]
    procs = []
    for pid in range(2):
        with open(logs[pid], "w") as log:
            cmd = [
                *_train_cmd(two, data),
                "--config.total_steps=4",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={pid}",
            ]
            procs.append(
                subprocess.Popen(
                    cmd, env=_env(4, processes=2), stdout=log, stderr=subprocess.STDOUT
                )
            )
    for p in procs:
        p.wait(timeout=600)
    tails = "".join(f"--- process {i}\n{log.read_text()[-3000:]}" for i, log in enumerate(logs))
    assert all(p.returncode == 0 for p in procs), tails
    a, b = _losses(one), _losses(two)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=2e-5)
