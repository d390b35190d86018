"""HF transformers (PyTorch) models -> dgr_jax NNX modules with the same weights.

Ours. Supported classes (instantiated models, any config of the supported kind):
    DPTForDepthEstimation      -> DepthModel (ViT encoder with HF's readout / neck sizes /
                                  reassemble factors / out indices, DPT decoder with or without
                                  batch norm in the fusion residual, "relu" head, no DGR)
    DepthAnythingForDepthEstimation (Depth Anything V1/V2, DINOv2 backbone without SwiGLU
                                  or registers) -> DepthModel (ViT encoder with patch 14,
                                  LayerScale and normed features, "to_next" decoder upsampling,
                                  "relu" (relative) or "sigmoid" (metric) head)
    ViTModel (ViTForImageClassification.vit)       -> dgr_jax.models.encoders.vit.ViT
    ResNetModel (ResNetForImageClassification.resnet) -> dgr_jax.models.encoders.resnet.ResNet
Not yet: hybrid DPT and DPT with a `backbone_config` (BEiT, Swinv2).

Inputs of the converted modules are NHWC float32 with the values HF gets as NCHW
`pixel_values`. Weights are mapped by renaming HF state-dict keys (ordered regex rules) to
our module paths; the leaf transform follows the type of the target module (Linear: W^T,
Conv: OIHW -> HWIO, strided transposed conv: IOHW -> HWIO, norms: weight -> scale, BatchNorm
running stats -> mean/var). Every HF tensor must be consumed (except the ones listed as unused
by the model) and every parameter of our module assigned, or the conversion fails.

torch and transformers are imported lazily: `dgr_jax` never needs them outside this package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from dgr_jax.convert.checkpoint import Converted
from dgr_jax.models import build_encoder, build_model
from dgr_jax.models.blocks import layers
from dgr_jax.models.encoders.vit import VARIANTS

_IGNORE = "__ignore__"


def from_hf(hf_model: Any) -> nnx.Module:
    """Convert an instantiated transformers model; see the module docstring for the classes.

    Args:
        hf_model: e.g. `DPTForDepthEstimation`, `ViTModel` or `ResNetModel`.

    Returns:
        The NNX module with the weights loaded; call it in inference mode (`train=False`, the
        default), on NHWC images.
    """
    return convert_hf(hf_model).module


def convert_hf(hf_model: Any) -> Converted:
    """Like `from_hf`, also returning the model config and the module's place in a DepthModel."""
    name = type(hf_model).__name__
    if name not in _CONVERTERS:
        raise ValueError(f"cannot convert {name}; supported: {sorted(_CONVERTERS)}")
    converted = _CONVERTERS[name](hf_model)
    converted.source = {"hf_class": name, "hf_model_type": hf_model.config.model_type}
    return converted


def convert_hf_dir(path: str) -> Converted:
    """Load `config.json` + `model.safetensors`/`pytorch_model.bin` from a local directory."""
    import pathlib

    import transformers

    if not (pathlib.Path(path) / "config.json").is_file():
        raise ValueError(
            f"{path}: no config.json; expected a local HF model directory "
            "(config.json + model.safetensors or pytorch_model.bin)"
        )
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    archs = [a for a in (config.architectures or []) if a in _CONVERTERS]
    if not archs and config.model_type in _DEFAULT_CLASS:  # config.json without architectures
        archs = [_DEFAULT_CLASS[config.model_type]]
    if not archs:
        raise ValueError(
            f"{path}: model_type={config.model_type!r}, architectures={config.architectures}; "
            f"supported: {sorted(_CONVERTERS)}"
        )
    hf_model = getattr(transformers, archs[0]).from_pretrained(path, local_files_only=True)
    hf_model.eval()
    converted = convert_hf(hf_model)
    converted.source["hf_dir"] = str(path)
    return converted


# --------------------------------------------------------------------------------------------
# Weight assignment.
# --------------------------------------------------------------------------------------------
def _state_dict(hf_model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().float().numpy() for k, v in hf_model.state_dict().items()}


def _get(module: Any, path: str) -> Any:
    obj = module
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


