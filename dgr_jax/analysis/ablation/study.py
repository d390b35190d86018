"""The DGR / OTDL ablation study: the paper's claims, measured with seeds and paired statistics.

    python -m dgr_jax.analysis.ablation --config configs/ablation_synthetic.py[:smoke] \
        --workdir W

What is whose: the claims are the paper's (abstract: DGR and OTDL each improve accuracy and
depth-gradient continuity, together best, at no meaningful cost); the protocol is ours
(`configs/ablation_common.py` fixes arms, metrics, claims and the verdict rule before anything
runs; `common/bootstrap.py` the statistics).

1. Runs. Every arm of `config.main_arms` is trained once per seed of `config.seeds`, every arm of
   `config.exploratory_arms` once (`config.exploratory_seed`): an arm's config is the base
   experiment config `config.base` with `config.base_overrides` and `config.overrides`, the
   study's `init_from`, then the arm's overrides (and its own `init_from`), then
   `seed=<k>` and `input.seed=<config.data_seed>` (so seeds change the initialisation only; the
   data, its order and the schedule are the same for every run). Each run is an ordinary
   training run in W/arms/<arm>/seed<k>/ (checkpoints, resume, TensorBoard, the final
   evaluation), done by the real trainer. Before anything trains, the arms' configs are
   compared key by key (they may differ only in the keys their overrides name and the seed),
   and a run folder that already holds a config.json must match its run's config key by key
   (a mismatch is an error naming the keys); a finished run is reused, an unfinished one
   resumed. The study runs the arms one after the other in this process, so later seeds reuse
   the compiled programs (the seed is an argument of the compiled init).
2. Metrics: every metric of the evaluator (`eval/<name>/per_image.csv` of each run: the nine
   standard metrics and the edge / gradient metrics, on the same test images for every arm),
   and the oracle constant-depth predictor under the same protocol.
3. Statistics (`stats.py`, `common/bootstrap.py`): per arm the mean and standard deviation
   over seeds; for every arm against the baseline and for every claim, the paired per-image
   difference averaged over seeds with a 95% hierarchical-bootstrap interval and the
   mechanical verdict of `config.verdict_rule`. Exploratory arms: the difference to
   `config.exploratory_reference` at the same seed, no verdict.
4. Cost (`cost.py`): parameters, forward FLOPs and the train-step time of every main
   arm (arms interleaved in the study's processes, as ratios to the baseline); DGR's overhead
   against its budget (<= 2% parameters, <= 3% FLOPs).
5. Outputs in W (`outputs.py`): ablation.csv, per_image.csv, summary.json, summary.md,
   ablation.png, gradients.png, curves.png; config.json (the study's config).

Multi-process (`common/cli.py` has the flags): every run, evaluation and timing uses all
processes' devices; process 0 writes the study's files; W may be gs://. A SIGTERM stops the
run in progress at the agreed step (the trainer saves it and raises `Preempted`, which ends the
study with `EXIT_PREEMPTED`); rerunning the same command skips the finished runs, resumes the
interrupted one at its step and writes the same summary.json (deltas, intervals, verdicts; the
bootstrap is seeded) as an uninterrupted study. A rerun with a changed study config is refused
(`common/workdir.py`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import time

import jax
import ml_collections
import numpy as np

from dgr_jax import evaluate, jsonio, multihost, sharding, storage, xla_options
from dgr_jax.analysis.ablation import cost as cost_lib
from dgr_jax.analysis.ablation import outputs
from dgr_jax.analysis.ablation import stats as stats_lib
from dgr_jax.analysis.common import runs as runs_lib
from dgr_jax.analysis.common import workdir as workdir_lib
from dgr_jax.data import datasets


def _log(msg: str) -> None:
    if workdir_lib.is_writer():
        print(msg, flush=True)


@dataclasses.dataclass
class Run:
    """One training run of the study: an arm at one seed."""

    arm: str
    seed: int
    config: ml_collections.ConfigDict  # resolved: base + overrides + seeds + data dir + mesh
    workdir: str
    overrides: tuple[str, ...]  # the arm's own overrides (what it may differ in)


# ------------------------------------------------------------------------------------------
# Runs: resolve, check, train.
# ------------------------------------------------------------------------------------------
def arm_names(config: ml_collections.ConfigDict) -> list[str]:
    """Main arms, then exploratory arms; each must be defined in `config.arms`."""
    names = [*config.main_arms, *config.exploratory_arms]
    missing = [n for n in names if n not in config.arms]
    if missing or len(set(names)) != len(names):
        raise ValueError(
            f"main_arms + exploratory_arms {names} must name distinct arms of config.arms "
            f"{sorted(config.arms)}; missing: {missing}"
        )
    if config.baseline not in config.main_arms:
        raise ValueError(f"baseline {config.baseline!r} is not a main arm {config.main_arms}")
    if config.exploratory_arms and config.exploratory_reference not in config.main_arms:
        raise ValueError(f"exploratory_reference {config.exploratory_reference!r} is no main arm")
    if config.exploratory_arms and config.exploratory_seed not in config.seeds:
        raise ValueError(
            f"exploratory_seed {config.exploratory_seed} is not one of the seeds "
            f"{tuple(config.seeds)} (the reference arm must have been trained with it)"
        )
    return names


def resolve_runs(config: ml_collections.ConfigDict, workdir: str) -> list[Run]:
    """Every (arm, seed) run of the study with its resolved config and folder."""
    data_dir = config.data_dir or storage.join(workdir, "data")
    runs = []
    for name in arm_names(config):
        seeds = config.seeds if name in config.main_arms else (config.exploratory_seed,)
        arm = config.arms[name]
        own = (*arm.overrides, *([f"init_from={arm.init_from!r}"] if arm.init_from else []))
        for seed in seeds:
            overrides = [
                *config.base_overrides,
                *config.overrides,
                *([f"init_from={config.init_from!r}"] if config.init_from else []),
                *own,
                f"seed={int(seed)}",
                f"input.seed={int(config.data_seed)}",
            ]
            try:
                resolved = runs_lib.resolve_arm_config(
                    config.base, overrides, data_dir=data_dir, mesh=config.mesh
                )
            except KeyError as e:
                raise ValueError(f"arm {name!r}: bad override: {e}") from None
            folder = storage.join(workdir, "arms", name, f"seed{int(seed)}")
            runs.append(Run(name, int(seed), resolved, folder, own))
    return runs


def _override_keys(overrides) -> set[str]:
    return {item.partition("=")[0].strip() for item in overrides}


def check_runs(runs: list[Run], config: ml_collections.ConfigDict) -> dict:
    """Raise unless every run differs from the baseline's first run only in the keys that its
    own and the baseline's overrides name (and the seed), and every run folder that holds a
    config.json was made with its run's config, key by key. Returns facts for summary.md."""
    base = next(r for r in runs if r.arm == config.baseline)
    for run in runs:
        may_differ = {"seed"} | _override_keys(run.overrides) | _override_keys(base.overrides)
        diffs = runs_lib.config_differences(base.config, run.config, sorted(may_differ))
        if diffs:
            lines = "\n".join(f"  {k}: {base.arm}={a!r} {run.arm}={b!r}" for k, a, b in diffs)
            raise ValueError(
                f"arm {run.arm} differs from the baseline {base.arm} in keys its overrides do "
                f"not name:\n{lines}"
            )
    for run in runs:
        written = runs_lib.trained_config(run.workdir)
        if written is None:
            continue
        diffs = runs_lib.config_differences(jsonio.config_json(run.config), written)
        if diffs:
            lines = "\n".join(f"  {k}: study={a!r} run={b!r}" for k, a, b in diffs)
            raise ValueError(
                f"{run.workdir} holds a run of another config than the study's {run.arm} "
                f"seed {run.seed}; differing keys:\n{lines}\nStart the study in a new workdir, "
                "delete that run folder, or change the study config back."
            )
    keys = runs_lib.config_differences(base.config, ml_collections.ConfigDict())
    return {
        "num_keys": len(keys),
        "arm_keys": {r.arm: sorted(_override_keys(r.overrides)) for r in runs},
    }


