"""Build a dataset into a data dir.

    python -m dgr_jax.data.build synthetic_depth/indoor --data_dir DIR \
        [--num_train N --num_test M --seed S --height H --width W]
    python -m dgr_jax.data.build nyu_depth_v2_bts --manual_dir M --data_dir D
    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D [--skip_missing]
    python -m dgr_jax.data.build depth_files --manual_dir M --data_dir D --depth_scale 1000 \
        [--max_depth 10] [--crop test=t,l,h,w]

Prints the split sizes, the output directory and the time taken; count checks and skipped
lines are logged to stderr. Problems with the user's files end with a short message (no
traceback) saying what is expected where. The manual-dir layouts: docs/datasets.md.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time

from dgr_jax import storage
from dgr_jax.data import datasets
from dgr_jax.data.builders.base import DatasetError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dgr_jax.data.build", description=__doc__.split("\n")[0]
    )
    p.add_argument("dataset", help="builder name[/config], e.g. synthetic_depth/indoor")
    p.add_argument(
        "--data_dir",
        required=True,
        help="where the built dataset is written (gs://: built locally, then uploaded)",
    )
    p.add_argument("--manual_dir", default="", help="real datasets: the folder with your files")
    p.add_argument("--num_train", type=int, default=2000, help="synthetic: training examples")
    p.add_argument("--num_test", type=int, default=200, help="synthetic: test examples")
    p.add_argument("--seed", type=int, default=0, help="synthetic: scene seed")
    p.add_argument("--height", type=int, default=0, help="synthetic: image height (0 = default)")
    p.add_argument("--width", type=int, default=0, help="synthetic: image width (0 = default)")
    p.add_argument(
        "--skip_missing",
        action="store_true",
        help="real datasets: leave out list lines whose files are missing (counted in the log) "
        "instead of failing",
    )
    p.add_argument(
        "--depth_scale",
        type=float,
        default=1000.0,
        help="depth_files: 16-bit PNG depth = value / depth_scale metres (1000: mm, 256: KITTI)",
    )
    p.add_argument(
        "--max_depth", type=float, default=0.0, help="depth_files: depth beyond it is invalid"
    )
    p.add_argument(
        "--crop",
        action="append",
        default=[],
        metavar="SPLIT=T,L,H,W",
        help="depth_files: crop a split's frames (top, left, height, width); repeatable",
    )
    args = p.parse_args(argv)
    crops = {}
    for item in args.crop:
        split, sep, value = item.partition("=")
        if not sep or split not in ("train", "test", "val"):
            p.error(f"--crop {item!r}: use SPLIT=top,left,height,width with SPLIT train|test|val")
        crops[f"{split}_crop"] = value
    build_args = {
        "num_train": args.num_train,
        "num_test": args.num_test,
        "seed": args.seed,
        "height": args.height,
        "width": args.width,
        "skip_missing": args.skip_missing,
        "depth_scale": args.depth_scale,
        "max_depth": args.max_depth,
        **crops,
    }
    start = time.perf_counter()
    try:
        storage.check(args.data_dir, "--data_dir")
        if args.manual_dir:
            storage.check(args.manual_dir, "--manual_dir")
        with _logs_to_stderr():
            builder = datasets.ensure_built(
                args.dataset, args.data_dir, manual_dir=args.manual_dir, build_args=build_args
            )
    except (DatasetError, storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    took = time.perf_counter() - start
    sizes = ", ".join(f"{k}: {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
    print(f"{args.dataset}: {sizes}; at {builder.data_path} ({took:.1f} s)")
    return 0


@contextlib.contextmanager
def _logs_to_stderr():
    """Show the builders' count checks and skipped lines (logger "dgr_jax.data") on stderr."""
    logger = logging.getLogger("dgr_jax.data")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # ours only, not also the root handler tfds/absl may have added
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


if __name__ == "__main__":
    sys.exit(main())
