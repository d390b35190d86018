"""Attention on the CPU: `dgr_jax.models.blocks.attention` against `jax.nn.dot_product_attention`.

    python benchmarks/attention.py [--quick]

The before/after of the hand-written attention gradient (dgr_jax/models/blocks/attention.py),
measured in one process on the DPT of the JAX-vs-PyTorch comparisons (benchmarks/dpt_pair.py:
ViT-S/16, fusion 128, converted from transformers' DPTForDepthEstimation), float32:

  train_step: the trainer's step (SILog + Adam, state donated; as train_step_vs_torch.py),
      batch 4 at 256x256;
  predict: the evaluator's jitted forward, batch 8 at 256x256.

The `xla` sides trace the model with `jax.nn.dot_product_attention` swapped in for
`attention.dot_product_attention` (what the ViT called before); the `ours` sides use the
module as the trainer does. Both are compiled with `dgr_jax.xla_options`. Sides alternate after
warm-up; medians of the repeats. --quick: batch 2 (predict 4) at 224x224, 3 repeats.

JSON (last line): {train_step,predict}_{xla,ours}_ms, the gains (xla_ms / ours_ms) and the
largest difference between the two sides' outputs (same function up to float rounding).
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import dpt_pair, harness
from benchmarks.train_step_vs_torch import bench_config
from dgr_jax import steps, xla_options
from dgr_jax.models.blocks import attention


@contextlib.contextmanager
def xla_attention():
    """While tracing inside, the ViT calls `jax.nn.dot_product_attention` instead."""
    ours = attention.dot_product_attention
    attention.dot_product_attention = lambda q, k, v: jax.nn.dot_product_attention(q, k, v)
    try:
        yield
    finally:
        attention.dot_product_attention = ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, 224x224")
    parser.add_argument("--repeats", type=int, default=None, help="default 9 (3 with --quick)")
    args = parser.parse_args()
    size = 224 if args.quick else 256
    batch, predict_batch = (2, 4) if args.quick else (4, 8)
    repeats = args.repeats or (3 if args.quick else 9)
    info = harness.machine_info()

    hf = dpt_pair.torch_dpt("S", size)
    model_def, (params, rest) = dpt_pair.to_jax(hf)
    config = bench_config(batch, size)
    images = jnp.asarray(
        np.random.default_rng(0).standard_normal((predict_batch, size, size, 3), np.float32)
    )

    sides, outputs = {}, {}
    for name, context in (("xla", xla_attention()), ("ours", contextlib.nullcontext())):
        with context:  # tracing happens inside lower()
            step = harness.TrainStep.create(config, model_def=model_def, params=(params, rest))
            # A new function per side: jit would reuse the first side's trace otherwise.
            predict = xla_options.jit(steps.make_predict(model_def))
            compiled = predict.lower(params, rest, images).compile()
        sides[f"train_step_{name}"] = step.run
        sides[f"predict_{name}"] = lambda c=compiled: c(params, rest, images).block_until_ready()
        outputs[name] = (sides[f"predict_{name}"](), float(step.run()["loss"]))
    times = harness.time_interleaved(sides, repeats=repeats)
    ms = {name: harness.median_ms(t) for name, t in times.items()}
    result = {
        "benchmark": "attention",
        "quick": args.quick,
        "model": dpt_pair.describe("S"),
        "input": [size, size],
        "batch": {"train_step": batch, "predict": predict_batch},
        "dtype": "float32",
        "repeats": repeats,
        **{f"{name}_ms": value for name, value in ms.items()},
        "train_step_gain": round(ms["train_step_xla"] / ms["train_step_ours"], 3),
        "predict_gain": round(ms["predict_xla"] / ms["predict_ours"], 3),
        "predict_max_abs_diff": float(jnp.max(jnp.abs(outputs["xla"][0] - outputs["ours"][0]))),
        "first_loss": {name: round(out[1], 5) for name, out in outputs.items()},
        "runs": harness.summary(times),
        **info,
    }
    harness.emit(result)


if __name__ == "__main__":
    main()
