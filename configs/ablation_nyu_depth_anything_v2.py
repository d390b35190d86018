"""The DGR / OTDL ablation study on NYU-Depth-v2 with Depth Anything V2 as the host.

    python -m dgr_jax.convert --depth-anything-ckpt depth_anything_v2_vitl.pth --encoder vitl \
        --out W/da2_vitl
    python -m dgr_jax.data.build nyu_depth_v2_bts/dense --manual_dir M --data_dir D
    python -m dgr_jax.analysis.ablation --config configs/ablation_nyu_depth_anything_v2.py:vitl \
        --workdir runs/ablation_nyu_da2 --config.data_dir=D --config.init_from=W/da2_vitl

The paper's question on a foundation model: does a fine-tuned DINOv2 + DPT keep its depth
gradients continuous, and do DGR and OTDL help? Arms: Depth Anything V2 fine-tuned with the
official metric recipe (`configs/nyu_depth_anything_v2.py`: encoder from the relative
checkpoint, metric head from scratch, SILog lambda 0.5), + DGR on the four DPT reassemble
outputs, + OTDL (weight `protocol.OTDL_WEIGHT`), both (= `configs/nyu_depth_anything_v2_dgr.py`),
OTDL with the authors' row-only cost, and a CNN reference (ResNet-50 + the same DPT head and
loss; `--config.arms.cnn.init_from=DIR` with converted ImageNet ResNet-50 weights, else from
scratch); 3 seeds each, the exploratory arms (DGR after each fusion block instead, other
stencils, OT mass and epsilon, the OTDL weight) on one seed. Claims, metrics and verdict rule:
`configs/ablation_common.py`. Evaluation: the official 654 test images resized as the official
evaluation does (518x686, bicubic; prediction back align-corners), Eigen crop, no flip TTA.

`:vits | :vitb | :vitl` (default vitl) picks the encoder; ViT-S is the affordable one (each
run is a full fine-tune: 20 epochs of the 36,253-frame list at 518x518, batch 32; 25 runs).
To cut it: `--config.exploratory_arms="()"` (18 runs), `--config.seeds="(0,1)"` (12), or a
shorter schedule for every arm with `--config.overrides='("total_steps=N",)'`.
`:smoke` is a tiny model on a few fake frames for tests.
"""

from __future__ import annotations

import ml_collections

from configs import ablation_common

BASE = "configs/nyu_depth_anything_v2.py"
LABELS = {"vits": "ViT-S", "vitb": "ViT-B", "vitl": "ViT-L", "smoke": "ViT tiny_test"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "vitl"
    if arg not in LABELS:
        raise ValueError(f"config argument {arg!r}: use one of {sorted(LABELS)}")
    smoke = arg == "smoke"
    c = ablation_common.ablation_config(
        f"{BASE}:{arg}",
        host="da2",
        host_label=f"Depth Anything V2 ({LABELS[arg]} + DPT)",
        cnn_encoder=(
            {"name": "resnet", "depth": 18, "width": 8}
            if smoke
            else {"name": "resnet", "depth": 50, "width": 64}
        ),
        cnn_label=f"ResNet-{18 if smoke else 50} + the Depth Anything V2 DPT head",
        # The recipe trains with SILog alone and has no OTDL entry; the arms set its weight.
        base_overrides=(
            'loss.terms={"silog": 1.0, "otdl": 0.0}',
            *(("evals.test.num_pictures=0",) if smoke else ()),
        ),
        seeds=(0, 1) if smoke else (0, 1, 2),
        num_resamples=1000 if smoke else 10_000,
    )
    c.fast_compile = smoke  # tiny models: compiling is most of a smoke study's time
    c.lock()
    return c
