"""A tiny folder of RGB + depth pairs in every depth format the `depth_files` builder reads."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

SCALE = 1000.0  # the 16-bit PNGs hold millimetres


def make_pairs(
    root: pathlib.Path,
    *,
    size: tuple[int, int] = (32, 64),
    num_train: int = 8,
    num_test: int = 4,
    seed: int = 0,
) -> pathlib.Path:
    """Write `root/{rgb,depth}/...` and `root/{train,test}.txt`; one depth format per example
    in turn (16-bit PNG, float32 .npy, float TIFF), some invalid pixels (0, NaN), and one test
    line without ground truth ("None"). Returns `root`."""
    rng = np.random.default_rng(seed)
    h, w = size
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    lists = {}
    for split, count in (("train", num_train), ("test", num_test)):
        lines = []
        for i in range(count):
            name = f"{split}_{i:03d}"
            rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(root / "rgb" / f"{name}.png")
            depth = rng.uniform(0.5, 8.0, (h, w)).astype(np.float32)
            depth[: h // 8] = 0.0  # a band of invalid pixels
            if split == "test" and i == count - 1:
                lines.append(f"rgb/{name}.png None 518.8")
                continue
            kind = i % 3
            if kind == 0:
                depth_name = f"depth/{name}.png"
                mm = np.round(depth * SCALE).astype(np.uint16)
                Image.fromarray(mm).save(root / depth_name)
            elif kind == 1:
                depth_name = f"depth/{name}.npy"
                depth[-1, -1] = np.nan
                np.save(root / depth_name, depth)
            else:
                depth_name = f"depth/{name}.tiff"
                Image.fromarray(depth, mode="F").save(root / depth_name)
            lines.append(f"rgb/{name}.png {depth_name} 518.8")
        lists[split] = lines
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root
