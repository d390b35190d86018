"""Preemption of a two-process run on loopback: SIGTERM to both, to process 1, to process 0.

Each case: two `train.py` processes (gloo, one CPU device each) get SIGTERM mid-training; both
must exit within 60 s with EXIT_PREEMPTED, having saved the step they agreed on through JAX's
preemption sync point; rerunning the same command resumes there, and the losses of the whole
run equal those of one uninterrupted two-process run (shared by the three cases) step for step.
Compilations go through the persistent cache (one directory both processes share, which is
how a multi-process run may use it), so only the first run compiles.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

from dgr_jax import configlib
from dgr_jax.preemption import EXIT_PREEMPTED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL = 150  # long enough that the agreed step comes before the end, even after ~1 s of notice
EXIT_WITHIN_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    env["PYTHONPATH"] = ROOT
    return env


def _start(workdir, data_dir, logs_dir, tag) -> tuple[list[subprocess.Popen], list]:
    """Both processes of one run; output to files (a full pipe would stall a collective)."""
    port = _free_port()
    procs, logs = [], []
    for pid in range(2):
        log = logs_dir / f"{tag}.process{pid}.log"
        with open(log, "w") as f:
            cmd = [
                sys.executable,
                os.path.join(ROOT, "train.py"),
                f"--config={os.path.join(ROOT, 'configs/synthetic_cnn.py')}:smoke",
                f"--workdir={workdir}",
                f"--config.data_dir={data_dir}",
                f"--config.total_steps={TOTAL}",
                "--config.log_every=1",
                "--config.ckpt_every=1000",
                "--config.eval_every=0",
                "--config.evals.test.num_pictures=0",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={pid}",
            ]
            procs.append(subprocess.Popen(cmd, env=_env(), stdout=f, stderr=subprocess.STDOUT))
        logs.append(log)
    return procs, logs


def _finish(procs, logs, timeout=600) -> str:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
                q.wait()
    return "".join(f"--- process {i}\n{log.read_text()[-3000:]}" for i, log in enumerate(logs))


def _losses(workdir) -> dict[int, float]:
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The data dir and the losses of one uninterrupted two-process run."""
    root = tmp_path_factory.mktemp("preemption")
    data_dir = root / "data"
    procs, logs = _start(root / "reference", data_dir, root, "reference")
    tails = _finish(procs, logs)
    assert [p.returncode for p in procs] == [0, 0], tails
    return data_dir, _losses(root / "reference")


@pytest.mark.slow
@pytest.mark.parametrize("targets", [(0, 1), (1,), (0,)], ids=["both", "process1", "process0"])
def test_sigterm_saves_the_agreed_step_on_every_process_and_resumes_exactly(
    reference, tmp_path, targets
):
    data_dir, want = reference
    workdir = tmp_path / "run"
    procs, logs = _start(workdir, data_dir, tmp_path, "interrupted")
    deadline, training = time.monotonic() + 600, False
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if "step 3/" in logs[0].read_text():
            training = True
            break
        time.sleep(0.05)
    assert training and all(p.poll() is None for p in procs), _finish(procs, logs, timeout=1)
    sent = time.monotonic()
    for pid in targets:
        procs[pid].send_signal(signal.SIGTERM)
    exited = []
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(1, sent + EXIT_WITHIN_S - time.monotonic()))
        exited.append(time.monotonic() - sent)
    tails = _finish(procs, logs, timeout=1)
    assert [p.returncode for p in procs] == [EXIT_PREEMPTED] * 2, tails
    assert max(exited) <= EXIT_WITHIN_S, (exited, tails)
    lines = [
        [x for x in log.read_text().splitlines() if x.startswith("preempted: saved step")]
        for log in logs
    ]
    assert len(lines[0]) == len(lines[1]) == 1 and lines[0] == lines[1], tails
    agreed = int(lines[0][0].split()[3].rstrip(";"))
    assert 3 <= agreed < TOTAL
    assert (workdir / "checkpoints" / str(agreed)).is_dir()
    print(f"SIGTERM to {targets}: agreed step {agreed}, exits after {exited} s")

    procs, logs = _start(workdir, data_dir, tmp_path, "rerun")
    tails = _finish(procs, logs)
    assert [p.returncode for p in procs] == [0, 0], tails
    assert f"resuming from checkpoint step {agreed}" in logs[0].read_text()
    got = _losses(workdir)
    assert sorted(got) == sorted(want) == list(range(1, TOTAL + 1))
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=1e-6)


# ---- One process: SIGTERM saves the last completed step, also from inside an evaluation -------


def _config(data_dir, **overrides) -> ml_collections.ConfigDict:
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    with config.unlocked():
        config.data_dir = str(data_dir)
        config.total_steps = 6
        config.log_every = 1
        config.ckpt_every = 100
        config.eval_every = 2
        config.evals.test.num_pictures = 0
        config.loss.terms.otdl = 0.0
        for key, value in overrides.items():
            configlib.set_by_path(config, key, value)
    return config


@pytest.fixture(scope="module")
def one_process_reference(tmp_path_factory):
    """(config, losses) of one uninterrupted single-process run, shared by the cases below."""
    from dgr_jax.trainer import train_and_evaluate

    root = tmp_path_factory.mktemp("one_process")
    config = _config(root / "data")
    train_and_evaluate(config, str(root / "reference"))
    return config, _losses(root / "reference")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["step", "evaluation"])
def test_one_process_sigterm_saves_the_step_and_resumes_exactly(
    one_process_reference, tmp_path, monkeypatch, where
):
    from dgr_jax import evaluate
    from dgr_jax.evaluators.depth_eval import DepthEvaluator
    from dgr_jax.metric_writer import MetricWriter
    from dgr_jax.trainer import train_and_evaluate

    config, want = one_process_reference

    def sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)  # the signal thread sets the stop flag

    if where == "step":  # after step 3 was logged: saved at step 3
        write = MetricWriter.write_scalars

        def write_scalars(self, step, scalars, kind="train"):
            write(self, step, scalars, kind=kind)
            if step == 3 and kind == "train":
                sigterm()

        monkeypatch.setattr(MetricWriter, "write_scalars", write_scalars)
        expected = 3
    else:  # inside the evaluation at step 4: abandoned, step 4 saved without its metrics
        run_all, load, armed = evaluate.run_all, DepthEvaluator._load, []

        def run_all_at(evaluators, predict, state, *, step, out_root=None):
            armed.append(step == 4)
            return run_all(evaluators, predict, state, step=step, out_root=out_root)

        def _load(self, index):
            if armed and armed[-1]:
                armed.append(False)  # once
                sigterm()
            return load(self, index)

        monkeypatch.setattr(evaluate, "run_all", run_all_at)
        monkeypatch.setattr(DepthEvaluator, "_load", _load)
        expected = 4
    run = tmp_path / "run"
    assert train_and_evaluate(config, str(run)) == {}
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir()) == [expected]
    monkeypatch.undo()
    train_and_evaluate(config, str(run))
    got = _losses(run)
    assert sorted(got) == sorted(want) == list(range(1, 7))
    np.testing.assert_allclose([got[s] for s in want], [want[s] for s in want], rtol=1e-6)
    if where == "evaluation":
        with open(run / "eval_metrics.jsonl") as f:
            # 2 (before SIGTERM) and 6 (the rerun's final evaluation); the one at 4 was abandoned
            assert [r["step"] for r in map(json.loads, f)] == [2, 6]
