"""Swin weights -> our `dgr_jax.models.encoders.swin.Swin`: microsoft/timm-0.4 and transformers.

Layouts [authors' code, read for key names only]:
- "microsoft": microsoft/Swin-Transformer checkpoints (`swin_large_patch4_window7_224_22k.pth`,
  {"model": state_dict}), the same names as the dense-prediction backbone NeWCRFs embeds
  (`patch_embed.proj`, `layers.{i}.blocks.{j}.attn.qkv`, `...downsample.reduction`, `norm{i}`);
  classification files add `norm` (final) and `head` (dropped) and `attn_mask` buffers.
- "hf": transformers `SwinModel` / `SwinBackbone` (`embeddings.patch_embeddings.projection`,
  `encoder.layers.{i}.blocks.{j}.attention.{q,k,v,o}_proj` (or the older
  `attention.self.{query,key,value}` / `attention.output.dense`), `hidden_states_norms.stageK`).
  It is renamed to the microsoft layout first (q, k, v fused to qkv in [q | k | v] order).

[ours] `convert_swin_state_dict` returns the nested pure dict of our Swin; `infer_swin_config`
reads the architecture from the weights; `convert_swin_checkpoint` returns what

    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth [--window 12] \
        --out W/swin_l22k

writes (prefix ["encoder"]) for `--config.init_from` of a DepthModel with a Swin encoder
(configs/nyu_newcrfs.py, ...). NeWCRFs' own loader (newcrf_utils.load_checkpoint) keeps the
per-stage output norms at their init and resizes relative-position tables bicubically when the
window differs (7 -> 12); `resize_bias_tables` does the same, and the norms are recorded as
`kept_init` in model.json.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from dgr_jax.convert.checkpoint import ConvertedWeights
from dgr_jax.convert.torch_layout import Path, Rule, map_state_dict, to_numpy, unflatten

_BLOCK = r"layers\.(\d+)\.blocks\.(\d+)"


def _block(m: re.Match, *tail: str) -> Path:
    return ("layers", int(m[1]), "blocks", int(m[2]), *tail)


def swin_rules(prefix: str = "", out: Path = ()) -> list[Rule]:
    """Rules for the microsoft layout under torch prefix `prefix`, into our path `out`."""
    p = re.escape(prefix)
    return [
        Rule(p + r"patch_embed\.proj", (*out, "patch_embed", "proj"), "conv"),
        Rule(p + r"patch_embed\.norm", (*out, "patch_embed", "norm"), "ln"),
        Rule(p + _BLOCK + r"\.(norm1|norm2)", lambda m: (*out, *_block(m, m[3])), "ln"),
        Rule(p + _BLOCK + r"\.attn", lambda m: (*out, *_block(m, "attn")), "attn"),
        Rule(
            p + _BLOCK + r"\.attn\.(qkv|proj)", lambda m: (*out, *_block(m, "attn", m[3])), "linear"
        ),
        Rule(p + _BLOCK + r"\.mlp\.(fc1|fc2)", lambda m: (*out, *_block(m, "mlp", m[3])), "linear"),
        Rule(
            p + r"layers\.(\d+)\.downsample\.reduction",
            lambda m: (*out, "layers", int(m[1]), "downsample", "reduction"),
            "linear",
        ),
        Rule(
            p + r"layers\.(\d+)\.downsample\.norm",
            lambda m: (*out, "layers", int(m[1]), "downsample", "norm"),
            "ln",
        ),
        Rule(p + r"norm([0-3])", lambda m: (*out, "norms", int(m[1])), "ln"),
    ]


# transformers -> microsoft names (module paths; the leaf name is kept).
_HF_RENAMES = [
    (r"embeddings\.patch_embeddings\.projection", "patch_embed.proj"),
    (r"embeddings\.norm", "patch_embed.norm"),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_before", r"layers.\1.blocks.\2.norm1"),
    (r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.layernorm_after", r"layers.\1.blocks.\2.norm2"),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.(?:o_proj|output\.dense)",
        r"layers.\1.blocks.\2.attn.proj",
    ),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.(?:relative_position_bias|self)",
        r"layers.\1.blocks.\2.attn",
    ),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(?:mlp\.fc1|intermediate\.dense)",
        r"layers.\1.blocks.\2.mlp.fc1",
    ),
    (
        r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(?:mlp\.fc2|output\.dense)",
        r"layers.\1.blocks.\2.mlp.fc2",
    ),
    (r"encoder\.layers\.(\d+)\.downsample\.(reduction|norm)", r"layers.\1.downsample.\2"),
    (r"hidden_states_norms\.stage([1-4])", None),  # -> norm{K-1}
    (r"layernorm", "norm"),
]
_HF_QKV = re.compile(
    r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.attention\.(?:self\.)?"
    r"(q_proj|k_proj|v_proj|query|key|value)\.(weight|bias)"
)
_QKV_ORDER = {"q_proj": 0, "query": 0, "k_proj": 1, "key": 1, "v_proj": 2, "value": 2}


def hf_to_microsoft(sd: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Rename a transformers Swin state dict to the microsoft layout (q, k, v fused)."""
    sd = {k.removeprefix("swin."): v for k, v in sd.items()}
    out: dict[str, np.ndarray] = {}
    qkv: dict[tuple[str, str], list] = {}
    unexpected = []
    for key, value in sd.items():
        if key.startswith("classifier."):
            continue
        m = _HF_QKV.fullmatch(key)
        if m:
            parts = qkv.setdefault((f"layers.{m[1]}.blocks.{m[2]}.attn.qkv", m[4]), [None] * 3)
            parts[_QKV_ORDER[m[3]]] = to_numpy(value)
            continue
        module, _, leaf = key.rpartition(".")
        for pattern, repl in _HF_RENAMES:
            mm = re.fullmatch(pattern, module)
            if mm:
                new = f"norm{int(mm[1]) - 1}" if repl is None else mm.expand(repl)
                out[f"{new}.{leaf}"] = to_numpy(value)
                break
        else:
            unexpected.append(key)
    for (module, leaf), parts in qkv.items():
        if any(x is None for x in parts):
            raise KeyError(f"incomplete q/k/v for {module}.{leaf}")
        out[f"{module}.{leaf}"] = np.concatenate(parts, axis=0)  # (3C, C) / (3C,), [q | k | v]
    if unexpected:
        raise KeyError(
            f"{len(unexpected)} transformers Swin keys have no target: {unexpected[:20]}"
        )
    return out


