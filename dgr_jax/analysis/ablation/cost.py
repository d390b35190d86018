"""What each arm of the ablation costs: parameters, forward FLOPs, train-step time (ours).

- params: trainable parameters of the arm's model (`dgr_jax.models.summary.count_params`).
- forward_gflops: XLA's cost analysis of the inference forward pass at batch 1 and the arm's
  input size (`forward_flops`: the lowered program, within 0.1% of the compiled one that
  `python -m dgr_jax.models.summary` prints); computed once per distinct model.
- step_ms: the median time of the arm's train step as the trainer runs it (the trainer's
  shardings and donated state, so its compiled program comes from the compilation cache), from
  the arm's trained checkpoint of its first seed on the first batch of the training data. Each
  arm of `cost.timing_arms` is timed in this one process interleaved with the reference arm,
  after a warm-up step each (`dgr_jax.timing`; pairwise, so only two trained states are in
  memory at a time), and reported as the ratio to the reference's median in the same series
  (`reference_step_ms`), which takes out the machine's drift between series; the reference's
  own `step_ms` is its median over all series.
  The loss is each arm's own (OTDL's Sinkhorn iterations are part of its cost).
- dgr: the DGR arm's parameter and FLOP overhead over the reference arm against the budgets of
  method.md section 3 (<= 2% parameters, <= 3% FLOPs), reported apart from the claims.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from dgr_jax import evaluate, optim, sharding, steps, trainer, xla_options
from dgr_jax.data import datasets, pipeline
from dgr_jax.losses import make_loss
from dgr_jax.models import build_model, summary
from dgr_jax.timing import time_interleaved


def _model_key(config: ml_collections.ConfigDict) -> str:
    return json.dumps(
        {"model": config.model.to_dict(), "size": list(config.input.size)}, sort_keys=True
    )


def forward_flops(model: nnx.Module, input_size, batch: int = 1) -> float:
    """FLOPs of the inference forward pass from XLA's cost analysis of the lowered program.

    The lowered (not yet optimised) program: no compilation, so a second or two per model
    instead of a compile; within 0.1% of the compiled program's count that
    `summary.forward_flops` reports (fusion changes no arithmetic). Falls back to that where a
    backend gives no analysis before compiling.
    """
    graphdef, state = nnx.split(model)

    def forward(state, images):
        return nnx.merge(graphdef, state)(images)[0]

    images = jax.ShapeDtypeStruct((batch, *input_size, 3), jnp.float32)
    cost = jax.jit(forward).lower(state, images).cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    if cost and cost.get("flops"):
        return float(cost["flops"])
    return summary.forward_flops(model, input_size, batch)


def model_cost(config: ml_collections.ConfigDict) -> dict[str, float]:
    """{"params", "forward_gflops"} of the config's model at its input size, batch 1."""
    model = nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0)))
    flops = forward_flops(model, tuple(config.input.size), batch=1)
    return {"params": summary.count_params(model), "forward_gflops": flops / 1e9}


def _first_batch(config: ml_collections.ConfigDict, batch_sh) -> dict:
    source = datasets.open_split(
        config.input.dataset,
        config.input.split,
        config.data_dir,
        manual_dir=config.input.manual_dir,
        build_args=dict(config.input.build),
    )
    it = pipeline.train_iterator(
        source,
        pp=config.input.pp_train,
        global_batch=config.batch_size,
        seed=trainer.data_seed(config),
    )
    local = next(it)
    return {
        k: jax.make_array_from_process_local_data(batch_sh, np.asarray(local[k]))
        for k in ("image", "depth")
    }


