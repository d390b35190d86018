"""Input-pipeline throughput: images/s of read + decode + augment + batch, per process.

    python benchmarks/input_pipeline.py [--quick] [--config configs/synthetic_vit_dgr.py]

Builds the config's synthetic dataset into a temporary dir (or reads `--data_dir`), then times
the training iterator with the config's pp string. `headroom` = pipeline images/s over the
images/s the config's train step consumes (`train_images_per_s`: the trainer's step,
benchmarks/harness.py TrainStep, on a fixed batch; at batch 2 with --quick, which the JSON
says). Both share the 2 cores when training, so the script also runs the step fed by the
pipeline through the trainer's prefetch thread (`train_with_pipeline_images_per_s`); the gap
between the two rates is what the input pipeline really costs.

Real-dataset shapes: it also builds a tiny fake NYU copy (480x640 JPEG RGB + 16-bit PNG depth,
BTS layout) and a fake KITTI copy (375x1242 PNG RGB + sparse 16-bit PNG depth) with the real
builders (dgr_jax/data/fake_manual.py), and times decode alone (`*_decode_images_per_s`) and
decode + the pp_train of configs/nyu_vit_dgr.py / configs/kitti_vit_dgr.py through the same
training iterator (`*_decode_augment_images_per_s`). Synthetic pixels compress differently
from photos, so these rates are indicative. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

from benchmarks import harness
from dgr_jax import configlib
from dgr_jax.data import datasets, fake_manual, pipeline
from dgr_jax.data.prefetch import Prefetcher

# Fake copies shaped like the real datasets: (builder of the manual dir, its size argument).
REAL_SHAPED = {
    "nyu": ("configs/nyu_vit_dgr.py", fake_manual.make_nyu, {"size": (480, 640)}),
    "kitti": ("configs/kitti_vit_dgr.py", fake_manual.make_kitti, {"size": (375, 1242)}),
}


def pipeline_rate(source, pp: str, batch: int, seconds: float, workers: int) -> float:
    it = pipeline.train_iterator(source, pp=pp, global_batch=batch, seed=0, workers=workers)
    next(it)  # warm-up (worker start, first decode)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch
    return n / (time.perf_counter() - start)


def decode_rate(source, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        source[n % len(source)]
        n += 1
    return n / (time.perf_counter() - start)


def real_shaped_rates(quick: bool, workers: int) -> dict:
    """Decode and decode+augment images/s on fake NYU- and KITTI-shaped builds."""
    seconds = 3.0 if quick else 15.0
    per_split = 8 if quick else 24  # training examples in each fake copy
    out = {}
    for key, (config_path, make, size) in REAL_SHAPED.items():
        config = configlib.load(config_path)
        with tempfile.TemporaryDirectory(prefix=f"dgr_bench_{key}_") as tmp:
            count = (
                {"frames_per_scene": per_split // 2} if key == "nyu" else {"frames": per_split // 2}
            )
            copy = make(Path(tmp) / "manual", **size, **count)
            start = time.perf_counter()
            source = datasets.open_split(
                config.input.dataset, "train", str(Path(tmp) / "data"), manual_dir=str(copy.root)
            )
            out[f"{key}_build_s"] = round(time.perf_counter() - start, 1)
            out[f"{key}_decode_images_per_s"] = round(decode_rate(source, seconds / 2), 1)
            rate = pipeline_rate(source, config.input.pp_train, config.batch_size, seconds, workers)
            out[f"{key}_decode_augment_images_per_s"] = round(rate, 1)
            out[f"{key}_pp"] = config.input.pp_train
    return out


def train_rates(config, source, quick: bool, workers: int) -> dict:
    """Images/s of the config's train step alone and fed by the pipeline (prefetch thread)."""
    batch = 2 if quick else config.batch_size
    cfg = harness.resized_config(config, None, batch)
    step = harness.TrainStep.create(cfg)
    repeats = 2 if quick else 5
    times = harness.time_interleaved({"step": step.run}, repeats=repeats)
    alone = batch / (harness.median_ms(times["step"]) / 1e3)

    it = pipeline.train_iterator(
        source, pp=cfg.input.pp_train, global_batch=batch, seed=0, workers=workers
    )
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    prefetch = Prefetcher(it, {"image": device, "depth": device}, cfg.input.prefetch)
    try:
        step.run(prefetch.next()[0])  # warm-up: worker start, first batches
        steps = repeats + 1
        start = time.perf_counter()
        metrics = None
        for _ in range(steps):  # the trainer's loop: dispatch, no per-step host sync
            metrics = step.run(prefetch.next()[0], block=False)
        jax.block_until_ready(metrics)
        fed = steps * batch / (time.perf_counter() - start)
    finally:
        prefetch.close()
    return {
        "train_batch": batch,
        "train_batch_note": "reduced from the config's batch for --quick" if quick else "config",
        "train_images_per_s": round(alone, 2),
        "train_with_pipeline_images_per_s": round(fed, 2),
        "train_step_runs": harness.summary(times)["step"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="a run under two minutes on 2 cores")
    p.add_argument("--config", default="configs/synthetic_vit_dgr.py")
    p.add_argument("--data_dir", default="")
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args()
    info = harness.machine_info()
    config = configlib.load(args.config)
    num_train = 64 if args.quick else 256
    build_args = dict(config.input.build)
    build_args["num_train"] = num_train
    if args.quick:  # only the train split is timed; a small test split keeps --quick short
        build_args["num_test"] = min(build_args.get("num_test", 0), 8)
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="dgr_bench_")
    start = time.perf_counter()
    source = datasets.open_split(config.input.dataset, "train", data_dir, build_args=build_args)
    build_s = time.perf_counter() - start
    rate = pipeline_rate(
        source, config.input.pp_train, config.batch_size, 5.0 if args.quick else 20.0, args.workers
    )
    train = train_rates(config, source, args.quick, args.workers)
    result = {
        "benchmark": "input_pipeline",
        "quick": args.quick,
        "config": args.config,
        "dataset": config.input.dataset,
        "image_size": list(config.input.size),
        "pp": config.input.pp_train,
        "workers": args.workers,
        "pipeline_images_per_s": round(rate, 1),
        "synthetic_build_s": round(build_s, 1),
        "synthetic_build_images": num_train + build_args.get("num_test", 0),
        **real_shaped_rates(args.quick, args.workers),
        "headroom": round(rate / train["train_images_per_s"], 1),
        **train,
        **info,
    }
    harness.emit(result)


if __name__ == "__main__":
    main()
