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

import functools
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


def _is_pointwise(rhs: jax.Array, strides, padding, lhs_dilation, rhs_dilation, groups) -> bool:
    def ones(v):
        return v is None or all(int(d) == 1 for d in v)

    no_pad = padding in ("VALID", "SAME") or all(tuple(p) == (0, 0) for p in padding)
    return (
        rhs.shape[:-2] == (1, 1)
        and no_pad
        and groups == 1
        and all(ones(v) for v in (strides, lhs_dilation, rhs_dilation))
    )


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """`lax.conv_general_dilated` for nnx.Conv (NHWC, HWIO); 1x1 stride-1 kernels as a matmul.

    A 1x1 convolution is a matmul over channels, and written as one its weight gradient is a
    matmul with the B*H*W pixels as the contraction. XLA:CPU instead computes the weight
    gradient of the convolution form with the batch (2-8) as the contraction dimension: 2 GFLOP/s
    (0.56 s for one 128x128 projection at 120x160, batch 2). Other backends lower a 1x1
    convolution to the same matmul, so the form costs nothing there.
    """
    if _is_pointwise(rhs, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count):
        kwargs.pop("out_sharding", None)
        # (B, H, W, I) x (I, O) -> (B, H, W, O)
        return jax.lax.dot_general(
            lhs, rhs[0, 0], (((lhs.ndim - 1,), (0,)), ((), ())), precision=precision, **kwargs
        )
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        precision=precision,
        **kwargs,
    )


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
        conv_general_dilated=conv_general_dilated,
        rngs=rngs,
        **extra,
    )


def _shifted_sum(padded: jax.Array, kernel, out_h: int, out_w: int) -> jax.Array:
    """sum_ij kernel[i, j] * padded[:, i : i + out_h, j : j + out_w]: a "valid" depthwise
    cross-correlation. `kernel`: NumPy (kh, kw) shared taps (zeros skipped) or (kh, kw, C)."""
    shared = isinstance(kernel, np.ndarray)
    kh, kw = kernel.shape[:2]
    out = None
    for i in range(kh):
        for j in range(kw):
            if shared and kernel[i, j] == 0:
                continue
            tap = float(kernel[i, j]) if shared else kernel[i, j]
            term = padded[:, i : i + out_h, j : j + out_w, :] * tap  # (B, out_h, out_w, C)
            out = term if out is None else out + term
    if out is None:
        b, _, _, c = padded.shape
        return jnp.zeros((b, out_h, out_w, c), padded.dtype)
    return out


def _fold_edge_padding(g: jax.Array, ph: int, pw: int) -> jax.Array:
    """Transpose of `jnp.pad(x, ph/pw rows/columns, mode="edge")`:
    (B, H + 2ph, W + 2pw, C) -> (B, H, W, C); each replicated border row/column is added to the
    edge row/column it copied."""

    def fold(g, axis, p):
        n = g.shape[axis] - 2 * p  # the unpadded size along `axis`
        if n == 1:
            return jnp.sum(g, axis=axis, keepdims=True)
        take = functools.partial(jax.lax.slice_in_dim, g, axis=axis)
        first = jnp.sum(take(0, p + 1), axis=axis, keepdims=True)
        last = jnp.sum(take(p + n - 1, n + 2 * p), axis=axis, keepdims=True)
        return jnp.concatenate([first, take(p + 1, p + n - 1), last], axis=axis)

    return fold(fold(g, 1, ph), 2, pw)