def step_runner(config: ml_collections.ConfigDict, workdir: str) -> Callable[[], None]:
    """A callable running one train step of the trained run in `workdir` (blocking)."""
    model_def, mesh, state, state_sh, _ = evaluate.restore_for_inference(config, workdir)
    batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    # Built exactly as the trainer builds it, so the compiled program is the trainer's.
    train_step = xla_options.jit(
        steps.make_train_step(
            model_def, make_loss(config.loss), tx, schedule, min_depth=config.loss.min_depth
        ),
        in_shardings=(state_sh, {"image": batch_sh, "depth": batch_sh}),
        out_shardings=(state_sh, repl),
        donate_argnums=(0,),
    )
    batch = _first_batch(config, batch_sh)
    holder = {"state": state}

    def run() -> None:
        holder["state"], metrics = train_step(holder["state"], batch)
        jax.block_until_ready(metrics)

    return run


def measure_cost(config: ml_collections.ConfigDict, runs: dict, log=print) -> dict:
    """The cost section of summary.json; `runs`: arm -> its first-seed `Run`."""
    cost_cfg = config.cost
    per_model: dict[str, dict] = {}
    arms = {}
    for name, run in runs.items():
        key = _model_key(run.config)
        if key not in per_model:
            log(f"cost: parameters and forward FLOPs of {name}")
            per_model[key] = model_cost(run.config)
        arms[name] = dict(per_model[key])

    reference = str(cost_cfg.reference)
    timed = [a for a in cost_cfg.timing_arms if a in runs and a != reference]
    if timed and reference in runs:
        # Pairwise, each arm interleaved with the reference: two trained states in memory at a
        # time (a host model's Adam state is large), the ratio from one interleaved series.
        log(f"cost: train-step time of {len(timed)} arms against {reference}, interleaved")
        ref_run = step_runner(runs[reference].config, runs[reference].workdir)
        ref_all = []
        for a in timed:
            side = step_runner(runs[a].config, runs[a].workdir)
            times = time_interleaved(
                {reference: ref_run, a: side}, repeats=int(cost_cfg.timing_repeats), warmup=1
            )
            del side
            ref_ms = 1e3 * statistics.median(times[reference])
            arms[a]["step_ms"] = 1e3 * statistics.median(times[a])
            arms[a]["step_ms_runs"] = [1e3 * x for x in times[a]]
            arms[a]["step_time_ratio"] = arms[a]["step_ms"] / ref_ms
            arms[a]["reference_step_ms"] = ref_ms  # the ratio's denominator: this series only
            ref_all += times[reference]
        arms[reference]["step_ms"] = 1e3 * statistics.median(ref_all)
        arms[reference]["step_ms_runs"] = [1e3 * x for x in ref_all]
        arms[reference]["step_time_ratio"] = 1.0
    ref = arms.get(reference)
    for c in arms.values():
        if ref:
            c["params_ratio"] = c["params"] / ref["params"]
            c["forward_flops_ratio"] = c["forward_gflops"] / ref["forward_gflops"]

    dgr_arm = str(cost_cfg.dgr_arm)
    dgr = {}
    if dgr_arm in arms and reference in arms:
        params_pct = 100.0 * (arms[dgr_arm]["params_ratio"] - 1.0)
        flops_pct = 100.0 * (arms[dgr_arm]["forward_flops_ratio"] - 1.0)
        dgr = {
            "arm": dgr_arm,
            "reference": reference,
            "params_pct": params_pct,
            "forward_flops_pct": flops_pct,
            "params_budget_pct": float(cost_cfg.params_budget_pct),
            "flops_budget_pct": float(cost_cfg.flops_budget_pct),
            "params_within_budget": bool(params_pct <= cost_cfg.params_budget_pct),
            "flops_within_budget": bool(flops_pct <= cost_cfg.flops_budget_pct),
            "step_time_pct": (
                100.0 * (arms[dgr_arm]["step_time_ratio"] - 1.0)
                if arms[dgr_arm].get("step_time_ratio")
                else None
            ),
        }
    return {
        "reference": reference,
        "batch_size": int(next(iter(runs.values())).config.batch_size),
        "timing_repeats": int(cost_cfg.timing_repeats),
        "arms": arms,
        "dgr": dgr,
    }
