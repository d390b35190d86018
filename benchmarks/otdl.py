"""OTDL cost: ott Grid vs dense PointCloud vs the exact row-only closed form vs exact 2-D EMD.

    python benchmarks/otdl.py [--quick]

For the default OT grid of configs/synthetic_vit_dgr.py (the main config) and of
configs/nyu_vit_dgr.py, on synthetic indoor depth maps at the config's input size, it times one
jitted forward + backward of `otdl` (the config's `loss.otdl` settings) per geometry and divides
by the batch size, and runs the authors' exact EMD (POT `emd2`, network simplex, on the same
masses and the full 2-D squared cost; forward only, as the authors use it). It also reports how
far the entropic value is from the exact W2^2, and the magnitudes behind lambda_ot: SILog and
OTDL values and the ratio of their gradient norms on predictions of increasing error.

`step_overhead` = (train-step time with OTDL / without) - 1 on the main config: the trainer's
step (benchmarks/harness.py TrainStep: model, SILog + OTDL, Adam, donated state) at the config's
batch and input size, against the same step with `loss.terms.otdl = 0`, interleaved after
warm-up, medians (with --quick: batch 2, fewer repeats; the JSON says so). The Sinkhorn loop
runs until convergence, so its cost depends on the predictions; the steps train on one fixed
synthetic batch from the randomly initialised model.

The last line printed is one JSON object. POT is optional (benchmarks/requirements.txt); without
it `exact_emd_ms` is null with a note. Timings on a shared CPU are noisy.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import gaussian_filter

from benchmarks import harness
from configs import nyu_vit_dgr, synthetic_vit_dgr
from dgr_jax import jsonio
from dgr_jax.losses.depth import silog
from dgr_jax.losses.ot import ot_masses, otdl, pixel_centres

# Dense PointCloud stores an n x n cost per sample and costs O(n^2) per Sinkhorn iteration:
# run it only up to this many grid points (60x80 = 4800 takes tens of seconds on 2 CPU cores).
POINTCLOUD_MAX_POINTS = {"quick": 1200, "full": 4800}


def synthetic_scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth indoor-like depth map in [0.5, 10] m: floor/wall ramp, boxes, low-freq bumps."""
    depth = harness.smooth_depth(rng, height, width, max_depth=10.0)
    depth = depth + 2.0 * gaussian_filter(rng.standard_normal((height, width)), height / 30)
    return np.clip(depth, 0.5, 10.0).astype(np.float32)


def synthetic_prediction(rng: np.random.Generator, gt: np.ndarray, level: float) -> np.ndarray:
    """gt blurred, times a smooth log-scale error field, pixel noise and a global scale error."""
    height, _ = gt.shape
    low = gaussian_filter(rng.standard_normal(gt.shape), height / 6)
    low *= 0.10 * level / (low.std() + 1e-8)
    noise = 0.03 * level * rng.standard_normal(gt.shape)
    scale = 0.05 * level * rng.standard_normal()
    blurred = gaussian_filter(gt, 2.0 * level * height / 240)
    return (blurred * np.exp(low + noise + scale)).astype(np.float32)


def make_batch(seed: int, batch: int, size: tuple[int, int], level: float = 1.0):
    rng = np.random.default_rng(seed)
    gt = np.stack([synthetic_scene(rng, *size) for _ in range(batch)])
    pred = np.stack([synthetic_prediction(rng, g, level) for g in gt])
    return pred, gt, gt > 0.1


