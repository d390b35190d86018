"""Pictures of depth maps: colourisation, error maps and side-by-side panels.

Used by the evaluators (report pictures), the trainer (TensorBoard images, via `colorize` and
`side_by_side`, which need no figure) and the sparse-pixel study (`save_panel`). Ours; the
convention of showing invalid ground truth in black follows the BTS-family visualisations.

Conventions: depth is a float (H, W) array in metres; invalid pixels are NaN, inf, <= 0 or
False in an explicit `valid` mask, and are drawn black. Matplotlib is used through the
object-oriented `Figure` API with the Agg canvas, so no global backend is touched.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from dgr_jax import storage

DEPTH_CMAP = "magma_r"  # near = bright, far = dark
ERROR_CMAP = "inferno"
INVALID_COLOUR = (0, 0, 0)


def _valid(depth: np.ndarray, valid: np.ndarray | None, positive_only: bool = True) -> np.ndarray:
    ok = np.isfinite(depth) & (depth > 0) if positive_only else np.isfinite(depth)
    return ok if valid is None else ok & np.asarray(valid, dtype=bool)


def depth_range(*maps: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """A shared (vmin, vmax) over the valid pixels of `maps` (1st and 99th percentiles).

    Returns (0, 1) when nothing is valid.
    """
    values = [np.asarray(m, np.float64)[_valid(np.asarray(m), valid)] for m in maps]
    values = np.concatenate([v for v in values if v.size] or [np.zeros(0)])
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(hi if hi > lo else lo + 1e-6)


def colorize(
    depth: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DEPTH_CMAP,
    valid: np.ndarray | None = None,
    positive_only: bool = True,
) -> np.ndarray:
    """Colour-map a depth (or error) map to uint8 (H, W, 3); invalid pixels are black.

    Args:
        depth: (H, W) float array.
        vmin, vmax: colour scale; default: `depth_range(depth)` of the valid pixels.
        cmap: a matplotlib colormap name.
        valid: optional extra (H, W) bool mask.
        positive_only: treat values <= 0 as invalid (depth: 0 = no measurement); pass False
            for error maps, where 0 is a valid value.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"expected an (H, W) map, got shape {depth.shape}")
    ok = _valid(depth, valid, positive_only)
    if vmin is None or vmax is None:
        lo, hi = depth_range(depth, valid=valid)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    scaled = np.clip((np.where(ok, depth, vmin) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgb = matplotlib.colormaps[cmap](scaled, bytes=True)[..., :3]
    rgb[~ok] = INVALID_COLOUR
    return rgb


def error_map(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, relative: bool = False
) -> np.ndarray:
    """|pred - gt| (or |pred - gt| / gt) on valid pixels, NaN elsewhere, (H, W) float."""
    valid = np.asarray(valid, bool) & (np.asarray(gt) > 0)
    err = np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64))
    if relative:
        err = err / np.where(valid, gt, 1.0)
    return np.where(valid, err, np.nan)


def side_by_side(images: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Concatenate uint8 (H, W, 3) images horizontally with a black gap (for TensorBoard)."""
    h = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        im = np.asarray(im, np.uint8)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        padded = np.zeros((h, im.shape[1], 3), np.uint8)
        padded[: im.shape[0]] = im[..., :3]
        parts.append(padded)
        if i + 1 < len(images):
            parts.append(np.zeros((h, gap, 3), np.uint8))
    return np.concatenate(parts, axis=1)


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (H, W, 3) or (H, W) array, or a uint16 (H, W) array, encoded as PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: storage.PathLike, image: np.ndarray) -> None:
    """Write `png_bytes(image)` to `path` (local or gs://; folders are created)."""
    storage.write_bytes(path, png_bytes(image))


def save_panel(
    path: storage.PathLike,
    images: Sequence[tuple[str, np.ndarray] | tuple[str, np.ndarray, dict[str, Any]]],
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DEPTH_CMAP,
    colorbar_label: str = "depth (m)",
    suptitle: str | None = None,
    panel_width: float = 3.2,
    dpi: int = 100,
) -> None:
    """Save panels side by side as one PNG: RGB images as they are, 2-D maps colour-mapped.

    All 2-D maps share one colour scale (`vmin`, `vmax`; default: the 1st-99th percentiles of
    their valid pixels) and get a colour bar, so ground truth and prediction are comparable. A
    map can override this with a third tuple element, e.g. an error map:
    `("abs error", err, {"vmin": 0, "vmax": 1, "cmap": "inferno", "label": "m"})`.
    NaN and inf are drawn black everywhere; values <= 0 too in the maps on the shared depth
    scale (depth 0 = no measurement), but not in maps with their own options (an error of 0 is
    a value).

    Args:
        path: output PNG path, local or gs:// (folders are created).
        images: (title, array) or (title, array, options) per panel; arrays are uint8 / float
            (H, W, 3) RGB or float (H, W) maps.
        vmin, vmax, cmap, colorbar_label: the shared scale of the 2-D maps.
        suptitle: an optional title over the panels.
        panel_width, dpi: size of each panel in inches, and resolution.
    """
    maps = [im[1] for im in images if np.ndim(im[1]) == 2 and len(im) == 2]
    if maps and (vmin is None or vmax is None):
        lo, hi = depth_range(*maps)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    first = np.asarray(images[0][1])
    aspect = first.shape[0] / first.shape[1]
    fig = Figure(figsize=(panel_width * len(images), panel_width * aspect + 0.8), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(images), squeeze=False)[0]
    for ax, item in zip(axes, images):
        title, array = item[0], np.asarray(item[1])
        options = item[2] if len(item) > 2 else {}
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
        if array.ndim == 3:
            ax.imshow(array if array.dtype == np.uint8 else np.clip(array, 0, 1))
            continue
        colormap = matplotlib.colormaps[options.get("cmap", cmap)].with_extremes(bad="black")
        ok = _valid(array, None, positive_only=len(item) == 2)
        shown = np.where(ok, array, np.nan)
        handle = ax.imshow(
            shown,
            cmap=colormap,
            vmin=options.get("vmin", vmin),
            vmax=options.get("vmax", vmax),
            interpolation="nearest",
        )
        bar = fig.colorbar(handle, ax=ax, orientation="horizontal", fraction=0.05, pad=0.04)
        bar.set_label(options.get("label", colorbar_label), fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    storage.save_figure(path, fig, bbox_inches="tight")
