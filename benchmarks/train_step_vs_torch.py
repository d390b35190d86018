"""One optimiser step of the same DPT in JAX (ours) and in PyTorch (transformers), side by side.

    python benchmarks/train_step_vs_torch.py [--quick]

The PyTorch side is transformers' `DPTForDepthEstimation` with a ViT-S/16-sized backbone
(hidden 384, 12 layers, 6 heads, MLP 1536, neck 48/96/192/384 from layers 3/6/9/12, readout
"project", fusion width 128: the size class of configs/synthetic_vit_dgr.py), randomly
initialised offline. The JAX side is that very model converted with
`dgr_jax.convert.convert_hf` (same weights), trained by `steps.make_train_step`, the trainer's
step (state donated). Both sides: float32, the same batch of normalised images and depth maps,
SILog (variance focus 0.85, x10, pooled over gt > 0.1 m, logs of max(depth, 1e-6): the same
formula written in torch), Adam (eps 1e-8) with the config's poly learning-rate schedule, the
same number of steps. The first-step losses must agree (printed as `first_loss_rel_diff`).

Input: square, because HF DPT's neck reshapes its tokens to a square grid when the backbone is
its own ViT; 256x256 (a multiple of 32, so HF's and our decoder resize identically) by
default, 224x224 with --quick. Threads: XLA:CPU uses one intra-op thread per core; torch is
set to the same count (`torch.set_num_threads(os.cpu_count())`). The sides alternate
(A B B A ...) after warm-up; each reports the median of its repeats.

A third side, `jax_xla_default`, is the same JAX step compiled with XLA's default options
instead of the project's (`dgr_jax.xla_options`, which the trainer uses): the before/after of
that choice, measured in the same run.

JSON (last line): jax_ms, torch_ms, speedup = torch_ms / jax_ms, jax_xla_default_ms,
xla_options_gain = jax_xla_default_ms / jax_ms, and the details.
"""

from __future__ import annotations

import os
import pathlib
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from benchmarks import dpt_pair, harness
from configs import synthetic_vit_dgr
from dgr_jax import optim, protocol, xla_options


def bench_config(batch: int, size: int):
    """synthetic_vit_dgr's optimiser and schedule, SILog only, at the benchmark's batch/size."""
    config = harness.resized_config(synthetic_vit_dgr.get_config(), (size, size), batch)
    config.loss.terms = {"silog": 1.0, "otdl": 0.0, "mse": 0.0}
    config.loss.silog.variance_focus = protocol.SILOG_VARIANCE_FOCUS  # the hosts' 0.85
    return config


def torch_step_fn(model, batch: dict, config, lrs: np.ndarray):
    """A closure running one SILog + Adam step of `model` (train mode); returns the loss."""
    import torch

    images = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).copy())  # NHWC -> NCHW
    gt = torch.from_numpy(np.array(batch["depth"]))
    focus, floor = config.loss.silog.variance_focus, 1e-6
    opt = torch.optim.Adam(model.parameters(), lr=float(lrs[0]), eps=float(config.optim.eps))
    model.train()
    count = [0]

    def step() -> float:
        for group in opt.param_groups:  # the same poly schedule as optax's
            group["lr"] = float(lrs[count[0]])
        opt.zero_grad(set_to_none=True)
        pred = model(pixel_values=images).predicted_depth  # (B, H, W)
        valid = gt > config.loss.min_depth
        d = torch.log(pred.clamp(min=floor)) - torch.log(gt.clamp(min=floor))
        d = torch.where(valid, d, torch.zeros_like(d))
        n = valid.sum().clamp(min=1)
        mean_d, mean_d2 = d.sum() / n, (d * d).sum() / n
        loss = protocol.SILOG_SCALE * torch.sqrt(mean_d2 - focus * mean_d**2)
        loss.backward()
        opt.step()
        count[0] += 1
        return float(loss.detach())

    return step


def main() -> None:
    batch, size, repeats, quick = harness.pair_args(__doc__.split("\n")[0], 4, 2)

    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    info = harness.machine_info()

    hf = dpt_pair.torch_dpt("S", size)
    model_def, params = dpt_pair.to_jax(hf)
    config = bench_config(batch, size)
    jax_step = harness.TrainStep.create(config, model_def=model_def, params=params)
    default_step = harness.TrainStep.create(
        config, model_def=model_def, params=params, xla_default=True
    )
    _, schedule = optim.make_optimizer(config.optim, config.total_steps)
    lrs = np.asarray(jax.device_get(schedule(np.arange(repeats + 2))))
    host_batch = jax.device_get(jax_step.batch)
    torch_step = torch_step_fn(hf, host_batch, config, lrs)

    losses = {"jax": [], "jax_xla_default": [], "torch": []}
    times = harness.time_interleaved(
        {
            "jax": lambda: losses["jax"].append(float(jax_step.run()["loss"])),
            "jax_xla_default": lambda: losses["jax_xla_default"].append(
                float(default_step.run()["loss"])
            ),
            "torch": lambda: losses["torch"].append(torch_step()),
        },
        repeats=repeats,
    )
    jax_ms = harness.median_ms(times["jax"])
    torch_ms = harness.median_ms(times["torch"])
    default_ms = harness.median_ms(times["jax_xla_default"])
    first_j, first_t = losses["jax"][0], losses["torch"][0]
    result = {
        "benchmark": "train_step_vs_torch",
        **dpt_pair.setup_fields(
            hf, quick=quick, batch=batch, size=size, threads=threads, repeats=repeats
        ),
        "loss": "SILog",
        "optimizer": "Adam (optax.adam / torch.optim.Adam default), poly lr schedule",
        "jax_ms": jax_ms,
        "torch_ms": torch_ms,
        "speedup": round(torch_ms / jax_ms, 3),
        "jax_xla_options": xla_options.options(),
        "jax_xla_default_ms": default_ms,
        "xla_options_gain": round(default_ms / jax_ms, 3),
        "jax_compile_s": round(jax_step.compile_s, 1),
        "jax_step_gflops": round((jax_step.flops or 0.0) / 1e9, 1),
        "first_loss": {k: round(v[0], 5) for k, v in losses.items()},
        "first_loss_rel_diff": float(f"{abs(first_j - first_t) / abs(first_t):.2e}"),
        "last_loss": {k: round(v[-1], 5) for k, v in losses.items()},
        "runs": harness.summary(times),
        **info,
    }
    harness.emit(result)


if __name__ == "__main__":
    main()
