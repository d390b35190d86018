"""Evaluation outputs: metrics.json, per_image.csv and report.md (ours).

The report states the protocol in words, puts the published PyTorch numbers of method.md
(`dgr_jax/protocol.py` PUBLISHED) beside ours only when the protocol is the one they were measured
with (`dgr_jax/protocol.py` STANDARD_PROTOCOLS), and lists the worst images by abs_rel.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dgr_jax import jsonio, storage
from dgr_jax import protocol as constants  # `protocol` is the evaluated protocol's dict here
from dgr_jax.evaluators.metrics import HIGHER_IS_BETTER

CROP_WORDS = {
    "eigen": "NYU Eigen crop (rows 45:471, cols 41:601 at 480x640; proportional at other sizes)",
    "garg": "Garg crop on the KB-cropped 352x1216 ground truth (NeWCRFs / PixelFormer)",
    "garg_full_res": "Garg crop on the full-resolution ground truth (BTS eval_with_pngs)",
    "kitti_eigen": "KITTI Eigen crop variant",
    "none": "no crop",
}
TTA_WORDS = {
    "blend": "horizontal-flip TTA, NeWCRFs post_process_depth edge blend",
    "mean": "horizontal-flip TTA, plain mean",
    "none": "no test-time augmentation",
}


def dataset_family(dataset: str) -> str | None:
    """ "nyu" / "kitti" for dataset names of those families (for the published-numbers table)."""
    name = dataset.lower().split("/")[0]
    for family in constants.STANDARD_PROTOCOLS:
        if name.startswith(family):
            return family
    return None


def standard_protocol_mismatches(protocol: dict[str, Any]) -> list[str] | None:
    """Keys where `protocol` departs from its family's standard protocol (None: no family).

    The image count is not compared here; `render_report` notes a different count separately.
    """
    family = dataset_family(str(protocol["dataset"]))
    if family is None:
        return None
    standard = constants.STANDARD_PROTOCOLS[family]
    return [
        key for key, value in standard.items() if key != "num_images" and protocol.get(key) != value
    ]


def protocol_in_words(protocol: dict[str, Any]) -> str:
    """One paragraph describing how the numbers were computed."""
    kb = (
        "Images (and, unless the crop says otherwise, ground truth) were KB-cropped to "
        f"{constants.KB_CROP_HEIGHT}x{constants.KB_CROP_WIDTH} "
        f"(top = H - {constants.KB_CROP_HEIGHT}, "
        f"left = (W - {constants.KB_CROP_WIDTH}) // 2). "
        if protocol.get("kb_crop")
        else ""
    )
    model_input = f"Model input: {protocol['input']}. " if protocol.get("input") else ""
    crop = protocol["crop"]
    where = "" if crop == "none" else f" and they lie inside the {CROP_WORDS.get(crop, crop)}"
    return (
        f"{protocol['num_images']} images of `{protocol['dataset']}` split "
        f"`{protocol['split']}`. {kb}{model_input}Predictions were made with "
        f"{TTA_WORDS.get(protocol['flip_tta'], protocol['flip_tta'])}; resizing: "
        f"{protocol['resize']}. Predictions were clamped to [{protocol['min_depth']:g}, "
        f"{protocol['max_depth']:g}] m (NaN -> min, inf -> max); pixels count when "
        f"{protocol['min_depth']:g} < gt < {protocol['max_depth']:g} m (strict)"
        f"{where}. Metrics are computed "
        "per image over its valid pixels and averaged over images (BTS/NeWCRFs convention); "
        "silog = 100 sqrt(mean(e^2) - mean(e)^2), e = log p - log g."
        f"{_precision_words(protocol.get('matmul_precision'))}"
    )


def _edge_threshold_words(protocol: dict[str, Any]) -> str:
    """How the Sobel edge thresholds were applied (`edge_reference_width` of the protocol)."""
    width = protocol.get("edge_reference_width", constants.EDGE_REFERENCE_WIDTH)
    if not width:
        return "Sobel edge thresholds are Hu et al.'s per pixel, unscaled (the pre-issue-29 metric)"
    return (
        f"Sobel edge thresholds are Hu et al.'s at a {width}-pixel reference width, scaled to "
        "the map's width"
    )


def _precision_words(name: str | None) -> str:
    """The sentence on the model's matmul precision (dgr_jax/precision.py), if it was named."""
    if name is None:
        return ""
    return (
        f" The model's dots and convolutions ran at matmul precision `{name}` "
        "(`config.eval_precision`)."
    )