_LINEAR_NAMES = {"weight": "kernel"}  # Linear, Conv, ConvTransposeStrided; other leaves keep names
_LEAF_NAMES = {
    nnx.LayerNorm: {"weight": "scale", "bias": "bias"},
    nnx.BatchNorm: {
        "weight": "scale",
        "bias": "bias",
        "running_mean": "mean",
        "running_var": "var",
        "num_batches_tracked": _IGNORE,
    },
}


def _transform(owner: Any, leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf != "weight":
        return value
    if isinstance(owner, nnx.Linear):
        if value.ndim == 4:  # patch embedding conv (D, 3, p, p) -> (p*p*3, D), (p1 p2 c) order
            return value.transpose(2, 3, 1, 0).reshape(-1, value.shape[0])
        return value.T
    if isinstance(owner, nnx.Conv):
        return value.transpose(2, 3, 1, 0)  # (O, I, kh, kw) -> (kh, kw, I, O)
    if isinstance(owner, layers.ConvTransposeStrided):
        return value.transpose(2, 3, 0, 1)  # (I, O, kh, kw) -> (kh, kw, I, O)
    return value


def load_weights(
    module: nnx.Module,
    state_dict: Mapping[str, np.ndarray],
    rules: Sequence[tuple[str, str]],
    ignore: Sequence[str] = (),
) -> None:
    """Assign HF tensors to `module`, renaming each key by applying every regex rule in order.

    Keys matching a pattern in `ignore` are skipped. Raises if a renamed key names no variable
    or does not fit, or if a variable of `module` is left unassigned.
    """
    assigned: set[tuple] = set()
    errors = []
    for key, value in state_dict.items():
        if any(re.search(p, key) for p in ignore):
            continue
        target = key
        for pattern, replacement in rules:
            target = re.sub(pattern, replacement, target)
        owner_path, leaf = target.rsplit(".", 1)
        try:
            owner = _get(module, owner_path)
        except (AttributeError, IndexError, TypeError):
            errors.append(f"{key} -> {owner_path}: no such module")
            continue
        names = next((n for t, n in _LEAF_NAMES.items() if isinstance(owner, t)), _LINEAR_NAMES)
        name = names.get(leaf, leaf)
        if name == _IGNORE:
            continue
        var = getattr(owner, name, None)
        if not isinstance(var, nnx.Variable):
            errors.append(f"{key} -> {owner_path}.{name}: no such variable")
            continue
        value = _transform(owner, leaf, value)
        if tuple(var.shape) != value.shape:
            errors.append(f"{key} {value.shape} -> {owner_path}.{name} {tuple(var.shape)}")
            continue
        var.set_value(jnp.asarray(value, var.dtype))
        assigned.add((*owner_path.split("."), name))
    expected = {tuple(str(p) for p in path) for path, _ in nnx.to_flat_state(nnx.state(module))}
    errors += [f"{'.'.join(p)}: not assigned" for p in sorted(expected - assigned)]
    if errors:
        raise ValueError("weight conversion failed:\n  " + "\n  ".join(errors))


# --------------------------------------------------------------------------------------------
# Per-class converters.
# --------------------------------------------------------------------------------------------
def _pair(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))


def _vit_dims(config: Any, mlp_dim: int | None = None) -> dict[str, Any]:
    if config.hidden_act != "gelu":
        raise ValueError(f"only exact GELU ViTs are supported, got {config.hidden_act!r}")
    return {
        "width": config.hidden_size,
        "depth": config.num_hidden_layers,
        "num_heads": config.num_attention_heads,
        "mlp_dim": mlp_dim or config.intermediate_size,
        "patch_size": int(config.patch_size),
        "image_size": _pair(config.image_size),
        "layer_norm_eps": float(config.layer_norm_eps),
        "qkv_bias": bool(config.qkv_bias),
    }


