"""The sparse-pixel mask network G: image -> per-pixel keep probability M in [0, 1].

[paper] (method.md section 2) Two mask networks, G_C and G_T, each predict a mask from the RGB
image; the masked image is fed to a frozen depth network. [Hu et al., ICCV 2019] G is an
encoder-decoder with a sigmoid output at input resolution.

[ours] A small U-Net: `len(widths)` levels of two 3x3 conv + GroupNorm + ReLU blocks, a stride-2
conv entering each deeper level, bilinear upsampling to the skip's exact size (odd sides work),
concatenation with the skip, two more conv blocks, and a 1x1 conv to one logit per pixel.
GroupNorm instead of BatchNorm: the mask nets train for a few hundred steps on batches of 8, so
there are no running statistics to converge and the mask is the same function in training and
in evaluation (hence no `train` flag). The final bias starts at `logit_bias_init` (3.0 ->
M ~ 0.95 everywhere), so training starts near the unmasked image, where the frozen network's
prediction is the target, and the sparsity penalty then removes what the network does not need.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from dgr_jax.models.blocks.layers import conv


class ConvGNReLU(nnx.Module):
    """3x3 conv (no bias: GroupNorm follows) -> GroupNorm -> ReLU."""

    def __init__(
        self, c_in: int, c_out: int, *, stride: int = 1, dtype=jnp.float32, rngs: nnx.Rngs
    ):
        self.conv = conv(c_in, c_out, 3, stride=stride, use_bias=False, dtype=dtype, rngs=rngs)
        # Groups of 4 channels at most 8 groups: small widths (16) still get per-group statistics.
        self.norm = nnx.GroupNorm(
            c_out, num_groups=min(8, max(1, c_out // 4)), epsilon=1e-5, dtype=dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.norm(self.conv(x)))


class MaskNet(nnx.Module):
    """images (B, H, W, 3) ImageNet-normalised -> mask (B, H, W) float32 in (0, 1).

    Args:
        widths: channels per level, finest first; level i > 0 runs at 1 / 2^i of the input.
        logit_bias_init: initial bias of the output logit (sigmoid(3) = 0.95).
        dtype: compute dtype (parameters stay float32).
        rngs: parameter initialisation.
    """

    def __init__(
        self,
        widths: Sequence[int] = (16, 32, 64),
        *,
        logit_bias_init: float = 3.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        widths = tuple(int(w) for w in widths)
        if not widths:
            raise ValueError("MaskNet needs at least one level")
        self.widths = widths
        down, c_in = [], 3
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down.append(
                nnx.List(
                    [
                        ConvGNReLU(c_in, w, stride=stride, dtype=dtype, rngs=rngs),
                        ConvGNReLU(w, w, dtype=dtype, rngs=rngs),
                    ]
                )
            )
            c_in = w
        self.down = nnx.List(down)
        up = []
        for i in range(len(widths) - 2, -1, -1):  # coarse to fine: in = deeper + skip
            up.append(
                nnx.List(
                    [
                        ConvGNReLU(widths[i + 1] + widths[i], widths[i], dtype=dtype, rngs=rngs),
                        ConvGNReLU(widths[i], widths[i], dtype=dtype, rngs=rngs),
                    ]
                )
            )
        self.up = nnx.List(up)
        self.head = conv(
            widths[0],
            1,
            1,
            dtype=dtype,
            rngs=rngs,
        )
        self.head.bias[...] = jnp.full((1,), logit_bias_init, jnp.float32)

    def logits(self, images: jax.Array) -> jax.Array:
        """Pre-sigmoid mask logits, (B, H, W) float32."""
        x = images
        skips = []
        for block in self.down:
            for layer in block:
                x = layer(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            b, h, w, c = x.shape
            # Upsample to the skip's exact size (ceil-halving makes odd sides round-trip).
            x = jax.image.resize(x, (b, skip.shape[1], skip.shape[2], c), "bilinear")
            x = jnp.concatenate([x, skip], axis=-1)
            for layer in block:
                x = layer(x)
        return self.head(x)[..., 0].astype(jnp.float32)

    def __call__(self, images: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(self.logits(images))
