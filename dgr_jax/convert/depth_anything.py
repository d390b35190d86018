"""Official Depth Anything V2 checkpoints (DepthAnything/Depth-Anything-V2) -> a DepthModel.

    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vits.pth --encoder vits \
        --out W/da2_vits                                   # relative (affine-invariant inverse)
    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_metric_hypersim_vits.pth \
        --encoder vits --max-depth 20 --out W/da2_metric_vits                  # metric (m)

Checkpoint layout [authors' code, read for key names and constants only; a561b84,
`depth_anything_v2/dpt.py`, `dinov2.py`, `metric_depth/depth_anything_v2/dpt.py`]: a plain state
dict of `DepthAnythingV2` (a fine-tune saved by `metric_depth/train.py` is {"model": sd, ...}
with DistributedDataParallel's `module.` prefix; both are read):
  pretrained.{cls_token, pos_embed, mask_token}      DINOv2 (mask_token unused at inference)
  pretrained.patch_embed.proj                        14x14 stride-14 conv
  pretrained.blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2,
                         ls2.gamma}                  pre-norm blocks, fused qkv, LayerScale
  pretrained.norm                                    applied to every tapped layer
  depth_head.projects.{0-3}, resize_layers.{0,1,3}   DPT reassemble (x4 / x2 transposed convs,
                                                     identity, 3x3 stride-2 conv)
  depth_head.scratch.layer{1-4}_rn                   3x3 convs without bias
  depth_head.scratch.refinenet{1-4}.{resConfUnit1, resConfUnit2, out_conv}
                                                     refinenet4's resConfUnit1 is never called
  depth_head.scratch.output_conv1, output_conv2.{0,2}
The relative and the metric files have the same keys: the metric head ends in sigmoid *
max_depth (`metric_depth/`), the relative one in ReLU. The weights cannot tell them apart, so
`max_depth` (given for metric files, None for relative ones) says which, as the official
`metric_depth/run.py --max-depth` and `run.py` do. Tapped layers and head widths per encoder are
the official `intermediate_layer_idx` / `model_configs` (`ENCODERS` below); the widths are
checked against the weights, so a file of another size is refused with what it is.

[ours] The model is the DepthModel of `configs/nyu_depth_anything_v2.py`: ViT encoder (patch 14,
LayerScale, normed taps, readout ignored) + DPT decoder ("to_next") + relu/sigmoid head, with
`pos_embed_offset=0.1` (the official `interpolate_offset`: torch's scale factor (g + 0.1) / 37
instead of transformers' size=, equal at 518x518 only), so converted official weights
reproduce the official model and `--hf-dir` conversions reproduce transformers'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dgr_jax.convert.checkpoint import ConvertedWeights
from dgr_jax.convert.torch_layout import DROP, Rule, map_state_dict, to_numpy, unflatten

PATCH = 14
POS_EMBED_OFFSET = 0.1  # official DINOv2 `interpolate_offset` (transformers: none)
LAYER_SCALE_INIT = 1.0  # official DINOv2 `init_values`
LAYER_NORM_EPS = 1e-6  # official DINOv2 `partial(nn.LayerNorm, eps=1e-6)`
HEAD_HIDDEN = 32  # official DPTHead `head_features_2`


@dataclass(frozen=True)
class EncoderSpec:
    width: int
    depth: int
    num_heads: int
    out_indices: tuple[int, int, int, int]  # official intermediate_layer_idx
    features: int  # official model_configs "features" (DPT width)
    out_channels: tuple[int, int, int, int]  # official model_configs "out_channels"


# Official `dinov2.py` vit_small/base/large and `run.py` / `metric_depth/run.py` model_configs.
ENCODERS: dict[str, EncoderSpec] = {
    "vits": EncoderSpec(384, 12, 6, (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "vitb": EncoderSpec(768, 12, 12, (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    "vitl": EncoderSpec(1024, 24, 16, (4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
    # Ours, for tests and `:smoke` recipes: the same layout at width 32, 4 blocks.
    "tiny_test": EncoderSpec(32, 4, 2, (0, 1, 2, 3), 16, (8, 16, 32, 32)),
}
_BY_WIDTH = {spec.width: name for name, spec in ENCODERS.items()}
_SIGNATURE = (
    "pretrained.pos_embed",
    "pretrained.patch_embed.proj.weight",
    "depth_head.scratch.output_conv1.weight",
)


def model_config(
    spec: EncoderSpec,
    *,
    max_depth: float | None,
    image_size: tuple[int, int] = (518, 518),
    pos_embed_offset: float = POS_EMBED_OFFSET,
) -> dict[str, Any]:
    """`config.model` of Depth Anything V2 with this encoder; `max_depth` None: relative head."""
    if max_depth is None:
        head = {"name": "relu", "scale": 1.0}
    else:
        head = {"name": "sigmoid", "max_depth": float(max_depth)}
    return {
        "encoder": {
            "name": "vit",
            "variant": None,
            "width": spec.width,
            "depth": spec.depth,
            "num_heads": spec.num_heads,
            "mlp_dim": 4 * spec.width,
            "patch_size": PATCH,
            "image_size": tuple(image_size),
            "layer_norm_eps": LAYER_NORM_EPS,
            "qkv_bias": True,
            "readout": "ignore",
            "out_indices": spec.out_indices,
            "neck_hidden_sizes": spec.out_channels,
            "reassemble_factors": (4, 2, 1, 0.5),
            "layer_scale": LAYER_SCALE_INIT,
            "norm_features": True,
            "pos_embed_interp": "bicubic",
            "pos_embed_offset": pos_embed_offset,
        },
        "decoder": {"name": "dpt", "features": spec.features, "upsample": "to_next"},
        "dgr": {"enabled": False},
        "head": {**head, "hidden": HEAD_HIDDEN, "upsample": "to_output"},
    }


def _layer_scale(leaf: str, x: np.ndarray):
    # `blocks.i.ls{1,2}.gamma`, renamed to `blocks.i.layer_scale{1,2}` by `_prepare`.
    return (leaf, lambda: x) if leaf in ("layer_scale1", "layer_scale2") else None


def _tokens(leaf: str, x: np.ndarray):
    table = {
        "cls_token": ("cls_token", lambda: x),
        "pos_embed": ("position_embeddings", lambda: x),
        "mask_token": (DROP, None),  # masked-image training only
    }
    return table.get(leaf)


def _patchify(leaf: str, x: np.ndarray):
    # Conv (D, 3, p, p) -> our Linear kernel (p*p*3, D) over (row, column, channel) patches.
    table = {
        "weight": ("kernel", lambda: x.transpose(2, 3, 1, 0).reshape(-1, x.shape[0])),
        "bias": ("bias", lambda: x),
    }
    return table.get(leaf)


def _conv_transpose(leaf: str, x: np.ndarray):
    # ConvTranspose2d (I, O, f, f) -> (f, f, I, O).
    table = {"weight": ("kernel", lambda: x.transpose(2, 3, 0, 1)), "bias": ("bias", lambda: x)}
    return table.get(leaf)


KINDS = {
    "layer_scale": _layer_scale,
    "tokens": _tokens,
    "patchify": _patchify,
    "conv_t": _conv_transpose,
}


def depth_anything_rules() -> list[Rule]:
    """Rules for the official state dict (qkv already split into q / k / v)."""
    vit, blk = ("encoder", "vit"), r"pretrained\.blocks\.(\d+)"
    head, scratch = r"depth_head", r"depth_head\.scratch"

    def layer(m: re.Match, *tail) -> tuple:
        return (*vit, "layers", int(m[1]), *tail)

    def fusion(m: re.Match, *tail) -> tuple:  # refinenet4 (coarsest) is our fusion layer 0
        return ("decoder", "fusion_layers", 4 - int(m[1]), *tail)

    unit = {"resConfUnit1": "residual_layer1", "resConfUnit2": "residual_layer2"}
    return [
        Rule(r"pretrained", (*vit, "embeddings"), "tokens"),
        Rule(r"pretrained\.patch_embed\.proj", (*vit, "embeddings", "projection"), "patchify"),
        Rule(blk + r"\.norm1", lambda m: layer(m, "layernorm_before"), "ln"),
        Rule(blk + r"\.norm2", lambda m: layer(m, "layernorm_after"), "ln"),
        Rule(blk + r"\.attn\.(query|key|value)", lambda m: layer(m, "attention", m[2]), "linear"),
        Rule(blk + r"\.attn\.proj", lambda m: layer(m, "attention", "out"), "linear"),
        Rule(blk, layer, "layer_scale"),
        Rule(blk + r"\.mlp\.(fc1|fc2)", lambda m: layer(m, "mlp", m[2]), "linear"),
        Rule(r"pretrained\.norm", (*vit, "layernorm"), "ln"),
        Rule(
            head + r"\.projects\.(\d)",
            lambda m: ("encoder", "reassemble_stage", "layers", int(m[1]), "projection"),
            "conv",
        ),
        Rule(
            head + r"\.resize_layers\.([01])",
            lambda m: ("encoder", "reassemble_stage", "layers", int(m[1]), "resize"),
            "conv_t",
        ),
        Rule(
            head + r"\.resize_layers\.3",
            ("encoder", "reassemble_stage", "layers", 3, "resize"),
            "conv",
        ),
        Rule(scratch + r"\.layer(\d)_rn", lambda m: ("decoder", "convs", int(m[1]) - 1), "conv"),
        Rule(
            scratch + r"\.refinenet(\d)\.(resConfUnit[12])\.conv([12])",
            lambda m: fusion(m, unit[m[2]], f"convolution{m[3]}"),
            "conv",
        ),
        Rule(scratch + r"\.refinenet(\d)\.out_conv", lambda m: fusion(m, "projection"), "conv"),
        Rule(scratch + r"\.output_conv1", ("head", "conv1"), "conv"),
        Rule(scratch + r"\.output_conv2\.0", ("head", "conv2"), "conv"),
        Rule(scratch + r"\.output_conv2\.2", ("head", "conv3"), "conv"),
    ]


def strip_wrappers(sd: Mapping[str, Any]) -> dict[str, Any]:
    """{"model": sd} -> sd (`load_torch_file` already unwraps it), without `module.`."""
    if "model" in sd and isinstance(sd["model"], Mapping):
        sd = sd["model"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def check_is_depth_anything(sd: Mapping[str, Any]) -> None:
    """Raise a ValueError saying what the state dict looks like if it is not the official
    DepthAnythingV2's."""
    missing = [k for k in _SIGNATURE if k not in sd]
    if not missing:
        return
    hint = ""
    if any(k.startswith("backbone.embeddings.") for k in sd):
        hint = " It looks like a transformers DepthAnythingForDepthEstimation: use --hf-dir."
    elif "crf0.norm_crf.weight" in sd:
        hint = " It looks like a NeWCRFs checkpoint: use --newcrfs-ckpt."
    elif "sam1.norm_sam.weight" in sd:
        hint = " It looks like a PixelFormer checkpoint: use --pixelformer-ckpt."
    elif "pos_embed" in sd and "blocks.0.attn.qkv.weight" in sd:
        hint = " It looks like a DINOv2 backbone alone, without the DPT head."
    raise ValueError(
        f"not an official Depth Anything V2 (DepthAnythingV2) checkpoint: no {missing[0]} "
        f"(first keys: {sorted(sd)[:3]}).{hint}"
    )