def detect_layout(sd: Mapping[str, Any]) -> str:
    """ "hf" (transformers) or "microsoft"; timm >= 0.9 (merging at stage start) is refused."""
    keys = set(sd)
    if any("patch_embeddings.projection" in k for k in keys):
        return "hf"
    if "layers.0.downsample.reduction.weight" in keys:
        return "microsoft"
    if "layers.1.downsample.reduction.weight" in keys:
        raise ValueError("timm >= 0.9 Swin layout is not supported; use the microsoft .pth")
    if any(k.removeprefix("module.").startswith("backbone.patch_embed.") for k in keys):
        raise ValueError(
            "this is a dense-prediction checkpoint with a Swin `backbone.` (NeWCRFs or "
            "PixelFormer?); use --newcrfs-ckpt or --pixelformer-ckpt for their official "
            "checkpoints"
        )
    raise ValueError(
        f"not a Swin checkpoint (microsoft or transformers layout); first keys: {sorted(keys)[:3]}"
    )


def convert_swin_state_dict(
    sd: Mapping[str, Any], *, layout: str = "auto", final_norm: str = "drop"
) -> dict:
    """Swin state dict -> nested pure dict of `Swin`.

    Args:
        sd: torch state dict (tensors or arrays), optionally wrapped as {"model": ...}.
        layout: "microsoft", "hf" or "auto".
        final_norm: what to do with the classification model's final LayerNorm `norm`:
            "drop" (NeWCRFs' loader ignores it) or "norm3" (use it as the stage-4 output norm;
            equals transformers SwinModel's `last_hidden_state`).

    Returns:
        Nested dict (list indices as int keys) of numpy arrays; the stage output norms are
        present only if the checkpoint has them (dense-prediction / backbone checkpoints).
    """
    sd = sd.get("model", sd) if "model" in sd and isinstance(sd["model"], Mapping) else sd
    if layout == "auto":
        layout = detect_layout(sd)
    if layout == "hf":
        sd = hf_to_microsoft(sd)
    elif layout != "microsoft":
        raise ValueError(f"unknown Swin layout {layout!r}")
    if final_norm not in ("drop", "norm3"):
        raise ValueError(f"final_norm must be 'drop' or 'norm3', got {final_norm!r}")
    sd = dict(sd)
    if final_norm == "norm3":
        if "norm3.weight" in sd:
            raise KeyError("checkpoint has both `norm` and `norm3`")
        for leaf in ("weight", "bias"):
            sd[f"norm3.{leaf}"] = sd.pop(f"norm.{leaf}")
    drop = [r"norm\.(weight|bias)", r"head\..*", r"layers\.\d+\.blocks\.\d+\.attn_mask"]
    if any(k.startswith("absolute_pos_embed") for k in sd):
        raise ValueError("Swin with absolute position embedding (ape=True) is not supported")
    return unflatten(map_state_dict(sd, swin_rules(), drop=drop))


