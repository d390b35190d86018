"""Official PixelFormer checkpoints (ashutosh1807/PixelFormer) -> a dgr_jax DepthModel's weights.

    python -m dgr_jax.convert --pixelformer-ckpt nyu.pth --variant nyu --out W/pixelformer_nyu
    python eval.py --config configs/nyu_pixelformer.py --workdir DIR \
        --config.init_from=W/pixelformer_nyu

Checkpoint layout [authors' code, read for key names only; bb0ae9f]: the released `nyu.pth` /
`kitti.pth` (and what its train.py saves) are {"model": state_dict} of a DataParallel /
DistributedDataParallel `PixelFormer`, so every key starts with `module.`; its eval.py loads
them strictly. 485 entries for large07:
  backbone.*                                  Swin (microsoft dense layout, norm0..norm3)
  decoder.psp_modules.{i}.1.{conv,gn}.*       PSP ("PQI") pooling branches (GroupNorm, all four)
  decoder.bottleneck.{conv,bn}.*              PSP bottleneck (ConvModule with BatchNorm)
  sam{k}.proj_e.*, sam{k}.proj_q.*            3x3 projections (absent when widths agree)
  sam{k}.proj.*                               a 3x3 conv the forward never calls: read, dropped
  sam{k}.sam_block.{norm1,normv,attn.q,attn.kv,attn.proj,attn.relative_position_*,norm2,mlp.*}
  sam{k}.norm_sam.*
  bcp.fc1.*, bcp.fc2.*                        bin centre predictor
  disp_head1.conv1.*                          256-bin head

Neither max_depth nor the BCP's min_depth is in the weights: `--variant` sets max_depth (nyu:
10 m, kitti: 80 m, the official --max_depth); min_depth is the official constructor default 0.1
for both (`protocol.PIXELFORMER_MIN_DEPTH`), which no official script overrides.

[ours] Rules map each key onto the DepthModel that `build_model` makes of
configs/nyu_pixelformer.py ({"encoder": Swin, "decoder": PixelFormerDecoder, "head": identity});
`infer_pixelformer_config` reads every width, head count and window from the weights;
`convert_pixelformer_checkpoint` returns what the CLI writes (`dgr_jax/convert/checkpoint.py`
format, prefix [], i.e. the whole model), with the dropped `samN.proj` keys listed in
model.json and in the CLI's summary line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dgr_jax import protocol
from dgr_jax.convert.checkpoint import ConvertedWeights
from dgr_jax.convert.newcrfs import (
    VARIANT_MAX_DEPTH,
    infer_backbone_config,
    infer_psp_config,
    psp_rules,
    strip_wrappers,
)
from dgr_jax.convert.swin_timm import swin_rules
from dgr_jax.convert.torch_layout import Rule, map_state_dict, unflatten

_SAM_BLOCK = r"sam([1-4])\.sam_block"
# Built by `SAM.__init__` (networks/SAM.py) but never called in `SAM.forward`: the released
# files hold it (a strict torch load needs it) with values no gradient ever touched.
UNUSED = r"sam[1-4]\.proj\.(weight|bias)"
UNUSED_WHY = "SAM.proj: built but never called by the official forward; not part of our model"
# Keys every PixelFormer state dict has (whatever the Swin size).
_SIGNATURE = (
    "backbone.patch_embed.proj.weight",
    "sam1.norm_sam.weight",
    "bcp.fc1.weight",
    "disp_head1.conv1.weight",
)


def _sam(m: re.Match, *tail) -> tuple:
    return ("decoder", f"sam{m[1]}", *tail)


def pixelformer_rules() -> list[Rule]:
    """Rules for the official PixelFormer state dict (without `module.`)."""
    dec = ("decoder",)
    return [
        *swin_rules("backbone.", ("encoder",)),
        *psp_rules(),
        Rule(r"sam([1-4])\.(proj_e|proj_q)", lambda m: _sam(m, m[2]), "conv"),
        Rule(_SAM_BLOCK + r"\.(norm1|normv|norm2)", lambda m: _sam(m, "sam_block", m[2]), "ln"),
        Rule(_SAM_BLOCK + r"\.attn", lambda m: _sam(m, "sam_block", "attn"), "attn"),
        Rule(
            _SAM_BLOCK + r"\.attn\.(q|kv|proj)",
            lambda m: _sam(m, "sam_block", "attn", m[2]),
            "linear",
        ),
        Rule(
            _SAM_BLOCK + r"\.mlp\.(fc1|fc2)", lambda m: _sam(m, "sam_block", "mlp", m[2]), "linear"
        ),
        Rule(r"sam([1-4])\.norm_sam", lambda m: _sam(m, "norm_sam"), "ln"),
        Rule(r"bcp\.(fc1|fc2)", lambda m: (*dec, "bcp", m[1]), "linear"),
        Rule(r"disp_head1\.conv1", (*dec, "disp_head", "conv"), "conv"),
    ]


def check_is_pixelformer(sd: Mapping[str, Any]) -> None:
    """Raise a ValueError saying what the state dict looks like if it is not PixelFormer's."""
    missing = [k for k in _SIGNATURE if k not in sd]
    if not missing:
        return
    hint = ""
    if "crf0.norm_crf.weight" in sd:
        hint = " It looks like a NeWCRFs checkpoint: use --newcrfs-ckpt."
    elif "patch_embed.proj.weight" in sd or any("patch_embeddings" in k for k in sd):
        hint = " It looks like a Swin backbone: use --swin-ckpt."
    first = sorted(sd)[:3]
    raise ValueError(
        f"not an official PixelFormer checkpoint: no {missing[0]} (first keys: {first}).{hint}"
    )


