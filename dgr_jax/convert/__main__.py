"""Convert PyTorch weights into a dgr_jax checkpoint that train.py / eval.py start from.

    python -m dgr_jax.convert --hf-dir DIR --out OUT
    python train.py --config configs/X.py --config.init_from=OUT ...

--hf-dir: a local HF directory (config.json + model.safetensors or pytorch_model.bin) of a
DPTForDepthEstimation, DepthAnythingForDepthEstimation (V1/V2), ViTModel /
ViTForImageClassification or ResNetModel / ResNetForImageClassification. The output layout is
documented in `dgr_jax/convert/checkpoint.py`. Exactly one source flag is given; each maps to a
function returning a `Converted` in `SOURCES` (future sources, e.g. --newcrfs-ckpt, add one
entry).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any


def _from_hf_dir(path: str) -> Any:
    from dgr_jax.convert.hf import convert_hf_dir

    return convert_hf_dir(path)


# argparse destination -> (flag help, converter)
SOURCES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "hf_dir": ("local HF transformers model directory (config.json + weights)", _from_hf_dir),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dgr_jax.convert", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    for dest, (help_text, _) in SOURCES.items():
        source.add_argument(
            "--" + dest.replace("_", "-"), dest=dest, metavar="PATH", help=help_text
        )
    parser.add_argument("--out", required=True, help="output directory (created)")
    args = parser.parse_args(argv)

    from dgr_jax.convert.checkpoint import save_converted

    dest = next(d for d in SOURCES if getattr(args, d) is not None)
    converted = SOURCES[dest][1](getattr(args, dest))
    out = save_converted(args.out, converted)
    print(json.dumps({"out": str(out), "prefix": list(converted.prefix), **converted.source}))


if __name__ == "__main__":
    main()
