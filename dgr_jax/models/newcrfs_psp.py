"""Pyramid pooling head that starts the NeWCRFs decoder, in Flax NNX.

What is whose:
- [paper] NeWCRFs (CVPR 2022) Sec. 3.4: a PSP module (Zhao et al., PSPNet) on the last
  encoder stage aggregates global context and gives the top-level "prediction" that the
  coarsest FC-CRF refines.
- [authors' code] aliyun/NeWCRFs d327bf7, newcrfs/networks/uper_crf_head.py (`PSP`, `PPM`, with
  mmcv `ConvModule`): for each pool scale in (1, 2, 3, 6): adaptive average pooling, 1x1 conv
  (no bias) + norm + ReLU, bilinear resize back (align_corners=False); concat with the input;
  3x3 conv (no bias) + BatchNorm + ReLU to `channels` (512). Note the norm of the pooling
  branches: `PPM.__init__` rebinds `norm_cfg` to GroupNorm(256 groups) when it meets scale 1
  and never restores it, so with scales (1, 2, 3, 6) EVERY branch uses GroupNorm(256); only the
  bottleneck uses BatchNorm. The released checkpoints have `gn` keys for all four branches,
  and we reproduce that.
- [ours] NHWC; torch-exact pooling/resizing from `newcrfs_ops`; `norm_groups` is a field so
  narrow test models can use fewer groups (the official value is 256 for 512 channels).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.newcrfs_ops import adaptive_avg_pool, resize_bilinear

BN_EPS = 1e-5  # torch BatchNorm2d / GroupNorm defaults (mmcv keeps them)
BN_MOMENTUM = 0.9  # flax convention for torch momentum 0.1
# mmcv ConvModule.init_weights: kaiming_normal(fan_out, relu) for the conv.
MMCV_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


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