def _fmt(value: float, digits: int = 4) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def published_table(protocol: dict[str, Any], means: dict[str, float]) -> list[str]:
    """Markdown lines comparing with the published numbers, or why there is no comparison."""
    family = dataset_family(str(protocol["dataset"]))
    mismatches = standard_protocol_mismatches(protocol)
    if family is None:
        return ["No published numbers for this dataset."]
    references = _reference_lines(protocol, means, family)
    if references:
        return references
    if mismatches:
        standard = constants.STANDARD_PROTOCOLS[family]
        diffs = ", ".join(
            f"{k} = {protocol.get(k)!r} (standard {standard[k]!r})" for k in mismatches
        )
        return [
            f"Published {family.upper()} numbers are not shown: the protocol differs ({diffs})."
        ]
    keys = ("abs_rel", "rmse", "d1")
    lines = ["| system | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines.append("| **ours** | " + " | ".join(_fmt(means.get(k, math.nan)) for k in keys) + " |")
    for system, numbers in constants.PUBLISHED[family].items():
        lines.append(f"| {system} | " + " | ".join(_fmt(numbers[k]) for k in keys) + " |")
    lines.append("")
    lines.append(
        "Published rows: NeWCRFs / PixelFormer include flip TTA (edge blend); BTS rows are its "
        "released checkpoints without TTA, KITTI on the full-resolution GT."
    )
    expected = constants.STANDARD_PROTOCOLS[family]["num_images"]
    if protocol["num_images"] != expected:
        lines.append(
            f"Note: {protocol['num_images']} images were evaluated; the published numbers use "
            f"{expected}."
        )
    return lines


def _reference_lines(protocol: dict[str, Any], means: dict[str, float], family: str) -> list[str]:
    """The `references` numbers (`protocol.REFERENCE_NUMBERS`) the evaluation names, beside
    ours whatever the protocol (they come from other code; the lines say so)."""
    name = protocol.get("references")
    rows = constants.REFERENCE_NUMBERS.get(name or "", {}).get(family)
    if not rows:
        return []
    keys = ("abs_rel", "rmse", "d1")
    lines = ["| system | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines.append("| **ours** | " + " | ".join(_fmt(means.get(k, math.nan)) for k in keys) + " |")
    for system, numbers in rows.items():
        lines.append(f"| {system} | " + " | ".join(_fmt(numbers[k]) for k in keys) + " |")
    lines += [
        "",
        f"Reference rows ({name}): published by their authors with their own evaluation code "
        "and protocol, not re-measured here; our recipe is our own.",
    ]
    return lines


def worst_indices(per_image: dict[str, np.ndarray], k: int, key: str = "abs_rel") -> np.ndarray:
    """Positions of the k worst images by `key` (NaN images excluded), worst first."""
    values = np.asarray(per_image[key], np.float64)
    order = np.argsort(-values if key not in HIGHER_IS_BETTER else values, kind="stable")
    order = [i for i in order if not np.isnan(values[i])]
    return np.asarray(order[:k], dtype=np.int64)


def write_metrics_json(path: str, payload: dict[str, Any]) -> None:
    """Write JSON with undefined values (NaN, inf) as null (strict JSON)."""
    jsonio.write(path, payload)


def write_per_image_csv(
    path: str, indices: Sequence[int], ids: Sequence[str], per_image: dict[str, np.ndarray]
) -> None:
    """One row per image: dataset index, id, every metric (empty where undefined)."""
    names = list(per_image)
    f = io.StringIO(newline="")
    writer = csv.writer(f)
    writer.writerow(["index", "id", *names])
    for row, (index, image_id) in enumerate(zip(indices, ids)):
        values = [per_image[n][row] for n in names]
        writer.writerow(
            [int(index), image_id, *("" if math.isnan(v) else f"{v:.6g}" for v in values)]
        )
    storage.write_text(path, f.getvalue())  # local or gs://, written whole


def render_report(
    *,
    name: str,
    protocol: dict[str, Any],
    means: dict[str, float],
    counts: dict[str, int],
    metric_names: Sequence[str],
    edge_names: Sequence[str],
    per_image: dict[str, np.ndarray],
    indices: Sequence[int],
    ids: Sequence[str],
    pictures: Sequence[str] = (),
    step: int | None = None,
    num_worst: int = 10,
) -> str:
    """The report.md text."""
    n = protocol["num_images"]
    title = f"# Evaluation `{name}`" + (f" at step {step}" if step is not None else "")
    lines = [title, "", "## Protocol", "", protocol_in_words(protocol), ""]
    lines += ["## Metrics", "", "| metric | mean | images |", "|---|---|---|"]
    for key in (*metric_names, *edge_names):
        if key in means:
            lines.append(f"| {key} | {_fmt(means[key])} | {counts.get(key, 0)} / {n} |")
    lines += [
        "",
        "Lower is better except d1-d3, the precision / recall / F1 scores and the "
        "normal_within fractions; seam_ratio_16 is 1 without patch-grid seams. "
        f"{_edge_threshold_words(protocol)}; normals use the record's focal length and a "
        "centred principal point. Images without a valid pixel (or, for an edge or "
        "continuity metric, where it is undefined) are left out of a mean; the last column "
        "counts the images that entered it.",
        "",
        "## Published PyTorch numbers",
        "",
        *published_table(protocol, means),
        "",
        f"## Worst {min(num_worst, len(indices))} images by abs_rel",
        "",
        "| index | id | abs_rel | rmse | d1 |",
        "|---|---|---|---|---|",
    ]
    for pos in worst_indices(per_image, num_worst):
        lines.append(
            f"| {indices[pos]} | {ids[pos]} | {_fmt(per_image['abs_rel'][pos])} | "
            f"{_fmt(per_image['rmse'][pos])} | {_fmt(per_image['d1'][pos])} |"
        )
    lines += ["", "Every image's metrics: `per_image.csv`.", ""]
    if pictures:
        lines += ["## Pictures", "", "RGB / ground truth / prediction / absolute error.", ""]
        lines += [f"![{os.path.basename(p)}]({p})" for p in pictures]
        lines.append("")
    return "\n".join(lines)