def depthwise_conv(x: jax.Array, kernel: jax.Array | np.ndarray, *, pad_mode: str = "constant"):
    """Depthwise 2-D cross-correlation with "same" output size, as a sum of shifted products.

    Args:
        x: (B, H, W, C).
        kernel: (kh, kw, C) per-channel taps, or a NumPy (kh, kw) array shared by every channel
            (its zero taps are skipped). kh and kw odd.
        pad_mode: `jnp.pad` mode of the (kh // 2, kw // 2) border: "constant" (zeros, as a
            padded convolution) or "edge" (replicate).

    Returns:
        (B, H, W, C) in x's dtype.

    Why not `lax.conv_general_dilated(feature_group_count=C)`: XLA:CPU computes the weight
    gradient of a grouped convolution as a dense C x C convolution (C times the work: 1.8 s of an
    11 s ViT-S step for one 384-channel map at 60x80) and runs depthwise convolutions far below
    its dense rate. Shifted products are elementwise, so they fuse into a few loops.

    The gradient is written by hand (custom VJP) rather than left to autodiff: autodiff
    transposes each of the kh*kw slices into its own zero-padded map and adds them up (plus the
    edge padding's transpose), which XLA:CPU runs as a dozen memory-bound loops per convolution.
    The input gradient is itself a shifted sum, of the output gradient with the flipped kernel
    (over the padded domain, then folded back for edge padding), and the kernel gradient is
    kh*kw reductions: 3.4x faster forward + backward on a (2, 120, 160, 288) map.
    """
    kh, kw = kernel.shape[:2]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"depthwise_conv needs an odd kernel, got {kh}x{kw}")
    if pad_mode not in ("constant", "edge"):
        raise ValueError(f"depthwise_conv pad_mode must be 'constant' or 'edge', got {pad_mode!r}")
    _, h, w, _ = x.shape
    ph, pw = kh // 2, kw // 2
    pads = ((0, 0), (ph, ph), (pw, pw), (0, 0))

    def input_grad(dy, flipped):
        if pad_mode == "constant":  # the zero border's gradient is dropped: a "same" shifted sum
            return _shifted_sum(jnp.pad(dy, pads), flipped, h, w)
        full_pads = ((0, 0), (2 * ph, 2 * ph), (2 * pw, 2 * pw), (0, 0))
        # gradient of the padded input (B, H + 2ph, W + 2pw, C), then the edge padding's transpose
        full = _shifted_sum(jnp.pad(dy, full_pads), flipped, h + 2 * ph, w + 2 * pw)
        return _fold_edge_padding(full, ph, pw)

    if isinstance(kernel, np.ndarray):  # fixed taps: a gradient for x only
        flipped = np.ascontiguousarray(kernel[::-1, ::-1])

        @jax.custom_vjp
        def conv_fixed(x):
            return _shifted_sum(jnp.pad(x, pads, mode=pad_mode), kernel, h, w)

        conv_fixed.defvjp(lambda x: (conv_fixed(x), None), lambda _, dy: (input_grad(dy, flipped),))
        return conv_fixed(x)

    @jax.custom_vjp
    def conv(x, k):
        return _shifted_sum(jnp.pad(x, pads, mode=pad_mode), k, h, w)

    def forward(x, k):
        padded = jnp.pad(x, pads, mode=pad_mode)
        return _shifted_sum(padded, k, h, w), (padded, k)

    def backward(residuals, dy):
        padded, k = residuals
        dk = jnp.stack(  # (kh, kw, C): each tap's window times dy, summed over B, H, W
            [
                jnp.stack(
                    [
                        jnp.sum(padded[:, i : i + h, j : j + w] * dy, axis=(0, 1, 2))
                        for j in range(kw)
                    ]
                )
                for i in range(kh)
            ]
        )
        return input_grad(dy, k[::-1, ::-1]), dk.astype(k.dtype)

    conv.defvjp(forward, backward)
    return conv(x, kernel.astype(x.dtype))


