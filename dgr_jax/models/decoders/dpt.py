"""DPT fusion decoder (registered "dpt") and depth heads (registered "sigmoid" and "relu").

[paper] One decoder shared by the Transformer and the CNN encoder (method.md section 1), with
the DGR block on the encoder features (method.md section 3).
[ours] The decoder of DPT (Ranftl et al., ICCV 2021) as in HF `DPTNeck` after its reassemble
stage: a 3x3 conv (no bias) maps each stage to `features` channels, then four fusion blocks
from the coarsest stage up, each with pre-activation residual conv units (optionally with batch
norm), a x2 bilinear upsample (align_corners=True) and a 1x1 projection. DGR sits at the
positions named in `dgr["positions"]`: "reassemble" right after the 3x3 projection (before
fusion), "fusion" after each fusion block.
Upsampling ("upsample" config keys): "x2" (DPT) doubles the fused map (bilinear,
align_corners=True); where it then differs from the next (finer) stage (sides not multiples of
32), the fused map is resized to the stage. HF DPT instead resizes the stage to the fused map,
which makes the output larger than the input; for multiples of 32 both are identical.
"to_next" (Depth Anything) resizes the fused map straight to the next stage's size
(align_corners=True), and its head resizes straight to the output size.

Heads: DPT's (3x3 conv to features/2, x2 bilinear upsample, 3x3 conv to `hidden`, ReLU, 1x1
conv to 1) followed by sigmoid * max_depth ("sigmoid", metric depth as NeWCRFs/PixelFormer,
the default) or ReLU ("relu", DPT's, for converted checkpoints; unbounded).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.blocks import layers
from dgr_jax.models.blocks.dgr import DGR
from dgr_jax.registry import DECODERS, HEADS

STAGES = ("stage1", "stage2", "stage3", "stage4")
DGR_POSITIONS = ("reassemble", "fusion")
_BN_MOMENTUM = 0.9  # = torch momentum 0.1


class PreActResidualLayer(nnx.Module):
    """DPT's residual conv unit: x + conv(relu(conv(relu(x)))) with optional batch norm."""

    def __init__(
        self, features: int, *, use_bn: bool, use_bias: bool, dtype: jnp.dtype, rngs: nnx.Rngs
    ):
        kw = {"use_bias": use_bias, "dtype": dtype, "rngs": rngs}
        self.convolution1 = layers.conv(features, features, 3, **kw)
        self.convolution2 = layers.conv(features, features, 3, **kw)
        bn = {"momentum": _BN_MOMENTUM, "epsilon": 1e-5, "dtype": dtype, "rngs": rngs}
        self.batch_norm1 = nnx.BatchNorm(features, **bn) if use_bn else None
        self.batch_norm2 = nnx.BatchNorm(features, **bn) if use_bn else None

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = self.convolution1(jax.nn.relu(x))
        if self.batch_norm1 is not None:
            y = self.batch_norm1(y, use_running_average=not train)
        y = self.convolution2(jax.nn.relu(y))
        if self.batch_norm2 is not None:
            y = self.batch_norm2(y, use_running_average=not train)
        return x + y


class FeatureFusionLayer(nnx.Module):
    """(fused, stage) -> projection(upsample2x(res2(fused + res1(stage))))."""

    def __init__(
        self, features: int, *, use_bn: bool, use_bias: bool, dtype: jnp.dtype, rngs: nnx.Rngs
    ):
        kw = {"use_bn": use_bn, "use_bias": use_bias, "dtype": dtype, "rngs": rngs}
        self.residual_layer1 = PreActResidualLayer(features, **kw)
        self.residual_layer2 = PreActResidualLayer(features, **kw)
        self.projection = layers.conv(features, features, 1, dtype=dtype, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        stage: jax.Array | None = None,
        *,
        size: Sequence[int] | None = None,
        train: bool = False,
    ) -> jax.Array:
        """Fuse; `size` is the output size ("to_next" upsampling), None doubles the input."""
        if stage is not None:
            if x.shape[1:3] != stage.shape[1:3]:  # only for sides not multiple of 32
                x = layers.resize(x, stage.shape[1:3])
            x = x + self.residual_layer1(stage, train=train)
        x = self.residual_layer2(x, train=train)
        _, h, w, _ = x.shape
        x = layers.resize(x, size or (2 * h, 2 * w), align_corners=True)
        return self.projection(x)


def _dgr_list(features: int, dgr: Mapping[str, Any], *, dtype, rngs) -> nnx.List:
    kw = {k: v for k, v in dgr.items() if k not in ("enabled", "positions")}
    return nnx.List([DGR(features, **kw, dtype=dtype, rngs=rngs) for _ in STAGES])


