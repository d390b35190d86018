"""The sparse-pixel study's measurements on the test split, for one frozen arm at a time.

For each arm (method.md section 2, details in `study.py`'s docstring): the prediction
from the full image N(I); every lambda's soft mask G(I) and the prediction from the softly
masked image; at each sparsity s the mask of the chosen lambda binarised to exactly the top
(1 - s) fraction and RMSE of N(I * M_s) against ground truth (valid pixels) and against N(I);
where the kept pixels lie at the placement sparsity; the per-image depth, edge and continuity
metrics of N(I) (`compute_depth_metrics`, `compute_edge_metrics`, `continuity_metrics` with each
image's focal length at the models' input size). Predictions are clamped to the test
depth range like the evaluator's; no flip TTA (Hu et al. evaluate single predictions).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from dgr_jax import xla_options
from dgr_jax.analysis.sparse_pixel.arms import FrozenArm, clamp_depth
from dgr_jax.analysis.sparse_pixel.sparsity import (
    binarize_top_fraction,
    masked_input,
    normalise,
    pixel_classes,
    placement_stats,
)
from dgr_jax.data import datasets
from dgr_jax.data.augment import resize as resize_op
from dgr_jax.evaluators import crops
from dgr_jax.evaluators.continuity import continuity_metrics, record_focal
from dgr_jax.evaluators.edges import compute_edge_metrics
from dgr_jax.evaluators.metrics import compute_depth_metrics
from dgr_jax.steps import ModelDef


@dataclasses.dataclass
class TestSet:
    rgb: np.ndarray  # (N, H, W, 3) uint8 (kept as bytes: NYU's 654 frames are 600 MB so)
    gt: np.ndarray  # (N, H, W) metres, 0 = invalid
    valid: np.ndarray  # (N, H, W) bool, min_depth < gt < max_depth
    ids: list[str]
    focal: np.ndarray  # (N,) float32 focal length in pixels at the models' input size


def load_test_set(
    arm_config,
    split: str,
    num_images: int,
    data_dir: str,
    depth_range: tuple[float, float],
    crop: str = "none",
) -> TestSet:
    """The arms' dataset's `split` as host arrays at the models' input size.

    Images of another size (smoke variants of real datasets) are resized with the `resize`
    preprocessing op (image bilinear, depth nearest) and evaluated at the input size.

    valid = min < gt < max (strict, the evaluator's) inside the evaluation crop `crop`
    (`dgr_jax.evaluators.crops`: "none", "eigen" for NYU, ...).
    """
    source = datasets.open_split(
        arm_config.input.dataset,
        split,
        data_dir,
        manual_dir=arm_config.input.manual_dir,
        build_args=dict(arm_config.input.build),
    )
    n = len(source) if num_images < 0 else min(num_images, len(source))
    size = tuple(arm_config.input.size)
    resize = resize_op(*size)  # image bilinear, depth nearest
    rgb, gt, ids, focal = [], [], [], []
    for i in range(n):
        rec = source[i]
        ex = {"image": np.asarray(rec["image"]), "depth": np.asarray(rec["depth"], np.float32)}
        width = ex["image"].shape[1]
        f = record_focal(rec, width)  # the evaluator's, NYU's field of view without intrinsics
        if ex["image"].shape[:2] != size:  # only smoke variants (paper configs match)
            ex = resize(ex, None)
            f *= size[1] / width  # pixels of the resized image
        focal.append(f)
        rgb.append(ex["image"].astype(np.uint8))
        gt.append(ex["depth"])
        value = rec.get("id", str(i))
        ids.append(value.decode() if isinstance(value, bytes) else str(value))
    gt_arr = np.stack(gt)
    valid = (gt_arr > depth_range[0]) & (gt_arr < depth_range[1])
    valid &= crops.crop_mask(crop, *gt_arr.shape[1:])[None]
    return TestSet(np.stack(rgb), gt_arr, valid, ids, np.asarray(focal, np.float32))


def pixel_classes_of(test: TestSet, class_cfg: dict, chunk: int = 32) -> dict[str, np.ndarray]:
    """`sparsity.pixel_classes` of the whole test set, computed `chunk` images at a time."""
    parts = [
        pixel_classes(
            test.rgb[i : i + chunk], test.gt[i : i + chunk], test.valid[i : i + chunk], **class_cfg
        )
        for i in range(0, len(test.ids), chunk)
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _global(x: np.ndarray, sh) -> jax.Array:
    """A global array on `sh` from a value every process holds in full."""
    return jax.make_array_from_callback(x.shape, sh, lambda index: x[index])


def _host(x: jax.Array) -> np.ndarray:
    """The whole of a (possibly multi-process) sharded array, on every process."""
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def map_batches(fn: Callable, arrays: Sequence[np.ndarray], batch: int, batch_sh) -> np.ndarray:
    """fn over leading-axis chunks of `batch` (the last zero-padded), sharded over `data`.

    Multi-process: every process holds the same `arrays` and gets the whole result.
    """
    n, outs = arrays[0].shape[0], []
    for start in range(0, n, batch):
        chunk = [a[start : start + batch] for a in arrays]
        m = chunk[0].shape[0]
        if m < batch:
            chunk = [
                np.concatenate([c, np.zeros((batch - m, *c.shape[1:]), c.dtype)]) for c in chunk
            ]
        out = fn(*(_global(c, batch_sh) for c in chunk))
        outs.append(_host(out)[:m])
    return np.concatenate(outs)


def rmse_per_image(pred: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """sqrt(mean((pred - ref)^2)) over each image's valid pixels, (N,); NaN if none."""
    sq = np.where(valid, (pred.astype(np.float64) - ref) ** 2, 0.0).sum(axis=(1, 2))
    count = valid.sum(axis=(1, 2))
    return np.where(count > 0, np.sqrt(sq / np.maximum(count, 1)), np.nan)


def pick_lambda(sweep: list[dict], sparsity: float, choice: str | float) -> float:
    """The lambda whose soft sparsity is nearest `sparsity` ("nearest"), or a fixed one."""
    if isinstance(choice, str):
        if choice != "nearest":
            raise ValueError(f"lambda_for_level must be 'nearest' or a lambda, got {choice!r}")
        return min(sweep, key=lambda r: abs(r["soft_sparsity"] - sparsity))["lambda"]
    lam = float(choice)
    if lam not in {r["lambda"] for r in sweep}:
        raise ValueError(f"lambda_for_level={lam} is not one of the sweep's lambdas")
    return lam


def _as01(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32) / 255.0


def soft_mask_fn(mask_def: ModelDef) -> Callable:
    """Jitted soft_mask(params, rest, uint8 rgb) -> (B, H, W); make one, share it by arms."""
    return xla_options.jit(lambda p, r, x: mask_def.merge(p, r)(normalise(_as01(x))))


@jax.jit
def _image_metrics(pred, gt, valid, focal):
    return {
        **compute_depth_metrics(pred, gt, valid),
        **compute_edge_metrics(pred, gt, valid),
        **continuity_metrics(pred, gt, valid, focal=focal),
    }


def evaluate_arm(
    arm: FrozenArm,
    *,
    soft_fn: Callable,
    mask_params: dict[float, tuple],
    histories: dict[float, list[dict]],
    test: TestSet,
    classes: dict[str, np.ndarray],
    sparsities: Sequence[float],
    placement_sparsity: float,
    lambda_for_level: str | float,
    depth_range: tuple[float, float],
    batch: int,
    batch_sh,
) -> dict:
    """Every measurement of one arm (module docstring); numbers as host floats / arrays."""
    f = arm.predict_fn()
    predict = xla_options.jit(
        lambda p, r, x, m: clamp_depth(f(p, r, masked_input(_as01(x), m)), *depth_range)
    )
    rgb, gt, valid = test.rgb, test.gt, test.valid
    everywhere = np.ones(gt.shape, bool)

    def run(mask: np.ndarray) -> np.ndarray:
        fn = lambda x, m: predict(arm.params, arm.rest, x, m)  # noqa: E731
        return map_batches(fn, (rgb, mask.astype(np.float32)), batch, batch_sh)

    def rmses(pred: np.ndarray) -> tuple[float, float]:
        return (
            float(np.nanmean(rmse_per_image(pred, gt, valid))),
            float(np.mean(rmse_per_image(pred, full, everywhere))),
        )

    full = run(everywhere)
    soft = {
        lam: map_batches(lambda x, p=p: soft_fn(*p, x), (rgb,), batch, batch_sh)
        for lam, p in mask_params.items()
    }
    sweep = []
    for lam, m in soft.items():
        vs_gt, vs_full = rmses(run(m))
        last = histories[lam][-1]
        sweep.append(
            {
                "model": arm.name,
                "lambda": lam,
                "mask_mean": float(np.mean(m)),
                "soft_sparsity": 1.0 - float(np.mean(m)),
                "rmse_vs_gt_soft": vs_gt,
                "rmse_vs_full_soft": vs_full,
                "train_loss": last["loss"],
                "train_rec": last["rec"],
                "train_mask_mean": last["mask_mean"],
            }
        )

    curves = []
    for s in map(float, sparsities):
        if s == 0.0:  # the unmasked image: no mask involved
            lam, keep, pred = None, everywhere, full
        else:
            lam = pick_lambda(sweep, s, lambda_for_level)
            keep = np.asarray(binarize_top_fraction(soft[lam], s)) > 0
            pred = run(keep)
        vs_gt, vs_full = rmses(pred)
        curves.append(
            {
                "model": arm.name,
                "sparsity": s,
                "rmse_vs_gt": vs_gt,
                "rmse_vs_full": vs_full,
                "lambda": lam,
                "mask_mean": None if lam is None else float(np.mean(soft[lam])),
                "kept": float(np.mean(keep)),
            }
        )

    lam_p = pick_lambda(sweep, placement_sparsity, lambda_for_level)
    keep_p = np.asarray(binarize_top_fraction(soft[lam_p], placement_sparsity)) > 0
    return {
        "sweep": sweep,
        "curves": curves,
        "full": full,
        "soft": soft,
        "placement_lambda": lam_p,
        "placement_keep": keep_p,
        "placement_pred": run(keep_p),
        "placement": placement_stats(keep_p, classes, valid),
        "per_image": per_image_metrics(full, gt, valid, test.focal, batch),
    }


def per_image_metrics(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, focal: np.ndarray, chunk: int
) -> dict:
    """Depth, edge and continuity metrics per image, in chunks: {name: (N,)}.

    The last chunk is padded with invalid images (so one compilation), then cut off.
    """
    n, parts = len(pred), []
    for i in range(0, n, chunk):
        args = [a[i : i + chunk] for a in (pred, gt, valid, focal)]
        m = len(args[0])
        args = [np.concatenate([a, np.zeros((chunk - m, *a.shape[1:]), a.dtype)]) for a in args]
        out = jax.device_get(_image_metrics(*args))
        parts.append({k: np.asarray(v)[:m] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
