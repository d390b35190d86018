"""Official NeWCRFs checkpoints (aliyun/NeWCRFs) -> a dgr_jax DepthModel's weights.

    python -m dgr_jax.convert --newcrfs-ckpt model_nyu.ckpt --variant nyu --out W/newcrfs_nyu
    python eval.py --config configs/nyu_newcrfs.py --workdir DIR --config.init_from=W/newcrfs_nyu

Checkpoint layout [authors' code, read for key names only; d327bf7]: `model_nyu.ckpt` /
`model_kittieigen.ckpt` are {"model": state_dict, ...} saved from a DataParallel /
DistributedDataParallel `NewCRFDepth`, so every key starts with `module.`:
  backbone.*                                  Swin (microsoft dense layout, norm0..norm3)
  decoder.psp_modules.{i}.1.{conv,gn}.*       PSP pooling branches (ConvModule with GroupNorm)
  decoder.bottleneck.{conv,bn}.*              PSP bottleneck (ConvModule with BatchNorm)
  crf{k}.proj_x.*, crf{k}.proj_v.*            3x3 projections (absent when widths agree)
  crf{k}.crf_layer.blocks.{j}.{norm1,attn.qk,attn.proj,attn.relative_position_*,norm2,mlp.*}
  crf{k}.norm_crf.*
  disp_head1.conv1.*                          disparity head
  mask_head.{0,2}.*                           only in the (unused upstream) "mask" up mode

[ours] Rules map each key onto the DepthModel that `build_model` makes of configs/nyu_newcrfs.py
({"encoder": Swin, "decoder": NeWCRFsDecoder, "head": identity (no variables)});
`infer_newcrfs_config` reads every width/depth/window from the weights, so a converted
checkpoint rebuilds its model without guessing; `convert_newcrfs_checkpoint` returns what the CLI
writes (`dgr_jax/convert/checkpoint.py` format, prefix [], i.e. the whole model).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dgr_jax import protocol
from dgr_jax.convert.checkpoint import ConvertedWeights
from dgr_jax.convert.swin_timm import infer_swin_config, swin_rules
from dgr_jax.convert.torch_layout import Rule, map_state_dict, unflatten

_CRF_BLOCK = r"crf([0-3])\.crf_layer\.blocks\.(\d+)"
# Official defaults we cannot read from the weights (NewCRFDepth.__init__, PSP/PPM).
OFFICIAL_POOL_SCALES = (1, 2, 3, 6)
OFFICIAL_PPM_NORM_GROUPS = 256
VARIANT_MAX_DEPTH = {"nyu": protocol.NYU_MAX_DEPTH, "kitti": protocol.KITTI_MAX_DEPTH}


def _crf(m: re.Match, *tail) -> tuple:
    return ("decoder", f"crf{m[1]}", "blocks", int(m[2]), *tail)


def psp_rules() -> list[Rule]:
    """The PSP head under the official `decoder.` (mmcv ConvModules; NeWCRFs and PixelFormer)."""
    psp = ("decoder", "psp")
    return [
        Rule(
            r"decoder\.psp_modules\.(\d+)\.1\.conv",
            lambda m: (*psp, "stages", int(m[1]), "conv"),
            "conv",
        ),
        Rule(
            r"decoder\.psp_modules\.(\d+)\.1\.gn",
            lambda m: (*psp, "stages", int(m[1]), "norm"),
            "gn",
        ),
        Rule(r"decoder\.bottleneck\.conv", (*psp, "bottleneck", "conv"), "conv"),
        Rule(r"decoder\.bottleneck\.bn", (*psp, "bottleneck", "norm"), "bn"),
    ]


def infer_psp_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """psp_channels, pool_scales and ppm_norm_groups of the official PSP in `sd`."""
    n_pool = len({m[1] for key in sd if (m := re.match(r"decoder\.psp_modules\.(\d+)\.", key))})
    if n_pool != len(OFFICIAL_POOL_SCALES):
        raise ValueError(f"expected {len(OFFICIAL_POOL_SCALES)} PSP branches, found {n_pool}")
    psp_channels = int(np.shape(sd["decoder.bottleneck.conv.weight"])[0])
    return {
        "psp_channels": psp_channels,
        "pool_scales": OFFICIAL_POOL_SCALES,
        # GroupNorm(256) on 512 channels upstream: 2 channels per group; narrower heads
        # (not released) keep 2 channels per group.
        "ppm_norm_groups": OFFICIAL_PPM_NORM_GROUPS if psp_channels == 512 else psp_channels // 2,
    }


def infer_backbone_config(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Swin encoder kwargs (without the name) of the official `backbone.` in `sd`."""
    enc = infer_swin_config(sd, "backbone.")
    return {
        "variant": "T",  # every field below overrides the variant table
        "window_size": enc["window_size"],
        "patch_size": enc["patch_size"],
        "embed_dim": enc["embed_dim"],
        "depths": enc["depths"],
        "num_heads": enc["num_heads"],
    }


