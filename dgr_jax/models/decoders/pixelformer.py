"""PixelFormer depth decoder (skip attention + adaptive bins), Flax NNX.

What is whose:
- [paper] Agarwal & Arora, "Attention Attention Everywhere: Monocular Depth Prediction with Skip
  Attention", WACV 2023 (arXiv 2210.09071): Swin encoder; a pixel query initialiser (PQI, a PSP
  on the last stage) gives the initial pixel queries; four skip attention modules (SAM) refine
  them from coarse (1/32) to fine (1/4) against the encoder feature of each scale; a bin centre
  predictor (BCP) turns the initial queries into adaptive depth bins; depth is the per-pixel
  softmax over bins times the bin centres.
- [authors' code] ashutosh1807/PixelFormer bb0ae9f, pixelformer/networks/PixelFormer.py:
  SAM widths (128, 256, 512, 1024), heads (4, 8, 16, 32), SAM window 7 (hard-coded, whatever
  the Swin window), PSP width 512 feeding sam4 as queries; between levels `nn.PixelShuffle(2)`
  (so the queries of level k have width sam_dims[k + 1] / 4). `BCP` on the PSP output q4 (after
  its ReLU): mean over H W -> fc1 (512 -> 2048) -> exact GELU -> fc2 (-> 256) -> softmax (then
  divided by its sum again, kept here) -> widths (max - min) p -> edges min + cumsum -> centres
  at the edge midpoints; min_depth is the constructor default 0.1 for both datasets
  (`protocol.PIXELFORMER_MIN_DEPTH`). `DispHead`: 3x3 conv (128 -> 256) -> softmax over the 256
  channels -> sum with the per-image centres -> bilinear x4 (align_corners=False); no sigmoid,
  no x max_depth: the output is depth in metres. The model crashes on inputs whose sides are not
  multiples of 32.
- [ours] NHWC; registered as DECODERS["pixelformer"], returning depth (B, H, W, 1) float32 in
  metres, so the DepthModel around it uses the "identity" head (as NeWCRFs). The whole network
  is `build_model(config.model)` of configs/nyu_pixelformer.py (encoder "swin", decoder
  "pixelformer", head "identity"); its variables ({"encoder", "decoder"}) are what
  `python -m dgr_jax.convert --pixelformer-ckpt` writes. Input sides that are not multiples of
  32 are refused at trace time with a clear error (before any compilation). The PSP, windows
  and PixelShuffle are NeWCRFs' (`dgr_jax/models/blocks/host_common.py`). The bins' softmax and
  sum run in float32 whatever the compute dtype.

DGR: as in NeWCRFs, with `dgr` settings (`positions` are encoder stage names) one DGR block per
listed stage refines that stage's map before the PSP and the SAMs. `dgr_factory(channels, *,
rngs) -> module` overrides how blocks are built (tests, ablations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax import protocol
from dgr_jax.models.blocks.host_common import (
    STAGES,
    TORCH_DEFAULT_INIT,
    DgrFactory,
    PSPHead,
    check_stage_sizes,
    conv3x3,
    linear,
    pixel_shuffle,
    resize_bilinear,
    stage_dgr,
)
from dgr_jax.models.decoders.pixelformer_sam import SAM
from dgr_jax.registry import DECODERS

UPSAMPLE = 4  # bins are combined at stride 4, then upsampled to the input size
# Official architecture constants (networks/PixelFormer.py), read off the weights by the converter.
SAM_DIMS = (128, 256, 512, 1024)
SAM_HEADS = (4, 8, 16, 32)
SAM_WINDOW = 7
PSP_CHANNELS = 512
NUM_BINS = 256  # BCP out_features and DispHead's conv width
BCP_HIDDEN = 2048  # BCP hidden_features = 512 * 4


class BCP(nnx.Module):
    """Bin centre predictor: (B, h, w, C) queries -> (B, bins) centres in (min_depth, max_depth)."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        bins: int,
        *,
        min_depth: float,
        max_depth: float,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        if not 0.0 <= min_depth < max_depth:
            raise ValueError(f"BCP needs 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)
        kw = {"rngs": rngs, "dtype": dtype, "kernel_init": TORCH_DEFAULT_INIT}
        self.fc1 = linear(dim, hidden, **kw)
        self.fc2 = linear(hidden, bins, **kw)

    def __call__(self, q: jax.Array) -> jax.Array:
        x = jnp.mean(q, axis=(1, 2))  # (B, h, w, C) -> (B, C)
        logits = self.fc2(jax.nn.gelu(self.fc1(x), approximate=False)).astype(jnp.float32)
        p = jax.nn.softmax(logits, axis=-1)
        p = p / jnp.sum(p, axis=-1, keepdims=True)  # official; a no-op up to rounding
        widths = (self.max_depth - self.min_depth) * p  # (B, bins)
        # Left-pad with the value min_depth, cumsum: the bins + 1 edges from min to max.
        edges = jnp.cumsum(jnp.pad(widths, ((0, 0), (1, 0)), constant_values=self.min_depth), -1)
        return 0.5 * (edges[:, :-1] + edges[:, 1:])


class BinHead(nnx.Module):
    """3x3 conv to `bins` logits; depth = sum_i softmax_i * centre_i (official `DispHead`)."""

    def __init__(self, dim: int, bins: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.conv = conv3x3(dim, bins, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array, centres: jax.Array) -> jax.Array:
        """x (B, h, w, dim), centres (B, bins) -> depth (B, h, w, 1) float32."""
        p = jax.nn.softmax(self.conv(x).astype(jnp.float32), axis=-1)
        return jnp.einsum("bhwk,bk->bhw", p, centres)[..., None]


@DECODERS.register("pixelformer")
class PixelFormerDecoder(nnx.Module):
    """PSP (PQI) + four SAM levels + BCP + bin head: stage dict -> depth (B, H, W, 1) metres."""

    def __init__(
        self,
        in_channels: Mapping[str, int],
        *,
        max_depth: float,
        min_depth: float = protocol.PIXELFORMER_MIN_DEPTH,
        sam_dims: Sequence[int] = SAM_DIMS,
        sam_heads: Sequence[int] = SAM_HEADS,
        sam_window: int = SAM_WINDOW,
        psp_channels: int = PSP_CHANNELS,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        ppm_norm_groups: int = 256,
        num_bins: int = NUM_BINS,
        bcp_hidden: int = BCP_HIDDEN,
        dgr: Mapping[str, Any] | None = None,
        dgr_factory: DgrFactory | None = None,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        remat: bool = False,
    ):
        if len(sam_dims) != 4 or len(sam_heads) != 4:
            raise ValueError(f"PixelFormer has 4 SAM levels: sam_dims={sam_dims}, {sam_heads=}")
        if any(d % (2 * 2) for d in sam_dims[1:]):
            raise ValueError(f"sam_dims[1:] must be multiples of 4 (PixelShuffle(2)): {sam_dims}")
        self.max_depth = float(max_depth)
        self.remat = remat
        self.out_features = 1  # the decoder ends in the depth map itself (identity head)
        chans = [in_channels[s] for s in STAGES]
        self.dgr = stage_dgr(
            dgr, dgr_factory, in_channels, host="PixelFormer", rngs=rngs, dtype=dtype
        )
        self.psp = PSPHead(
            chans[3],
            psp_channels,
            pool_scales=pool_scales,
            norm_groups=ppm_norm_groups,
            rngs=rngs,
            dtype=dtype,
        )
        # The queries of level k are the pixel-shuffled output of level k + 1; sam4's the PSP's.
        q_dims = [sam_dims[1] // 4, sam_dims[2] // 4, sam_dims[3] // 4, psp_channels]
        levels = [
            SAM(
                chans[k],
                sam_dims[k],
                q_dims[k],
                window=sam_window,
                num_heads=sam_heads[k],
                rngs=rngs,
                dtype=dtype,
            )
            for k in range(4)
        ]
        self.sam1, self.sam2, self.sam3, self.sam4 = levels  # official names, fine to coarse
        self.bcp = BCP(
            psp_channels,
            bcp_hidden,
            num_bins,
            min_depth=min_depth,
            max_depth=max_depth,
            rngs=rngs,
            dtype=dtype,
        )
        self.disp_head = BinHead(sam_dims[0], num_bins, rngs=rngs, dtype=dtype)

    def __call__(self, feats: Mapping[str, jax.Array], *, train: bool = False) -> jax.Array:
        """feats {"stage1".."stage4"} (B, H/s, W/s, C_s) -> depth (B, H, W, 1) in metres."""
        check_stage_sizes(feats, "PixelFormer")
        if self.dgr is not None:
            feats = {s: (self.dgr[s](f) if s in self.dgr else f) for s, f in feats.items()}
        run = nnx.remat(_run_sam) if self.remat else _run_sam
        q4 = self.psp(feats["stage4"], train=train)  # (B, H/32, W/32, psp), >= 0 (ReLU)
        q = q4
        levels = (self.sam4, self.sam3, self.sam2, self.sam1)
        for k, (sam, stage) in enumerate(zip(levels, reversed(STAGES))):
            q = run(sam, feats[stage], q)
            if k < 3:
                q = pixel_shuffle(q, 2)  # (B, h, w, 4C') -> (B, 2h, 2w, C')
        centres = self.bcp(q4)  # (B, bins), from the PSP output, not a SAM's
        depth = self.disp_head(q, centres)  # (B, H/4, W/4, 1)
        _, h, w, _ = depth.shape
        depth = resize_bilinear(depth, (UPSAMPLE * h, UPSAMPLE * w), align_corners=False)
        return depth.astype(jnp.float32)  # metres, float32 for losses


def _run_sam(sam: SAM, e: jax.Array, q: jax.Array) -> jax.Array:
    return sam(e, q)
