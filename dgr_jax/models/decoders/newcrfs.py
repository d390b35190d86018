"""NeWCRFs depth decoder (and the identity head it needs), Flax NNX.

What is whose:
- [paper] Yuan et al., "Neural Window Fully-connected CRFs for Monocular Depth Estimation",
  CVPR 2022: Swin encoder; PSP on the last stage; four neural window FC-CRF levels from
  coarse (1/32) to fine (1/4), each refining the upsampled prediction of the level above with
  the encoder feature of its scale; a disparity head at 1/4; depth = sigmoid * max_depth.
- [authors' code] aliyun/NeWCRFs d327bf7, newcrfs/networks/NewCRFDepth.py: CRF widths
  (128, 256, 512, 1024), heads (4, 8, 16, 32), CRF window 7 (fixed, whatever the Swin window),
  PSP width 512 feeding crf3 as v; between levels `nn.PixelShuffle(2)` (so v of level k has
  width crf_dims[k + 1] / 4); `DispHead` = 3x3 conv -> sigmoid -> bilinear x4
  (align_corners=False) -> x max_depth. `up_mode` is hard-coded to "bilinear"; the convex
  "mask" upsampling (`upsample_mask`, `mask_head`) is dead code there but is kept here as an
  option ("mask"). `min_depth` and `inv_depth` are unused by the official forward.
- [ours] NHWC; the decoder is registered as DECODERS["newcrfs"] and returns the depth itself
  (B, H, W, 1) in metres (float32), so the DepthModel around it uses the "identity" head
  registered here. The whole NeWCRFs network is `build_model(config.model)` of
  configs/nyu_newcrfs.py (encoder "swin", decoder "newcrfs", head "identity"); its variables
  ({"encoder", "decoder"}) are what `python -m dgr_jax.convert --newcrfs-ckpt` writes.

DGR: with `dgr` settings (`config.model.dgr` without `enabled`; `positions` are encoder stage
names), the decoder builds one DGR block per listed stage and applies it to that stage's map
before the PSP/CRF levels (the paper's "features processed by the transformer encoder").
`dgr_factory(channels, *, rngs) -> module`, `module(x) -> x`, overrides how blocks are built
(tests, ablations); by default they are `dgr_jax.models.blocks.dgr.DGR`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.blocks.host_common import (
    STAGES,
    DgrFactory,
    PSPHead,
    check_stage_sizes,
    conv3x3,
    pixel_shuffle,
    resize_bilinear,
    stage_dgr,
)
from dgr_jax.models.decoders.newcrfs_crf import NewCRF
from dgr_jax.registry import DECODERS, HEADS

UPSAMPLE = 4  # the disparity is predicted at stride 4 and upsampled to the input size


class DispHead(nnx.Module):
    """3x3 conv to one channel and a sigmoid (official `DispHead.conv1`)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.conv = conv3x3(dim, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self.conv(x))