@DECODERS.register("dpt")
class DPTDecoder(nnx.Module):
    """Encoder features {"stage1".."stage4"} -> fused map (B, H/2, W/2, features).

    Args:
        in_channels: channels of each stage (the encoder's `out_channels`).
        features: decoder width (HF `fusion_hidden_size`).
        use_bn: batch norm in the residual conv units (HF `use_batch_norm_in_fusion_residual`).
        use_bias: conv bias in the residual units; None -> not use_bn (HF's rule).
        dgr: None, or DGR settings {"positions": subset of ("reassemble", "fusion"),
            "stencils", "se_reduction", "learnable_stencils"} (config `model.dgr`).
        upsample: "x2" (DPT) or "to_next" (Depth Anything), see the module docstring.
    """

    def __init__(
        self,
        in_channels: Mapping[str, int],
        *,
        features: int = 256,
        use_bn: bool = False,
        use_bias: bool | None = None,
        dgr: Mapping[str, Any] | None = None,
        upsample: str = "x2",
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if upsample not in ("x2", "to_next"):
            raise ValueError(f"decoder upsample must be x2 or to_next, got {upsample!r}")
        self.upsample = upsample
        self.out_features = features
        use_bias = (not use_bn) if use_bias is None else use_bias
        self.convs = nnx.List(
            [
                layers.conv(in_channels[s], features, 3, use_bias=False, dtype=dtype, rngs=rngs)
                for s in STAGES
            ]
        )
        positions = tuple(dgr.get("positions", ())) if dgr is not None else ()
        if unknown := [p for p in positions if p not in DGR_POSITIONS]:
            raise ValueError(f"unknown DGR positions {unknown}; valid: {DGR_POSITIONS}")
        # Fusion layer i reads stage 4 - i (coarsest first), as HF's fusion_stage.layers.
        self.fusion_layers = nnx.List(
            [
                FeatureFusionLayer(
                    features, use_bn=use_bn, use_bias=use_bias, dtype=dtype, rngs=rngs
                )
                for _ in STAGES
            ]
        )
        kw = {"dtype": dtype, "rngs": rngs}
        has = {p: p in positions for p in DGR_POSITIONS}
        self.dgr_reassemble = _dgr_list(features, dgr, **kw) if has["reassemble"] else None
        self.dgr_fusion = _dgr_list(features, dgr, **kw) if has["fusion"] else None

    def __call__(self, feats: Mapping[str, jax.Array], *, train: bool = False) -> jax.Array:
        maps = [conv(feats[s]) for conv, s in zip(self.convs, STAGES)]
        if self.dgr_reassemble is not None:
            maps = [block(m) for block, m in zip(self.dgr_reassemble, maps)]
        maps = maps[::-1]  # coarsest first
        x = None
        for i, (layer, stage) in enumerate(zip(self.fusion_layers, maps)):
            size = None
            if self.upsample == "to_next" and i + 1 < len(maps):
                size = maps[i + 1].shape[1:3]
            if x is None:
                x = layer(stage, size=size, train=train)
            else:
                x = layer(x, stage, size=size, train=train)
            if self.dgr_fusion is not None:
                x = self.dgr_fusion[i](x)
        return x


class DepthHead(nnx.Module):
    """DPT's depth head up to the final activation: (B, h, w, features) -> (B, H, W, 1).

    Args:
        features: decoder width.
        max_depth: upper bound of the depth in metres (used by bounded heads).
        hidden: channels of the last 3x3 conv (32 in DPT).
        projection: a 3x3 conv + ReLU before the head (HF `add_projection`).
        upsample: "x2" (DPT: double, then resize if the size still differs) or "to_output"
            (Depth Anything: resize straight to the output size); both align_corners=True.
    """

    def __init__(
        self,
        features: int,
        *,
        max_depth: float = 10.0,
        hidden: int = 32,
        projection: bool = False,
        upsample: str = "x2",
        dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if upsample not in ("x2", "to_output"):
            raise ValueError(f"head upsample must be x2 or to_output, got {upsample!r}")
        self.upsample = upsample
        self.max_depth = float(max_depth)
        self.projection = (
            layers.conv(features, features, 3, dtype=dtype, rngs=rngs) if projection else None
        )
        self.conv1 = layers.conv(features, features // 2, 3, dtype=dtype, rngs=rngs)
        self.conv2 = layers.conv(features // 2, hidden, 3, dtype=dtype, rngs=rngs)
        self.conv3 = layers.conv(hidden, 1, 1, dtype=dtype, rngs=rngs)

    def activate(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array, out_size: Sequence[int]) -> jax.Array:
        if self.projection is not None:
            x = jax.nn.relu(self.projection(x))
        x = self.conv1(x)
        _, h, w, _ = x.shape
        if self.upsample == "to_output":
            x = layers.resize(x, out_size, align_corners=True)
        else:
            x = layers.resize(x, (2 * h, 2 * w), align_corners=True)
            if x.shape[1:3] != tuple(out_size):  # only for sides not multiple of 32
                x = layers.resize(x, out_size)
        x = self.conv3(jax.nn.relu(self.conv2(x)))
        return self.activate(x.astype(jnp.float32))


@HEADS.register("sigmoid")
class SigmoidDepthHead(DepthHead):
    """Metric depth sigmoid(x) * max_depth in (0, max_depth) (NeWCRFs/PixelFormer)."""

    def activate(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(x) * self.max_depth


@HEADS.register("relu")
class ReLUDepthHead(DepthHead):
    """DPT's ReLU output times `scale` (Depth Anything's relative max_depth), unbounded;
    `max_depth` is unused. For converted checkpoints."""

    def __init__(self, features: int, *, scale: float = 1.0, **kwargs: Any):
        super().__init__(features, **kwargs)
        self.scale = float(scale)

    def activate(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x) * self.scale