def newcrfs_rules() -> list[Rule]:
    """Rules for the official NewCRFDepth state dict (without `module.`)."""
    dec = ("decoder",)
    return [
        *swin_rules("backbone.", ("encoder",)),
        *psp_rules(),
        Rule(r"crf([0-3])\.(proj_x|proj_v)", lambda m: (*dec, f"crf{m[1]}", m[2]), "conv"),
        Rule(_CRF_BLOCK + r"\.(norm1|norm2)", lambda m: _crf(m, m[3]), "ln"),
        Rule(_CRF_BLOCK + r"\.attn", lambda m: _crf(m, "attn"), "attn"),
        Rule(_CRF_BLOCK + r"\.attn\.(qk|proj)", lambda m: _crf(m, "attn", m[3]), "linear"),
        Rule(_CRF_BLOCK + r"\.mlp\.(fc1|fc2)", lambda m: _crf(m, "mlp", m[3]), "linear"),
        Rule(r"crf([0-3])\.norm_crf", lambda m: (*dec, f"crf{m[1]}", "norm"), "ln"),
        Rule(r"disp_head1\.conv1", (*dec, "disp_head", "conv"), "conv"),
        Rule(r"mask_head\.0", (*dec, "mask_head", "conv1"), "conv"),
        Rule(r"mask_head\.2", (*dec, "mask_head", "conv2"), "conv"),
    ]


def strip_wrappers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """{"model": sd} -> sd, and drop the DataParallel `module.` prefix."""
    if "model" in sd and isinstance(sd["model"], Mapping):
        sd = sd["model"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def convert_newcrfs_state_dict(sd: Mapping[str, Any]) -> dict:
    """Official NeWCRFs state dict -> nested pure dict {"encoder": ..., "decoder": ...}.

    Every key is consumed exactly once (BatchNorm `num_batches_tracked` and the
    `relative_position_index` buffers are checked/dropped); anything unknown raises.
    """
    return unflatten(map_state_dict(strip_wrappers(sd), newcrfs_rules()))


# Keys every NewCRFDepth state dict has (whatever the Swin size).
_SIGNATURE = ("backbone.patch_embed.proj.weight", "crf0.norm_crf.weight", "disp_head1.conv1.weight")


def check_is_newcrfs(sd: Mapping[str, Any]) -> None:
    """Raise a ValueError saying what the state dict looks like if it is not NeWCRFs'."""
    missing = [k for k in _SIGNATURE if k not in sd]
    if not missing:
        return
    hint = ""
    if "patch_embed.proj.weight" in sd or any("patch_embeddings" in k for k in sd):
        hint = " It looks like a Swin backbone: use --swin-ckpt."
    elif "sam1.norm_sam.weight" in sd:
        hint = " It looks like a PixelFormer checkpoint: use --pixelformer-ckpt."
    first = sorted(sd)[:3]
    raise ValueError(
        f"not an official NeWCRFs (NewCRFDepth) checkpoint: no {missing[0]} "
        f"(first keys: {first}).{hint}"
    )


def infer_newcrfs_config(sd: Mapping[str, Any], *, max_depth: float) -> dict[str, dict]:
    """Encoder and decoder kwargs (config.model.encoder / .decoder without names) of the model
    that matches an official state dict."""
    sd = strip_wrappers(sd)
    check_is_newcrfs(sd)
    swin = infer_backbone_config(sd)
    crf_dims, crf_heads, crf_depth = [], [], 0
    for k in range(4):
        crf_dims.append(int(np.shape(sd[f"crf{k}.norm_crf.weight"])[0]))
        table = np.shape(sd[f"crf{k}.crf_layer.blocks.0.attn.relative_position_bias_table"])
        crf_heads.append(int(table[1]))
        crf_window = (round(np.sqrt(table[0])) + 1) // 2
        crf_depth = len(
            {m[1] for key in sd if (m := re.match(rf"crf{k}\.crf_layer\.blocks\.(\d+)\.", key))}
        )
    decoder = {
        "max_depth": float(max_depth),
        "crf_dims": tuple(crf_dims),
        "crf_heads": tuple(crf_heads),
        "crf_window": int(crf_window),
        "crf_depth": crf_depth,
        **infer_psp_config(sd),
        "up_mode": "mask" if "mask_head.0.weight" in sd else "bilinear",
    }
    return {"encoder": swin, "decoder": decoder}


def convert_newcrfs_checkpoint(
    sd: Mapping[str, Any], *, variant: str, source: Mapping[str, Any] | None = None
) -> ConvertedWeights:
    """Official NeWCRFs checkpoint (state dict, wrapped or not) -> a whole DepthModel's weights.

    Args:
        sd: e.g. `torch.load("model_nyu.ckpt")` or its state dict.
        variant: "nyu" or "kitti": fixes `max_depth` (10 m / 80 m), which is not in the weights.
        source: provenance written to model.json.
    """
    if variant not in VARIANT_MAX_DEPTH:
        raise ValueError(f"variant must be one of {sorted(VARIANT_MAX_DEPTH)}, got {variant!r}")
    sd = strip_wrappers(sd)
    cfg = infer_newcrfs_config(sd, max_depth=VARIANT_MAX_DEPTH[variant])
    model_cfg = {
        "encoder": {"name": "swin", **cfg["encoder"]},
        "decoder": {"name": "newcrfs", **cfg["decoder"]},
        "dgr": {"enabled": False},
        "head": {"name": "identity"},
    }
    return ConvertedWeights(
        convert_newcrfs_state_dict(sd),
        model_cfg,
        prefix=(),
        source={**dict(source or {}), "variant": variant},
    )
