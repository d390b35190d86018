"""The ablation study's numbers from per-image metrics: arm summaries, comparisons, claims (ours).

Pure numpy on {(arm, seed): {metric: (N,) per-image values}} (the runs' per_image.csv files):
- arms: per arm and metric, the mean over seeds of the per-seed means over images (each per-seed
  mean as the evaluator reports it: images where the metric is undefined left out) and the
  standard deviation over seeds (ddof=1; null for one seed);
- comparisons: every arm against the baseline (main arms) or the exploratory reference (at the
  exploratory seed) on every table metric: `bootstrap.hierarchical_bootstrap`'s delta and
  interval;
- claims: `config.claims` expanded over their kind's metrics, with the verdict of
  `bootstrap.verdict`;
- beats_constant: every main arm against the oracle constant depth (the same value for every
  seed), so a reader sees the arms learned something.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
import numpy as np

from dgr_jax.analysis.common import bootstrap
from dgr_jax.evaluators.continuity import HIGHER_IS_BETTER_CONTINUITY
from dgr_jax.evaluators.edges import HIGHER_IS_BETTER_EDGE
from dgr_jax.evaluators.metrics import HIGHER_IS_BETTER


def better_direction(metric: str) -> str:
    """ "higher" for accuracies, edge scores (d1-3, precision / recall / F1) and the fractions of
    normals within an angle, else "lower" (seam_ratio too: 1 is ideal, seams raise it)."""
    higher = HIGHER_IS_BETTER | HIGHER_IS_BETTER_EDGE | HIGHER_IS_BETTER_CONTINUITY
    return "higher" if metric in higher else "lower"


def matrix(per_run: dict, arm: str, seeds: Sequence[int], metric: str) -> np.ndarray:
    """(S, N) values of `metric` for `arm` over `seeds`."""
    return np.stack([np.asarray(per_run[(arm, s)][metric], np.float64) for s in seeds])


def arm_summary(per_run: dict, arm: str, seeds: Sequence[int], metrics: Sequence[str]) -> dict:
    """{metric: {"mean", "std"}}: over seeds of the per-seed means over defined images."""
    out = {}
    for m in metrics:
        values = matrix(per_run, arm, seeds, m)
        per_seed = np.array(
            [np.mean(v[np.isfinite(v)]) if np.isfinite(v).any() else np.nan for v in values]
        )
        std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else float("nan")
        out[m] = {"mean": float(np.mean(per_seed)), "std": std}
    return out


def compare(
    per_run: dict,
    arm: str,
    baseline: str,
    seeds: Sequence[int],
    metric: str,
    boot: ml_collections.ConfigDict,
) -> dict:
    """{"arm", "baseline", "metric", "better", "delta", "ci": [lo, hi], "num_images"}."""
    iv = bootstrap.hierarchical_bootstrap(
        matrix(per_run, arm, seeds, metric),
        matrix(per_run, baseline, seeds, metric),
        num_resamples=int(boot.num_resamples),
        confidence=float(boot.confidence),
        seed=int(boot.seed),
    )
    return {
        "arm": arm,
        "baseline": baseline,
        "metric": metric,
        "better": better_direction(metric),
        "delta": iv.delta,
        "ci": [iv.lo, iv.hi],
        "num_images": iv.num_images,
        "num_seeds": iv.num_seeds,
    }


def study_statistics(
    config: ml_collections.ConfigDict, per_run: dict, constant: dict, metric_names: Sequence[str]
) -> dict:
    """Everything numeric of the summary except cost (module docstring)."""
    seeds = [int(s) for s in config.seeds]
    kinds = {"accuracy": tuple(config.metrics.accuracy), "continuity": config.metrics.continuity}
    named = {*config.metrics.table, *kinds["accuracy"], *kinds["continuity"]}
    unknown = sorted(named - set(metric_names))
    if unknown:
        raise ValueError(f"config.metrics names {unknown}, not reported by the evaluator")
    boot = config.bootstrap
    ex_seed = [int(config.exploratory_seed)]
    arms = {a: arm_summary(per_run, a, seeds, metric_names) for a in config.main_arms}
    arms.update(
        {a: arm_summary(per_run, a, ex_seed, metric_names) for a in config.exploratory_arms}
    )
    table = tuple(config.metrics.table)
    comparisons = [
        compare(per_run, a, config.baseline, seeds, m, boot)
        for a in config.main_arms
        if a != config.baseline
        for m in table
    ]
    exploratory = [
        compare(per_run, a, config.exploratory_reference, ex_seed, m, boot)
        for a in config.exploratory_arms
        for m in table
    ]
    claims = []
    for name, arm, baseline, kind in config.claims:
        if kind not in kinds:
            raise ValueError(f"claim {name!r}: kind {kind!r} is not one of {sorted(kinds)}")
        for m in kinds[kind]:
            c = compare(per_run, arm, baseline, seeds, m, boot)
            c["verdict"] = bootstrap.verdict(c["ci"][0], c["ci"][1], c["better"])
            claims.append({"name": name, "kind": kind, **c})
    # The constant depth: one value per image, the same for every seed.
    fixed = {m: np.asarray(constant["per_image"][m], np.float64) for m in metric_names}
    const_run = {("constant", s): fixed for s in seeds}
    beats = [
        compare({**per_run, **const_run}, a, "constant", seeds, m, boot)
        for a in config.main_arms
        for m in (*kinds["accuracy"], *kinds["continuity"])
    ]
    reference = (
        arm_summary(per_run, config.exploratory_reference, ex_seed, metric_names)
        if config.exploratory_arms
        else {}
    )
    return {
        "metrics": list(metric_names),
        "exploratory_reference_values": reference,
        "arms": arms,
        "comparisons": comparisons,
        "exploratory": exploratory,
        "claims": claims,
        "beats_constant": beats,
    }
