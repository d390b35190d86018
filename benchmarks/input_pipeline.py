"""Input-pipeline throughput: images/s of read + decode + augment + batch, per process.

    python benchmarks/input_pipeline.py [--quick] [--config configs/synthetic_vit_dgr.py]

Builds the config's synthetic dataset into a temporary dir (or reads `--data_dir`), then times
the training iterator with the config's pp string. `headroom` = pipeline images/s over the
images/s the config's train step consumes (measured here with the trainer when it is
available). Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dgr_jax import configlib
from dgr_jax.data import datasets, pipeline


def pipeline_rate(source, pp: str, batch: int, seconds: float, workers: int) -> float:
    it = pipeline.train_iterator(source, pp=pp, global_batch=batch, seed=0, workers=workers)
    next(it)  # warm-up (worker start, first decode)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(it)
        n += batch
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="a run under two minutes on 2 cores")
    p.add_argument("--config", default="configs/synthetic_vit_dgr.py")
    p.add_argument("--data_dir", default="")
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args()
    config = configlib.load(args.config)
    num_train = 64 if args.quick else 256
    build_args = dict(config.input.build)
    build_args["num_train"] = num_train
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="dgr_bench_")
    start = time.perf_counter()
    source = datasets.open_split(config.input.dataset, "train", data_dir, build_args=build_args)
    build_s = time.perf_counter() - start
    rate = pipeline_rate(
        source, config.input.pp_train, config.batch_size, 5.0 if args.quick else 20.0, args.workers
    )
    result = {
        "config": args.config,
        "dataset": config.input.dataset,
        "image_size": list(config.input.size),
        "pp": config.input.pp_train,
        "workers": args.workers,
        "pipeline_images_per_s": round(rate, 1),
        "synthetic_build_s": round(build_s, 1),
        "synthetic_build_images": num_train + build_args.get("num_test", 0),
        "headroom": None,
        "train_images_per_s": None,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
