"""What DGR costs: parameters, FLOPs and train-step time with and without it, ViT-S and ViT-B.

    python benchmarks/dgr_overhead.py [--quick]

Configs: configs/synthetic_vit_dgr.py with its encoder set to ViT-S/16 (its decoder, 128x160,
batch 8) and configs/nyu_vit_dgr.py (ViT-B/16, fusion 256, 480x640), each as is and with
`model.dgr.enabled = False`. For each:
  params          trainable parameters (abstract build, nothing runs).
  forward_gflops  XLA cost analysis of the inference forward pass at batch 1
                  (dgr_jax.models.summary, what `python -m dgr_jax.models.summary` prints);
                  skipped with --quick (two more compilations per config).
  step_gflops     XLA cost analysis of the whole train step (forward, backward, Adam).
  step_ms         median train-step time (benchmarks/harness.py TrainStep, the trainer's step on a
                  synthetic batch), the two variants interleaved after warm-up.
The loss is SILog alone here: OTDL's Sinkhorn loop runs to convergence, so its cost follows the
predictions, which differ between the two models and would blur the difference (its own cost:
benchmarks/otdl.py).

Sizes: ViT-S at its config's batch 8 (--quick: batch 1); ViT-B at 480x640 batch 2 (batch 8
does not fit a 24 GB CPU host twice; --quick: 128x160 batch 1). The JSON says which.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import types

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax.numpy as jnp
import ml_collections
from flax import nnx

from benchmarks import harness
from configs import nyu_depth_anything_v2_dgr, nyu_vit_dgr, synthetic_vit_dgr
from dgr_jax.models import build_model, summary

# name -> (config module, (size, batch) full, (size, batch) quick, encoder overrides); None keeps
# the config's.
# Depth Anything V2 ViT-S (DINOv2, patch 14) with its metric DPT head: the recipe's 518x518 crop
# at batch 2 (--quick: 266x266, batch 1).
DA2_VITS = types.SimpleNamespace(
    get_config=lambda: nyu_depth_anything_v2_dgr.get_config("vits"),
    __name__="configs.nyu_depth_anything_v2_dgr",  # with the argument vits
)
CASES = {
    "vit_s": (synthetic_vit_dgr, (None, None), (None, 1), {"variant": "S"}),
    "vit_b": (nyu_vit_dgr, (None, 2), ((128, 160), 1), {}),
    "da2_vits": (DA2_VITS, (None, 2), ((266, 266), 1), {}),
}


def variants(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """{"with_dgr": config, "without_dgr": the same without DGR}, both SILog-only."""
    out = {}
    for name, enabled in (("with_dgr", True), ("without_dgr", False)):
        c = harness.resized_config(config, None)
        c.model.dgr.enabled = enabled
        c.loss.terms.otdl = 0.0
        out[name] = c
    return out


def count_params(config: ml_collections.ConfigDict) -> int:
    model = nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0)))
    return summary.count_params(model)


def bench_case(module, size_batch, quick: bool, encoder: dict) -> dict:
    size, batch = size_batch
    base = harness.resized_config(module.get_config(), size, batch)
    base.model.encoder.update(encoder)
    configs = variants(base)
    out: dict = {
        "config": f"configs/{module.__name__.rsplit('.', 1)[-1]}.py",
        "encoder": (
            f"ViT-{base.model.encoder.variant or base.model.encoder.width}"
            f"/{base.model.encoder.patch_size}"
        ),
        "decoder_features": base.model.decoder.features,
        "dgr": {k: v for k, v in base.model.dgr.to_dict().items() if k != "enabled"},
        "input": list(base.input.size),
        "batch": base.batch_size,
    }
    for name, c in configs.items():
        out[f"params_{name}"] = count_params(c)
        if not quick:
            model = nnx.eval_shape(lambda c=c: build_model(c.model, rngs=nnx.Rngs(0)))
            flops = summary.forward_flops(model, tuple(c.input.size), batch=1)
            out[f"forward_gflops_{name}"] = round(flops / 1e9, 2)
    steps = {name: harness.TrainStep.create(c) for name, c in configs.items()}
    times = harness.time_interleaved(
        {name: s.run for name, s in steps.items()}, repeats=2 if quick else 5
    )
    for name, s in steps.items():
        out[f"step_gflops_{name}"] = round((s.flops or 0.0) / 1e9, 1)
        out[f"step_ms_{name}"] = harness.median_ms(times[name])
    out["params_overhead"] = round(out["params_with_dgr"] / out["params_without_dgr"] - 1, 4)
    if not quick:
        fw = out["forward_gflops_with_dgr"] / out["forward_gflops_without_dgr"] - 1
        out["forward_flops_overhead"] = round(fw, 4)
    st = out["step_gflops_with_dgr"] / out["step_gflops_without_dgr"] - 1
    out["step_flops_overhead"] = round(st, 4)
    out["step_time_overhead"] = round(out["step_ms_with_dgr"] / out["step_ms_without_dgr"] - 1, 4)
    out["runs"] = harness.summary(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches, no forward FLOPs")
    parser.add_argument("--cases", default=",".join(CASES), help="comma list of " + str(CASES))
    args = parser.parse_args()
    result = {"benchmark": "dgr_overhead", "quick": args.quick, "dtype": str(jnp.float32.dtype)}
    result.update(harness.machine_info())
    for name in args.cases.split(","):
        module, full, quick, encoder = CASES[name]
        result[name] = bench_case(module, quick if args.quick else full, args.quick, encoder)
        print(f"{name}: {result[name]}", flush=True)
    harness.emit(result)


if __name__ == "__main__":
    main()
