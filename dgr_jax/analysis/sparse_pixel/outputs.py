"""Writing the sparse-pixel study's files: CSVs, figures, results dict, summary.md, mask nets.

Ours. File list and meaning: `study.py`'s module docstring.
"""

from __future__ import annotations

import io
import os
import platform

import jax
import ml_collections
import numpy as np

from dgr_jax import jsonio, storage
from dgr_jax.analysis.common.edges import SOBEL_NORM, sobel_magnitude
from dgr_jax.analysis.sparse_pixel import figures, report
from dgr_jax.analysis.sparse_pixel.evaluation import TestSet
from dgr_jax.analysis.sparse_pixel.sparsity import PIXEL_CLASSES, grey

CURVE_COLUMNS = ("model", "sparsity", "rmse_vs_gt", "rmse_vs_full", "lambda", "mask_mean", "kept")
SWEEP_COLUMNS = (
    "model",
    "lambda",
    "mask_mean",
    "soft_sparsity",
    "rmse_vs_gt_soft",
    "rmse_vs_full_soft",
    "train_loss",
    "train_rec",
    "train_mask_mean",
)


def save_mask_net(workdir: str, arm: str, lam: float, params) -> str:
    """mask_nets/<arm>/lambda_<lam>.npz: the mask net's parameters by tree path."""
    leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
    arrays = {jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}
    path = storage.join(workdir, "mask_nets", arm, f"lambda_{lam:g}.npz")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    storage.write_bytes(path, buf.getvalue())
    return path


def _grad_mag(depth: np.ndarray) -> np.ndarray:
    """Sobel slope magnitude (m/px) of (H, W) depth, the edge metrics' kernels."""
    return sobel_magnitude(depth[None])[0] / SOBEL_NORM


def write_figures(config, workdir: str, labels: dict, test: TestSet, per_arm: dict) -> None:
    """sparsity_curves.png, masks_<k>.png and comparison.png."""
    order = tuple(config.arm_order)
    curves = [row for n in order for row in per_arm[n]["curves"]]
    sweep = [row for n in order for row in per_arm[n]["sweep"]]
    figures.plot_sparsity_curves(
        os.path.join(workdir, "sparsity_curves.png"),
        curves,
        sweep,
        labels,
        title=f"Fig. 5: frozen depth networks on sparsified test images ({len(test.ids)} images)",
    )
    s_place = float(config.placement.sparsity)
    pictures = [int(k) for k in config.test.pictures if int(k) < len(test.ids)]
    for k in pictures:
        rgb = test.rgb[k]
        gt = np.where(test.valid[k], test.gt[k], np.nan)
        panel_arms = []
        for n in order:
            a = per_arm[n]
            keep = a["placement_keep"][k]
            panel_arms.append(
                {
                    "label": labels[n],
                    "lam": a["placement_lambda"],
                    "mask": a["soft"][a["placement_lambda"]][k],
                    "masked_rgb": (rgb * keep[..., None]).astype(np.uint8),
                    "full": a["full"][k],
                    "sparse": a["placement_pred"][k],
                }
            )
        figures.mask_panel(
            os.path.join(workdir, f"masks_{k}.png"),
            title=f"Fig. 3: test image {k} ({test.ids[k]}); masks and sparse predictions",
            rgb=rgb,
            image_grad=sobel_magnitude(grey(rgb[None]))[0],
            gt=gt,
            arms=panel_arms,
            sparsity=s_place,
        )
    figures.comparison_figure(
        os.path.join(workdir, "comparison.png"),
        title="Fig. 1: predictions from the full image under identical data and loss",
        rows=[
            {
                "id": test.ids[k],
                "rgb": test.rgb[k],
                "gt": np.where(test.valid[k], test.gt[k], np.nan),
                "gt_grad": _grad_mag(np.where(test.valid[k], test.gt[k], 0.0)),
                "preds": [per_arm[n]["full"][k] for n in order],
                "grads": [_grad_mag(per_arm[n]["full"][k]) for n in order],
            }
            for k in pictures
        ],
        labels=[labels[n] for n in order],
    )


