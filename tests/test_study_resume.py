"""The studies as a pod runs them: one design per workdir, stop on SIGTERM, resume to the same end.

The fast tests cover the refusal of a changed study config (function and command line) and how
a run that stopped early stops the study; the slow one runs a tiny ablation study on two
processes (gloo, one CPU device each, loopback), sends SIGTERM to both in its second run, reruns
the same command and compares summary.json with an uninterrupted two-process study.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dgr_jax import configlib, jsonio
from dgr_jax.analysis.common import runs, workdir
from dgr_jax.preemption import EXIT_PREEMPTED, Preempted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(ROOT, "configs/ablation_synthetic.py") + ":smoke"


# ----- A changed design is refused ------------------------------------------------------------
def test_a_changed_study_config_is_refused_naming_the_changed_keys(tmp_path):
    config = configlib.load(SMOKE)
    assert workdir.check_and_record_config(str(tmp_path), config) is False  # first start
    recorded = (tmp_path / "config.json").read_text()
    assert jsonio.read(tmp_path / "config.json") == jsonio.config_json(config)
    assert workdir.check_and_record_config(str(tmp_path), config) is True  # same design: rerun

    with config.unlocked():
        config.seeds = (0, 1, 2)
        config.bootstrap.num_resamples = 7
    with pytest.raises(workdir.StudyConfigChanged) as e:
        workdir.check_and_record_config(str(tmp_path), config)
    message = str(e.value)
    assert "seeds: recorded [0, 1], now [0, 1, 2]" in message
    assert "bootstrap.num_resamples: recorded 1000, now 7" in message
    assert "main_arms" not in message  # only what changed is named
    assert (tmp_path / "config.json").read_text() == recorded  # the record stays


def test_the_command_line_refuses_a_changed_config_before_anything_runs(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    workdir.check_and_record_config(str(study), configlib.load(SMOKE))
    cmd = [
        sys.executable,
        "-m",
        "dgr_jax.analysis.ablation",
        f"--config={SMOKE}",
        f"--workdir={study}",
        "--config.seeds=(0,)",
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "error:" in done.stderr and "seeds: recorded [0, 1], now [0]" in done.stderr
    assert sorted(p.name for p in study.iterdir()) == ["config.json"]  # nothing built or trained


def test_a_run_that_stopped_early_stops_the_study(tmp_path, monkeypatch):
    """One process: the trainer saves and returns on SIGTERM; the study must not go on with the
    unfinished run (evaluate it, start the next): `ensure_trained` raises Preempted."""
    import dgr_jax.trainer

    config = configlib.load(os.path.join(ROOT, "configs/synthetic_vit.py") + ":smoke")
    steps = iter([None, 10])  # no checkpoint before; the SIGTERM save at step 10 after
    monkeypatch.setattr(runs, "latest_step", lambda _: next(steps))
    monkeypatch.setattr(dgr_jax.trainer, "train_and_evaluate", lambda *_: {})
    with pytest.raises(Preempted) as e:
        runs.ensure_trained(config, str(tmp_path), log=lambda _: None)
    assert e.value.step == 10 and "rerun the same command" in str(e.value)


# ----- Two processes, SIGTERM, rerun ----------------------------------------------------------
# Two arms, one seed, 6 steps of the smoke models (32x48), no step timing and no gradients
# picture: the smallest study that still trains two runs, evaluates, bootstraps and reports.
TINY = """
from configs import ablation_synthetic


def get_config(arg=None):
    c = ablation_synthetic.get_config("smoke")
    with c.unlocked():
        c.main_arms = ("vit", "vit+dgr")
        c.seeds = (0,)
        c.exploratory_seed = 0
        c.claims = tuple(x for x in c.claims if x[1] in c.main_arms and x[2] in c.main_arms)
        c.cost.timing_arms = ()
        c.pictures = ()
        c.bootstrap.num_resamples = 200
        c.base_overrides = (*c.base_overrides, "total_steps=6", "ckpt_every=100", "log_every=1")
    return c
