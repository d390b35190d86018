"""The DGR / OTDL ablation study on KITTI Eigen with the NeWCRFs host and its official recipe.

    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D
    python -m dgr_jax.analysis.ablation --config configs/ablation_kitti_newcrfs.py \
        --workdir runs/ablation_kitti --config.data_dir=D --config.init_from=W/swin_l22k

The same arms, seeds, claims and rule as `configs/ablation_nyu_newcrfs.py`, on the
`configs/kitti_newcrfs.py` recipe (KB crop, 352x1120 training crop, 50 epochs of 23,158 frames;
652 test images with ground truth, Garg crop, flip TTA): 25 NeWCRFs trainings on a GPU/TPU host.
`:smoke` is a tiny model for tests.
"""

from __future__ import annotations

import ml_collections

from configs.ablation_nyu_newcrfs import host_ablation


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = host_ablation("configs/kitti_newcrfs.py", arg == "smoke")
    c.lock()
    return c
