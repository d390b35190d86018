"""The DGR / OTDL ablation study on KITTI Eigen with the PixelFormer host and its official recipe.

    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D
    python -m dgr_jax.analysis.ablation --config configs/ablation_kitti_pixelformer.py \
        --workdir runs/ablation_kitti_pf --config.data_dir=D --config.init_from=W/swin_l22k

The same arms, seeds, claims and rule as `configs/ablation_nyu_pixelformer.py`, on the
`configs/kitti_pixelformer.py` recipe (KB crop, 352x1120 training crop, 20 epochs of 23,158
frames; 652 test images with ground truth, Garg crop, flip TTA): 25 PixelFormer trainings on a
GPU/TPU host. `:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs.ablation_nyu_newcrfs import host_ablation


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = host_ablation(
        "configs/kitti_pixelformer.py", arg == "smoke", host="pixelformer", label="PixelFormer"
    )
    c.lock()
    return c