# Block internals, shared by DPT's ViT and older transformers' ViTModel.
_VIT_BLOCK_RULES = [
    (r"\.encoder\.layer\.", ".layers."),
    (r"^encoder\.layer\.", "layers."),
    (r"\.attention\.attention\.", ".attention."),
    (r"\.attention\.output\.dense\.", ".attention.out."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
]

_DPT_RULES = [
    (r"^dpt\.embeddings\.patch_embeddings\.", "encoder.vit.embeddings."),
    (r"^dpt\.", "encoder.vit."),
    *_VIT_BLOCK_RULES,
    (r"^neck\.reassemble_stage\.", "encoder.reassemble_stage."),
    (r"(readout_projects\.\d+)\.0\.", r"\1."),  # nn.Sequential(Linear, GELU)
    (r"^neck\.convs\.", "decoder.convs."),
    (r"^neck\.fusion_stage\.layers\.", "decoder.fusion_layers."),
    (r"^head\.head\.0\.", "head.conv1."),
    (r"^head\.head\.2\.", "head.conv2."),
    (r"^head\.head\.4\.", "head.conv3."),
]


def _convert_dpt(hf_model: Any) -> Converted:
    config = hf_model.config
    if config.is_hybrid or config.backbone_config is not None:
        raise NotImplementedError(
            "only DPT with its own ViT backbone is supported (not hybrid / backbone_config)"
        )
    if len(config.neck_hidden_sizes) != 4 or config.head_in_index not in (-1, 3):
        raise NotImplementedError("DPT with 4 neck stages and the head on the last is supported")
    encoder = {
        "name": "vit",
        "variant": None,
        **_vit_dims(config),
        "readout": config.readout_type,
        # HF keeps hidden states in layer order whatever the order of backbone_out_indices.
        "out_indices": tuple(sorted(int(i) for i in config.backbone_out_indices)),
        "neck_hidden_sizes": tuple(config.neck_hidden_sizes),
        "reassemble_factors": tuple(config.reassemble_factors),
        "pos_embed_interp": "bilinear",
    }
    model_cfg = {
        "encoder": encoder,
        "decoder": {
            "name": "dpt",
            "features": config.fusion_hidden_size,
            "use_bn": bool(config.use_batch_norm_in_fusion_residual),
            "use_bias": config.use_bias_in_fusion_residual,
        },
        "dgr": {"enabled": False},
        "head": {"name": "relu", "hidden": 32, "projection": bool(config.add_projection)},
    }
    module = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
    load_weights(module, _state_dict(hf_model), _DPT_RULES)
    return Converted(module, model_cfg, prefix=())


_DEPTH_ANYTHING_RULES = [
    (r"^backbone\.embeddings\.patch_embeddings\.", "encoder.vit.embeddings."),
    (r"^backbone\.", "encoder.vit."),
    *_VIT_BLOCK_RULES,
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
    (r"\.layer_scale(\d)\.lambda1$", r".layer_scale\1"),
    (r"\.q_proj\.", ".query."),
    (r"\.k_proj\.", ".key."),
    (r"\.v_proj\.", ".value."),
    (r"\.o_proj\.", ".out."),
    (r"^neck\.reassemble_stage\.", "encoder.reassemble_stage."),
    (r"^neck\.convs\.", "decoder.convs."),
    (r"^neck\.fusion_stage\.layers\.", "decoder.fusion_layers."),
]


def _convert_depth_anything(hf_model: Any) -> Converted:
    config = hf_model.config
    backbone = config.backbone_config
    if backbone is None or backbone.model_type != "dinov2":
        raise NotImplementedError("only Depth Anything with a DINOv2 backbone is supported")
    if backbone.use_swiglu_ffn or backbone.reshape_hidden_states:
        raise NotImplementedError("DINOv2 SwiGLU FFNs / reshaped hidden states not supported")
    if config.reassemble_hidden_size != backbone.hidden_size or config.head_in_index not in (-1, 3):
        raise NotImplementedError("unsupported Depth Anything neck/head configuration")
    encoder = {
        "name": "vit",
        "variant": None,
        **_vit_dims(backbone, mlp_dim=int(backbone.hidden_size * backbone.mlp_ratio)),
        "readout": "ignore",
        # Backbone stage i is the output of block i (stage 0 = embeddings).
        "out_indices": tuple(sorted(int(i) - 1 for i in backbone.out_indices)),
        "neck_hidden_sizes": tuple(config.neck_hidden_sizes),
        "reassemble_factors": tuple(config.reassemble_factors),
        "layer_scale": float(backbone.layerscale_value),
        "norm_features": bool(backbone.apply_layernorm),
        "pos_embed_interp": "bicubic",
    }
    if config.depth_estimation_type == "metric":
        head = {"name": "sigmoid", "max_depth": float(config.max_depth)}
    else:
        head = {"name": "relu", "scale": float(config.max_depth)}
    model_cfg = {
        "encoder": encoder,
        "decoder": {"name": "dpt", "features": config.fusion_hidden_size, "upsample": "to_next"},
        "dgr": {"enabled": False},
        "head": {**head, "hidden": config.head_hidden_size, "upsample": "to_output"},
    }
    module = nnx.eval_shape(lambda: build_model(model_cfg, rngs=nnx.Rngs(0)))
    state = _state_dict(hf_model)
    load_weights(module, state, _DEPTH_ANYTHING_RULES, ignore=(r"\.mask_token$",))
    return Converted(module, model_cfg, prefix=())


_VIT_RULES = [
    (r"^embeddings\.patch_embeddings\.", "embeddings."),
    (r"\.q_proj\.", ".query."),
    (r"\.k_proj\.", ".key."),
    (r"\.v_proj\.", ".value."),
    (r"\.o_proj\.", ".out."),
    *_VIT_BLOCK_RULES,
]
# The classification pooler and the masked-image-modelling token are not part of the backbone.
_VIT_IGNORE = (r"^pooler\.", r"^embeddings\.mask_token$")


def _encoder_variant(dims: dict[str, Any]) -> dict[str, Any]:
    """A ViT encoder config for these dims: a named variant if one matches, else explicit."""
    keys = ("width", "depth", "num_heads", "mlp_dim")
    for name, size in VARIANTS.items():
        if all(getattr(size, k) == dims[k] for k in keys):
            return {"variant": name, **{k: v for k, v in dims.items() if k not in keys}}
    d, w = dims["depth"], dims["width"]
    return {
        "variant": None,
        **dims,
        "out_indices": tuple(d * (i + 1) // 4 - 1 for i in range(4)),
        "neck_hidden_sizes": (w // 8, w // 4, w // 2, w),
    }


def _convert_vit_model(hf_model: Any) -> Converted:
    dims = _vit_dims(hf_model.config)
    encoder = {"name": "vit", **_encoder_variant(dims), "pos_embed_interp": "bicubic"}
    vit = nnx.eval_shape(lambda: build_encoder(encoder, rngs=nnx.Rngs(0))).vit
    load_weights(vit, _state_dict(hf_model), _VIT_RULES, _VIT_IGNORE)
    return Converted(vit, {"encoder": encoder}, prefix=("encoder", "vit"))


_RESNET_RULES = [
    (r"^embedder\.embedder\.", "embedder."),
    (r"^encoder\.stages\.", "stages."),
]


def _convert_resnet_model(hf_model: Any) -> Converted:
    config = hf_model.config
    if config.hidden_act != "relu" or config.num_channels != 3:
        raise NotImplementedError("only ReLU ResNets on RGB input are supported")
    encoder = {
        "name": "resnet",
        "depth": None,
        "width": config.embedding_size,
        "block": config.layer_type,
        "stage_depths": tuple(config.depths),
        "hidden_sizes": tuple(config.hidden_sizes),
        "downsample_in_first_stage": bool(config.downsample_in_first_stage),
        "downsample_in_bottleneck": bool(config.downsample_in_bottleneck),
    }
    module = nnx.eval_shape(lambda: build_encoder(encoder, rngs=nnx.Rngs(0)))
    load_weights(module, _state_dict(hf_model), _RESNET_RULES)
    return Converted(module, {"encoder": encoder}, prefix=("encoder",))


_CONVERTERS: dict[str, Callable[[Any], Converted]] = {
    "DPTForDepthEstimation": _convert_dpt,
    "DepthAnythingForDepthEstimation": _convert_depth_anything,
    "ViTModel": _convert_vit_model,
    "ViTForImageClassification": lambda m: _convert_vit_model(m.vit),
    "ResNetModel": _convert_resnet_model,
    "ResNetForImageClassification": lambda m: _convert_resnet_model(m.resnet),
}

# model_type -> class, for a config.json that names no architectures.
_DEFAULT_CLASS = {
    "dpt": "DPTForDepthEstimation",
    "depth_anything": "DepthAnythingForDepthEstimation",
    "vit": "ViTModel",
    "resnet": "ResNetModel",
}