def infer_swin_config(sd: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Read embed_dim, depths, num_heads, window_size, patch_size from microsoft-layout weights."""
    proj = np.shape(sd[f"{prefix}patch_embed.proj.weight"])
    depths, heads, window = [], [], None
    for i in range(4):
        blocks = {
            int(m[1])
            for k in sd
            if (m := re.match(re.escape(prefix) + rf"layers\.{i}\.blocks\.(\d+)\.", k))
        }
        depths.append(len(blocks))
        table = np.shape(sd[f"{prefix}layers.{i}.blocks.0.attn.relative_position_bias_table"])
        heads.append(table[1])
        window = (round(np.sqrt(table[0])) + 1) // 2
    return {
        "embed_dim": int(proj[0]),
        "depths": tuple(depths),
        "num_heads": tuple(int(h) for h in heads),
        "window_size": int(window),
        "patch_size": int(proj[2]),
    }


def resize_bias_tables(pure: dict, window: int) -> dict:
    """Bicubically resize every relative_position_bias_table to `window` (NeWCRFs loader)."""
    import torch
    import torch.nn.functional as F

    def walk(node):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v)
            elif k == "relative_position_bias_table":
                s1, s2 = round(np.sqrt(v.shape[0])), 2 * window - 1
                if s1 != s2:
                    t = torch.from_numpy(np.ascontiguousarray(v.T)).reshape(1, v.shape[1], s1, s1)
                    t = F.interpolate(t, size=(s2, s2), mode="bicubic")
                    node[k] = t.reshape(v.shape[1], s2 * s2).T.numpy()

    walk(pure)
    return pure


def convert_swin_checkpoint(
    sd: Mapping[str, Any], *, window: int | None = None, source: Mapping[str, Any] | None = None
) -> ConvertedWeights:
    """ImageNet Swin state dict -> the weights of a DepthModel's Swin encoder (prefix encoder).

    Args:
        sd: microsoft (`swin_*_224_22k.pth`) or transformers layout, wrapped or not.
        window: target window size; relative-position tables are resized bicubically when it
            differs from the checkpoint's (NeWCRFs' 7 -> 12). None keeps the checkpoint's.
        source: provenance written to model.json.

    The per-stage output norms (`norm0`..`norm3`) are not in classification checkpoints; they
    are listed as `kept_init` and keep the model's LayerNorm init, as in NeWCRFs' loader.
    """
    sd = sd.get("model", sd) if isinstance(sd.get("model"), Mapping) else sd
    layout = detect_layout(sd)
    ms = hf_to_microsoft(sd) if layout == "hf" else sd
    cfg = infer_swin_config(ms)
    tree = convert_swin_state_dict(ms, layout="microsoft")
    if window and window != cfg["window_size"]:
        tree = resize_bias_tables(tree, window)
        cfg["window_size"] = window
    return ConvertedWeights(
        tree,
        {"encoder": {"name": "swin", "variant": "T", **cfg}},  # the fields override "T"
        prefix=("encoder",),
        source={**dict(source or {}), "layout": layout, "window": cfg["window_size"]},
        kept_init=("norms/*",),
    )
