"""Official NeWCRFs checkpoints (aliyun/NeWCRFs) -> our `NeWCRFs` model, and the CLI part.

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

[ours] Rules map each key onto `NeWCRFs` ({"encoder": Swin, "decoder": NeWCRFsDecoder});
`infer_newcrfs_config` reads every width/depth/window from the weights, so a converted
checkpoint rebuilds its model without guessing; `main(argv)` writes an orbax checkpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path as FsPath
from typing import Any

import numpy as np

from configs import common
from dgr_jax.convert.swin_timm import infer_swin_config, load_torch_file, swin_rules
from dgr_jax.convert.torch_layout import Rule, assign_pure_dict, map_state_dict, unflatten

_CRF_BLOCK = r"crf([0-3])\.crf_layer\.blocks\.(\d+)"
# Official defaults we cannot read from the weights (NewCRFDepth.__init__, PSP/PPM).
OFFICIAL_POOL_SCALES = (1, 2, 3, 6)
OFFICIAL_PPM_NORM_GROUPS = 256
VARIANT_MAX_DEPTH = {"nyu": common.NYU_MAX_DEPTH, "kitti": common.KITTI_MAX_DEPTH}


def _crf(m: re.Match, *tail) -> tuple:
    return ("decoder", f"crf{m[1]}", "blocks", int(m[2]), *tail)


def newcrfs_rules() -> list[Rule]:
    """Rules for the official NewCRFDepth state dict (without `module.`)."""
    dec = ("decoder",)
    return [
        *swin_rules("backbone.", ("encoder",)),
        Rule(
            r"decoder\.psp_modules\.(\d+)\.1\.conv",
            lambda m: (*dec, "psp", "stages", int(m[1]), "conv"),
            "conv",
        ),
        Rule(
            r"decoder\.psp_modules\.(\d+)\.1\.gn",
            lambda m: (*dec, "psp", "stages", int(m[1]), "norm"),
            "gn",
        ),
        Rule(r"decoder\.bottleneck\.conv", (*dec, "psp", "bottleneck", "conv"), "conv"),
        Rule(r"decoder\.bottleneck\.bn", (*dec, "psp", "bottleneck", "norm"), "bn"),
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


def infer_newcrfs_config(sd: Mapping[str, Any], *, max_depth: float) -> dict[str, dict]:
    """Encoder and decoder kwargs of `NeWCRFs` that match an official state dict."""
    sd = strip_wrappers(sd)
    enc = infer_swin_config(sd, "backbone.")
    swin = {
        "variant": "T",  # every field below overrides the variant table
        "window_size": enc["window_size"],
        "patch_size": enc["patch_size"],
        "embed_dim": enc["embed_dim"],
        "depths": enc["depths"],
        "num_heads": enc["num_heads"],
    }
    crf_dims, crf_heads, crf_depth = [], [], 0
    for k in range(4):
        crf_dims.append(int(np.shape(sd[f"crf{k}.norm_crf.weight"])[0]))
        table = np.shape(sd[f"crf{k}.crf_layer.blocks.0.attn.relative_position_bias_table"])
        crf_heads.append(int(table[1]))
        crf_window = (round(np.sqrt(table[0])) + 1) // 2
        crf_depth = len(
            {m[1] for key in sd if (m := re.match(rf"crf{k}\.crf_layer\.blocks\.(\d+)\.", key))}
        )
    n_pool = len({m[1] for key in sd if (m := re.match(r"decoder\.psp_modules\.(\d+)\.", key))})
    if n_pool != len(OFFICIAL_POOL_SCALES):
        raise ValueError(f"expected {len(OFFICIAL_POOL_SCALES)} PSP branches, found {n_pool}")
    psp_channels = int(np.shape(sd["decoder.bottleneck.conv.weight"])[0])
    decoder = {
        "max_depth": float(max_depth),
        "crf_dims": tuple(crf_dims),
        "crf_heads": tuple(crf_heads),
        "crf_window": int(crf_window),
        "crf_depth": crf_depth,
        "psp_channels": psp_channels,
        "pool_scales": OFFICIAL_POOL_SCALES,
        # GroupNorm(256) on 512 channels upstream: 2 channels per group; narrower heads
        # (not released) keep 2 channels per group.
        "ppm_norm_groups": OFFICIAL_PPM_NORM_GROUPS if psp_channels == 512 else psp_channels // 2,
        "up_mode": "mask" if "mask_head.0.weight" in sd else "bilinear",
    }
    return {"encoder": swin, "decoder": decoder}


# The on-disk layout of converted weights shared with `dgr_jax/convert/checkpoint.py` (models
# branch; TODO(merge): use its save_converted / load_converted and drop these two):
#   OUT/model.json  {"format", "model": config.model (sub-)config, "prefix": path of the
#                    converted module in a DepthModel, "source": provenance}
#   OUT/state/      orbax StandardCheckpointer of the module's nested pure dict (int list keys)
CONVERTED_FORMAT = "dgr_jax.converted.v1"


def save_converted_tree(
    out: str,
    tree: Mapping,
    model_cfg: Mapping,
    *,
    prefix: Sequence[str] = (),
    source: Mapping[str, Any] | None = None,
) -> FsPath:
    """Write a converted pure dict (rooted at the module at `prefix`) and its config."""
    import orbax.checkpoint as ocp

    root = FsPath(out).absolute()
    root.mkdir(parents=True, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(root / "state", _np_leaves(tree), force=True)
    ckptr.wait_until_finished()
    meta = {
        "format": CONVERTED_FORMAT,
        "model": _jsonable(model_cfg),
        "prefix": list(prefix),
        "source": _jsonable(dict(source or {})),
    }
    (root / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root


def load_converted_tree(path: str) -> tuple[dict, dict]:
    """Inverse of `save_converted_tree`: (nested pure dict with int list keys, meta)."""
    import orbax.checkpoint as ocp

    root = FsPath(path).absolute()
    meta = json.loads((root / "model.json").read_text())
    if meta.get("format") != CONVERTED_FORMAT:
        raise ValueError(f"{root}: not a {CONVERTED_FORMAT} checkpoint")
    return _int_keys(ocp.StandardCheckpointer().restore(root / "state")), meta


def load_into_model(model, path: str) -> dict:
    """Restore converted weights into `model` (a NeWCRFs or DepthModel) in place.

    A whole-model conversion (prefix []) must cover every variable; a part (an ImageNet
    Swin, prefix ["encoder"]) fills what it has and the rest keeps its initialisation.
    Returns the stored meta data.
    """
    tree, meta = load_converted_tree(path)
    for name in reversed(meta["prefix"]):
        tree = {name: tree}
    assign_pure_dict(model, tree, allow_missing=["*"] if meta["prefix"] else [])
    return meta


def _np_leaves(tree: Mapping) -> dict:
    return {
        k: (_np_leaves(v) if isinstance(v, Mapping) else np.asarray(v)) for k, v in tree.items()
    }


def _int_keys(tree: Mapping) -> dict:
    return {
        (int(k) if str(k).isdigit() else k): (_int_keys(v) if isinstance(v, Mapping) else v)
        for k, v in tree.items()
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return [_jsonable(v) for v in x]
    return x


def main(argv: Sequence[str] | None = None) -> None:
    """`--newcrfs-ckpt FILE --variant nyu|kitti --out DIR`: official ckpt -> orbax params.

    DIR/model.json holds the model config read from the weights ({"encoder": {"name": "swin",
    ...}, "decoder": {"name": "newcrfs", ...}, "head": {"name": "identity"}}), DIR/state the
    weights; `eval.py --config.init_from=DIR` restores them.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dgr_jax.convert (newcrfs)")
    parser.add_argument("--newcrfs-ckpt", required=True)
    parser.add_argument("--variant", required=True, choices=sorted(VARIANT_MAX_DEPTH))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    sd = strip_wrappers(load_torch_file(args.newcrfs_ckpt))
    cfg = infer_newcrfs_config(sd, max_depth=VARIANT_MAX_DEPTH[args.variant])
    pure = convert_newcrfs_state_dict(sd)
    model_cfg = {
        "encoder": {"name": "swin", **cfg["encoder"]},
        "decoder": {"name": "newcrfs", **cfg["decoder"]},
        "head": {"name": "identity"},
    }
    source = {"newcrfs_ckpt": str(FsPath(args.newcrfs_ckpt).absolute()), "variant": args.variant}
    save_converted_tree(args.out, pure, model_cfg, source=source)
    n = sum(np.size(v) for v in _leaves(pure))
    print(f"wrote {args.out}: {n / 1e6:.1f}M values, model {json.dumps(_jsonable(model_cfg))}")


def _leaves(tree: Mapping):
    for v in tree.values():
        if isinstance(v, Mapping):
            yield from _leaves(v)
        else:
            yield v


if __name__ == "__main__":
    main()