def infer_encoder(sd: Mapping[str, Any]) -> str:
    """vits / vitb / vitl, from the width and depth of the weights."""
    width = int(np.shape(sd["pretrained.cls_token"])[-1])
    depth = len({m[1] for k in sd if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))})
    name = _BY_WIDTH.get(width)
    if name is None or ENCODERS[name].depth != depth:
        raise ValueError(
            f"a DINOv2 of width {width} and {depth} blocks is not one of the released encoders "
            f"({', '.join(f'{n}: {s.width} x {s.depth}' for n, s in ENCODERS.items())})"
        )
    return name


def _prepare(sd: Mapping[str, Any]) -> dict[str, Any]:
    """`blocks.i.attn.qkv` (3D, D) -> `attn.query` / `attn.key` / `attn.value` (D, D) each;
    `blocks.i.ls{1,2}.gamma` -> `blocks.i.layer_scale{1,2}` (a variable of our block)."""
    out = {}
    for key, value in sd.items():
        ls = re.fullmatch(r"(pretrained\.blocks\.\d+)\.ls([12])\.gamma", key)
        if ls:
            out[f"{ls[1]}.layer_scale{ls[2]}"] = value
            continue
        m = re.fullmatch(r"(pretrained\.blocks\.\d+\.attn)\.qkv\.(weight|bias)", key)
        if not m:
            out[key] = value
            continue
        parts = np.split(to_numpy(value), 3, axis=0)
        for name, part in zip(("query", "key", "value"), parts, strict=True):
            out[f"{m[1]}.{name}.{m[2]}"] = part
    return out