def convert_pixelformer_state_dict(sd: Mapping[str, Any]) -> dict:
    """Official PixelFormer state dict -> nested pure dict {"encoder": ..., "decoder": ...}.

    Every key is consumed exactly once: mapped, checked and dropped (the
    `relative_position_index` and `num_batches_tracked` buffers), or dropped as unused
    (`samN.proj`); anything else raises.
    """
    return unflatten(map_state_dict(strip_wrappers(sd), pixelformer_rules(), drop=[UNUSED]))


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"damaged PixelFormer checkpoint: no {key}")
    return tuple(int(n) for n in np.shape(sd[key]))


def infer_pixelformer_config(sd: Mapping[str, Any], *, max_depth: float) -> dict[str, dict]:
    """Encoder and decoder kwargs (config.model.encoder / .decoder without names) of the model
    that matches an official state dict."""
    sd = strip_wrappers(sd)
    check_is_pixelformer(sd)
    try:
        swin = infer_backbone_config(sd)
        psp = infer_psp_config(sd)
    except KeyError as e:
        raise ValueError(f"damaged PixelFormer checkpoint: no {e.args[0]}") from None
    sam_dims, sam_heads, windows = [], [], set()
    for k in range(1, 5):
        sam_dims.append(_shape(sd, f"sam{k}.norm_sam.weight")[0])
        table = _shape(sd, f"sam{k}.sam_block.attn.relative_position_bias_table")
        sam_heads.append(table[1])
        windows.add((round(np.sqrt(table[0])) + 1) // 2)
    if len(windows) != 1:
        raise ValueError(f"damaged PixelFormer checkpoint: SAM windows differ {sorted(windows)}")
    num_bins = _shape(sd, "disp_head1.conv1.weight")[0]
    bcp_hidden, bcp_in = _shape(sd, "bcp.fc1.weight")
    if _shape(sd, "bcp.fc2.weight") != (num_bins, bcp_hidden) or bcp_in != psp["psp_channels"]:
        raise ValueError(
            "damaged PixelFormer checkpoint: bcp.fc1 "
            f"{_shape(sd, 'bcp.fc1.weight')}, bcp.fc2 {_shape(sd, 'bcp.fc2.weight')}, "
            f"{num_bins} bins and PSP width {psp['psp_channels']} do not fit together"
        )
    decoder = {
        "max_depth": float(max_depth),
        "min_depth": protocol.PIXELFORMER_MIN_DEPTH,
        "sam_dims": tuple(sam_dims),
        "sam_heads": tuple(sam_heads),
        "sam_window": int(windows.pop()),
        **psp,
        "num_bins": num_bins,
        "bcp_hidden": bcp_hidden,
    }
    return {"encoder": swin, "decoder": decoder}


def convert_pixelformer_checkpoint(
    sd: Mapping[str, Any], *, variant: str, source: Mapping[str, Any] | None = None
) -> ConvertedWeights:
    """Official PixelFormer checkpoint (state dict, wrapped or not) -> a whole DepthModel's weights.

    Args:
        sd: e.g. `torch.load("nyu.pth")` or its state dict.
        variant: "nyu" or "kitti": fixes `max_depth` (10 m / 80 m), which is not in the weights.
        source: provenance written to model.json.
    """
    if variant not in VARIANT_MAX_DEPTH:
        raise ValueError(f"variant must be one of {sorted(VARIANT_MAX_DEPTH)}, got {variant!r}")
    sd = strip_wrappers(sd)
    cfg = infer_pixelformer_config(sd, max_depth=VARIANT_MAX_DEPTH[variant])
    model_cfg = {
        "encoder": {"name": "swin", **cfg["encoder"]},
        "decoder": {"name": "pixelformer", **cfg["decoder"]},
        "dgr": {"enabled": False},
        "head": {"name": "identity"},
    }
    return ConvertedWeights(
        convert_pixelformer_state_dict(sd),
        model_cfg,
        prefix=(),
        source={**dict(source or {}), "variant": variant},
        dropped={k: UNUSED_WHY for k in sorted(sd) if re.fullmatch(UNUSED, k)},
    )