"""
# What differs between two invocations of the same study by nature: wall times and the machine.
VOLATILE = ("timing", "load_average", "host")  # and each run's seconds


def _env(devices: int = 8, *, processes: int = 1) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = ROOT
    if processes > 1:  # as train.py does by default: no per-host cache across processes
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_study(config: str, study, log_prefix) -> list[subprocess.Popen]:
    """Both processes of the two-process study (output to files: a full pipe would stall one
    process, and with it the other at their next collective)."""
    port, procs = _free_port(), []
    for pid in range(2):
        cmd = [
            sys.executable,
            "-m",
            "dgr_jax.analysis.ablation",
            f"--config={config}",
            f"--workdir={study}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={pid}",
        ]
        with open(f"{log_prefix}.{pid}.log", "a") as log:
            procs.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, env=_env(1, processes=2), stdout=log, stderr=subprocess.STDOUT
                )
            )
    return procs


def _wait(procs, log_prefix, timeout: float = 1200) -> list[int]:
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"study hung; logs:\n{_logs(log_prefix)}")
    return [p.returncode for p in procs]


def _logs(log_prefix) -> str:
    return "".join(
        f"--- process {pid}\n{Path(f'{log_prefix}.{pid}.log').read_text()[-4000:]}"
        for pid in range(2)
    )


def _comparable(study) -> dict:
    """summary.json without what differs by nature; the study's own folder reads W."""
    summary = json.loads((study / "summary.json").read_text().replace(str(study), "W"))
    out = {k: v for k, v in summary.items() if k not in VOLATILE}
    out["runs"] = [{k: v for k, v in r.items() if "seconds" not in k} for r in summary["runs"]]
    return out


@pytest.mark.slow
def test_two_process_study_stopped_by_sigterm_in_its_second_run_resumes_to_the_same_summary(
    tmp_path,
):
    config = tmp_path / "tiny_study.py"
    config.write_text(TINY)
    reference, study = tmp_path / "reference", tmp_path / "study"

    # The uninterrupted study and, beside it, the same study with SIGTERM to both processes as
    # soon as its second run starts (side by side: the two share the machine's cores).
    log_ref, log = tmp_path / "reference_log", tmp_path / "study_log"
    reference_procs = _start_study(str(config), reference, log_ref)
    procs = _start_study(str(config), study, log)
    second = study / "arms" / "vit+dgr" / "seed0"
    deadline = time.time() + 1200
    while not (second / "config.json").exists() and time.time() < deadline:
        if any(p.poll() is not None for p in procs):
            pytest.fail(f"the study ended before its second run:\n{_logs(log)}")
        time.sleep(0.05)
    for p in procs:
        p.send_signal(signal.SIGTERM)
    # The processes agree on a step once run 2 has compiled and trains: they save it and exit.
    codes = _wait(procs, log, timeout=600)
    assert codes == [EXIT_PREEMPTED] * 2, _logs(log)
    assert _wait(reference_procs, log_ref) == [0, 0], _logs(log_ref)
    text = _logs(log)
    assert "preempted: saved step" in text, text
    saved = sorted(int(p.name) for p in (second / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < 6, (saved, text)  # the agreed step, not the end
    assert not (second / "eval").exists() and not (study / "summary.json").exists()
    first = study / "arms" / "vit" / "seed0"
    assert (first / "checkpoints" / "6").is_dir()

    # The same command again: the first run reused, the second resumed at its step.
    codes = _wait(_start_study(str(config), study, log), log)
    assert codes == [0, 0], _logs(log)
    text = Path(f"{log}.0.log").read_text()
    assert f"{first}: checkpoint at step 6; using it" in text
    assert f"resuming from checkpoint step {saved[-1]}" in text
    a, b = _comparable(reference), _comparable(study)
    assert b["claims"] and b["comparisons"] and b["arms"]["vit+dgr"]["abs_rel"]["mean"] > 0
    assert b["command"].startswith(f"python -m dgr_jax.analysis.ablation --config={config} ")
    a["command"] = b["command"]  # their ports differ
    assert b == a  # deltas, intervals, verdicts, arm means, constant depth, cost: all equal
