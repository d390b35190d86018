"""GPU train step in bf16: images/s and model FLOP utilisation (MFU), JAX and PyTorch.

    python benchmarks/gpu.py [--quick] [--cpu-dry-run]

Without a GPU (jax.devices() has none) it prints a JSON note and exits 0. On a GPU:

  nyu_vit_dgr   configs/nyu_vit_dgr.py as trained (ViT-B/16 + DPT + DGR, SILog + OTDL, Adam,
                480x640, batch 8) with `dtype="bfloat16"` (float32 parameters and optimiser),
                the trainer's step (benchmarks/harness.py TrainStep) on a device-resident batch.
  jax_dpt       transformers' DPT-Base-sized model (benchmarks/dpt_pair.py "B": ViT-B/16,
                fusion 256, no DGR) converted to JAX, bf16 compute, SILog + Adam, 480x480
                (HF's DPT needs a square input), batch 8.
  torch_dpt     the same PyTorch model with its usual AMP: `torch.autocast("cuda", bfloat16)`
                around forward and loss (no GradScaler: bf16 needs none), float32 SILog,
                torch.optim.Adam (foreach on CUDA), batch 8 at 480x480.

images/s = batch / median step time (after warm-up; steps are synchronised). MFU = model FLOPs
per step / step time / the device's dense bf16 peak (PEAK_BF16 below). Model FLOPs come from
XLA's cost analysis of the compiled JAX step (forward + backward + optimiser, 2 per
multiply-add); the PyTorch side is charged the FLOPs of its JAX twin (the same network at the
same size), and its own `torch.utils.flop_counter` total is printed as a cross-check. XLA
counts a while loop's body once, so OTDL's Sinkhorn iterations are not in the numerator
(their matmuls on the 60x80 grid are a small share anyway): MFU is, if anything, understated.

--cpu-dry-run runs the same code on the CPU with tiny models (no MFU), to check the script
where no GPU is lent. This script has only been run that way so far.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
import traceback

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import dpt_pair, harness
from configs import nyu_vit_dgr
from dgr_jax import optim, protocol

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from NVIDIA's datasheets: H100 SXM5
# 989.4 T, H100 PCIe 756 T, H100 NVL 835 T (1,671 T "with sparsity" halved), H200 SXM 989.4 T,
# H200 NVL 835 T, A100 (SXM4 and PCIe, 40/80 GB) 312 T. Matched in order against
# `device_kind` (e.g. "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-80GB").
PEAK_BF16: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H100", "PCIE"), 756e12),
    (("H100", "NVL"), 835e12),
    (("H100",), 989.4e12),
    (("H200", "NVL"), 835e12),
    (("H200",), 989.4e12),
    (("A100",), 312e12),
)


def peak_flops(device_kind: str) -> float | None:
    kind = device_kind.upper()
    for keys, peak in PEAK_BF16:
        if all(k in kind for k in keys):
            return peak
    return None


def rates(batch: int, seconds: list[float], flops: float | None, peak: float | None) -> dict:
    step_s = float(np.median(seconds))
    out = {
        "step_ms": round(1e3 * step_s, 2),
        "images_per_s": round(batch / step_s, 2),
        "gflops_per_step": None if flops is None else round(flops / 1e9, 1),
        "mfu": None,
    }
    if flops is not None and peak is not None:
        out["mfu"] = round(flops / step_s / peak, 4)
    return out


def time_steps(run, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_nyu_vit_dgr(dry_run: bool, repeats: int, peak: float | None) -> dict:
    config = nyu_vit_dgr.get_config("smoke" if dry_run else None)
    config = harness.resized_config(config, None)
    config.dtype = "bfloat16"
    step = harness.TrainStep.create(config)
    seconds = time_steps(step.run, repeats, warmup=2)
    return {
        "config": "configs/nyu_vit_dgr.py" + (":smoke" if dry_run else ""),
        "dtype": config.dtype,
        "input": list(config.input.size),
        "batch": config.batch_size,
        "compile_s": round(step.compile_s, 1),
        **rates(config.batch_size, seconds, step.flops, peak),
    }


def dpt_config(batch: int, size: int):
    config = harness.resized_config(nyu_vit_dgr.get_config(), (size, size), batch)
    config.loss.terms = {"silog": 1.0, "otdl": 0.0, "mse": 0.0}
    config.dtype = "bfloat16"
    return config


def bench_jax_dpt(hf, size_name, batch, size, repeats, peak) -> tuple[dict, float | None]:
    model_def, params = dpt_pair.to_jax(hf, dtype=jnp.bfloat16)
    step = harness.TrainStep.create(dpt_config(batch, size), model_def=model_def, params=params)
    seconds = time_steps(step.run, repeats, warmup=2)
    out = {
        "model": dpt_pair.describe(size_name),
        "dtype": "bfloat16 compute, float32 params",
        "input": [size, size],
        "batch": batch,
        "compile_s": round(step.compile_s, 1),
        **rates(batch, seconds, step.flops, peak),
    }
    return out, step.flops


def bench_torch_dpt(hf, size_name, batch, size, repeats, peak, flops, device) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    config = dpt_config(batch, size)
    model = hf.to(device).train()
    batch_np = harness.synthetic_batch(batch, (size, size))
    images = torch.from_numpy(batch_np["image"].transpose(0, 3, 1, 2).copy()).to(device)
    gt = torch.from_numpy(batch_np["depth"]).to(device)
    _, schedule = optim.make_optimizer(config.optim, config.total_steps)
    opt = torch.optim.Adam(model.parameters(), lr=float(schedule(0)), eps=config.optim.eps)
    amp_dtype = torch.bfloat16

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=amp_dtype):
            pred = model(pixel_values=images).predicted_depth
        pred = pred.float()
        valid = gt > config.loss.min_depth
        d = torch.log(pred.clamp(min=1e-6)) - torch.log(gt.clamp(min=1e-6))
        d = torch.where(valid, d, torch.zeros_like(d))
        n = valid.sum().clamp(min=1)
        mean_d, mean_d2 = d.sum() / n, (d * d).sum() / n
        loss = protocol.SILOG_SCALE * torch.sqrt(
            mean_d2 - config.loss.silog.variance_focus * mean_d**2
        )
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    step()  # allocations, autotuning
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    seconds = time_steps(step, repeats, warmup=1)
    return {
        "model": dpt_pair.describe(size_name),
        "dtype": f"torch.autocast({device}, bfloat16), float32 params",
        "torch": torch.__version__,
        "attention": hf.config._attn_implementation,
        "input": [size, size],
        "batch": batch,
        "torch_flop_counter_gflops": round(counter.get_total_flops() / 1e9, 1),
        **rates(batch, seconds, flops, peak),
    }


def guarded(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # one side failing (no CUDA torch, OOM) must not hide the other
        return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny models on the CPU")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    info = harness.machine_info()
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus and not args.cpu_dry_run:
        harness.emit(
            {
                "benchmark": "gpu",
                "note": "no GPU among jax.devices(); nothing to measure (see --cpu-dry-run)",
                "devices": [str(d) for d in jax.devices()],
                **info,
            }
        )
        return
    device_kind = gpus[0].device_kind if gpus else "cpu (dry run)"
    peak = peak_flops(device_kind) if gpus else None
    repeats = 5 if args.quick or args.cpu_dry_run else 20
    size_name, batch, size = ("tiny", 2, 64) if args.cpu_dry_run else ("B", 8, 480)
    result = {
        "benchmark": "gpu",
        "quick": args.quick,
        "cpu_dry_run": args.cpu_dry_run,
        "device_kind": device_kind,
        "peak_bf16_tflops": None if peak is None else peak / 1e12,
        "repeats": repeats,
        **info,
    }
    result["nyu_vit_dgr"] = guarded(bench_nyu_vit_dgr, args.cpu_dry_run, repeats, peak)
    print(f"nyu_vit_dgr: {result['nyu_vit_dgr']}", flush=True)
    flops = None
    try:
        hf = dpt_pair.torch_dpt(size_name, size)
        jax_dpt, flops = bench_jax_dpt(hf, size_name, batch, size, repeats, peak)
        result["jax_dpt"] = jax_dpt
    except Exception as e:
        hf, result["jax_dpt"] = None, {"error": f"{type(e).__name__}: {e}"}
    print(f"jax_dpt: {result['jax_dpt']}", flush=True)
    if hf is not None and not args.skip_torch:
        import torch

        device = "cpu" if args.cpu_dry_run else "cuda"
        if device == "cuda" and not torch.cuda.is_available():
            result["torch_dpt"] = {"error": f"torch {torch.__version__} has no CUDA here"}
        else:
            result["torch_dpt"] = guarded(
                bench_torch_dpt, hf, size_name, batch, size, repeats, peak, flops, device
            )
        ips = (result["jax_dpt"].get("images_per_s"), result["torch_dpt"].get("images_per_s"))
        if all(ips):
            result["jax_over_torch"] = round(ips[0] / ips[1], 3)
    harness.emit(result)


if __name__ == "__main__":
    main()
