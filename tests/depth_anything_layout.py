"""The official Depth Anything V2 state-dict layout (`DepthAnythingV2`: DINOv2 + DPTHead), built
from the architecture with random values, for the converter tests (not collected).

Key names and shapes are written from the official module tree (`depth_anything_v2/dpt.py`,
`dinov2.py`, `util/blocks.py`), not from our conversion rules, so a wrong or missing rule fails.
"""

from __future__ import annotations

import numpy as np

from dgr_jax.convert.depth_anything import ENCODERS, PATCH


def official_state_dict(encoder: str = "tiny_test", grid: int = 2, seed: int = 0) -> dict:
    """{key: float32 array} of a DepthAnythingV2 with `encoder`'s sizes; position embeddings
    stored for a `grid` x `grid` patch grid (37 in the releases)."""
    spec = ENCODERS[encoder]
    rng = np.random.RandomState(seed)
    d, f, ch = spec.width, spec.features, spec.out_channels
    sd: dict[str, tuple] = {
        "pretrained.cls_token": (1, 1, d),
        "pretrained.pos_embed": (1, 1 + grid * grid, d),
        "pretrained.mask_token": (1, d),
        "pretrained.patch_embed.proj.weight": (d, 3, PATCH, PATCH),
        "pretrained.patch_embed.proj.bias": (d,),
        "pretrained.norm.weight": (d,),
        "pretrained.norm.bias": (d,),
    }
    for i in range(spec.depth):
        b = f"pretrained.blocks.{i}."
        sd.update(
            {
                b + "norm1.weight": (d,),
                b + "norm1.bias": (d,),
                b + "attn.qkv.weight": (3 * d, d),
                b + "attn.qkv.bias": (3 * d,),
                b + "attn.proj.weight": (d, d),
                b + "attn.proj.bias": (d,),
                b + "ls1.gamma": (d,),
                b + "norm2.weight": (d,),
                b + "norm2.bias": (d,),
                b + "mlp.fc1.weight": (4 * d, d),
                b + "mlp.fc1.bias": (4 * d,),
                b + "mlp.fc2.weight": (d, 4 * d),
                b + "mlp.fc2.bias": (d,),
                b + "ls2.gamma": (d,),
            }
        )
    h = "depth_head."
    for i, c in enumerate(ch):
        sd[h + f"projects.{i}.weight"] = (c, d, 1, 1)
        sd[h + f"projects.{i}.bias"] = (c,)
        sd[h + f"scratch.layer{i + 1}_rn.weight"] = (f, c, 3, 3)
    sd[h + "resize_layers.0.weight"] = (ch[0], ch[0], 4, 4)  # ConvTranspose2d (I, O, k, k)
    sd[h + "resize_layers.0.bias"] = (ch[0],)
    sd[h + "resize_layers.1.weight"] = (ch[1], ch[1], 2, 2)
    sd[h + "resize_layers.1.bias"] = (ch[1],)
    sd[h + "resize_layers.3.weight"] = (ch[3], ch[3], 3, 3)
    sd[h + "resize_layers.3.bias"] = (ch[3],)
    for r in range(1, 5):
        n = h + f"scratch.refinenet{r}."
        sd[n + "out_conv.weight"] = (f, f, 1, 1)
        sd[n + "out_conv.bias"] = (f,)
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                sd[n + f"{unit}.{conv}.weight"] = (f, f, 3, 3)
                sd[n + f"{unit}.{conv}.bias"] = (f,)
    sd[h + "scratch.output_conv1.weight"] = (f // 2, f, 3, 3)
    sd[h + "scratch.output_conv1.bias"] = (f // 2,)
    sd[h + "scratch.output_conv2.0.weight"] = (32, f // 2, 3, 3)
    sd[h + "scratch.output_conv2.0.bias"] = (32,)
    sd[h + "scratch.output_conv2.2.weight"] = (1, 32, 1, 1)
    sd[h + "scratch.output_conv2.2.bias"] = (1,)
    out = {}
    for key, shape in sd.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = 1.0 / np.sqrt(fan_in) if len(shape) > 1 else 0.1
        out[key] = (scale * rng.randn(*shape)).astype(np.float32)
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "gamma")):
            out[key] += 1.0
    out[h + "scratch.output_conv2.2.bias"][:] = 0.3  # mostly positive relative depth
    return out
