"""Depth Gradient Refinement (DGR) block, method.md section 3.

[paper] A plug-and-play block whose inputs are the features processed by the transformer
encoder; it refines them through "higher-order derivative computation, feature concatenation,
and feature recalibration" and adds no meaningful complexity or compute.

[authors' code] (`PixelFormer_DGR/DGR.py`, which does not run as written) Depthwise 3x3
stencils on the C-channel map: the 8-neighbour kernel [[-1,-1,-1],[-1,8,-1],[-1,-1,-1]] and the
kernel [[-1,2,-1],[2,-4,2],[-1,2,-1]] (meant as "third order"; it is a mixed fourth-order
stencil), concatenation [F, d2, d3], squeeze-and-excitation, ReLU, 3x3 conv, multiplication with
the recalibrated features, 1x1 conv, no residual.

[ours] With F of shape (B, H, W, C):

    d_k = S_k (*) F                              fixed depthwise stencils (named below)
    Fm  = concat[F, d_1, ..., d_K]               (B, H, W, (K+1)C)
    w   = sigmoid(W2 relu(W1 mean_hw(Fm)))       SE, hidden width (K+1)C // se_reduction
    Fr  = Fm * w
    Fs  = DepthwiseConv3x3(relu(Fr))             spatial adaptivity
    out = F + Conv1x1_{(K+1)C -> C}(Fs * Fr)     zero-initialised, so DGR starts as the identity

Also ours: the stencils are applied with edge (replicate) padding, so a constant or linear field
gives no spurious response at the border; `learnable_stencils=True` turns each stencil kernel
into a per-channel parameter initialised to the fixed value; two extra stencils.

Stencils (cross-correlation; x = column index to the right, y = row index downwards) and their
exact responses on polynomial fields of unit grid spacing:
    laplacian8      authors' 8-neighbour kernel: -3 * (f_xx + f_yy) on quadratics.
    mixed4          authors' "third-order" kernel = -(d_xx (x) d_yy): -f_xxyy on x^2 y^2.
    sobel_mag       |grad f| from Sobel / 8 (exact on linear fields), sqrt(gx^2 + gy^2 + eps).
    grad_laplacian  |grad lap f|: central differences of the 5-point Laplacian (a 5x5 stencil),
                    a true third-order term; exact on cubics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dgr_jax.models.blocks import layers

# Added under the square root of gradient magnitudes so they stay differentiable at 0.
MAGNITUDE_EPS = 1e-6


@dataclass(frozen=True)
class Stencil:
    """Linear depthwise kernels and how their responses combine into one map per channel."""

    kernels: tuple[np.ndarray, ...]
    magnitude: bool  # False: the single kernel's response; True: sqrt(sum of squares + eps)


def _full_conv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kernel of applying cross-correlation `b` and then `a` (a full 2-D convolution of both)."""
    out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i : i + b.shape[0], j : j + b.shape[1]] += a[i, j] * b
    return out


_LAPLACIAN8 = np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float64)
_MIXED4 = np.array([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], np.float64)
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64) / 8.0
_LAPLACIAN5 = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
_CENTRAL_X = np.array([[0, 0, 0], [-0.5, 0, 0.5], [0, 0, 0]], np.float64)

STENCILS: dict[str, Stencil] = {
    "laplacian8": Stencil((_LAPLACIAN8,), magnitude=False),
    "mixed4": Stencil((_MIXED4,), magnitude=False),
    "sobel_mag": Stencil((_SOBEL_X, _SOBEL_X.T), magnitude=True),
    "grad_laplacian": Stencil(
        (_full_conv(_CENTRAL_X, _LAPLACIAN5), _full_conv(_CENTRAL_X.T, _LAPLACIAN5)),
        magnitude=True,
    ),
}


def apply_stencil(x: jax.Array, name: str, kernels: Sequence[jax.Array] | None = None) -> jax.Array:
    """Response of stencil `name` on every channel of `x` (B, H, W, C) -> (B, H, W, C).

    Args:
        x: feature map.
        name: a key of `STENCILS`.
        kernels: per-channel kernels (kh, kw, 1, C) replacing the fixed ones (learnable mode).
    """
    stencil = STENCILS[name]
    if kernels is None:  # fixed taps, shared by every channel
        responses = [layers.depthwise_conv(x, k, pad_mode="edge") for k in stencil.kernels]
    else:  # (kh, kw, 1, C) -> (kh, kw, C)
        responses = [
            layers.depthwise_conv(x, k[:, :, 0, :].astype(x.dtype), pad_mode="edge")
            for k in kernels
        ]
    if not stencil.magnitude:
        return responses[0]
    return jnp.sqrt(sum(r * r for r in responses) + MAGNITUDE_EPS)


class DGR(nnx.Module):
    """Depth Gradient Refinement block (equations in the module docstring); (B,H,W,C) -> same."""

    def __init__(
        self,
        channels: int,
        *,
        stencils: Sequence[str] = ("laplacian8", "mixed4"),
        se_reduction: int = 8,
        learnable_stencils: bool = False,
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        unknown = [s for s in stencils if s not in STENCILS]
        if unknown or not stencils:
            raise ValueError(f"unknown DGR stencils {unknown}; valid: {sorted(STENCILS)}")
        self.stencils = tuple(stencils)
        self.dtype = dtype
        wide = (len(self.stencils) + 1) * channels  # (K+1)C
        hidden = max(1, wide // se_reduction)
        if learnable_stencils:
            self.stencil_kernels = nnx.Dict(
                {
                    name: nnx.Param(
                        jnp.stack(
                            [
                                jnp.broadcast_to(
                                    jnp.asarray(k, jnp.float32)[:, :, None, None],
                                    (*k.shape, 1, channels),
                                )
                                for k in STENCILS[name].kernels
                            ]
                        )
                    )
                    for name in self.stencils
                }
            )
        else:
            self.stencil_kernels = None
        self.se_reduce = nnx.Linear(wide, hidden, dtype=dtype, rngs=rngs)
        self.se_expand = nnx.Linear(hidden, wide, dtype=dtype, rngs=rngs)
        self.spatial = layers.DepthwiseConv(wide, 3, dtype=dtype, rngs=rngs)
        zeros = nnx.initializers.zeros
        self.proj = layers.conv(wide, channels, 1, dtype=dtype, rngs=rngs, kernel_init=zeros)

    def __call__(self, x: jax.Array) -> jax.Array:
        f = x.astype(self.dtype)
        derivatives = []
        for name in self.stencils:
            kernels = None
            if self.stencil_kernels is not None:
                kernels = list(self.stencil_kernels[name][...])
            derivatives.append(apply_stencil(f, name, kernels))
        fm = jnp.concatenate([f, *derivatives], axis=-1)  # (B, H, W, (K+1)C)
        pooled = jnp.mean(fm, axis=(1, 2))  # (B, (K+1)C)
        w = jax.nn.sigmoid(self.se_expand(jax.nn.relu(self.se_reduce(pooled))))
        fr = fm * w[:, None, None, :]
        fs = self.spatial(jax.nn.relu(fr))
        return f + self.proj(fs * fr)
