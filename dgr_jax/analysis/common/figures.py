"""Figure helpers both studies draw with: a grid of panels, depth and gradient colour maps (ours).

Conventions follow `dgr_jax.viz`: depth with `viz.DEPTH_CMAP`, NaN black, a colour bar under
every map, titles on every panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dgr_jax import storage, viz

Cell = tuple[str, np.ndarray] | tuple[str, np.ndarray, dict[str, Any]] | None
GRAD_CMAP = "viridis"


def save_grid(
    path: str, rows: Sequence[Sequence[Cell]], *, suptitle: str = "", panel_width: float = 2.6
) -> None:
    """Panels in rows: RGB (H, W, 3) drawn as is; (H, W) maps with options and a colour bar.

    A map's options: vmin, vmax, cmap, label (colour bar). `None` leaves a cell empty.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    first = next(np.asarray(c[1]) for r in rows for c in r if c is not None)
    aspect = first.shape[0] / first.shape[1]
    fig = Figure(figsize=(panel_width * n_cols, (panel_width * aspect + 0.9) * n_rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_axis_off()
            cell = row[c] if c < len(row) else None
            if cell is None:
                continue
            title, array = cell[0], np.asarray(cell[1])
            options = cell[2] if len(cell) > 2 else {}
            ax.set_title(title, fontsize=8)
            if array.ndim == 3:
                ax.imshow(array if array.dtype == np.uint8 else np.clip(array, 0, 1))
                continue
            cmap = matplotlib.colormaps[options.get("cmap", viz.DEPTH_CMAP)]
            shown = np.where(np.isfinite(array), array, np.nan)
            handle = ax.imshow(
                shown,
                cmap=cmap.with_extremes(bad="black"),
                vmin=options.get("vmin"),
                vmax=options.get("vmax"),
                interpolation="nearest",
            )
            bar = fig.colorbar(handle, ax=ax, orientation="horizontal", fraction=0.05, pad=0.04)
            bar.set_label(options.get("label", ""), fontsize=7)
            bar.ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    storage.save_figure(path, fig, bbox_inches="tight")  # local or gs://


def depth_options(vmin: float, vmax: float) -> dict[str, Any]:
    return {"vmin": vmin, "vmax": vmax, "cmap": viz.DEPTH_CMAP, "label": "depth (m)"}