class DepthwiseConv(nnx.Module):
    """Depthwise k x k convolution with zero "same" padding, computed by `depthwise_conv`.

    Parameters, their shapes and initialisation are those of
    `nnx.Conv(C, C, (k, k), feature_group_count=C)`: `kernel` (k, k, 1, C), LeCun normal over
    the true fan-in k*k, and `bias` (C,) zeros, so checkpoints of either are interchangeable.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        *,
        use_bias: bool = True,
        dtype: Dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.dtype = dtype
        shape = (kernel_size, kernel_size, 1, channels)
        self.kernel = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), shape))
        self.bias = (
            nnx.Param(nnx.initializers.zeros(rngs.params(), (channels,))) if use_bias else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = depthwise_conv(x.astype(self.dtype), self.kernel[...][:, :, 0, :])
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


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


def _cubic_taps(in_size: int, out_size: int, scale: float | None = None) -> tuple[np.ndarray, ...]:
    """torch `upsample_bicubic2d` (align_corners=False) indices (out, 4) and weights (out, 4);
    `scale`: torch's `scale_factor`, which replaces out_size / in_size in the source
    coordinates when given (DINOv2's position-embedding interpolation)."""
    a = _TORCH_CUBIC_A
    step = in_size / out_size if scale is None else 1.0 / scale
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * step - 0.5
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


def _double_align_corners(x: jax.Array, axis: int) -> jax.Array:
    """Bilinear x2 along `axis` with align_corners=True, from shifted slices (no gather).

    With n inputs and 2n outputs the source of output o is o (n-1) / (2n-1), which gives, for
    m = 0..n-1 and d = 2n - 1:
        out[2m]     = (1 - m/d) x[m] + (m/d) x[m-1]
        out[2m + 1] = (1 - (n-1-m)/d) x[m] + ((n-1-m)/d) x[m+1]
    (the weight on the missing neighbour at either end is 0). These are the taps and weights
    of `_linear_taps`; written with slices, forward and backward are elementwise and fuse,
    where gathers and their scatter-add gradients cost 10x more on XLA:CPU (and force slow
    transposes into the convolution weight gradients that read the result).
    """
    n = x.shape[axis]
    if n == 1:
        return jnp.concatenate([x, x], axis=axis)
    d = 2 * n - 1
    m = np.arange(n, dtype=np.float64)
    shape = [1] * x.ndim
    shape[axis] = n
    w_prev = jnp.asarray((m / d).reshape(shape), x.dtype)
    w_next = jnp.asarray(((n - 1 - m) / d).reshape(shape), x.dtype)
    first, last = (
        jax.lax.slice_in_dim(x, 0, 1, axis=axis),
        jax.lax.slice_in_dim(x, n - 1, n, axis=axis),
    )
    prev = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), last], axis=axis)
    even = (1 - w_prev) * x + w_prev * prev
    odd = (1 - w_next) * x + w_next * nxt
    out = jnp.stack([even, odd], axis=axis + 1)  # (..., n, 2, ...) -> (..., 2n, ...)
    return out.reshape(*x.shape[:axis], 2 * n, *x.shape[axis + 1 :])


def resize(
    x: jax.Array,
    size: Sequence[int],
    *,
    method: str = "bilinear",
    align_corners: bool = False,
    scales: Sequence[float] | None = None,
) -> jax.Array:
    """Resize NHWC `x` to `size` = (H, W) exactly like torch `F.interpolate` (no antialiasing).

    Args:
        x: (B, H, W, C) array.
        size: output (H, W).
        method: "bilinear" or "bicubic".
        align_corners: torch's flag; "bicubic" supports only False.
        scales: ("bicubic" only) torch's `scale_factor` (H, W) as it enters the source
            coordinates, when the caller passed one to torch (the official DINOv2 does, with
            an offset: (h + 0.1) / H); `size` is still the output size.

    Returns:
        (B, size[0], size[1], C) array of x's dtype.
    """
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = x.shape[1], x.shape[2]
    for axis, n_in, n_out in ((1, in_h, out_h), (2, in_w, out_w)):
        scale = None if scales is None else float(scales[axis - 1])
        if n_in == n_out and scale is None:
            continue  # torch is the identity here as well
        if scale is not None and method != "bicubic":
            raise ValueError("resize scales are supported for bicubic only")
        if method == "bilinear" and align_corners and n_out == 2 * n_in:
            x = _double_align_corners(x, axis)  # DPT's upsampling: the common case
            continue
        if method == "bilinear":
            idx, weights = _linear_taps(n_in, n_out, align_corners)
        elif method == "bicubic" and not align_corners:
            idx, weights = _cubic_taps(n_in, n_out, scale)
        else:
            raise ValueError(f"unsupported resize {method=} {align_corners=}")
        x = _resize_axis(x, axis, idx, weights)
    return x