def _check_widths(sd: Mapping[str, Any], name: str, spec: EncoderSpec) -> None:
    features = int(np.shape(sd["depth_head.scratch.layer1_rn.weight"])[0])
    channels = tuple(int(np.shape(sd[f"depth_head.projects.{i}.weight"])[0]) for i in range(4))
    if (features, channels) != (spec.features, spec.out_channels):
        raise ValueError(
            f"DPT head widths {features} / {list(channels)} differ from the official {name} "
            f"configuration ({spec.features} / {list(spec.out_channels)})"
        )


def convert_depth_anything_checkpoint(
    sd: Mapping[str, Any],
    *,
    encoder: str,
    max_depth: float | None = None,
    source: Mapping[str, Any] | None = None,
) -> ConvertedWeights:
    """Official Depth Anything V2 state dict -> a whole DepthModel's weights.

    Args:
        sd: e.g. `torch.load("depth_anything_v2_vits.pth")` (or a metric_depth fine-tune).
        encoder: "vits", "vitb" or "vitl" (the official `--encoder`); must match the weights.
        max_depth: None for a relative checkpoint (ReLU head); the metric range in metres for
            a metric one (sigmoid * max_depth; the official Hypersim files use 20, the Virtual
            KITTI ones 80).
        source: provenance written to model.json.

    Raises:
        ValueError: not a Depth Anything V2 file, another encoder, or widths that differ.
        KeyError: keys no rule consumes (listed) or two keys with one target.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {encoder!r}")
    if max_depth is not None and not max_depth > 0:
        raise ValueError(f"max_depth must be positive, got {max_depth}")
    sd = strip_wrappers(sd)
    check_is_depth_anything(sd)
    found = infer_encoder(sd)
    if found != encoder:
        raise ValueError(
            f"the weights are a {found} Depth Anything V2 (width "
            f"{ENCODERS[found].width}), not {encoder}: pass --encoder {found}"
        )
    spec = ENCODERS[encoder]
    _check_widths(sd, encoder, spec)
    grid = round(np.sqrt(np.shape(sd["pretrained.pos_embed"])[1] - 1))
    tree = unflatten(map_state_dict(_prepare(sd), depth_anything_rules(), kinds=KINDS))
    kind = "relative" if max_depth is None else "metric"
    return ConvertedWeights(
        tree,
        model_config(spec, max_depth=max_depth, image_size=(grid * PATCH, grid * PATCH)),
        prefix=(),
        source={**dict(source or {}), "encoder": encoder, "kind": kind},
        dropped={"pretrained.mask_token": "masked-image pre-training token, unused in depth"},
    )
