"""Blocks the Swin encoder and both Swin hosts (NeWCRFs, PixelFormer) share, NHWC, torch-exact.

One module so the two hosts import one copy: PyTorch's resizing, adaptive pooling and
PixelShuffle; Swin's window partition / reverse, relative-position index, shifted-window mask
and window attention; the transformer pieces (LayerNorm, Linear, MLP) and 3x3 convs with
PyTorch's initialisations; the PSP (pyramid pooling) head that starts both decoders; and the
hosts' plumbing: DGR blocks on the encoder stages (`stage_dgr`) and the multiple-of-32 check
(`check_stage_sizes`).

What is whose:
- [paper] Swin (Liu et al., ICCV 2021): attention inside non-overlapping windows with a learned
  relative position bias; every second block shifted by window // 2 with a mask. PSP (Zhao et
  al., PSPNet, CVPR 2017): pooled context at scales 1, 2, 3, 6. NeWCRFs (CVPR 2022) Sec. 3.4 and
  PixelFormer (WACV 2023, its "PQI") start their decoders with a PSP on the last stage.
- [authors' code] aliyun/NeWCRFs d327bf7 (newcrfs/networks/swin_transformer.py,
  uper_crf_head.py) and ashutosh1807/PixelFormer bb0ae9f (pixelformer/networks/PQI.py, the same
  PSP): torch `F.interpolate(mode="bilinear")`, `nn.AdaptiveAvgPool2d`, `nn.PixelShuffle(2)`;
  inside every block the LayerNorm-ed tokens are zero-padded at the bottom/right to a multiple
  of the window and padded tokens take part in attention (they are not masked); the shift mask
  is -100 between regions. PSP branches are mmcv `ConvModule`s: 1x1 conv (no bias) + norm +
  ReLU, resized back with align_corners=False, concatenated with the input, then a 3x3 conv (no
  bias) + BatchNorm + ReLU. Note the norm of the pooling branches: `PPM.__init__` rebinds
  `norm_cfg` to GroupNorm(256 groups) when it meets scale 1 and never restores it, so with
  scales (1, 2, 3, 6) EVERY branch uses GroupNorm(256); only the bottleneck uses BatchNorm. The
  released checkpoints of both hosts have `gn` keys for all four branches; we reproduce that.
- [ours] Resizing and adaptive pooling are separable (out, in) matrices built with numpy at
  trace time: the same taps and weights as torch (no anti-aliasing when shrinking, which
  `jax.image.resize` would add), applied as plain einsums that shard and differentiate like any
  matmul. Window partition with einops; masks and relative-position indices computed with numpy
  at trace time (static shapes). `norm_groups` of the PSP head is a field so narrow test models
  can use fewer groups (the official value is 256 for 512 channels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import einops
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dgr_jax.models.blocks.dgr import DGR

STAGES = ("stage1", "stage2", "stage3", "stage4")
LN_EPS = 1e-5  # torch nn.LayerNorm default, used by every Swin implementation we load
# Swin's init (microsoft init_weights): truncated normal 0.02 for Linear and the bias table.
TRUNC_NORMAL_INIT = nnx.initializers.truncated_normal(stddev=0.02)
MASK_VALUE = -100.0  # the official additive mask between shifted-window regions
# torch's default Conv2d init (kaiming_uniform with a=sqrt(5)) is U(+-1/sqrt(fan_in)), which is
# variance_scaling(1/3, fan_in, uniform); the official CRF / SAM convs keep that default.
TORCH_DEFAULT_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
BN_EPS = 1e-5  # torch BatchNorm2d / GroupNorm defaults (mmcv keeps them)
BN_MOMENTUM = 0.9  # flax convention for torch momentum 0.1
# mmcv ConvModule.init_weights: kaiming_normal(fan_out, relu) for the conv.
MMCV_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


# --------------------------------------------------------------------------------------------
# PyTorch's resizing, adaptive pooling and PixelShuffle.
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=128)
def bilinear_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1-D linear interpolation (`upsample_bilinear2d`)."""
    m = np.zeros((n_out, n_in), np.float64)
    dst = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros_like(dst)
    else:
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)  # torch clamps below at 0
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    np.add.at(m, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(m, (np.arange(n_out), i1), lam)
    return m.astype(np.float32)


def resize_bilinear(x: jax.Array, size: tuple[int, int], *, align_corners: bool = False):
    """torch `F.interpolate(x, size, mode="bilinear", align_corners=...)` on (B, H, W, C)."""
    _, h, w, _ = x.shape
    if (h, w) == tuple(size):
        return x
    mh = jnp.asarray(bilinear_matrix(h, size[0], align_corners), x.dtype)
    mw = jnp.asarray(bilinear_matrix(w, size[1], align_corners), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)


@functools.lru_cache(maxsize=128)
def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) averaging weights of torch adaptive pooling: bin i covers
    [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out))."""
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def adaptive_avg_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """torch `nn.AdaptiveAvgPool2d(size)` on (B, H, W, C) -> (B, size[0], size[1], C)."""
    _, h, w, _ = x.shape
    mh = jnp.asarray(adaptive_pool_matrix(h, size[0]), x.dtype)
    mw = jnp.asarray(adaptive_pool_matrix(w, size[1]), x.dtype)
    return jnp.einsum("oh,bhwc,pw->bopc", mh, x, mw)


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """torch `nn.PixelShuffle(r)`, NHWC: channel c r^2 + i r + j -> pixel (h r + i, w r + j)."""
    return einops.rearrange(x, "b h w (c i j) -> b (h i) (w j) c", i=r, j=r)


# --------------------------------------------------------------------------------------------
# Windows (Swin, NeWCRFs' FC-CRF, PixelFormer's SAM).
# --------------------------------------------------------------------------------------------
def window_partition(x: jax.Array, window: int) -> jax.Array:
    """(B, Hp, Wp, C) -> (B * nW, window * window, C), windows in row-major order per image."""
    return einops.rearrange(x, "b (nh wh) (nw ww) c -> (b nh nw) (wh ww) c", wh=window, ww=window)


def window_reverse(windows: jax.Array, window: int, hp: int, wp: int) -> jax.Array:
    """(B * nW, window * window, C) -> (B, Hp, Wp, C); inverse of `window_partition`."""
    return einops.rearrange(
        windows,
        "(b nh nw) (wh ww) c -> b (nh wh) (nw ww) c",
        nh=hp // window,
        nw=wp // window,
        wh=window,
    )


@functools.lru_cache(maxsize=64)
def relative_position_index(window: int, table_window: int | None = None) -> np.ndarray:
    """Index into the (2T-1)^2 bias table for every token pair of a window, (N, N) int32.

    Token i = (hi, wi) attends to j = (hj, wj) with bias table[(hi-hj+T-1)(2T-1) + (wi-wj+T-1)],
    T = table_window (defaults to window; smaller windows reuse the table's centre offsets).
    """
    t = table_window or window
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij"))
    coords = coords.reshape(2, -1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :] + (t - 1)  # (2, N, N)
    return (rel[0] * (2 * t - 1) + rel[1]).astype(np.int32)


@functools.lru_cache(maxsize=64)
def shifted_window_mask(hp: int, wp: int, window: int, shift: int) -> np.ndarray:
    """Additive attention mask of the cyclically shifted windows, (nW, N, N) float32.

    The padded grid is split into 3 x 3 regions (by `-window` and `-shift` along each axis);
    tokens of different regions that land in one window after the roll get MASK_VALUE.
    """

    def regions(n: int) -> np.ndarray:
        idx = np.arange(n)
        return (idx >= n - window).astype(np.int32) + (idx >= n - shift).astype(np.int32)

    label = regions(hp)[:, None] * 3 + regions(wp)[None, :]  # (Hp, Wp)
    # (Hp, Wp) -> (nW, N)
    windows = einops.rearrange(label, "(nh wh) (nw ww) -> (nh nw) (wh ww)", wh=window, ww=window)
    diff = windows[:, None, :] - windows[:, :, None]  # (nW, N, N)
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)


def window_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    bias: jax.Array,
    mask: np.ndarray | None,
) -> jax.Array:
    """Softmax(q k^T + bias + mask) v over windows.

    Args:
        q, k, v: (B * nW, heads, N, d), q already scaled.
        bias: (heads, N, N) relative position bias.
        mask: (nW, N, N) additive mask or None.

    Returns:
        (B * nW, heads, N, d).
    """
    bw, heads, n, _ = q.shape
    attn = jnp.einsum("bhnd,bhmd->bhnm", q, k) + bias[None].astype(q.dtype)
    if mask is not None:
        nw = mask.shape[0]
        # (B * nW, h, N, N) -> (B, nW, h, N, N): the mask broadcasts over images and heads.
        attn = attn.reshape(bw // nw, nw, heads, n, n) + jnp.asarray(mask, q.dtype)[None, :, None]
        attn = attn.reshape(bw, heads, n, n)
    attn = jax.nn.softmax(attn.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhnm,bhmd->bhnd", attn, v)


# --------------------------------------------------------------------------------------------
# Layers with PyTorch's defaults.
# --------------------------------------------------------------------------------------------
def layer_norm(dim: int, *, rngs: nnx.Rngs, dtype) -> nnx.LayerNorm:
    """torch-equivalent LayerNorm (eps 1e-5, two-pass variance)."""
    return nnx.LayerNorm(dim, epsilon=LN_EPS, use_fast_variance=False, dtype=dtype, rngs=rngs)


def linear(
    din: int,
    dout: int,
    *,
    rngs: nnx.Rngs,
    dtype,
    use_bias: bool = True,
    kernel_init=TRUNC_NORMAL_INIT,
) -> nnx.Linear:
    """torch Linear(din, dout); Swin's truncated-normal init unless told otherwise."""
    return nnx.Linear(din, dout, use_bias=use_bias, kernel_init=kernel_init, dtype=dtype, rngs=rngs)


class Mlp(nnx.Module):
    """fc1 -> exact GELU -> fc2 (torch nn.GELU default is the erf form)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        kernel_init=TRUNC_NORMAL_INIT,
    ):
        self.fc1 = linear(dim, hidden, rngs=rngs, dtype=dtype, kernel_init=kernel_init)
        self.fc2 = linear(hidden, dim, rngs=rngs, dtype=dtype, kernel_init=kernel_init)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


def conv3x3(cin: int, cout: int, *, rngs: nnx.Rngs, dtype, use_bias: bool = True) -> nnx.Conv:
    """torch Conv2d(cin, cout, 3, padding=1)."""
    return nnx.Conv(
        cin,
        cout,
        (3, 3),
        padding=((1, 1), (1, 1)),
        use_bias=use_bias,
        kernel_init=TORCH_DEFAULT_INIT,
        dtype=dtype,
        rngs=rngs,
    )


# --------------------------------------------------------------------------------------------
# PSP head.
# --------------------------------------------------------------------------------------------
class ConvNormAct(nnx.Module):
    """mmcv ConvModule: Conv2d(bias=False) -> BatchNorm or GroupNorm -> ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        norm: str,
        norm_groups: int = 0,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        pad = kernel // 2
        self.conv = nnx.Conv(
            cin,
            cout,
            (kernel, kernel),
            padding=((pad, pad), (pad, pad)),
            use_bias=False,
            kernel_init=MMCV_CONV_INIT,
            dtype=dtype,
            rngs=rngs,
        )
        if norm == "bn":
            self.norm = nnx.BatchNorm(
                cout,
                momentum=BN_MOMENTUM,
                epsilon=BN_EPS,
                use_fast_variance=False,
                dtype=dtype,
                rngs=rngs,
            )
        elif norm == "gn":
            if cout % norm_groups:
                raise ValueError(f"GroupNorm: {cout} channels not divisible by {norm_groups}")
            self.norm = nnx.GroupNorm(
                cout,
                num_groups=norm_groups,
                epsilon=BN_EPS,
                use_fast_variance=False,
                dtype=dtype,
                rngs=rngs,
            )
        else:
            raise ValueError(f"norm must be 'bn' or 'gn', got {norm!r}")

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.conv(x)
        if isinstance(self.norm, nnx.BatchNorm):
            x = self.norm(x, use_running_average=not train)
        else:
            x = self.norm(x)
        return jax.nn.relu(x)


class PSPHead(nnx.Module):
    """Pyramid pooling on the last stage -> (B, h, w, channels)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        norm_groups: int = 256,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.pool_scales = tuple(pool_scales)
        self.stages = nnx.List(
            [
                ConvNormAct(
                    in_channels,
                    channels,
                    1,
                    norm="gn",
                    norm_groups=norm_groups,
                    rngs=rngs,
                    dtype=dtype,
                )
                for _ in self.pool_scales
            ]
        )
        self.bottleneck = ConvNormAct(
            in_channels + len(self.pool_scales) * channels,
            channels,
            3,
            norm="bn",
            rngs=rngs,
            dtype=dtype,
        )

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        _, h, w, _ = x.shape
        outs = [x]
        for scale, stage in zip(self.pool_scales, self.stages):
            y = stage(adaptive_avg_pool(x, (scale, scale)), train=train)
            outs.append(resize_bilinear(y, (h, w), align_corners=False))
        return self.bottleneck(jnp.concatenate(outs, axis=-1), train=train)


# --------------------------------------------------------------------------------------------
# Host plumbing: DGR on the encoder stages, the multiple-of-32 check.
# --------------------------------------------------------------------------------------------
DgrFactory = Callable[..., nnx.Module]


def stage_dgr(
    settings: Mapping[str, Any] | None,
    factory: DgrFactory | None,
    in_channels: Mapping[str, int],
    *,
    host: str,
    rngs: nnx.Rngs,
    dtype,
) -> nnx.Dict | None:
    """One DGR block per encoder stage listed in `settings["positions"]` (None: no DGR).

    `factory(channels, *, rngs) -> module` overrides how blocks are built (tests, ablations);
    by default they are `dgr_jax.models.blocks.dgr.DGR(channels, **settings)`.
    """
    if settings is None:
        return None
    settings = dict(settings)
    positions = tuple(settings.pop("positions", STAGES))
    unknown = sorted(set(positions) - set(STAGES))
    if unknown:
        raise ValueError(f"{host} DGR positions are encoder stages {STAGES}, got {unknown}")
    if factory is None:

        def factory(channels: int, *, rngs: nnx.Rngs) -> nnx.Module:
            return DGR(channels, **settings, dtype=dtype, rngs=rngs)

    return nnx.Dict({s: factory(in_channels[s], rngs=rngs) for s in positions})


def check_stage_sizes(feats: Mapping[str, jax.Array], host: str) -> None:
    """Each stage must be twice the size of the next (the hosts' PixelShuffle(2) between
    levels needs it), as for input sides that are multiples of 32; raised at trace time, so a
    wrong size stops before anything is compiled."""
    sizes = [tuple(feats[s].shape[1:3]) for s in STAGES]
    for fine, coarse in zip(sizes, sizes[1:]):
        if fine != (2 * coarse[0], 2 * coarse[1]):
            raise ValueError(
                f"{host} needs H and W divisible by 32 (stage sizes {sizes}); resize or pad the "
                "input (NYU 480x640 and the KITTI KB crop 352x1216 are)"
            )
