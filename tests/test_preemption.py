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

import numpy as np
import pytest

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
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if "step 3/" in logs[0].read_text():
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p in procs), _finish(procs, logs)
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