def _eval_dir(run: Run, eval_name: str) -> str:
    return storage.join(run.workdir, "eval", eval_name)


def train_and_evaluate_runs(runs: list[Run], eval_name: str) -> dict[tuple[str, int], float]:
    """Train or resume every run, make sure its final evaluation is written; seconds per run."""
    seconds, start = {}, time.perf_counter()
    for i, run in enumerate(runs):
        _log(f"[{i + 1}/{len(runs)}] arm {run.arm} seed {run.seed}: {run.workdir}")
        t = time.perf_counter()
        runs_lib.ensure_trained(run.config, run.workdir, log=_log)
        multihost.sync(f"ablation_run_{i}_trained")  # process 0's eval files are written
        metrics_path = storage.join(_eval_dir(run, eval_name), "metrics.json")
        done = storage.exists(storage.join(_eval_dir(run, eval_name), "per_image.csv"))
        if done:
            done = jsonio.read(metrics_path).get("step") == run.config.total_steps
        if not done:  # finished training but not its final evaluation (interrupted there)
            _log("  evaluating the final checkpoint")
            evaluate.evaluate_checkpoint(run.config, run.workdir)
        seconds[(run.arm, run.seed)] = time.perf_counter() - t
        _log(
            f"  run done in {seconds[(run.arm, run.seed)] / 60:.1f} min; "
            f"{(time.perf_counter() - start) / 60:.1f} min for {i + 1} of {len(runs)} runs"
        )
        runs_lib.stop_if_preempted(f"after the run of arm {run.arm} seed {run.seed}")
    return seconds


