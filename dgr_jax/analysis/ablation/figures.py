"""The ablation study's pictures: ablation.png, gradients.png, curves.png (ours).

- ablation.png: one panel per table metric; each main arm's mean over seeds (bar) with the 95%
  interval of that mean (the same hierarchical bootstrap as the claims, of the arm alone),
  each seed's mean as a dot, the constant-depth baseline as a dashed line.
- gradients.png: the same test images (`config.pictures`) for every arm: per image a row of
  depth maps (ground truth, then each main arm's prediction: first seed, the evaluator's final
  prediction with its TTA and clamp) and below it the magnitude of each map's depth gradient
  (Sobel / 8, m/px, the edge metrics' kernels), on shared scales per image, so a reader sees
  edge sharpness.
- curves.png: the training loss of every run (total and its SILog term, which every arm
  shares, so the curves compare), main arms solid (one line per seed), exploratory dashed.
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dgr_jax import evaluate, jsonio, sharding, storage, viz
from dgr_jax.analysis.ablation import stats as ablation_stats
from dgr_jax.analysis.common import bootstrap, figures
from dgr_jax.analysis.common.edges import SOBEL_NORM, sobel_magnitude
from dgr_jax.metric_writer import read_jsonl

_COLOURS = matplotlib.colormaps["tab10"].colors


def plot_metrics(path: str, config, per_run: dict, constant: dict) -> None:
    """ablation.png (module docstring)."""
    metrics = list(config.metrics.table)
    arms = list(config.main_arms)
    seeds = [int(s) for s in config.seeds]
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.8 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    fig.subplots_adjust(hspace=0.7, wspace=0.3)
    boot = config.bootstrap
    for ax, m in zip(axes, metrics):
        for i, arm in enumerate(arms):
            values = ablation_stats.matrix(per_run, arm, seeds, m)
            iv = bootstrap.hierarchical_bootstrap(
                values, num_resamples=int(boot.num_resamples), seed=int(boot.seed)
            )
            colour = _COLOURS[i % len(_COLOURS)]
            err = [[max(iv.delta - iv.lo, 0.0)], [max(iv.hi - iv.delta, 0.0)]]
            ax.bar(i, iv.delta, color=colour, alpha=0.6, yerr=err, capsize=3)
            per_seed = [np.nanmean(v) for v in values]
            ax.plot([i] * len(per_seed), per_seed, "k.", ms=4)
        c = constant["means"].get(m)
        if c is not None and np.isfinite(c):
            ax.axhline(c, color="grey", ls="--", lw=1, label="constant depth")
            ax.legend(fontsize=6, loc="best")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=40, ha="right", fontsize=7)
        better = ablation_stats.better_direction(m)
        ax.set_title(f"{m} ({better} is better)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    fig.suptitle(
        f"Arm means over seeds {seeds} with 95% intervals (seeds, then images); dots: seeds",
        fontsize=10,
    )
    storage.save_figure(path, fig, bbox_inches="tight")


def _grad(depth: np.ndarray) -> np.ndarray:
    return sobel_magnitude(np.asarray(depth)[None])[0] / SOBEL_NORM


def arm_predictions(config, run, eval_name: str, indices) -> list[dict]:
    """The evaluator's final predictions of `indices` for one run's final checkpoint."""
    model_def, mesh, state, state_sh, _ = evaluate.restore_for_inference(run.config, run.workdir)
    evaluator = evaluate.make_evaluators(run.config, run.config.data_dir, mesh)[eval_name]
    predict = evaluate.make_predict_fn(model_def, state_sh, sharding.batch_sharding(mesh))

    def predict_fn(images):
        return predict(state["params"], state["rest"], images)

    return evaluator.predictions(predict_fn, list(indices))


def plot_gradients(
    path: str, config, runs: dict, eval_name: str, num_images: int, log=print, write: bool = True
) -> None:
    """gradients.png (module docstring); `runs`: arm -> its first-seed Run.

    Every process predicts (the model is sharded over all devices); only where `write` is the
    figure drawn and saved.
    """
    arms = [a for a in config.main_arms if a in runs]
    indices = [int(k) for k in config.pictures if 0 <= int(k) < num_images]
    if not indices:
        return
    preds = {}
    for arm in arms:
        log(f"gradients.png: predicting with {arm}")
        preds[arm] = arm_predictions(config, runs[arm], eval_name, indices)
    if not write:
        return
    n_images = len(preds[arms[0]])
    grid: list[list] = []
    for row_i in range(n_images):
        ex = preds[arms[0]][row_i]
        gt = np.where(ex["valid"], ex["gt"], np.nan)
        maps = [p[row_i]["depth"] for p in preds.values()]
        vmin, vmax = viz.depth_range(gt, *maps)
        depth = figures.depth_options(vmin, vmax)
        grads = {a: _grad(preds[a][row_i]["depth"]) for a in arms}
        gt_grad = np.where(ex["valid"], _grad(np.where(ex["valid"], ex["gt"], 0.0)), np.nan)
        gmax = max(float(np.nanpercentile(g, 99)) for g in [*grads.values(), gt_grad]) or 1.0
        grad = {"vmin": 0.0, "vmax": gmax, "cmap": figures.GRAD_CMAP, "label": "|grad| (m/px)"}
        # Two rows per image: depth maps, then gradient magnitudes, arms side by side.
        grid.append(
            [(f"RGB ({ex['id']})", ex["image"]), ("ground truth", gt, depth)]
            + [(a, preds[a][row_i]["depth"], depth) for a in arms]
        )
        grid.append(
            [None, ("|grad| ground truth", gt_grad, grad)]
            + [(f"|grad| {a}", grads[a], grad) for a in arms]
        )
    figures.save_grid(
        path,
        grid,
        suptitle="Predicted depth and the magnitude of its gradient, first seed of each arm",
        panel_width=2.4,
    )


def _history(workdir: str) -> list[dict]:
    return read_jsonl(storage.join(workdir, "train_metrics.jsonl"))


def plot_curves(path: str, config, runs_all: dict, per_run: dict) -> None:
    """curves.png (module docstring); `runs_all`: arm -> first-seed Run (for the workdir root)."""
    fig = Figure(figsize=(12, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    arms = [*config.main_arms, *config.exploratory_arms]
    for i, arm in enumerate(arms):
        colour = _COLOURS[i % len(_COLOURS)]
        main = arm in config.main_arms
        seeds = [s for a, s in per_run if a == arm]
        root = os.path.dirname(runs_all[arm].workdir)
        for j, seed in enumerate(sorted(seeds)):
            hist = _history(storage.join(root, f"seed{seed}"))
            if not hist:
                continue
            steps = [h["step"] for h in hist]
            label = arm if j == 0 else None
            for ax, key in zip(axes, ("loss_avg", "loss_silog")):
                ax.plot(
                    steps,
                    [jsonio.nan_if_none(h.get(key, h.get("loss"))) for h in hist],
                    color=colour,
                    ls="-" if main else "--",
                    lw=1.0 if main else 0.8,
                    alpha=0.8,
                    label=label,
                )
    for ax, title in zip(axes, ("training loss (total, logged average)", "SILog term")):
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle("Training curves: main arms solid (one line per seed), exploratory dashed")
    storage.save_figure(path, fig, bbox_inches="tight")
