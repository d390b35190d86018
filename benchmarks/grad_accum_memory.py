"""Train-step memory with gradient accumulation: XLA's memory analysis for K micro-batches.

    python benchmarks/grad_accum_memory.py [--config configs/nyu_newcrfs.py] [--k 1 2 4 8]

Compiles the config's train step (by default NeWCRFs' Swin-L recipe at its published 480x640,
global batch 8) on one device from shapes alone, once per `grad_accum_steps` K, and prints
XLA's memory analysis (arguments = state + batch, temporaries = activations and workspace). The
global batch is the same for every K; the temporaries fall with K (one micro-batch of batch / K
is alive at a time), at the price of one extra forward pass per step (dgr_jax/steps.py; XLA's
cost analysis counts a loop body once, so it cannot show that). On this backend's compiler; a
GPU / TPU compiler schedules and fuses differently, so absolute numbers move there; the trend
with K is the point.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness
from dgr_jax import configlib


def analyse(config_path: str, k: int) -> dict:
    config = configlib.load(config_path)
    with config.unlocked():
        config.grad_accum_steps = k
    start = time.perf_counter()
    compiled = harness.compile_abstract(config)
    return {
        "grad_accum_steps": k,
        "micro_batch": config.batch_size // k,
        "compile_s": round(time.perf_counter() - start, 1),
        "memory_gib": harness.memory_gib(compiled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/nyu_newcrfs.py")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    config = configlib.load(args.config)
    result = {
        "benchmark": "grad_accum_memory",
        "config": args.config,
        "input": list(config.input.size),
        "batch": config.batch_size,
        "runs": [analyse(args.config, k) for k in args.k],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
