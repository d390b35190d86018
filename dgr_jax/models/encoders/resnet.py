"""ResNet encoder (He et al., CVPR 2016), registered as encoder "resnet": the CNN arm.

[paper] The CNN arm of the comparative study (method.md section 1); it feeds the same decoder
as the ViT, so the encoder is the only difference between the arms.
[ours] ResNet-18/34 (basic blocks) and 50/101 (bottleneck, stride on the 3x3 conv as
torchvision's "v1.5"), BatchNorm (momentum 0.9 = torch 0.1, epsilon 1e-5 as torch), returning
{"stage1".."stage4"} at strides 4, 8, 16, 32. Submodule names follow HF `ResNetModel` so the
converter is a 1:1 mapping. `width` scales every channel count (64 in the paper; tiny in tests).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.blocks import layers
from dgr_jax.registry import ENCODERS

STAGES = ("stage1", "stage2", "stage3", "stage4")

# Block type and blocks per stage: He et al. 2016, Table 1.
DEPTHS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}
_EXPANSION = {"basic": 1, "bottleneck": 4}  # output channels / width of the stage
_BN_MOMENTUM = 0.9  # flax convention; = torch momentum 0.1
_KAIMING = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision's init


class ConvLayer(nnx.Module):
    """Conv (no bias) -> BatchNorm -> optional ReLU."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int,
        *,
        stride: int = 1,
        relu: bool = True,
        bn_eps: float,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        self.relu = relu
        self.convolution = layers.conv(
            in_features,
            out_features,
            kernel_size,
            stride=stride,
            use_bias=False,
            dtype=dtype,
            rngs=rngs,
            kernel_init=_KAIMING,
        )
        self.normalization = nnx.BatchNorm(
            out_features, momentum=_BN_MOMENTUM, epsilon=bn_eps, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        x = self.normalization(self.convolution(x), use_running_average=not train)
        return jax.nn.relu(x) if self.relu else x


class ResidualBlock(nnx.Module):
    """Basic (3x3, 3x3) or bottleneck (1x1, 3x3, 1x1) block with a projection shortcut when the
    shape changes."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        block: str,
        stride: int,
        downsample_in_bottleneck: bool,
        bn_eps: float,
        dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        kw = {"bn_eps": bn_eps, "dtype": dtype, "rngs": rngs}
        needs_shortcut = in_features != out_features or stride != 1
        self.shortcut = (
            ConvLayer(in_features, out_features, 1, stride=stride, relu=False, **kw)
            if needs_shortcut
            else None
        )
        if block == "basic":
            convs = [
                ConvLayer(in_features, out_features, 3, stride=stride, **kw),
                ConvLayer(out_features, out_features, 3, relu=False, **kw),
            ]
        else:
            mid = out_features // _EXPANSION["bottleneck"]
            s1, s3 = (stride, 1) if downsample_in_bottleneck else (1, stride)
            convs = [
                ConvLayer(in_features, mid, 1, stride=s1, **kw),
                ConvLayer(mid, mid, 3, stride=s3, **kw),
                ConvLayer(mid, out_features, 1, relu=False, **kw),
            ]
        self.layer = nnx.List(convs)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        residual = x if self.shortcut is None else self.shortcut(x, train=train)
        for conv in self.layer:
            x = conv(x, train=train)
        return jax.nn.relu(x + residual)


class ResNetStage(nnx.Module):
    def __init__(self, blocks: Sequence[ResidualBlock]):
        self.layers = nnx.List(blocks)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        for block in self.layers:
            x = block(x, train=train)
        return x


@ENCODERS.register("resnet")
class ResNet(nnx.Module):
    """ResNet encoder: (B, H, W, 3) -> {"stage1".."stage4"} (B, H/s, W/s, C_s), s = 4..32.

    Args:
        depth: 18, 34, 50 or 101 (block type and stage depths from He et al. Table 1).
        width: stem channels (64 in the paper); stage widths are width * (1, 2, 4, 8) times
            the block expansion (1 basic, 4 bottleneck).
        block, stage_depths, hidden_sizes: explicit overrides (converted checkpoints).
        downsample_in_first_stage, downsample_in_bottleneck: HF ResNetConfig options.
        bn_eps: BatchNorm epsilon (torch default).
        remat: rematerialise each residual block in the backward pass.
    """

    def __init__(
        self,
        *,
        depth: int = 50,
        width: int = 64,
        block: str | None = None,
        stage_depths: Sequence[int] | None = None,
        hidden_sizes: Sequence[int] | None = None,
        downsample_in_first_stage: bool = False,
        downsample_in_bottleneck: bool = False,
        bn_eps: float = 1e-5,
        dtype: jnp.dtype = jnp.float32,
        remat: bool = False,
        rngs: nnx.Rngs,
    ):
        if depth not in DEPTHS and (block is None or stage_depths is None):
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        default_block, default_depths = DEPTHS.get(depth, (None, None))
        block = block or default_block
        if block not in _EXPANSION:
            raise ValueError(f"block must be basic or bottleneck, got {block!r}")
        stage_depths = tuple(stage_depths or default_depths)
        if hidden_sizes is None:
            hidden_sizes = [width * m * _EXPANSION[block] for m in (1, 2, 4, 8)]
        hidden_sizes = tuple(int(c) for c in hidden_sizes)
        self.dtype = dtype
        self.remat = remat
        kw = {"bn_eps": bn_eps, "dtype": dtype, "rngs": rngs}
        self.embedder = ConvLayer(3, width, 7, stride=2, **kw)
        stages = []
        in_features = width
        for i, (n, c) in enumerate(zip(stage_depths, hidden_sizes, strict=True)):
            stride = 2 if (i > 0 or downsample_in_first_stage) else 1
            blocks = [
                ResidualBlock(
                    in_features if j == 0 else c,
                    c,
                    block=block,
                    stride=stride if j == 0 else 1,
                    downsample_in_bottleneck=downsample_in_bottleneck,
                    **kw,
                )
                for j in range(n)
            ]
            stages.append(ResNetStage(blocks))
            in_features = c
        self.stages = nnx.List(stages)
        self.out_channels = dict(zip(STAGES, hidden_sizes))

    def __call__(
        self, images: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None
    ) -> dict[str, jax.Array]:
        """Stage maps; `rngs` is part of the encoder call contract (no stochastic layers here)."""
        del rngs
        x = self.embedder(images.astype(self.dtype), train=train)
        # torch MaxPool2d(3, stride=2, padding=1) pads with -inf, as reduce_window does here.
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        out = {}
        for name, stage in zip(STAGES, self.stages):
            for block in stage.layers:
                if self.remat:
                    x = nnx.remat(lambda b, y: b(y, train=train))(block, x)
                else:
                    x = block(x, train=train)
            out[name] = x
        return out
