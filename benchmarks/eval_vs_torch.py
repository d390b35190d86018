"""Evaluation throughput: our jit-compiled predict with flip TTA vs a PyTorch eager loop.

    python benchmarks/eval_vs_torch.py [--quick]

The same model on both sides (benchmarks/dpt_pair.py: transformers' DPTForDepthEstimation,
ViT-S/16, fusion 128, random init, converted to JAX with the same weights), float32, in
inference mode. Per batch of uint8 images, each side does what its evaluator does:

  JAX (dgr_jax.evaluators.depth_eval): a jitted ImageNet normalisation that also returns the
      mirrored batch, `steps.make_predict` jitted (as evaluate.make_predict_fn) called on both,
      and `tta.flip_blend` (NeWCRFs' post_process_depth, mode "blend") jitted.
  PyTorch (NeWCRFs eval.py style): under `torch.inference_mode()`, the same normalisation,
      `model(x)`, `model(torch.flip(x, [3]))` and the same blend written in torch.

Both return the blended depth of the batch; their agreement is printed
(`blend_max_rel_diff`). Sides alternate after warm-up; medians of the repeats. Batch 8 (the
evaluator's default) at 256x256; --quick: batch 4 at 224x224.

A third side, `jax_xla_default`, is the JAX evaluator compiled with XLA's default options
instead of the project's (`dgr_jax.xla_options`): the before/after of that choice, measured in
the same run.

JSON (last line): jax_images_per_s, torch_images_per_s, speedup (JAX over PyTorch),
jax_xla_default_images_per_s and xla_options_gain (ours over XLA's defaults).
"""

from __future__ import annotations

import os
import pathlib
import sys

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import dpt_pair, harness
from dgr_jax import protocol, steps, xla_options
from dgr_jax.evaluators.tta import flip_blend, flip_weights

TTA_MODE = "blend"


def jax_evaluate_fn(
    model_def: steps.ModelDef, params: dict, rest: dict, *, xla_default: bool = False
):
    """images uint8 (B, H, W, 3) -> blended depth (B, H, W); the evaluator's three jitted calls.
    The predict is compiled as evaluate.make_predict_fn compiles it (`dgr_jax.xla_options`), or
    with XLA's default options if `xla_default`."""
    mean = jnp.asarray(protocol.IMAGENET_MEAN, jnp.float32)
    std = jnp.asarray(protocol.IMAGENET_STD, jnp.float32)

    @jax.jit
    def prepare(images):
        x = (images.astype(jnp.float32) / 255.0 - mean) / std
        return x, jnp.flip(x, axis=2)

    predict = (jax.jit if xla_default else xla_options.jit)(steps.make_predict(model_def))
    blend = jax.jit(lambda p, pf: flip_blend(p[..., 0], pf[..., 0], TTA_MODE))

    def evaluate(images):
        x, x_flipped = prepare(images)
        return jax.block_until_ready(
            blend(predict(params, rest, x), predict(params, rest, x_flipped))
        )

    return evaluate


def torch_evaluate_fn(model):
    """The same pipeline in PyTorch eager mode; returns a numpy (B, H, W) depth."""
    import torch

    mean = torch.tensor(protocol.IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(protocol.IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    model.eval()
    weights: dict[int, tuple] = {}

    def evaluate(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(images).permute(0, 3, 1, 2).float()  # NHWC -> NCHW
            x = (x / 255.0 - mean) / std
            pred = model(pixel_values=x).predicted_depth  # (B, H, W)
            unflipped = torch.flip(model(pixel_values=torch.flip(x, [3])).predicted_depth, [2])
            width = pred.shape[-1]
            if width not in weights:
                w_flipped, w_plain = (torch.from_numpy(np.array(w)) for w in flip_weights(width))
                weights[width] = (w_flipped, w_plain)
            w_flipped, w_plain = weights[width]
            mean_pred = 0.5 * (pred + unflipped)
            out = w_plain * pred + w_flipped * unflipped + (1.0 - w_flipped - w_plain) * mean_pred
            return out.numpy()

    return evaluate


def main() -> None:
    batch, size, repeats, quick = harness.pair_args(__doc__.split("\n")[0], 8, 4)

    import torch

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    info = harness.machine_info()
    hf = dpt_pair.torch_dpt("S", size)
    model_def, (params, rest) = dpt_pair.to_jax(hf)
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    device_images = jnp.asarray(images)
    jax_eval, torch_eval = jax_evaluate_fn(model_def, params, rest), torch_evaluate_fn(hf)
    jax_default_eval = jax_evaluate_fn(model_def, params, rest, xla_default=True)

    outputs = {  # includes compiling
        "jax": jax_eval(device_images),
        "jax_xla_default": jax_default_eval(device_images),
        "torch": torch_eval(images),
    }
    diff = np.max(np.abs(np.asarray(outputs["jax"]) - outputs["torch"]))
    times = harness.time_interleaved(
        {
            "jax": lambda: jax_eval(device_images),
            "jax_xla_default": lambda: jax_default_eval(device_images),
            "torch": lambda: torch_eval(images),
        },
        repeats=repeats,
        warmup=0,
    )
    ips = {k: batch / (harness.median_ms(v) / 1e3) for k, v in times.items()}
    jax_ips, torch_ips = ips["jax"], ips["torch"]
    result = {
        "benchmark": "eval_vs_torch",
        **dpt_pair.setup_fields(
            hf, quick=quick, batch=batch, size=size, threads=threads, repeats=repeats
        ),
        "flip_tta": TTA_MODE,
        "jax_images_per_s": round(jax_ips, 2),
        "torch_images_per_s": round(torch_ips, 2),
        "speedup": round(jax_ips / torch_ips, 3),
        "jax_xla_options": xla_options.options(),
        "jax_xla_default_images_per_s": round(ips["jax_xla_default"], 2),
        "xla_options_gain": round(jax_ips / ips["jax_xla_default"], 3),
        "blend_max_rel_diff": float(f"{diff / np.max(np.abs(outputs['torch'])):.2e}"),
        "runs": harness.summary(times),
        **info,
    }
    harness.emit(result)


if __name__ == "__main__":
    main()
