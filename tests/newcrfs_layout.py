"""Official key layouts (NeWCRFs `NewCRFDepth`, microsoft Swin) built from the architecture, with
random values, for the converter tests (not collected: no test_ prefix).

The key lists are written from the official architecture (module names, shapes), not from our
conversion rules, so a rule that maps a key wrongly or misses one fails the tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dgr_jax.models.blocks.host_common import relative_position_index
from dgr_jax.models.encoders.swin import SWIN_VARIANTS


@dataclasses.dataclass(frozen=True)
class Arch:
    """A NeWCRFs architecture (Swin + decoder widths)."""

    embed: int = 16
    depths: tuple[int, ...] = (1, 2, 1, 1)
    heads: tuple[int, ...] = (1, 2, 2, 4)
    window: int = 5
    # Level 1 has no proj_x (its input width equals its CRF width), the others have one.
    crf_dims: tuple[int, ...] = (24, 32, 48, 64)
    crf_heads: tuple[int, ...] = (2, 2, 4, 4)
    crf_window: int = 7
    crf_depth: int = 2
    psp: int = 32
    pools: tuple[int, ...] = (1, 2, 3, 6)


def arch_of(model_cfg) -> Arch:
    """The Arch that `build_model(model_cfg)` builds (Swin variant table + decoder widths)."""
    enc, dec = model_cfg["encoder"], model_cfg["decoder"]
    variant = SWIN_VARIANTS[enc["variant"]]
    return Arch(
        embed=enc.get("embed_dim") or variant.embed_dim,
        depths=tuple(enc.get("depths") or variant.depths),
        heads=tuple(enc.get("num_heads") or variant.num_heads),
        window=enc["window_size"],
        crf_dims=tuple(dec["crf_dims"]),
        crf_heads=tuple(dec["crf_heads"]),
        crf_window=dec["crf_window"],
        crf_depth=dec["crf_depth"],
        psp=dec["psp_channels"],
        pools=tuple(dec["pool_scales"]),
    )


def _attention_block(b: str, d: int, heads: int, window: int, qkv: str) -> dict[str, tuple]:
    n_qkv = 3 if qkv == "qkv" else 2
    return {
        b + "norm1.weight": (d,),
        b + "norm1.bias": (d,),
        b + "attn.relative_position_bias_table": ((2 * window - 1) ** 2, heads),
        b + "attn.relative_position_index": (window**2, window**2),
        b + f"attn.{qkv}.weight": (n_qkv * d, d),
        b + f"attn.{qkv}.bias": (n_qkv * d,),
        b + "attn.proj.weight": (d, d),
        b + "attn.proj.bias": (d,),
        b + "norm2.weight": (d,),
        b + "norm2.bias": (d,),
        b + "mlp.fc1.weight": (4 * d, d),
        b + "mlp.fc1.bias": (4 * d,),
        b + "mlp.fc2.weight": (d, 4 * d),
        b + "mlp.fc2.bias": (d,),
    }


def official_swin_keys(
    arch: Arch, prefix: str = "", *, classification: bool = False
) -> dict[str, tuple]:
    """Key -> shape of the microsoft Swin layout (dense-prediction backbone or ImageNet
    classifier with its final `norm`, `head` and `attn_mask` buffers)."""
    e = arch.embed
    keys = {
        f"{prefix}patch_embed.proj.weight": (e, 3, 4, 4),
        f"{prefix}patch_embed.proj.bias": (e,),
        f"{prefix}patch_embed.norm.weight": (e,),
        f"{prefix}patch_embed.norm.bias": (e,),
    }
    for i, (depth, heads) in enumerate(zip(arch.depths, arch.heads)):
        d = e * 2**i
        for j in range(depth):
            b = f"{prefix}layers.{i}.blocks.{j}."
            keys.update(_attention_block(b, d, heads, arch.window, "qkv"))
            if classification and j % 2 == 1:
                keys[b + "attn_mask"] = (4, arch.window**2, arch.window**2)
        if i < 3:
            keys[f"{prefix}layers.{i}.downsample.reduction.weight"] = (2 * d, 4 * d)
            keys[f"{prefix}layers.{i}.downsample.norm.weight"] = (4 * d,)
            keys[f"{prefix}layers.{i}.downsample.norm.bias"] = (4 * d,)
        if not classification:
            keys[f"{prefix}norm{i}.weight"] = (d,)
            keys[f"{prefix}norm{i}.bias"] = (d,)
    if classification:
        top = e * 8
        keys.update({"norm.weight": (top,), "norm.bias": (top,)})
        keys.update({"head.weight": (1000, top), "head.bias": (1000,)})
    return keys


def official_newcrfs_keys(arch: Arch, up_mode: str = "bilinear") -> dict[str, tuple]:
    """Key -> shape of `NewCRFDepth.state_dict()`."""
    keys = official_swin_keys(arch, "backbone.")
    chans = [arch.embed * 2**i for i in range(4)]
    for i in range(len(arch.pools)):
        keys[f"decoder.psp_modules.{i}.1.conv.weight"] = (arch.psp, chans[3], 1, 1)
        keys[f"decoder.psp_modules.{i}.1.gn.weight"] = (arch.psp,)
        keys[f"decoder.psp_modules.{i}.1.gn.bias"] = (arch.psp,)
    keys["decoder.bottleneck.conv.weight"] = (arch.psp, chans[3] + len(arch.pools) * arch.psp, 3, 3)
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        keys[f"decoder.bottleneck.bn.{leaf}"] = (arch.psp,)
    keys["decoder.bottleneck.bn.num_batches_tracked"] = ()
    dims = arch.crf_dims
    v_dims = [dims[1] // 4, dims[2] // 4, dims[3] // 4, arch.psp]
    for k, (c, heads) in enumerate(zip(dims, arch.crf_heads)):
        if chans[k] != c:
            keys[f"crf{k}.proj_x.weight"] = (c, chans[k], 3, 3)
            keys[f"crf{k}.proj_x.bias"] = (c,)
        if v_dims[k] != c:
            keys[f"crf{k}.proj_v.weight"] = (c, v_dims[k], 3, 3)
            keys[f"crf{k}.proj_v.bias"] = (c,)
        for j in range(arch.crf_depth):
            b = f"crf{k}.crf_layer.blocks.{j}."
            keys.update(_attention_block(b, c, heads, arch.crf_window, "qk"))
        keys[f"crf{k}.norm_crf.weight"] = (c,)
        keys[f"crf{k}.norm_crf.bias"] = (c,)
    keys["disp_head1.conv1.weight"] = (1, dims[0], 3, 3)
    keys["disp_head1.conv1.bias"] = (1,)
    if up_mode == "mask":
        keys.update({"mask_head.0.weight": (64, dims[0], 3, 3), "mask_head.0.bias": (64,)})
        keys.update({"mask_head.2.weight": (144, 64, 1, 1), "mask_head.2.bias": (144,)})
    return keys


def synthetic_state_dict(keys: dict[str, tuple], seed: int = 0) -> dict[str, np.ndarray]:
    """Random values (small, so a converted model gives finite, non-saturated depth), valid
    `relative_position_index` buffers, BatchNorm variances > 0."""
    rs = np.random.RandomState(seed)
    sd = {}
    for k, shape in keys.items():
        if k.endswith("relative_position_index"):
            sd[k] = relative_position_index(round(np.sqrt(shape[0]))).astype(np.int64)
        elif k.endswith("num_batches_tracked"):
            sd[k] = np.array(1000, np.int64)
        elif k.endswith("running_var"):
            sd[k] = (0.5 + rs.rand(*shape)).astype(np.float32)
        elif len(shape) == 1 and k.endswith("weight"):  # norm scales
            sd[k] = (1.0 + 0.1 * rs.randn(*shape)).astype(np.float32)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            sd[k] = (rs.randn(*shape) / np.sqrt(max(fan_in, 1)) * 0.5).astype(np.float32)
    return sd


def released_layout(sd: dict) -> dict:
    """As in model_nyu.ckpt: {"model": DataParallel state dict, ...training state} (NeWCRFs'
    train.py also stores `best_eval_steps` as a numpy int32 array)."""
    return {
        "model": {f"module.{k}": v for k, v in sd.items()},
        "optimizer": {},
        "global_step": 1,
        "best_eval_steps": np.zeros(10, np.int32),
    }


def to_torch(tree):
    """numpy leaves -> torch tensors (dicts recursed; other values kept)."""
    import torch

    if isinstance(tree, dict):
        return {k: to_torch(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray) and tree.dtype != np.int32:
        return torch.from_numpy(np.ascontiguousarray(tree))
    return tree


def zero_state_dict(keys: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Zero-stride arrays of the given shapes (no memory even for Swin-L), with valid
    `relative_position_index` buffers: enough to check a conversion's paths and shapes."""
    sd = {}
    for k, shape in keys.items():
        if k.endswith("relative_position_index"):
            sd[k] = relative_position_index(round(np.sqrt(shape[0]))).astype(np.int64)
        else:
            sd[k] = np.broadcast_to(np.float32(0), shape)
    return sd
