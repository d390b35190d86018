"""The sparse-pixel study's pictures: Fig. 5 curves, Fig. 3 mask panels, Fig. 1 comparison.

Ours. Conventions follow `dgr_jax.viz`: depth with `viz.DEPTH_CMAP` on one shared scale per
figure row group (the 1st-99th percentiles of the ground truth and every prediction shown, so
maps are comparable), NaN black, a colour bar under every map, titles on every panel.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dgr_jax import storage, viz
from dgr_jax.analysis.common.figures import GRAD_CMAP, Cell, depth_options, save_grid

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")
MASK_CMAP = "gray"  # black = dropped, white = kept


def plot_sparsity_curves(
    path: str, curves: list[dict], sweep: list[dict], labels: dict[str, str], title: str = ""
) -> None:
    """Fig. 5: RMSE against sparsity for every arm, vs ground truth and vs the full prediction.

    Args:
        curves: rows of sparsity_curves.csv (model, sparsity, rmse_vs_gt, rmse_vs_full).
        sweep: rows of lambda_sweep.csv (model, lambda, soft_sparsity, rmse_*_soft): drawn as
            hollow markers, the un-binarised masks at the sparsity their lambda reached.
        labels: model key -> legend label.
    """
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, key, name in zip(axes, ("rmse_vs_gt", "rmse_vs_full"), ("ground truth", "N(I)")):
        for i, (model, label) in enumerate(labels.items()):
            colour = _COLOURS[i % len(_COLOURS)]
            rows = sorted((r for r in curves if r["model"] == model), key=lambda r: r["sparsity"])
            ax.plot(
                [r["sparsity"] for r in rows],
                [r[key] for r in rows],
                "o-",
                color=colour,
                label=f"{label}, top-(1-s) mask",
            )
            soft = [r for r in sweep if r["model"] == model]
            if soft:
                ax.plot(
                    [r["soft_sparsity"] for r in soft],
                    [r[f"{key}_soft"] for r in soft],
                    "s",
                    mfc="none",
                    color=colour,
                    label=f"{label}, soft mask per lambda",
                )
        ax.set_xlabel("sparsity s (fraction of pixels zeroed)")
        ax.set_ylabel("RMSE (m)")
        ax.set_title(f"RMSE of N(I * M) against {name}", fontsize=10)
        ax.set_xlim(-0.02, 1.0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    storage.save_figure(path, fig, bbox_inches="tight")  # local or gs://


def mask_panel(
    path: str,
    *,
    title: str,
    rgb: np.ndarray,
    image_grad: np.ndarray,
    gt: np.ndarray,
    arms: list[dict],
    sparsity: float,
) -> None:
    """Fig. 3 for one image: RGB, image gradient, ground truth; per arm its soft mask, the
    binarised masked input, the full-image prediction and the sparse prediction.

    Args:
        arms: per arm {"label", "lam", "mask" (H, W) in [0, 1], "masked_rgb" (H, W, 3),
            "full" (H, W), "sparse" (H, W)}.
    """
    vmin, vmax = viz.depth_range(gt, *[a["full"] for a in arms], *[a["sparse"] for a in arms])
    depth = depth_options(vmin, vmax)
    grad = {"vmin": 0.0, "vmax": float(np.percentile(image_grad, 99)) or 1.0}
    rows: list[list[Cell]] = [
        [
            ("RGB", rgb),
            ("image gradient |Sobel(grey)|", image_grad, {**grad, "cmap": GRAD_CMAP}),
            ("ground truth", gt, depth),
            None,
        ]
    ]
    for arm in arms:
        short = arm["label"].split(" (")[0]
        rows.append(
            [
                (
                    f"{arm['label']}\nmask G(I), lambda={arm['lam']:g}",
                    arm["mask"],
                    {"vmin": 0.0, "vmax": 1.0, "cmap": MASK_CMAP, "label": "keep probability"},
                ),
                (f"input, top {100 * (1 - sparsity):.0f}% kept", arm["masked_rgb"]),
                (f"{short}: N(I), full image", arm["full"], depth),
                (f"{short}: N(I * M), s={sparsity:g}", arm["sparse"], depth),
            ]
        )
    save_grid(path, rows, suptitle=title)


def comparison_figure(path: str, *, title: str, rows: list[dict], labels: list[str]) -> None:
    """Fig. 1: per image RGB, ground truth, each arm's prediction and its depth-gradient
    magnitude (shared scales within a row).

    Args:
        rows: per image {"id", "rgb", "gt", "preds": [depth per label], "grads": [...]}.
    """
    grid: list[list[Cell]] = []
    for row in rows:
        vmin, vmax = viz.depth_range(row["gt"], *row["preds"])
        depth = depth_options(vmin, vmax)
        gmax = max(float(np.percentile(g, 99)) for g in [*row["grads"], row["gt_grad"]]) or 1.0
        grad = {"vmin": 0.0, "vmax": gmax, "cmap": GRAD_CMAP, "label": "|grad depth| (m/px)"}
        cells: list[Cell] = [(f"RGB ({row['id']})", row["rgb"]), ("ground truth", row["gt"], depth)]
        cells += [(label, pred, depth) for label, pred in zip(labels, row["preds"])]
        cells += [("|grad| ground truth", row["gt_grad"], grad)]
        cells += [(f"|grad| {label}", g, grad) for label, g in zip(labels, row["grads"])]
        grid.append(cells)
    save_grid(path, grid, suptitle=title)