def time_call(fn, *args, repeats: int) -> tuple[float, float]:
    """(compile + first run seconds, median seconds of `repeats` further runs)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def otdl_fwd_bwd(ot_kwargs: dict, geometry: str):
    def loss(pred, gt, valid):
        return jnp.sum(otdl(pred, gt, valid, **{**ot_kwargs, "geometry": geometry}))

    return jax.jit(jax.value_and_grad(loss))


def exact_emd(pred, gt, valid, grid_size) -> tuple[np.ndarray | None, float | None, str | None]:
    """POT emd2 per sample on the OTDL masses and the full 2-D squared cost; (values, s, note)."""
    try:
        import ot as pot  # POT: benchmarks/requirements.txt
    except ImportError:
        return None, None, "POT not installed (pip install -r benchmarks/requirements.txt)"
    a, b, _ = ot_masses(pred, gt, valid, grid_size=grid_size)
    ys, xs = (np.asarray(c, np.float64) for c in pixel_centres(*a.shape[1:]))
    points = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)  # (n, 2)
    cost = ((points[:, None] - points[None]) ** 2).sum(-1)  # (n, n)
    values, seconds = [], []
    for pa, pb in zip(np.asarray(a, np.float64), np.asarray(b, np.float64)):
        pa, pb = pa.ravel() / pa.sum(), pb.ravel() / pb.sum()
        start = time.perf_counter()
        values.append(pot.emd2(pa, pb, cost, numItermax=10**8))
        seconds.append(time.perf_counter() - start)
    return np.array(values), float(np.median(seconds)), None


def bench_config(cfg, quick: bool) -> dict:
    size = tuple(cfg.input.size)
    ot_kwargs = cfg.loss.otdl.to_dict()
    ot_kwargs["grid_size"] = tuple(ot_kwargs["grid_size"])
    points = ot_kwargs["grid_size"][0] * ot_kwargs["grid_size"][1]
    batch = cfg.batch_size
    repeats = 2 if quick else 5
    pred, gt, valid = make_batch(0, batch, size)
    out = {"input": list(size), "grid": list(ot_kwargs["grid_size"]), "batch": batch}

    for geometry in ("grid", "rows"):
        compile_s, run_s = time_call(
            otdl_fwd_bwd(ot_kwargs, geometry), pred, gt, valid, repeats=repeats
        )
        out[f"{geometry}_ms"] = round(1e3 * run_s / batch, 3)
        out[f"{geometry}_compile_s"] = round(compile_s, 2)
    if points <= POINTCLOUD_MAX_POINTS["quick" if quick else "full"]:
        # One sample: the dense cost is n^2 floats per sample in the batch.
        fn = otdl_fwd_bwd(ot_kwargs, "pointcloud")
        compile_s, run_s = time_call(fn, pred[:1], gt[:1], valid[:1], repeats=1 if quick else 2)
        out["pointcloud_ms"] = round(1e3 * run_s, 3)
    else:
        out["pointcloud_ms"] = None
        out["pointcloud_note"] = f"skipped: {points} points ({points**2 * 4 / 2**20:.0f} MiB cost)"

    # Agreement with exact OT on a few samples (the EMD is the slow part).
    # The network simplex takes ~15 s per 60x80 sample on 2 cores: one sample in --quick there.
    emd_samples = (2 if points <= POINTCLOUD_MAX_POINTS["quick"] else 1) if quick else 4
    values, emd_s, note = exact_emd(
        pred[:emd_samples], gt[:emd_samples], valid[:emd_samples], ot_kwargs["grid_size"]
    )
    out["exact_emd_ms"] = None if emd_s is None else round(1e3 * emd_s, 1)
    if note:
        out["exact_emd_note"] = note
    else:
        entropic = np.asarray(jax.jit(lambda *x: otdl(*x, **ot_kwargs))(pred, gt, valid))
        rel = entropic[:emd_samples] / values - 1.0
        out["exact_w2"] = [float(f"{v:.4g}") for v in values]
        out["grid_rel_to_exact"] = [round(float(r), 4) for r in rel]
        out["emd_over_grid_time"] = round(out["exact_emd_ms"] / out["grid_ms"], 1)
    return out


def calibration(cfg) -> dict:
    """SILog and OTDL magnitudes, and lambda_ot * |grad OTDL| / |grad SILog|, by error level."""
    size, batch = tuple(cfg.input.size), cfg.batch_size
    ot_kwargs = cfg.loss.otdl.to_dict()
    ot_kwargs["grid_size"] = tuple(ot_kwargs["grid_size"])
    lam = float(cfg.loss.terms.otdl)
    silog_vg = jax.jit(jax.value_and_grad(lambda *x: silog(*x, **cfg.loss.silog.to_dict())))
    otdl_vg = jax.jit(jax.value_and_grad(lambda *x: jnp.mean(otdl(*x, **ot_kwargs))))
    rows = []
    for level in (0.25, 0.5, 1.0, 2.0):
        pred, gt, valid = make_batch(1, batch, size, level)
        s_val, s_grad = silog_vg(pred, gt, valid)
        o_val, o_grad = otdl_vg(pred, gt, valid)
        s_grad, o_grad = np.asarray(s_grad).ravel(), np.asarray(o_grad).ravel()
        ratio = lam * np.linalg.norm(o_grad) / np.linalg.norm(s_grad)
        cosine = o_grad @ s_grad / (np.linalg.norm(o_grad) * np.linalg.norm(s_grad))
        rows.append(
            {
                "error_level": level,
                "silog": round(float(s_val), 4),
                "otdl": float(f"{float(o_val):.4g}"),
                "weighted_otdl": round(lam * float(o_val), 4),
                "grad_ratio": round(float(ratio), 3),
                "grad_cosine": round(float(cosine), 3),
            }
        )
    return {"lambda_ot": lam, "input": list(size), "levels": rows}


def step_overhead(cfg, quick: bool) -> dict:
    """Train-step time of `cfg` with and without its OTDL term, interleaved; medians."""
    batch = 2 if quick else cfg.batch_size
    with_ot = harness.resized_config(cfg, None, batch)
    without = harness.resized_config(cfg, None, batch)
    without.loss.terms.otdl = 0.0
    sides = {"with_otdl": harness.TrainStep.create(with_ot)}
    sides["without_otdl"] = harness.TrainStep.create(without)
    times = harness.time_interleaved(
        {name: s.run for name, s in sides.items()}, repeats=2 if quick else 5
    )
    with_ms, without_ms = (harness.median_ms(times[k]) for k in ("with_otdl", "without_otdl"))
    return {
        "step_overhead": round(with_ms / without_ms - 1.0, 4),
        "step_overhead_setup": {
            "config": "configs/synthetic_vit_dgr.py",
            "batch": batch,
            "batch_note": "reduced from the config's batch for --quick" if quick else "config",
            "input": list(cfg.input.size),
            "with_otdl_ms": with_ms,
            "without_otdl_ms": without_ms,
            "with_otdl_gflops": round((sides["with_otdl"].flops or 0) / 1e9, 1),
            "without_otdl_gflops": round((sides["without_otdl"].flops or 0) / 1e9, 1),
            "runs": harness.summary(times),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and EMD samples")
    args = parser.parse_args()

    load_start = harness.load_average()
    main_cfg = synthetic_vit_dgr.get_config()
    results = {
        "benchmark": "otdl",
        "quick": args.quick,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "cpu": harness.cpu_model(),
        "num_cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "unit": "ms per sample, forward + backward (EMD: forward only, no gradient)",
    }
    try:
        import ot as pot

        results["pot"] = pot.__version__
    except ImportError:
        results["pot"] = None
    results["configs"] = {}
    for name, module in (("synthetic_vit_dgr", synthetic_vit_dgr), ("nyu_vit_dgr", nyu_vit_dgr)):
        cfg = module.get_config()
        results["configs"][name] = bench_config(cfg, args.quick)
        print(f"{name}: {jsonio.dumps(results['configs'][name])}", flush=True)
    results["grid_ms"] = results["configs"]["synthetic_vit_dgr"]["grid_ms"]
    results["calibration"] = calibration(main_cfg)
    results.update(step_overhead(main_cfg, args.quick))
    results["load_avg_start"] = load_start
    harness.emit(results)


if __name__ == "__main__":
    main()