# ------------------------------------------------------------------------------------------
# Per-image metrics.
# ------------------------------------------------------------------------------------------
def read_per_image(path: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """An evaluator's per_image.csv: (image ids, {metric: (N,) float64, NaN where empty})."""
    rows = list(csv.DictReader(io.StringIO(storage.read_text(path), newline="")))
    if not rows:
        raise ValueError(f"{path} has no images")
    names = [k for k in rows[0] if k not in ("index", "id")]
    ids = [r["id"] for r in rows]
    values = {
        n: np.asarray([float(r[n]) if r[n] != "" else np.nan for r in rows], np.float64)
        for n in names
    }
    return ids, values


def collect_per_image(runs: list[Run], eval_name: str) -> tuple[list[str], dict, list[str]]:
    """(image ids, {(arm, seed): {metric: (N,)}}, metric names), checking every run saw the
    same test images in the same order."""
    ids, per_run, names = None, {}, None
    for run in runs:
        path = storage.join(_eval_dir(run, eval_name), "per_image.csv")
        run_ids, values = read_per_image(path)
        if ids is None:
            ids, names = run_ids, list(values)
        elif run_ids != ids or list(values) != names:
            raise ValueError(
                f"{path}: other test images or metrics than the first run's; every arm must be "
                "evaluated on the same images with the same evaluator"
            )
        per_run[(run.arm, run.seed)] = values
    return ids, per_run, names


def constant_depth_per_image(run: Run, eval_name: str, out_dir: str) -> dict:
    """The oracle constant depth under the runs' protocol, with its per-image metrics."""
    mesh = sharding.make_mesh(run.config.mesh)
    evaluator = evaluate.make_evaluators(run.config, run.config.data_dir, mesh)[eval_name]
    depth = evaluate.best_constant_depth(evaluator)
    sh = sharding.batch_sharding(mesh)

    def predict_fn(images):
        return jax.numpy.zeros_like(images[..., :1], jax.numpy.float32) + depth

    evaluator.num_pictures = 0
    means = evaluator.run(jax.jit(predict_fn, out_shardings=sh), out_dir=out_dir)
    multihost.sync("ablation_constant_depth_written")  # process 0 wrote per_image.csv
    _, values = read_per_image(storage.join(out_dir, "per_image.csv"))
    return {"depth": depth, "means": means, "per_image": values}


# ------------------------------------------------------------------------------------------
# The study.
# ------------------------------------------------------------------------------------------
def run_study(config: ml_collections.ConfigDict, workdir: str, command: str = "") -> dict:
    """Run the whole study (module docstring) and write its outputs; returns summary.json.

    `config.fast_compile` (smoke studies): every program compiled without XLA:CPU's backend
    optimisations (`xla_options.fast_compile`), since tiny models spend their time compiling.
    """
    with xla_options.fast_compile(bool(config.get("fast_compile", False))):
        return _run_study(config, workdir, command)


def _run_study(config: ml_collections.ConfigDict, workdir: str, command: str) -> dict:
    t_start, cpu_start = time.perf_counter(), time.process_time()
    load_start = os.getloadavg()
    timing: dict[str, float] = {}
    workdir = storage.absolute(workdir)  # local or gs://
    storage.check(workdir, "--workdir")
    storage.makedirs(workdir)
    rerun = workdir_lib.check_and_record_config(workdir, config)  # refuses a changed design
    eval_name = str(config.eval_name)

    runs = resolve_runs(config, workdir)
    conditions = check_runs(runs, config)
    for run in runs:
        if eval_name not in run.config.evals:
            raise ValueError(f"the base config has no evaluation {eval_name!r} (config.eval_name)")
    first = runs[0].config
    if workdir_lib.is_writer():  # one process builds; the others wait at the barrier below
        datasets.ensure_built(
            first.input.dataset,
            first.data_dir,
            manual_dir=first.input.manual_dir,
            build_args=dict(first.input.build),
        )
    multihost.sync("ablation_dataset_built")
    _log(
        f"ablation: {len(runs)} runs ({len(config.main_arms)} main arms x {len(config.seeds)} "
        f"seeds, {len(config.exploratory_arms)} exploratory) in {workdir}"
        + (" (rerun: finished runs are reused, an unfinished one resumed)" if rerun else "")
    )

    t = time.perf_counter()
    run_seconds = train_and_evaluate_runs(runs, eval_name)
    timing["runs_s"] = time.perf_counter() - t

    t = time.perf_counter()
    ids, per_run, metric_names = collect_per_image(runs, eval_name)
    constant = constant_depth_per_image(runs[0], eval_name, storage.join(workdir, "constant_depth"))
    stats = stats_lib.study_statistics(config, per_run, constant, metric_names)
    timing["statistics_s"] = time.perf_counter() - t
    runs_lib.stop_if_preempted("after the statistics")

    t = time.perf_counter()
    first_seed = {name: next(r for r in runs if r.arm == name) for name in arm_names(config)}
    cost = cost_lib.measure_cost(config, first_seed, log=_log)
    timing["cost_s"] = time.perf_counter() - t
    runs_lib.stop_if_preempted("after the cost measurements")

    t = time.perf_counter()
    writer = workdir_lib.is_writer()
    if writer:
        outputs.write_tables(workdir, ids, per_run, metric_names, config)
    outputs.write_figures(
        workdir, config, first_seed, ids, per_run, constant, eval_name, log=_log, write=writer
    )
    timing["outputs_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t_start
    timing["cpu_s"] = time.process_time() - cpu_start
    summary = outputs.summary_dict(
        config,
        command=command,
        runs=runs,
        run_seconds=run_seconds,
        conditions=conditions,
        stats=stats,
        cost=cost,
        constant=constant,
        protocol=_protocol(runs[0], eval_name),
        num_images=len(ids),
        timing=timing,
        load=(load_start, os.getloadavg()),
    )
    if writer:
        outputs.write_summary(workdir, summary)
    multihost.sync("ablation_summary_written")
    _log(f"ablation study done in {timing['total_s'] / 60:.1f} min: {workdir}/summary.md")
    return summary


def _protocol(run: Run, eval_name: str) -> dict:
    return jsonio.read(storage.join(_eval_dir(run, eval_name), "metrics.json"))["protocol"]