class MaskHead(nnx.Module):
    """Convex-upsampling weights: 3x3 conv (64) -> ReLU -> 1x1 conv (9 * 4 * 4)."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.conv1 = conv3x3(dim, 64, rngs=rngs, dtype=dtype)
        self.conv2 = nnx.Conv(64, 9 * UPSAMPLE**2, (1, 1), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv2(jax.nn.relu(self.conv1(x)))


@DECODERS.register("newcrfs")
class NeWCRFsDecoder(nnx.Module):
    """PSP + four FC-CRF levels + disparity head: stage dict -> depth (B, H, W, 1) in metres."""

    def __init__(
        self,
        in_channels: Mapping[str, int],
        *,
        max_depth: float,
        crf_dims: Sequence[int] = (128, 256, 512, 1024),
        crf_heads: Sequence[int] = (4, 8, 16, 32),
        crf_window: int = 7,
        crf_depth: int = 2,
        psp_channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        ppm_norm_groups: int = 256,
        up_mode: str = "bilinear",  # or "mask" (convex upsampling)
        dgr: Mapping[str, Any] | None = None,
        dgr_factory: DgrFactory | None = None,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        remat: bool = False,
    ):
        if up_mode not in ("bilinear", "mask"):
            raise ValueError(f"up_mode must be 'bilinear' or 'mask', got {up_mode!r}")
        if any(d % (2 * 2) for d in crf_dims[1:]):
            raise ValueError(f"crf_dims[1:] must be multiples of 4 (PixelShuffle(2)): {crf_dims}")
        self.max_depth = float(max_depth)
        self.up_mode = up_mode
        self.remat = remat
        self.out_features = 1  # the decoder ends in the depth map itself (identity head)
        chans = [in_channels[s] for s in STAGES]
        self.dgr = stage_dgr(dgr, dgr_factory, in_channels, host="NeWCRFs", rngs=rngs, dtype=dtype)
        # v of level k is the pixel-shuffled output of level k + 1; the top level's is the PSP.
        v_dims = [crf_dims[1] // 4, crf_dims[2] // 4, crf_dims[3] // 4, psp_channels]
        self.psp = PSPHead(
            chans[3],
            psp_channels,
            pool_scales=pool_scales,
            norm_groups=ppm_norm_groups,
            rngs=rngs,
            dtype=dtype,
        )
        levels = [
            NewCRF(
                chans[k],
                crf_dims[k],
                v_dims[k],
                window=crf_window,
                num_heads=crf_heads[k],
                depth=crf_depth,
                rngs=rngs,
                dtype=dtype,
            )
            for k in range(4)
        ]
        self.crf0, self.crf1, self.crf2, self.crf3 = levels
        self.disp_head = DispHead(crf_dims[0], rngs=rngs, dtype=dtype)
        self.mask_head = (
            MaskHead(crf_dims[0], rngs=rngs, dtype=dtype) if up_mode == "mask" else None
        )

    def __call__(self, feats: Mapping[str, jax.Array], *, train: bool = False) -> jax.Array:
        """feats {"stage1".."stage4"} (B, H/s, W/s, C_s) -> depth (B, H, W, 1) in metres."""
        check_stage_sizes(feats, "NeWCRFs")
        if self.dgr is not None:
            feats = {s: (self.dgr[s](f) if s in self.dgr else f) for s, f in feats.items()}
        run = nnx.remat(_run_crf) if self.remat else _run_crf
        v = self.psp(feats["stage4"], train=train)
        levels = (self.crf3, self.crf2, self.crf1, self.crf0)
        for k, (crf, stage) in enumerate(zip(levels, reversed(STAGES))):
            v = run(crf, feats[stage], v)
            if k < 3:
                v = pixel_shuffle(v, 2)  # (B, h, w, 4C') -> (B, 2h, 2w, C')
        b, h, w, _ = v.shape
        disp = self.disp_head(v)  # (B, H/4, W/4, 1) in (0, 1)
        if self.mask_head is not None:
            disp = convex_upsample(disp, self.mask_head(v), UPSAMPLE)
        else:
            disp = resize_bilinear(disp, (UPSAMPLE * h, UPSAMPLE * w), align_corners=False)
        return (disp * self.max_depth).astype(jnp.float32)  # metres, float32 for losses


def convex_upsample(disp: jax.Array, mask: jax.Array, r: int = 4) -> jax.Array:
    """Upsample (B, H, W, 1) by r with per-pixel convex weights over the 3x3 neighbourhood.

    `mask` (B, H, W, 9 r^2), channel k r^2 + i r + j holds the logit of neighbour k (row-major
    3x3, zero padding outside) for sub-pixel (i, j); softmax over k (NeWCRFs upsample_mask, after
    RAFT). Returns (B, r H, r W, 1).
    """
    b, h, w, _ = disp.shape
    # (B, H, W, 9 r^2) -> (B, H, W, 9, r, r), softmax over the 9 neighbours.
    weights = jax.nn.softmax(
        einops.rearrange(mask, "b h w (k i j) -> b h w k i j", k=9, i=r, j=r), axis=3
    )
    padded = jnp.pad(disp[..., 0], ((0, 0), (1, 1), (1, 1)))
    neighbours = jnp.stack(
        [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1
    )  # (B, H, W, 9)
    up = jnp.einsum("bhwkij,bhwk->bhwij", weights, neighbours)
    return einops.rearrange(up, "b h w i j -> b (h i) (w j) 1")


def _run_crf(crf: NewCRF, x: jax.Array, v: jax.Array) -> jax.Array:
    return crf(x, v)


@HEADS.register("identity")
class IdentityHead(nnx.Module):
    """For decoders that end in the depth map (NeWCRFs, PixelFormer): checks the size, returns
    it as is."""

    def __init__(self, features: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        del rngs, dtype
        if features != 1:
            raise ValueError(f"identity head needs a 1-channel decoder output, got {features}")

    def __call__(self, x: jax.Array, out_size: Sequence[int]) -> jax.Array:
        if x.shape[1:3] != tuple(out_size):
            raise ValueError(
                f"decoder output {x.shape[1:3]} != input size {tuple(out_size)}: NeWCRFs and "
                "PixelFormer predict at 4x their stride-4 map, so input sides must be multiples "
                "of 32 (resize or crop the input)"
            )
        return x.astype(jnp.float32)
