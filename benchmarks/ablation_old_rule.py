"""The ablation's continuity claims judged by the rule before issue 29, on the same trained runs.

    python benchmarks/ablation_old_rule.py --config configs/ablation_synthetic.py \
        --workdir runs/ablation [--config.KEY=VALUE ...]      # the study's own arguments

Until issue 29 "continuity" was judged on Hu et al.'s Sobel edge F1 at 0.25 and 0.5 with the
thresholds per pixel at every resolution; now the thresholds are scaled to a 304-pixel reference
width and normal_err_mean, seam_ratio_16 and laplacian_err judge beside them. To put the two
readings side by side on the same models, this re-evaluates the final checkpoint of every
main-arm run of a finished study with `evals.<name>.edge_reference_width=0` (the old metric)
into W/old_rule/<arm>/seed<k>/<name>/ (runs already there are reused), judges every
continuity claim on the old edge F1s with the study's own statistics (same seeds, hierarchical
bootstrap, interval rule: `dgr_jax/analysis/ablation/stats.py`), and writes W/old_rule/summary.md
and summary.json with the study's new verdicts (W/summary.json) beside them.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run from anywhere, not installed

OLD_METRICS = ("edge_f1_0.25", "edge_f1_0.50")


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the study's config (configs/X.py[:arg])")
    parser.add_argument("--workdir", required=True, help="the finished study's workdir")
    args, rest = parser.parse_known_args(argv)
    bad = [x for x in rest if not x.startswith("--config.") or "=" not in x]
    if bad:
        parser.error(f"unrecognised arguments {bad} (overrides are --config.key=value)")
    return args, [x.removeprefix("--config.") for x in rest]


def old_rule_per_image(config, workdir: str) -> dict:
    """{(arm, seed): {metric: (N,)}} of the main arms, evaluated with per-pixel thresholds."""
    from dgr_jax import evaluate, storage
    from dgr_jax.analysis.ablation import study

    eval_name = str(config.eval_name)
    per_run = {}
    for run in study.resolve_runs(config, workdir):
        if run.arm not in config.main_arms:
            continue
        out_root = storage.join(workdir, "old_rule", run.arm, f"seed{run.seed}")
        csv_path = storage.join(out_root, eval_name, "per_image.csv")
        if not storage.exists(csv_path):
            cfg = run.config.copy_and_resolve_references()
            cfg.unlock()
            cfg.evals[eval_name].edge_reference_width = 0
            cfg.evals[eval_name].num_pictures = 0
            cfg.evals = {eval_name: cfg.evals[eval_name]}
            cfg.lock()
            print(f"re-evaluating {run.arm} seed {run.seed}", file=sys.stderr, flush=True)
            evaluate.evaluate_checkpoint(cfg, run.workdir, "latest", out_root=out_root)
        _, values = study.read_per_image(csv_path)
        per_run[(run.arm, run.seed)] = values
    return per_run


def judge(config, per_run: dict, new_summary: dict) -> list[dict]:
    """One row per continuity claim: the old-rule verdicts and the study's new ones."""
    from dgr_jax.analysis.ablation import stats
    from dgr_jax.analysis.common import bootstrap

    seeds = [int(s) for s in config.seeds]
    new = {(c["name"], c["metric"]): c for c in new_summary["claims"]}
    rows = []
    for name, arm, baseline, kind in config.claims:
        if kind != "continuity":
            continue
        row = {"claim": name, "arm": arm, "baseline": baseline, "old": {}, "new": {}}
        for metric in OLD_METRICS:
            c = stats.compare(per_run, arm, baseline, seeds, metric, config.bootstrap)
            c["verdict"] = bootstrap.verdict(c["ci"][0], c["ci"][1], c["better"])
            row["old"][metric] = c
        for metric in config.metrics.continuity:
            row["new"][metric] = new[(name, metric)]
        rows.append(row)
    return rows


def _cell(c: dict) -> str:
    word = c["verdict"]
    word = f"**{word}**" if word != "not shown" else word
    return f"{word}: {c['delta']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]"


def render(rows: list[dict], config, means: dict) -> str:
    new_metrics = list(config.metrics.continuity)
    head = [f"old {m} (per pixel)" for m in OLD_METRICS] + [f"new {m}" for m in new_metrics]
    lines = [
        "# Continuity claims: the rule before issue 29 against the new one, same runs",
        "",
        "Old: Hu et al.'s Sobel edge F1 with thresholds 0.25 / 0.5 per pixel at the study's "
        "width (re-evaluated, `edge_reference_width=0`). New: the study's summary.json "
        "(thresholds scaled to a 304-pixel width, and the continuity metrics of issue 29). "
        "Cells: verdict: delta [95% interval] of arm - baseline, the study's hierarchical "
        "bootstrap over seeds and images.",
        "",
        "| claim | " + " | ".join(head) + " |",
        "|" + "---|" * (len(head) + 1),
    ]
    for r in rows:
        cells = [_cell(r["old"][m]) for m in OLD_METRICS] + [
            _cell(r["new"][m]) for m in new_metrics
        ]
        lines.append(f"| {r['claim']} | " + " | ".join(cells) + " |")
    lines += ["", "Old edge F1 per arm (mean over seeds of the per-seed means):", ""]
    lines += ["| arm | " + " | ".join(OLD_METRICS) + " |", "|---|" + "---|" * len(OLD_METRICS)]
    for arm, values in means.items():
        cols = [f"{values[m]['mean']:.3f} ± {values[m]['std']:.3f}" for m in OLD_METRICS]
        lines.append(f"| `{arm}` | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parse(sys.argv[1:] if argv is None else argv)
    from dgr_jax import configlib, jsonio, storage
    from dgr_jax.analysis.ablation import stats

    config = configlib.load(args.config, overrides)
    summary_path = storage.join(args.workdir, "summary.json")
    if not storage.exists(summary_path):
        print(f"error: {summary_path} not found: run the study first", file=sys.stderr)
        return 2
    per_run = old_rule_per_image(config, args.workdir)
    rows = judge(config, per_run, jsonio.read(summary_path))
    seeds = [int(s) for s in config.seeds]
    means = {a: stats.arm_summary(per_run, a, seeds, OLD_METRICS) for a in config.main_arms}
    out = storage.join(args.workdir, "old_rule")
    jsonio.write(storage.join(out, "summary.json"), {"claims": rows, "old_means": means})
    storage.write_text(storage.join(out, "summary.md"), render(rows, config, means))
    print(jsonio.dumps({"claims": rows, "old_means": means}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