def results_dict(
    config: ml_collections.ConfigDict,
    *,
    command: str,
    frozen: dict,
    conditions: dict,
    test: TestSet,
    classes: dict,
    per_arm: dict,
    histories: dict,
) -> dict:
    """Everything numeric (results.json) and what summary.md is rendered from."""
    order = tuple(config.arm_order)
    metrics = {
        n: {k: float(np.nanmean(v)) for k, v in per_arm[n]["per_image"].items()} for n in order
    }
    paired = {
        k: report.paired(per_arm[order[0]]["per_image"][k], per_arm[order[1]]["per_image"][k])
        for k in report.TABLE_METRICS
    }
    pc = config.placement.classes
    return {
        "command": command,
        "host": _host(),
        "arm_order": list(order),
        "arms": {
            n: {
                "label": frozen[n].label,
                "config": config.arms[n].config,
                "workdir": frozen[n].workdir,
                "step": frozen[n].step,
                "num_params": frozen[n].num_params,
            }
            for n in order
        },
        "conditions": conditions,
        "mask": {
            "description": f"U-Net, widths {tuple(config.mask.widths)}, GroupNorm, sigmoid",
            "lr": float(config.mask.lr),
            "steps": int(config.mask.steps),
            "batch_size": int(config.mask.batch_size),
            "histories": {n: {f"{lam:g}": h for lam, h in histories[n].items()} for n in order},
        },
        "lambda_for_level": str(config.lambda_for_level),
        "sparsities": [float(s) for s in config.sparsities],
        "sweep": [row for n in order for row in per_arm[n]["sweep"]],
        "curves": [row for n in order for row in per_arm[n]["curves"]],
        "placement": {
            "sparsity": float(config.placement.sparsity),
            "classes": list(PIXEL_CLASSES),
            "definition": (
                f"Image edges: top {100 * pc.image_edge_fraction:g}% Sobel magnitude of the grey "
                f"image per image. Depth edges: |Sobel(gt)| / 8 / gt > {pc.depth_edge_rel:g} "
                f"(relative depth change per pixel). Texture: local intensity std "
                f"({pc.texture_window}x{pc.texture_window} window, intensity in [0, 1]) > "
                f"{pc.texture_std:g}, at least {pc.depth_edge_margin} px from a depth edge. "
                "Kept fraction: share of the kept pixels in the class; chance rate: share of all "
                "valid pixels in it; enrichment = kept / chance (1 = the mask ignores the class). "
                "Pooled over the test images; each arm's mask is that of the lambda nearest this "
                "sparsity, binarised exactly."
            ),
            "chance": {c: float(classes[c][test.valid].mean()) for c in PIXEL_CLASSES},
            "arms": {n: per_arm[n]["placement"] for n in order},
            "lambda": {n: per_arm[n]["placement_lambda"] for n in order},
        },
        "metrics_protocol": (
            f"Prediction from the full test image, clamped to [{config.test.min_depth:g}, "
            f"{config.test.max_depth:g}] m, valid = {config.test.min_depth:g} < gt < "
            f"{config.test.max_depth:g}, crop {config.test.crop!r}, no flip TTA; per-image metrics "
            "(dgr_jax.evaluators compute_depth_metrics / compute_edge_metrics / "
            "continuity_metrics, normals with each image's focal length) averaged over "
            f"{len(test.ids)} images; SE = standard error of the paired per-image difference."
        ),
        "metrics": metrics,
        "paired": paired,
        "verdict": report.verdict(paired[report.PRIMARY]),
        "continuity_verdicts": {k: report.verdict(paired[k]) for k in report.CONTINUITY},
        "num_test_images": len(test.ids),
    }


def _host() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, {jax.device_count()} "
        f"{jax.devices()[0].platform} device(s), 1-minute load average {load:.1f} at the end"
    )


def write_tables_and_summary(workdir: str, results: dict) -> None:
    """sparsity_curves.csv, lambda_sweep.csv, results.json and summary.md."""
    report.write_csv(os.path.join(workdir, "sparsity_curves.csv"), results["curves"], CURVE_COLUMNS)
    report.write_csv(os.path.join(workdir, "lambda_sweep.csv"), results["sweep"], SWEEP_COLUMNS)
    jsonio.write(os.path.join(workdir, "results.json"), results)
    storage.write_text(os.path.join(workdir, "summary.md"), report.render_summary(results))
