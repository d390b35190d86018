"""Convert PyTorch weights into a dgr_jax checkpoint that train.py / eval.py start from.

    python -m dgr_jax.convert --hf-dir DIR --out OUT
    python -m dgr_jax.convert --newcrfs-ckpt model_nyu.ckpt --variant nyu --out OUT
    python -m dgr_jax.convert --pixelformer-ckpt nyu.pth --variant nyu --out OUT
    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth [--window 12] \
        --out OUT
    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vits.pth --encoder vits \
        [--max-depth 20] --out OUT
    python eval.py --config configs/X.py --workdir W --config.init_from=OUT     # or train.py

Sources (exactly one):
  --hf-dir        a local HF directory (config.json + model.safetensors or pytorch_model.bin) of
                  a DPTForDepthEstimation, DepthAnythingForDepthEstimation (V1/V2), ViTModel /
                  ViTForImageClassification or ResNetModel / ResNetForImageClassification.
  --newcrfs-ckpt  an official NeWCRFs checkpoint (model_nyu.ckpt, model_kittieigen.ckpt);
                  --variant nyu|kitti sets max_depth (10 / 80 m), which the file does not hold.
  --pixelformer-ckpt  an official PixelFormer checkpoint (nyu.pth, kitti.pth); --variant as
                  above (the bins' min_depth stays the official 0.1 m); the never-used
                  `samN.proj` convs are read and dropped, and listed under "dropped".
  --swin-ckpt     an ImageNet Swin checkpoint (microsoft layout, e.g.
                  swin_large_patch4_window7_224_22k.pth, or a transformers Swin state dict);
                  --window resizes the relative-position tables (NeWCRFs' 7 -> 12).
  --depth-anything-ckpt  an official Depth Anything V2 file (depth_anything_v2_vit{s,b,l}.pth,
                  relative; depth_anything_v2_metric_{hypersim,vkitti}_vit*.pth, metric; or a
                  metric_depth/train.py fine-tune); --encoder vits|vitb|vitl must match the
                  weights; --max-depth M makes the head metric (sigmoid * M), without it the
                  head is the relative one (the two kinds of file have the same keys).

Every source writes OUT/model.json + OUT/state/ (`dgr_jax/convert/checkpoint.py`), after
checking the weights against the model that model.json describes. On success one JSON line is
printed: out, prefix (where the weights go in a DepthModel), arrays/values written, kept_init,
dropped (source keys read but not converted, with why), the model config and the source.
Invalid inputs (missing, damaged or wrong-kind file, unknown or missing keys, shape mismatches)
print one `error: ...` paragraph to stderr and exit with status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dgr_jax import jsonio


def _from_hf_dir(args: argparse.Namespace) -> Any:
    from dgr_jax.convert.hf import convert_hf_dir

    return convert_hf_dir(args.hf_dir)


def _from_newcrfs_ckpt(args: argparse.Namespace) -> Any:
    from dgr_jax.convert.newcrfs import convert_newcrfs_checkpoint
    from dgr_jax.convert.torch_layout import load_torch_file

    sd = load_torch_file(args.newcrfs_ckpt)
    return convert_newcrfs_checkpoint(sd, variant=args.variant, source=_file(args.newcrfs_ckpt))


def _from_pixelformer_ckpt(args: argparse.Namespace) -> Any:
    from dgr_jax.convert.pixelformer import convert_pixelformer_checkpoint
    from dgr_jax.convert.torch_layout import load_torch_file

    sd = load_torch_file(args.pixelformer_ckpt)
    return convert_pixelformer_checkpoint(
        sd, variant=args.variant, source=_file(args.pixelformer_ckpt)
    )


def _from_swin_ckpt(args: argparse.Namespace) -> Any:
    from dgr_jax.convert.swin_timm import convert_swin_checkpoint
    from dgr_jax.convert.torch_layout import load_torch_file

    sd = load_torch_file(args.swin_ckpt)
    return convert_swin_checkpoint(sd, window=args.window, source=_file(args.swin_ckpt))


def _from_depth_anything_ckpt(args: argparse.Namespace) -> Any:
    from dgr_jax.convert.depth_anything import convert_depth_anything_checkpoint
    from dgr_jax.convert.torch_layout import load_torch_file

    sd = load_torch_file(args.depth_anything_ckpt)
    return convert_depth_anything_checkpoint(
        sd,
        encoder=args.encoder,
        max_depth=args.max_depth,
        source=_file(args.depth_anything_ckpt),
    )


def _file(path: str) -> dict[str, str]:
    import pathlib

    return {"file": str(pathlib.Path(path).absolute())}


@dataclass(frozen=True)
class Source:
    help: str
    convert: Callable[[argparse.Namespace], Any]  # -> Converted | ConvertedWeights
    options: tuple[str, ...] = ()  # option destinations that belong to this source


SOURCES: dict[str, Source] = {
    "hf_dir": Source("local HF transformers model directory (config.json + weights)", _from_hf_dir),
    "newcrfs_ckpt": Source(
        "official NeWCRFs checkpoint (.ckpt); needs --variant", _from_newcrfs_ckpt, ("variant",)
    ),
    "pixelformer_ckpt": Source(
        "official PixelFormer checkpoint (.pth); needs --variant",
        _from_pixelformer_ckpt,
        ("variant",),
    ),
    "swin_ckpt": Source(
        "ImageNet Swin checkpoint (.pth); optional --window", _from_swin_ckpt, ("window",)
    ),
    "depth_anything_ckpt": Source(
        "official Depth Anything V2 checkpoint (.pth); needs --encoder, metric: --max-depth",
        _from_depth_anything_ckpt,
        ("encoder", "max_depth"),
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dgr_jax.convert",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    for dest, src in SOURCES.items():
        flag = "--" + dest.replace("_", "-")
        source.add_argument(flag, dest=dest, metavar="PATH", help=src.help)
    parser.add_argument(
        "--variant",
        choices=("nyu", "kitti"),
        help="--newcrfs-ckpt / --pixelformer-ckpt: dataset (max_depth 10 / 80 m)",
    )
    parser.add_argument("--window", type=int, help="--swin-ckpt: target window (e.g. 7, 12)")
    parser.add_argument(
        "--encoder",
        choices=("vits", "vitb", "vitl", "tiny_test"),
        help="--depth-anything-ckpt: the DINOv2 size of the file (tiny_test: ours, for tests)",
    )
    parser.add_argument(
        "--max-depth",
        type=float,
        help="--depth-anything-ckpt: metric file, head sigmoid * M metres (none: relative)",
    )
    parser.add_argument("--out", required=True, help="output directory (created; or gs://...)")
    return parser


def _summary(out: Any, weights: Any) -> dict[str, Any]:
    leaves = [np.asarray(x) for x in _leaves(weights.tree)]
    meta = json.loads((out / "model.json").read_text())
    return {
        "out": str(out),
        "prefix": meta["prefix"],
        "arrays": len(leaves),
        "values": int(sum(x.size for x in leaves)),
        "kept_init": meta["kept_init"],
        "dropped": meta.get("dropped", {}),
        "model": meta["model"],
        "source": meta["source"],
    }


def _leaves(tree: Any):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns 0, or exits with status 2 after a one-paragraph error."""
    parser = _parser()
    args = parser.parse_args(argv)
    dest = next(d for d in SOURCES if getattr(args, d) is not None)
    flag = "--" + dest.replace("_", "-")
    for option in sorted({o for src in SOURCES.values() for o in src.options}):
        if option not in SOURCES[dest].options and getattr(args, option) is not None:
            owners = [f"--{d.replace('_', '-')}" for d, s in SOURCES.items() if option in s.options]
            parser.error(f"--{option} belongs to {' / '.join(owners)}, not {flag}")
    if "variant" in SOURCES[dest].options and args.variant is None:
        parser.error(f"{flag} needs --variant nyu|kitti (sets max_depth)")
    if "encoder" in SOURCES[dest].options and args.encoder is None:
        parser.error(f"{flag} needs --encoder vits|vitb|vitl")

    from dgr_jax import storage
    from dgr_jax.convert.checkpoint import Converted, save_converted

    try:
        storage.check(args.out, "--out")  # a gs:// typo fails before the slow conversion
        converted = SOURCES[dest].convert(args)
        weights = converted.weights() if isinstance(converted, Converted) else converted
        out = save_converted(args.out, weights)
    except (ValueError, KeyError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        parser.exit(2, f"error: {message}\n")
    print(jsonio.dumps(_summary(out, weights)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
