"""The DGR / OTDL ablation study on `synthetic_depth/indoor`, sized for 2 CPU cores.

    python -m dgr_jax.analysis.ablation --config configs/ablation_synthetic.py \
        --workdir runs/ablation
    python -m dgr_jax.analysis.ablation --config configs/ablation_synthetic.py:smoke \
        --workdir /tmp/ablation_smoke

Base: `configs/synthetic_vit.py` (ViT-Ti/16 + DPT-64, the main job's recipe: SILog with
variance focus 0.5, Adam 3e-4 with warm-up and poly decay, gradient clipping), every arm and
seed on the same rendered data in the same order. Arms, claims, metrics and the verdict rule:
`configs/ablation_common.py`.

Budget (full study): 96x128 scenes (2,000 training, 200 test; ViT-Ti/16 sees 6x8 tokens),
500 steps of batch 8 per run, 6 main arms x 3 seeds + 7 exploratory arms = 25 runs, chosen to
fit 2 hours on 2 CPU cores. How (README.md "The ablation study" has the measured wall time):
- Cost per step, interleaved in one process against the main job's step (128x160,
  `synthetic_vit_dgr`): vit 0.58, vit+dgr 0.61, vit+otdl 0.70, vit+dgr+otdl 0.86,
  vit+otdl_rows 0.55, cnn 0.64; exploratory 0.63-0.90 (DGR after the fusion blocks the most).
  25 runs x 500 steps = ~8,500 main-job steps of training, ~78 min where the main job takes
  8.6 min for its 800 (0.55 s a step); compiling 13 distinct train steps, 25 evaluations,
  rendering and the cost / figure phases add ~20 min: ~100 min in all.
- Accuracy, one seed, 200 test images (the oracle constant depth: abs_rel 0.428, rmse 1.66):
  vit 500 steps 0.397 / 1.28 (d1 0.36 vs 0.24); vit 600 steps 0.407 / 1.24; vit+dgr+otdl 600
  steps 0.355 / 1.14. Tried for the plain arm at the same cost and not better: batch 4 x 1200
  steps (0.414 / 1.19), lr 5e-4 (0.412 / 1.24).
The rerun with the continuity metrics of issue 29 (README, "The ablation study") cut the 7
exploratory arms (`--config.exploratory_arms="()"`, 18 runs): they judge no claim, and the
rerun shared the 2-core machine with the sparse-pixel study and the TPU compile table.
`:smoke`: the tiny models of the base's `:smoke` (32x48 images), every main arm with 2 seeds, 4
steps, no exploratory arm, step times of two arms; for CI (tests/test_ablation.py; the
exploratory statistics and tables have fast tests there).
"""

from __future__ import annotations

import ml_collections

from configs import ablation_common

# Full-study size: see the module docstring.
HEIGHT, WIDTH = 96, 128
STEPS = 500
NUM_TRAIN, NUM_TEST = 2000, 200


def _full_overrides() -> tuple[str, ...]:
    h, w = HEIGHT, WIDTH
    return (
        f"input.build.height={h}",
        f"input.build.width={w}",
        f"input.build.num_train={NUM_TRAIN}",
        f"input.build.num_test={NUM_TEST}",
        f"input.size=({h},{w})",
        f"model.encoder.image_size=({h},{w})",
        f'input.pp_train="rotate(2.5)|flip|random_crop({h},{w})|gamma|brightness|colour|normalize"',
        f"loss.otdl.grid_size=({h // 8},{w // 8})",  # 1/8 of the input side, as every config
        f"total_steps={STEPS}",
        "log_every=25",
        f"ckpt_every={STEPS // 2}",
        "eval_every=0",
        "evals.test.num_pictures=0",  # gradients.png shows every arm on the same images
    )


_SMOKE_OVERRIDES = (
    "total_steps=4",
    "log_every=2",
    "ckpt_every=2",  # a checkpoint to resume from (tests/test_ablation.py)
    "eval_every=0",
    "evals.test.num_pictures=0",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    smoke = arg == "smoke"
    c = ablation_common.ablation_config(
        "configs/synthetic_vit.py" + (":smoke" if smoke else ""),
        host="vit",
        host_label="ViT-tiny_test + DPT-16" if smoke else "ViT-Ti/16 + DPT-64",
        cnn_encoder=(
            {"name": "resnet", "depth": 18, "width": 8}
            if smoke
            else {"name": "resnet", "depth": 18, "width": 64}
        ),
        cnn_label="ResNet-18 (width 8) + DPT-16" if smoke else "ResNet-18 + DPT-64",
        base_overrides=_SMOKE_OVERRIDES if smoke else _full_overrides(),
        seeds=(0, 1) if smoke else (0, 1, 2),
        num_resamples=1000 if smoke else 10_000,
    )
    if smoke:  # every main arm, 2 seeds; nothing else that compiles (tests cover the rest)
        c.exploratory_arms = ()
        c.cost.timing_repeats = 2
        c.cost.timing_arms = ("vit", "vit+dgr")
        c.pictures = (0,)
        c.fast_compile = True  # tiny models: compiling is most of the smoke study's time
    c.lock()
    return c
