"""The DGR / OTDL ablation study on NYU-Depth-v2 with the PixelFormer host and its official recipe.

    python -m dgr_jax.convert --swin-ckpt swin_large_patch4_window7_224_22k.pth --out W/swin_l22k
    python -m dgr_jax.data.build nyu_depth_v2_bts/dense --manual_dir M --data_dir D
    python -m dgr_jax.analysis.ablation --config configs/ablation_nyu_pixelformer.py \
        --workdir runs/ablation_nyu_pf --config.data_dir=D --config.init_from=W/swin_l22k

The same arms, seeds, claims and verdict rule as `configs/ablation_nyu_newcrfs.py`, on the
`configs/nyu_pixelformer.py` recipe (Swin-L + skip attention + adaptive bins, Adam 4e-5 for 20
epochs of the 36,253-frame list, batch 8, CutDepth): DGR on the four Swin stages (as
`configs/nyu_pixelformer_dgr.py`), OTDL weighted `protocol.OTDL_WEIGHT`, the row-only cost, and a
CNN reference (ResNet-50 + the PixelFormer decoder; `--config.arms.cnn.init_from=DIR` with
converted ImageNet ResNet-50 weights, else it starts from scratch). Evaluation: the official 654
test images, Eigen crop, flip TTA (PixelFormer's protocol).

Cost: 6 x 3 + 7 = 25 PixelFormer trainings (20 epochs each, 0.4x a NeWCRFs training's epochs) on
a GPU/TPU host. `:smoke` is a tiny model on a few fake frames for tests.
"""

from __future__ import annotations

import ml_collections

from configs.ablation_nyu_newcrfs import host_ablation


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = host_ablation(
        "configs/nyu_pixelformer.py", arg == "smoke", host="pixelformer", label="PixelFormer"
    )
    c.lock()
    return c
