"""Numbers and words of the sparse-pixel study: CSV files, paired statistics, summary.md.

Ours. The verdict on the paper's claim is a fixed rule, stated here and in every summary, and
never tuned: "Transformers keep less depth gradient continuity than CNNs" is read as "the
Transformer arm's depth-gradient error (`grad_err`, method.md section 6) is larger than the
CNN arm's". Per test image we take the paired difference T - C; the claim
  holds          when mean(T - C) > 2 standard errors of that mean,
  is contradicted when mean(T - C) < -2 standard errors,
  is undecided   otherwise (the difference is within test-set sampling noise).
The edge F1s and the scale-invariant boundary F1 (higher is better) are reported beside it with
the same paired statistics, as supporting evidence. The standard error covers test-image
sampling only, not training-seed noise (one training run per arm).

Since issue 29 the claim is also judged, by the same 2-SE rule applied to each metric on its
own, on the continuity metrics that measure the property (`dgr_jax/evaluators/continuity.py`,
all lower-is-better: `normal_err_mean`, `seam_ratio_16`, `laplacian_err`; the ablation study's
set, fixed before the rerun). grad_err stays the first verdict, so that the old and the new
readings sit side by side: a flat prediction scores well on grad_err (the ablation's
`configs/ablation_common.py` says by how much), which is why it no longer judges there.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import numpy as np

from dgr_jax import storage
from dgr_jax.evaluators.continuity import HIGHER_IS_BETTER_CONTINUITY
from dgr_jax.evaluators.metrics import HIGHER_IS_BETTER

PRIMARY = "grad_err"
SUPPORTING = ("edge_f1_0.25", "edge_f1_0.50", "edge_f1_1.00", "si_boundary_f1")
CONTINUITY = ("normal_err_mean", "seam_ratio_16", "laplacian_err")  # each judged (issue 29)
TABLE_METRICS = (
    "abs_rel",
    "rmse",
    "d1",
    PRIMARY,
    *SUPPORTING,
    *CONTINUITY,
    "normal_err_median",
    "normal_within_11.25",
    "normal_within_30",
)
HIGHER_BETTER = frozenset({*HIGHER_IS_BETTER, *SUPPORTING, *HIGHER_IS_BETTER_CONTINUITY})


def write_csv(path: str, rows: list[dict], columns: Sequence[str]) -> None:
    f = io.StringIO(newline="")
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    storage.write_text(path, f.getvalue())  # local or gs://, written whole


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return value


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and standard error of a - b over the images where both are defined."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    d = d[np.isfinite(d)]
    n = int(d.size)
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return {"mean_diff": float(np.mean(d)) if n else float("nan"), "se": se, "n": n}


def verdict(stats: dict[str, float]) -> str:
    """'holds' | 'contradicted' | 'undecided' for the primary metric's paired T - C stats."""
    diff, se = stats["mean_diff"], stats["se"]
    if not np.isfinite(diff) or not np.isfinite(se):
        return "undecided"
    if diff > 2 * se:
        return "holds"
    if diff < -2 * se:
        return "contradicted"
    return "undecided"


def better_arm(metric: str, diff: float, se: float, names: tuple[str, str]) -> str:
    """Which arm is better on `metric` given mean(T - C) and its SE ('tie' within 2 SE)."""
    if not (np.isfinite(diff) and np.isfinite(se)) or abs(diff) <= 2 * se:
        return "tie (within 2 SE)"
    first_better = (diff > 0) == (metric in HIGHER_BETTER)
    return names[0] if first_better else names[1]


def _table(header: Sequence[str], rows: list[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(_fmt(v)) for v in row) + " |")
    return "\n".join(lines)


