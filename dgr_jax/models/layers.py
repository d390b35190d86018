"""Small building blocks shared by the encoders, the decoder and the DGR block.

Everything here is ours. The resizing functions reproduce `torch.nn.functional.interpolate`
(bilinear with either `align_corners`, bicubic with `align_corners=False`, never antialiased)
exactly up to float rounding, because converted PyTorch checkpoints depend on it:
`jax.image.resize` antialiases when downsampling and has no `align_corners=True` mode.

Resizing is separable: along each spatial axis an output index reads a fixed, small set of
input indices ("taps") with fixed weights. Taps and weights depend only on the static sizes, so
they are computed once in NumPy at trace time and applied with gathers, which costs O(taps)
per output element (a dense interpolation matrix would cost O(input size)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Dtype = Any

# torch's bicubic kernel parameter (`upsample_bicubic2d`, Keys' cubic convolution with A=-0.75).
_TORCH_CUBIC_A = -0.75


def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as torch `nn.GELU()` and HF `ACT2FN["gelu"]` (nnx.gelu approximates)."""
    return jax.nn.gelu(x, approximate=False)


def conv(
    in_features: int,
    out_features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    use_bias: bool = True,
    dtype: Dtype = jnp.float32,
    rngs: nnx.Rngs,
    kernel_init: Any = None,
) -> nnx.Conv:
    """A 2-D NHWC convolution with torch-style symmetric padding (default `kernel_size // 2`).

    torch's `padding=p` pads p on both sides; with stride 2 that is not XLA's 'SAME' (which pads
    asymmetrically), so the padding is always explicit here.
    """
    pad = kernel_size // 2 if padding is None else padding
    extra = {} if kernel_init is None else {"kernel_init": kernel_init}
    return nnx.Conv(
        in_features,
        out_features,
        (kernel_size, kernel_size),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
        **extra,
    )


class ConvTransposeStrided(nnx.Module):
    """Transposed convolution with kernel size == stride (non-overlapping), e.g. DPT's x2/x4 up.

    Equals torch `ConvTranspose2d(c_in, c_out, kernel_size=f, stride=f, padding=0)`: every input
    pixel writes an f x f block of outputs, so it is one matmul plus a free reshape.
    Parameters: `kernel` (f, f, c_in, c_out), `bias` (c_out,).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        factor: int,
        *,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.factor = factor
        self.dtype = dtype
        # LeCun normal over the true fan-in: each output pixel reads one input pixel.
        shape = (factor, factor, in_features, out_features)
        std = 1.0 / math.sqrt(in_features)
        self.kernel = nnx.Param(std * jax.random.truncated_normal(rngs.params(), -2, 2, shape))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        f = self.factor
        kernel = self.kernel[...].astype(self.dtype)
        y = jnp.einsum("bhwc,ijcd->bhiwjd", x.astype(self.dtype), kernel)
        y = y.reshape(b, h * f, w * f, -1)  # (B, h, f, w, f, C) -> (B, h*f, w*f, C)
        return y + self.bias[...].astype(self.dtype)


def _linear_taps(in_size: int, out_size: int, align_corners: bool) -> tuple[np.ndarray, ...]:
    """torch `upsample_bilinear2d` source indices (out, 2) and weights (out, 2) along one axis."""
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    return np.stack([i0, i1], 1), np.stack([1.0 - lam, lam], 1)


def _cubic_taps(in_size: int, out_size: int) -> tuple[np.ndarray, ...]:
    """torch `upsample_bicubic2d` (align_corners=False) indices (out, 4) and weights (out, 4)."""
    a = _TORCH_CUBIC_A
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src).astype(np.int64)
    t = src - base

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
    idx = np.clip(base[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    return idx, weights


def _resize_axis(x: jax.Array, axis: int, idx: np.ndarray, weights: np.ndarray) -> jax.Array:
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    out = None
    for k in range(idx.shape[1]):
        w = jnp.asarray(weights[:, k].reshape(shape), dtype=x.dtype)
        term = jnp.take(x, jnp.asarray(idx[:, k]), axis=axis) * w
        out = term if out is None else out + term
    return out


def resize(
    x: jax.Array,
    size: Sequence[int],
    *,
    method: str = "bilinear",
    align_corners: bool = False,
) -> jax.Array:
    """Resize NHWC `x` to `size` = (H, W) exactly like torch `F.interpolate` (no antialiasing).

    Args:
        x: (B, H, W, C) array.
        size: output (H, W).
        method: "bilinear" or "bicubic".
        align_corners: torch's flag; "bicubic" supports only False.

    Returns:
        (B, size[0], size[1], C) array of x's dtype.
    """
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = x.shape[1], x.shape[2]
    for axis, n_in, n_out in ((1, in_h, out_h), (2, in_w, out_w)):
        if n_in == n_out:
            continue  # torch is the identity here as well
        if method == "bilinear":
            idx, weights = _linear_taps(n_in, n_out, align_corners)
        elif method == "bicubic" and not align_corners:
            idx, weights = _cubic_taps(n_in, n_out)
        else:
            raise ValueError(f"unsupported resize {method=} {align_corners=}")
        x = _resize_axis(x, axis, idx, weights)
    return x
