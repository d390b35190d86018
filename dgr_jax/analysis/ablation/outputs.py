"""Writing the ablation study's files: ablation.csv, per_image.csv, summary.json, summary.md.

Ours. File list and meaning: `study.py`'s module docstring; the figures are
`figures.py`. Every number of summary.md is a field of summary.json, and every delta
of summary.json can be recomputed from per_image.csv (`bootstrap.paired_delta`: the mean over
the test images where the metric is defined for every seed of both arms, of the arm's
seed-averaged value minus the baseline's).
"""

from __future__ import annotations

import csv
import io
import os
import platform

import jax
import ml_collections
import numpy as np

from dgr_jax import jsonio, storage
from dgr_jax.analysis.ablation import figures, report

ABLATION_COLUMNS = ("arm", "seed", "metric", "value")
PER_IMAGE_KEYS = ("arm", "seed", "image")


def _fmt(value: float) -> str:
    """Full float64 precision (repr), empty where undefined: the CSVs are the data."""
    return "" if not np.isfinite(value) else repr(float(value))


def _runs_in_order(config: ml_collections.ConfigDict, per_run: dict) -> list[tuple[str, int]]:
    order = {a: i for i, a in enumerate((*config.main_arms, *config.exploratory_arms))}
    return sorted(per_run, key=lambda k: (order[k[0]], k[1]))


def write_tables(workdir: str, ids, per_run: dict, metric_names, config) -> None:
    """ablation.csv (arm, seed, metric, value: the per-run mean over images, undefined images
    left out) and per_image.csv (arm, seed, image, one column per metric)."""
    keys = _runs_in_order(config, per_run)
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(ABLATION_COLUMNS)
    for arm, seed in keys:
        for m in metric_names:
            v = np.asarray(per_run[(arm, seed)][m])
            mean = float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else np.nan
            writer.writerow([arm, seed, m, _fmt(mean)])
    storage.write_text(storage.join(workdir, "ablation.csv"), table.getvalue())
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow([*PER_IMAGE_KEYS, *metric_names])
    for arm, seed in keys:
        values = per_run[(arm, seed)]
        for i, image in enumerate(ids):
            writer.writerow([arm, seed, image, *(_fmt(values[m][i]) for m in metric_names)])
    storage.write_text(storage.join(workdir, "per_image.csv"), table.getvalue())


def write_figures(
    workdir, config, runs, ids, per_run, constant, eval_name, log=print, write: bool = True
):
    """ablation.png, gradients.png, curves.png. Call on every process (gradients.png's
    predictions use all processes' devices); only where `write` are the files written."""
    if write:
        figures.plot_metrics(storage.join(workdir, "ablation.png"), config, per_run, constant)
    figures.plot_gradients(
        storage.join(workdir, "gradients.png"),
        config,
        runs,
        eval_name,
        len(ids),
        log=log,
        write=write,
    )
    if write:
        figures.plot_curves(storage.join(workdir, "curves.png"), config, runs, per_run)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host() -> str:
    """The machine in words: CPU, cores, accelerators."""
    return (
        f"{_cpu_model()}, {os.cpu_count()} CPU cores, {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s) ({jax.devices()[0].device_kind})"
    )


def arm_settings(config: ml_collections.ConfigDict) -> dict:
    """What an arm switches on, for the ablation table."""
    enc = config.model.encoder
    encoder = enc.name + (f"-{enc.variant}" if "variant" in enc else "")
    encoder += f"{enc.depth}" if "depth" in enc else ""
    weight = float(config.loss.terms.get("otdl", 0.0))
    return {
        "encoder": encoder,
        "dgr": bool(config.model.get("dgr") and config.model.dgr.enabled),
        "otdl_weight": weight,
        "otdl_geometry": str(config.loss.otdl.geometry) if weight else None,
    }


def summary_dict(
    config: ml_collections.ConfigDict,
    *,
    command: str,
    runs: list,
    run_seconds: dict,
    conditions: dict,
    stats: dict,
    cost: dict,
    constant: dict,
    protocol: dict,
    num_images: int,
    timing: dict,
    load: tuple,
) -> dict:
    """summary.json: every number of summary.md (the contract fields first)."""
    first = runs[0].config
    claims = [
        {
            k: c[k]
            for k in (
                "name",
                "arm",
                "baseline",
                "metric",
                "better",
                "delta",
                "ci",
                "verdict",
                "kind",
                "num_images",
                "num_seeds",
            )
        }
        for c in stats["claims"]
    ]
    return {
        "arms": stats["arms"],
        "claims": claims,
        "cost": cost,
        "comparisons": stats["comparisons"],
        "exploratory": stats["exploratory"],
        "exploratory_reference_values": stats["exploratory_reference_values"],
        "constant_depth": {
            "depth": constant["depth"],
            "metrics": {m: constant["means"].get(m) for m in stats["metrics"]},
            "arms_against_it": stats["beats_constant"],
        },
        "baseline": config.baseline,
        "main_arms": list(config.main_arms),
        "exploratory_arms": list(config.exploratory_arms),
        "exploratory_reference": config.exploratory_reference,
        "exploratory_seed": int(config.exploratory_seed),
        "labels": {a: config.arms[a].label for a in (*config.main_arms, *config.exploratory_arms)},
        "arm_settings": {r.arm: arm_settings(r.config) for r in runs},
        "overrides": {
            a: list(config.arms[a].overrides) for a in (*config.main_arms, *config.exploratory_arms)
        },
        "seeds": [int(s) for s in config.seeds],
        "data_seed": int(config.data_seed),
        "metrics": {
            "accuracy": list(config.metrics.accuracy),
            "continuity": list(config.metrics.continuity),
            "table": list(config.metrics.table),
            "all": stats["metrics"],
        },
        "verdict_rule": config.verdict_rule,
        "bootstrap": config.bootstrap.to_dict(),
        "num_test_images": num_images,
        "protocol": protocol,
        "budget": {
            "base": config.base,
            "base_overrides": list(config.base_overrides),
            "total_steps": int(first.total_steps),
            "batch_size": int(first.batch_size),
            "input_size": list(first.input.size),
            "dataset": first.input.dataset,
            "build": first.input.build.to_dict(),
            "lr": float(first.optim.lr),
            "warmup_steps": int(first.optim.warmup_steps),
            "num_runs": len(runs),
        },
        "conditions": conditions,
        "runs": [
            {
                "arm": r.arm,
                "seed": r.seed,
                "workdir": r.workdir,
                "seconds_this_invocation": run_seconds.get((r.arm, r.seed)),
            }
            for r in runs
        ],
        "command": command,
        "host": host(),
        "load_average": {"start": list(load[0]), "end": list(load[1])},
        "timing": timing,
    }


def write_summary(workdir: str, summary: dict) -> None:
    """summary.json and summary.md."""
    jsonio.write(storage.join(workdir, "summary.json"), summary)
    storage.write_text(storage.join(workdir, "summary.md"), report.render_summary(summary))
