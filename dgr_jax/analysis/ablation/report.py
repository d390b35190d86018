"""summary.md of the ablation study, rendered from summary.json alone (ours).

Laid out like a paper's ablation table (arms with their switches, metrics as mean +- std over
seeds), then the differences to the baseline with their intervals, each claim with its verdict,
the constant-depth check, the cost against its budget, the exploratory table and the protocol
and budget in words. Every number printed is a field of summary.json.
"""

from __future__ import annotations

import math

from dgr_jax.analysis.ablation.stats import better_direction
from dgr_jax.evaluators.report import protocol_in_words


def _num(v, digits: int = 4, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _interval(c: dict, digits: int = 4) -> str:
    lo, hi = c["ci"]
    return f"{_num(c['delta'], digits, True)} [{_num(lo, digits, True)}, {_num(hi, digits, True)}]"


def _table(header, rows) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _arrow(metric: str) -> str:
    return "↑" if better_direction(metric) == "higher" else "↓"


def _switches(s: dict) -> list[str]:
    otdl = "-"
    if s["otdl_weight"]:
        otdl = f"{s['otdl_weight']:g} ({s['otdl_geometry']})"
    return [s["encoder"], "yes" if s["dgr"] else "-", otdl]


def render_summary(r: dict) -> str:
    """summary.md from summary.json (see outputs.summary_dict)."""
    table = r["metrics"]["table"]
    base = r["baseline"]
    seeds = r["seeds"]
    tm = r["timing"]
    out = [f"# DGR / OTDL ablation: {r['labels'][base]}", ""]
    out += [f"Command: `{r['command']}`", ""]
    phases = ", ".join(
        f"{name} {tm[key] / 60:.1f}"
        for name, key in (
            ("training and evaluating the runs", "runs_s"),
            ("statistics", "statistics_s"),
            ("cost", "cost_s"),
            ("figures", "outputs_s"),
        )
    )
    la = r["load_average"]
    out += [
        f"Run time: **{tm['total_s'] / 60:.1f} min** wall ({phases} min); process CPU time "
        f"{tm['cpu_s'] / 60:.1f} min; {r['host']}; 1-minute load average "
        f"{la['start'][0]:.1f} at the start, {la['end'][0]:.1f} at the end (a run that reused "
        "finished arms is faster: `runs` in summary.json lists each run's time).",
        "",
    ]

    # ---- The ablation table -------------------------------------------------------------
    out += [f"## Ablation table (mean ± std over seeds {seeds})", ""]
    header = ["arm", "encoder", "DGR", "OTDL weight (cost)"]
    header += [f"{m} {_arrow(m)}" for m in table]
    rows = []
    for a in r["main_arms"]:
        stats = r["arms"][a]
        cells = [f"`{a}`", *_switches(r["arm_settings"][a])]
        cells += [f"{_num(stats[m]['mean'])} ± {_num(stats[m]['std'])}" for m in table]
        rows.append(cells)
    const = r["constant_depth"]
    rows.append(
        [f"constant {const['depth']:.2f} m (oracle)", "-", "-", "-"]
        + [_num(const["metrics"].get(m)) for m in table]
    )
    out += _table(header, rows)
    out += [
        f"Differences to `{base}`: the mean over the test images of each image's value averaged "
        "over the seeds, minus the baseline's, with its 95% interval (hierarchical bootstrap: "
        "seeds, then images, both paired).",
        "",
    ]
    by = {(c["arm"], c["metric"]): c for c in r["comparisons"]}
    rows = [
        [f"`{a}`"] + [_interval(by[(a, m)]) for m in table] for a in r["main_arms"] if a != base
    ]
    out += _table(["arm", *[f"Δ {m} {_arrow(m)}" for m in table]], rows)

    # ---- Claims ---------------------------------------------------------------------------
    out += ["## The paper's claims, judged", ""]
    out += [f"Rule (fixed in the study config before anything ran): {r['verdict_rule']}", ""]
    rows = [
        [
            c["name"],
            f"`{c['arm']}` vs `{c['baseline']}`",
            c["metric"],
            c["better"],
            _interval(c),
            f"**{c['verdict']}**",
        ]
        for c in r["claims"]
    ]
    out += _table(["claim", "comparison", "metric", "better", "Δ [95% interval]", "verdict"], rows)
    counts = {
        v: sum(c["verdict"] == v for c in r["claims"])
        for v in ("supported", "contradicted", "not shown")
    }
    out += [
        f"{counts['supported']} supported, {counts['contradicted']} contradicted, "
        f"{counts['not shown']} not shown. Accuracy metrics: "
        f"{', '.join(r['metrics']['accuracy'])}; continuity metrics: "
        f"{', '.join(r['metrics']['continuity'])} (a flat or blurred prediction cannot win "
        "them; grad_err, the mean gradient error, is in ablation.csv but judges nothing, since "
        "a flat prediction scores well on it).",
        "",
    ]

    # ---- Against the constant depth -------------------------------------------------------
    out += ["## Every arm against the oracle constant depth", ""]
    rows = [
        [f"`{c['arm']}`", c["metric"], _interval(c)] for c in r["constant_depth"]["arms_against_it"]
    ]
    out += _table(["arm", "metric", "arm - constant [95% interval]"], rows)

    # ---- Cost -----------------------------------------------------------------------------
    cost = r["cost"]
    out += ["## Cost", ""]
    rows = []
    for a in [*r["main_arms"], *r["exploratory_arms"]]:
        c = cost["arms"].get(a)
        if not c:
            continue
        rows.append(
            [
                f"`{a}`",
                f"{c['params'] / 1e6:.3f}M",
                _num(c["forward_gflops"], 3),
                _num(c.get("params_ratio"), 4),
                _num(c.get("forward_flops_ratio"), 4),
                _step_ms(c),
                _num(c.get("step_time_ratio"), 3) if "step_ms" in c else "-",
            ]
        )
    header = ["arm", "params", "forward GFLOPs (batch 1)", "params ratio", "FLOPs ratio"]
    step_ms = f"train step ms (batch {cost['batch_size']})"
    if any("reference_step_ms" in c for c in cost["arms"].values()):
        step_ms += f" / `{cost['reference']}`'s in the same series"
    header += [step_ms, "step time ratio"]
    out += _table(header, rows)
    d = cost.get("dgr") or {}
    if d:
        ok = {True: "within budget", False: "**over budget**"}
        out += [
            f"DGR's cost (`{d['arm']}` vs `{d['reference']}`, reported apart from the claims): "
            f"parameters {_num(d['params_pct'], 2, True)}% ({ok[d['params_within_budget']]} of "
            f"{d['params_budget_pct']:g}%), forward FLOPs {_num(d['forward_flops_pct'], 2, True)}% "
            f"({ok[d['flops_within_budget']]} of {d['flops_budget_pct']:g}%), train-step time "
            f"{_num(d['step_time_pct'], 1, True)}%. Step times: medians of "
            f"{cost['timing_repeats']} steps per arm, on the first training batch from each "
            "arm's trained first seed, after a warm-up step; each arm is timed in its own "
            f"series interleaved with `{cost['reference']}` in one process, and its ratio is "
            f"to `{cost['reference']}`'s median in that series (after the slash), which takes "
            "out the machine's drift between series; "
            f"`{cost['reference']}`'s own row is its median over all series.",
            "",
        ]

    # ---- Exploratory ------------------------------------------------------------------------
    if r["exploratory_arms"]:
        ref = r["exploratory_reference"]
        out += [
            f"## Exploratory: our design choices (one seed each, seed {r['exploratory_seed']}; "
            "no verdict)",
            "",
            f"Each arm changes one choice of `{ref}`; Δ is against `{ref}` at the same seed, "
            "with a 95% interval over test images only (one seed: training noise, often as "
            "large, is not in it).",
            "",
        ]
        ex = {(c["arm"], c["metric"]): c for c in r["exploratory"]}
        ref_values = r["exploratory_reference_values"]
        rows = [
            [f"`{ref}` (seed {r['exploratory_seed']})", "the reference"]
            + [_num(ref_values[m]["mean"]) for m in table]
        ]
        for a in r["exploratory_arms"]:
            rows.append(
                [f"`{a}`", r["labels"][a]]
                + [f"{_num(r['arms'][a][m]['mean'])}: {_interval(ex[(a, m)])}" for m in table]
            )
        out += _table(["arm", "what", *[f"{m} {_arrow(m)}: Δ [95%]" for m in table]], rows)

    # ---- Protocol and budget ------------------------------------------------------------------
    b = r["budget"]
    out += ["## Protocol and budget", ""]
    build = b["build"]
    data = f"`{b['dataset']}`"
    if "num_train" in build:
        data += (
            f" ({build['num_train']} training and {build['num_test']} test scenes rendered at "
            f"{build['height']}x{build['width']})"
        )
    out += [
        f"Every run trains the base config `{b['base']}` with the study's overrides "
        f"({', '.join(f'`{o}`' for o in b['base_overrides']) or 'none'}) and then its arm's, "
        f"for {b['total_steps']} steps of batch {b['batch_size']} at "
        f"{b['input_size'][0]}x{b['input_size'][1]} on {data}, Adam lr {b['lr']:g} after "
        f"{b['warmup_steps']} warm-up steps. Main arms: seeds {seeds} (initialisation only: "
        f"the data order and augmentation use seed {r['data_seed']} in every run); "
        f"{b['num_runs']} runs in all. Before training, every run's config was compared key by "
        f"key with the baseline's ({r['conditions']['num_keys']} keys): they differ only in the "
        "keys of their overrides and the seed.",
        "",
        "Evaluation: " + protocol_in_words(r["protocol"]),
        "",
        f"Statistics: {r['bootstrap']['num_resamples']} bootstrap resamples (generator seed "
        f"{r['bootstrap']['seed']}). An image enters a comparison when the metric is defined "
        "for it in every seed of both arms (edge scores are undefined for an image without an "
        "edge in either map). With few seeds the seed level of the bootstrap can only reuse "
        "the seeds trained, so the intervals lean narrow; a verdict on 3 seeds is a measured "
        "result on this data and budget, not a proof about the method.",
        "",
        "Files: `ablation.csv` (arm, seed, metric, value), `per_image.csv` (arm, seed, image, "
        "metrics: every delta above can be recomputed from it), `summary.json` (every number "
        "here), `ablation.png`, `gradients.png`, `curves.png`, `arms/<arm>/seed<k>/` (each "
        "run), `constant_depth/` (the constant predictor's evaluation).",
        "",
    ]
    return "\n".join(out)


def _step_ms(c: dict) -> str:
    """An arm's median step time, and the reference's of the same series when recorded."""
    if "step_ms" not in c:
        return "-"
    if "reference_step_ms" in c:
        return f"{_num(c['step_ms'], 0)} / {_num(c['reference_step_ms'], 0)}"
    return _num(c["step_ms"], 0)
