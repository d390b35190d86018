"""Train-step memory with and without activation rematerialisation and bf16 compute.

    python benchmarks/memory.py [--quick] [--variant L] [--size 480 640] [--batch 8]

Compiles the trainer's step of configs/nyu_vit_dgr.py (SILog + OTDL, Adam) with the encoder
variant swapped (ViT-L/16 by default, DPT-Large's neck) at 480x640, batch 8, from shapes
alone (nothing is allocated, so a laptop can analyse a GPU-sized step), for `remat` off/on and
`dtype` float32/bfloat16, and prints XLA's memory analysis (arguments = state + batch,
temporaries = activations and workspace) and its FLOP count. On this backend's compiler:
the GPU compiler schedules and fuses differently, so absolute numbers move there; the ratio
remat/no-remat is the point. --quick: ViT-B at 240x320, batch 2, float32 only.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import harness
from configs import nyu_vit_dgr


def analyse(variant: str, size, batch: int, dtype: str, remat: bool) -> dict:
    config = harness.resized_config(nyu_vit_dgr.get_config(), size, batch)
    config.model.encoder.variant = variant
    config.dtype, config.remat = dtype, remat
    start = time.perf_counter()
    compiled = harness.compile_abstract(config)
    cost = compiled.cost_analysis()
    return {
        "dtype": dtype,
        "remat": remat,
        "compile_s": round(time.perf_counter() - start, 1),
        "gflops": round(float(cost.get("flops", 0.0)) / 1e9, 1),
        "memory_gib": harness.memory_gib(compiled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="ViT-B, 240x320, batch 2, float32")
    parser.add_argument("--variant", default=None, help="ViT variant (default L; B with --quick)")
    parser.add_argument("--size", type=int, nargs=2, default=None)
    parser.add_argument("--batch", type=int, default=None)
    args = parser.parse_args()
    variant = args.variant or ("B" if args.quick else "L")
    size = tuple(args.size) if args.size else ((240, 320) if args.quick else (480, 640))
    batch = args.batch or (2 if args.quick else 8)
    dtypes = ("float32",) if args.quick else ("float32", "bfloat16")
    result = {
        "benchmark": "memory",
        "quick": args.quick,
        "config": "configs/nyu_vit_dgr.py",
        "encoder": f"ViT-{variant}/16",
        "input": list(size),
        "batch": batch,
        **harness.machine_info(),
    }
    rows = []
    for dtype in dtypes:
        for remat in (False, True):
            rows.append(analyse(variant, size, batch, dtype, remat))
            print(rows[-1], flush=True)
    result["runs"] = rows
    for dtype in dtypes:
        plain, remat = (r for r in rows if r["dtype"] == dtype)
        if plain["memory_gib"] and remat["memory_gib"]:
            saved = 1 - remat["memory_gib"]["temp"] / plain["memory_gib"]["temp"]
            result[f"remat_temp_saving_{dtype}"] = round(saved, 3)
            result[f"remat_flops_overhead_{dtype}"] = round(
                remat["gflops"] / plain["gflops"] - 1, 3
            )
    harness.emit(result)


if __name__ == "__main__":
    main()
