"""The DGR / OTDL ablation study on `synthetic_depth/indoor`, sized for 2 CPU cores.

    python -m dgr_jax.analysis.ablation --config configs/ablation_synthetic.py \
        --workdir runs/ablation
    python -m dgr_jax.analysis.ablation --config configs/ablation_synthetic.py:smoke \
        --workdir /tmp/ablation_smoke

Base: `configs/synthetic_vit.py` (ViT-Ti/16 + DPT-64, the main job's recipe: SILog with
variance focus 0.5, Adam 3e-4 with warm-up and poly decay, gradient clipping), every arm and
seed on the same rendered data in the same order. Arms, claims, metrics and the verdict rule:
`configs/ablation_common.py`.

Budget (full study): BUDGET_WORDS below; the measured wall time and the summary table are in
README.md ("The ablation study").
`:smoke`: the tiny models of the base's `:smoke` (32x48 images), every main arm with 2 seeds, a
few steps, one exploratory arm; for CI (tests/test_ablation.py), a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import ml_collections

from configs import ablation_common

# Full-study size, chosen with timed short runs against the main job (README.md): 96x128
# scenes (ViT-Ti/16 sees 6x8 tokens), 600 steps of batch 8, 150 test scenes.
HEIGHT, WIDTH = 96, 128
STEPS = 500
NUM_TRAIN, NUM_TEST = 2000, 200
BUDGET_WORDS = (
    f"{HEIGHT}x{WIDTH} scenes ({NUM_TRAIN} training, {NUM_TEST} test), {STEPS} steps of batch 8 "
    "per run, 6 main arms x 3 seeds + 8 exploratory arms = 26 runs"
)


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
    if smoke:  # one exploratory arm keeps that path tested
        c.exploratory_arms = ("lambda_ot=2000",)
        c.cost.timing_repeats = 2
        c.pictures = (0, 1)
    c.lock()
    return c
