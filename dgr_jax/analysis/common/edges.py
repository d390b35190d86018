"""Depth and image gradients for the studies' pictures and pixel classes (ours).

The edge metrics' Sobel kernels (`dgr_jax.evaluators.edges.sobel`, unnormalised): a unit ramp
gives 8, so `sobel_magnitude(depth) / SOBEL_NORM` is the slope in metres per pixel.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from dgr_jax.evaluators.edges import sobel

SOBEL_NORM = 8.0  # unit ramp -> 8 (see evaluators/edges.py)


def sobel_magnitude(x: np.ndarray) -> np.ndarray:
    """|Sobel| of (B, H, W) maps with edge-replicated borders (no zero-padding frame).

    The edge metrics' kernels (`edges.sobel`); replicating the border instead of zero padding
    keeps the one-pixel frame from reading as the strongest edge of every image.
    """
    xp = np.pad(np.asarray(x, np.float32), ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx, gy = sobel(jnp.asarray(xp))
    return np.hypot(np.asarray(gx, np.float64), np.asarray(gy, np.float64))[:, 1:-1, 1:-1]
