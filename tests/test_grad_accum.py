"""Gradient accumulation: K micro-batches in one step give the global batch's loss and update.

The loss terms are functions of batch sums (dgr_jax/losses/sums.py), so the sums of K
micro-batches reproduce the whole batch's loss and gradient exactly (float tolerance). The
models here have no BatchNorm (its statistics are per micro-batch) and no dropout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from test_trainer import _cnn_config, _env, _losses, _train_cmd

from dgr_jax import configlib, optim, steps
from dgr_jax.losses import make_loss
from dgr_jax.trainer import TrainingError, train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _batch(rng: np.random.Generator, b: int, h: int = 32, w: int = 48) -> dict:
    depth = rng.uniform(0.5, 9.0, (b, h, w)).astype(np.float32)
    depth[rng.uniform(size=depth.shape) < 0.3] = 0.0  # invalid pixels
    depth[1] = 0.0  # one image without ground truth
    image = rng.normal(size=(b, h, w, 3)).astype(np.float32)
    return {"image": image, "depth": depth}


@pytest.mark.parametrize("terms", [{"silog": 1.0, "otdl": 500.0, "mse": 0.5, "l1": 0.25}])
def test_summed_micro_batch_statistics_give_the_whole_batch_loss(terms):
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_vit_dgr.py:smoke"))
    with config.unlocked():
        config.loss.terms = terms
    loss_fn = make_loss(config.loss)
    rng = np.random.default_rng(0)
    batch = _batch(rng, 8)
    pred = rng.uniform(0.1, 10.0, (8, 32, 48, 1)).astype(np.float32)
    valid = batch["depth"] > 0.1
    whole, whole_terms = jax.jit(loss_fn)(pred, batch["depth"], valid)
    stats = jax.jit(loss_fn.stats)
    parts = [stats(pred[i::4], batch["depth"][i::4], valid[i::4]) for i in range(4)]  # as the step
    summed = jax.tree.map(lambda *x: sum(x), *parts)
    total, split_terms = jax.jit(loss_fn.finish)(summed)
    np.testing.assert_allclose(total, whole, rtol=1e-5)
    for name in terms:
        np.testing.assert_allclose(split_terms[name], whole_terms[name], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_k4_steps_equal_k1_steps_in_losses_and_parameters():
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_vit_dgr.py:smoke"))
    with config.unlocked():  # a real update every step (no warm-up from lr 0)
        config.optim.warmup_steps = 0
        config.optim.lr = 1e-3
        # SILog and MSE (OTDL's sums are checked above; its Sinkhorn compiles slowly, and stops
        # when every sample of its batch has converged, so a micro-batch may stop at another
        # iteration than the whole batch: equal only to within its threshold).
        config.loss.terms = {"silog": 1.0, "otdl": 0.0, "mse": 0.1}
        # Adam divides by sqrt(v) + eps: with the default eps 1e-8 a gradient at rounding level
        # (1e-9, e.g. of a parameter the loss barely reaches) becomes a step of ~0.1 lr, so
        # float rounding differences between any two equal computations grow into lr-sized
        # parameter differences. A larger eps keeps rounding noise at rounding level.
        config.optim.eps = 1e-3
    model_def = steps.model_def_from_config(config)
    loss_fn = make_loss(config.loss)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, 8) for _ in range(3)]
    runs = {}
    for k in (1, 4):
        step = jax.jit(
            steps.make_train_step(
                model_def, loss_fn, tx, schedule, min_depth=config.loss.min_depth, accum_steps=k
            )
        )
        state = steps.init_state(model_def, tx, 0)
        metrics = []
        for batch in batches:
            state, m = step(state, batch)
            metrics.append(jax.device_get(m))
        runs[k] = state, metrics
    (state1, m1), (state4, m4) = runs[1], runs[4]
    for a, b in zip(m1, m4, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=2e-5, atol=1e-6, err_msg=key)
    init = steps.init_state(model_def, tx, 0)["params"]
    changes = jax.tree.leaves(
        jax.tree.map(lambda a, b: np.abs(a - b).max(), state1["params"], init)
    )
    assert max(changes) > 1e-4  # the parameters did move
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-6),
        state1["params"],
        state4["params"],
    )


def test_batch_must_split_over_devices_times_k(tmp_path):
    config = _cnn_config(tmp_path, grad_accum_steps=2)  # batch 8 on 8 devices: 8 % 16
    with pytest.raises(TrainingError, match=r"multiple of 8 x grad_accum_steps \(= 16\)"):
        train_and_evaluate(config, str(tmp_path / "bad"))


def test_loss_without_batch_sums_refuses_accumulation():
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    model_def = steps.model_def_from_config(config)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)

    def plain_loss(pred, gt, valid):
        return (pred[..., 0] - gt).mean(), {}

    with pytest.raises(ValueError, match="batch sums"):
        steps.make_train_step(model_def, plain_loss, tx, schedule, min_depth=0.1, accum_steps=4)


@pytest.mark.slow
def test_sigkill_and_resume_with_k4_reproduces_the_uninterrupted_losses(tmp_path):
    # Batch 8 = K 4 micro-batches of 2, one example per device of a 2-device data axis.
    extra = (
        f"--config.data_dir={tmp_path / 'data'}",
        "--config.mesh.data=2",
        "--config.grad_accum_steps=4",
    )
    ref = tmp_path / "reference"
    subprocess.run(_train_cmd(ref, *extra), env=_env(), check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(killed, *extra), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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
    done = subprocess.run(_train_cmd(killed, *extra), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from checkpoint step" in done.stdout
    assert "4 micro-batches of 2" in done.stdout
    a, b = _losses(ref), _losses(killed)
    assert sorted(b) == list(range(1, 13))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(b)], rtol=1e-6)