def render_summary(r: dict) -> str:
    """summary.md from the study's results dict (see sparse_pixel.run_study)."""
    names = r["arm_order"]
    labels = {n: r["arms"][n]["label"] for n in names}
    t, c = names
    out = [f"# Sparse-pixel study: {labels[t]} vs {labels[c]}", ""]
    out += [f"Command: `{r['command']}`", ""]
    tm = r["timing"]
    phases = ", ".join(
        f"{name} {tm[key] / 60:.1f}"
        for name, key in (
            ("arms (training if needed, restore)", "arms_s"),
            ("mask nets", "mask_training_s"),
            ("evaluation", "evaluation_s"),
            ("outputs", "outputs_s"),
        )
    )
    out += [
        f"Run time: {tm['total_s'] / 60:.1f} min wall ({phases} min); process CPU time "
        f"{tm['cpu_s'] / 60:.1f} min; {r['host']}.",
        "",
    ]

    out += ["## The two depth networks", ""]
    rows = []
    for n in names:
        a = r["arms"][n]
        rows.append(
            [n, a["label"], a["config"], a["workdir"], a["step"], f"{a['num_params'] / 1e6:.2f}M"]
        )
    out += [_table(["arm", "model", "config", "workdir", "trained steps", "params"], rows), ""]
    cond = r["conditions"]
    again = (
        " and again on the configs the runs wrote (config.json)"
        if cond["checked_trained_configs"]
        else " (the runs' own config.json files were not all present to check again)"
    )
    out += [
        "Identical conditions: the two arms' configs were compared key by key "
        f"({cond['num_keys']} keys: data, augmentation, loss, optimiser, schedule, decoder, "
        f"head, evaluation) before training{again}; they differ only under "
        f"{', '.join(f'`{k}`' for k in cond['may_differ'])} ({cond['differing']}).",
        "",
    ]

    out += ["## Mask networks and the lambda sweep", ""]
    m = r["mask"]
    out += [
        f"G: {m['description']}; Adam lr {m['lr']:g}, {m['steps']} steps of batch "
        f"{m['batch_size']} per lambda on the training split; loss L_rec + lambda * mean(M) "
        "(method.md section 2). The mask multiplies the [0, 1] RGB before normalisation "
        "(a dropped pixel is black). Soft sparsity = 1 - mean(M) on the test images.",
        "",
    ]
    rows = [
        [
            s["model"],
            s["lambda"],
            s["mask_mean"],
            s["soft_sparsity"],
            s["rmse_vs_gt_soft"],
            s["rmse_vs_full_soft"],
        ]
        for s in r["sweep"]
    ]
    header = ["arm", "lambda", "mean M", "soft sparsity", "RMSE vs GT (m)", "RMSE vs N(I) (m)"]
    out += [_table(header, rows), ""]

    out += ["## RMSE at exact sparsity (Fig. 5, sparsity_curves.csv / .png)", ""]
    out += [
        "At sparsity s each image keeps exactly round((1 - s) H W) pixels, those with the "
        f"largest mask values (lambda per level: {r['lambda_for_level']}); s = 0 is the "
        "unmasked image. RMSE per image over valid ground truth, averaged over the test images; "
        "no flip TTA.",
        "",
    ]
    by = {(row["model"], row["sparsity"]): row for row in r["curves"]}
    rows = []
    for s in r["sparsities"]:
        row = [s]
        for n in names:
            v = by[(n, s)]
            row += [v["rmse_vs_gt"], v["rmse_vs_full"], "-" if v["lambda"] is None else v["lambda"]]
        rows.append(row)
    header = ["s"]
    for n in names:
        header += [f"{n} vs GT", f"{n} vs N(I)", f"{n} lambda"]
    out += [_table(header, rows), ""]

    p = r["placement"]
    out += [f"## Where the masks put their pixels (top {100 * (1 - p['sparsity']):.0f}% kept)", ""]
    out += [p["definition"], ""]
    rows = []
    for cls in p["classes"]:
        row = [cls, p["chance"][cls]]
        for n in names:
            s = p["arms"][n][cls]
            row += [s["kept_fraction"], s["enrichment"]]
        rows.append(row)
    header = ["pixel class", "chance rate"]
    for n in names:
        header += [f"{n} kept fraction", f"{n} enrichment"]
    out += [_table(header, rows), ""]

    out += ["## Depth and edge / gradient metrics of the two networks (test split)", ""]
    out += [r["metrics_protocol"], ""]
    rows = []
    for k in TABLE_METRICS:
        s = r["paired"][k]
        rows.append(
            [
                k,
                r["metrics"][t][k],
                r["metrics"][c][k],
                s["mean_diff"],
                s["se"],
                better_arm(k, s["mean_diff"], s["se"], (t, c)),
            ]
        )
    header = ["metric", t, c, f"mean({t} - {c})", "SE", "better"]
    out += [_table(header, rows), ""]

    v = r["verdict"]
    p = r["paired"][PRIMARY]
    ratio = abs(p["mean_diff"]) / p["se"] if p["se"] and np.isfinite(p["se"]) else float("nan")
    out += ["## Verdict on the paper's claim", ""]
    out += [
        "Claim (paper): Transformers keep less depth gradient continuity than CNNs. Rule (fixed "
        "in dgr_jax/analysis/sparse_pixel/report.py, not tuned): the claim holds on this data "
        "if the "
        f"{t} arm's grad_err exceeds the {c} arm's by more than 2 paired standard errors over "
        "the test images, is contradicted if it is lower by more than 2 SE, and is undecided "
        "otherwise.",
        "",
        f"**On this data the claim {_VERDICT_WORDS[v]}**: grad_err {t} "
        f"{r['metrics'][t][PRIMARY]:.4f} vs {c} {r['metrics'][c][PRIMARY]:.4f} m/px, "
        f"difference {p['mean_diff']:+.4f} = {ratio:.1f} SE (n = {p['n']} images). "
        f"Supporting edge metrics favour: "
        + ", ".join(
            f"{k} -> {better_arm(k, r['paired'][k]['mean_diff'], r['paired'][k]['se'], (t, c))}"
            for k in SUPPORTING
        )
        + ".",
        "",
        "Continuity metrics (issue 29; each judged by the same rule, T worse than C by more "
        "than 2 SE = the claim holds on that metric): "
        + "; ".join(
            f"{k} {r['metrics'][t][k]:.4g} vs {r['metrics'][c][k]:.4g}, difference "
            f"{r['paired'][k]['mean_diff']:+.4g} (SE {r['paired'][k]['se']:.2g}): the claim "
            f"{_VERDICT_WORDS[r['continuity_verdicts'][k]]}"
            for k in CONTINUITY
        )
        + ".",
        "",
        "Noise: the SE covers the sampling of test images only; each arm was trained once, so "
        "training-seed variation is not included and may be as large as the difference.",
        "",
    ]
    notes = [*r["conditions"].get("notes", []), *r.get("notes", [])]
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


_VERDICT_WORDS = {
    "holds": "holds",
    "contradicted": "does not hold (the opposite is measured)",
    "undecided": "is not supported (no difference beyond test-set noise)",
}
