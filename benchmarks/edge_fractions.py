"""How much of the ground truth is a Sobel "edge", with Hu et al.'s per-pixel thresholds and with
the thresholds scaled to the reference width (issue 29; `dgr_jax/evaluators/edges.py`).

    python benchmarks/edge_fractions.py --data_dir DIR [--sizes 96x128 240x320] [--num_test 30]

For each size, builds (if needed) `synthetic_depth/indoor` with `--num_test` test scenes, as
`python -m dgr_jax.data.build synthetic_depth/indoor --num_test 30 --height H --width W` does,
and prints, for t in 0.25 / 0.5 / 1.0, the share of valid interior pixels (whole 3x3
neighbourhood valid: MIN_DEPTH_EVAL < gt < NYU_MAX_DEPTH, the evaluation's range) whose
unnormalised Sobel magnitude of depth exceeds t ("old") and t * 304 / W ("new"), pooled over
the test scenes.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax.numpy as jnp
import numpy as np

from dgr_jax import protocol
from dgr_jax.data import datasets
from dgr_jax.evaluators.edges import scaled_threshold, sobel, valid_3x3


def edge_fractions(depths: list[np.ndarray], thresholds) -> dict[str, list[float]]:
    """{"old": [...], "new": [...]} pooled edge shares of (H, W) depth maps (0 = invalid)."""
    gt = jnp.asarray(np.stack(depths))
    valid = (gt > protocol.MIN_DEPTH_EVAL) & (gt < protocol.NYU_MAX_DEPTH)
    gx, gy = sobel(jnp.where(valid, gt, 0.0))
    mag = np.asarray(jnp.hypot(gx, gy))
    region = np.asarray(valid_3x3(valid))
    width = gt.shape[-1]
    return {
        "old": [float((mag[region] > t).mean()) for t in thresholds],
        "new": [float((mag[region] > scaled_threshold(t, width)).mean()) for t in thresholds],
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--sizes", nargs="+", default=["96x128", "240x320"])
    p.add_argument("--num_test", type=int, default=30)
    args = p.parse_args(argv)
    thresholds = protocol.EDGE_THRESHOLDS
    print(f"| size | thresholds | {' | '.join(f't = {t:g}' for t in thresholds)} |")
    print("|---|---|" + "---|" * len(thresholds))
    for size in args.sizes:
        h, w = (int(x) for x in size.split("x"))
        build = {"num_train": 1, "num_test": args.num_test, "height": h, "width": w}
        source = datasets.open_split(
            "synthetic_depth/indoor", "test", args.data_dir, build_args=build
        )
        depths = [np.asarray(source[i]["depth"], np.float32) for i in range(len(source))]
        got = edge_fractions(depths, thresholds)
        for kind, label in (("old", "t (Hu, per pixel)"), ("new", f"t * 304 / {w}")):
            cells = " | ".join(f"{100 * v:.1f}%" for v in got[kind])
            print(f"| {h}x{w} | {label} | {cells} |")


if __name__ == "__main__":
    main()
