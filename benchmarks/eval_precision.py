"""How far the metrics move when a model's dots and convolutions run as one bfloat16 pass.

On a TPU, `config.eval_precision="default"` computes every float32 dot / convolution from
bfloat16-rounded operands with float32 accumulation (one matrix-unit pass). On the CPU, where
float32 is exact, this script evaluates the same model twice under the same protocol: in float32
(= `eval_precision="highest"`) and with that rounding emulated (`dgr_jax/bf16_emulation.py`),
and prints one JSON object with both metric sets and their difference.

    # (a) a trained workdir on its own test set (every evaluator of its config)
    python benchmarks/eval_precision.py workdir --workdir runs/quickstart
    # (b) a converted NeWCRFs with random weights (official layout, every parameter
    #     informative) on synthetic NYU-shaped (480x640, Eigen crop) or KITTI-shaped
    #     (375x1242, KB crop to 352x1216, Garg crop) frames; --swin L is the released size
    python benchmarks/eval_precision.py newcrfs --frames nyu --swin T --images 4
    python benchmarks/eval_precision.py newcrfs --frames kitti --swin T --images 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere, not installed
sys.path.insert(0, str(ROOT / "tests"))  # newcrfs_layout: the official key layout

STANDARD = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "d1", "d2", "d3")


def compare(evaluator, model_def, state, state_sh, mesh, change_images: int = 8) -> dict:
    """Metrics in float32 and with one bfloat16 pass, same evaluator and parameters; the
    relative change of the final prediction on the first `change_images` images."""
    from dgr_jax import evaluate, sharding, steps, xla_options
    from dgr_jax.bf16_emulation import one_bf16_pass

    batch_sh = sharding.batch_sharding(mesh)
    params, rest = state["params"], state["rest"]
    runs = {
        # eval_precision="highest": on the CPU the float32 computation itself.
        "float32": evaluate.make_predict_fn(
            model_def, state_sh, batch_sh, matmul_precision="highest"
        ),
        # What eval_precision="default" computes on a TPU (one bfloat16 pass per dot / conv).
        "bf16_pass": xla_options.jit(
            one_bf16_pass(steps.make_predict(model_def)),
            in_shardings=(state_sh["params"], state_sh["rest"], batch_sh),
            out_shardings=batch_sh,
        ),
    }
    metrics, seconds, depths = {}, {}, {}
    for name, predict in runs.items():
        start = time.perf_counter()
        result = evaluator.run(lambda x, p=predict: p(params, rest, x), out_dir=None)
        seconds[name] = round(time.perf_counter() - start, 1)
        metrics[name] = {k: float(result[k]) for k in STANDARD}
        # The final predictions (TTA, resize, clamp) of the first images, for the change below.
        first = list(range(min(change_images, int(result["num_images"]))))
        depths[name] = evaluator.predictions(lambda x, p=predict: p(params, rest, x), first)
    delta = {k: metrics["bf16_pass"][k] - metrics["float32"][k] for k in STANDARD}
    return {
        "num_images": int(result["num_images"]),
        **metrics,
        "delta": delta,
        "prediction_change": _prediction_change(depths["float32"], depths["bf16_pass"]),
        "seconds": seconds,
    }


def _prediction_change(reference: list[dict], other: list[dict]) -> dict:
    """|other - reference| / reference over the evaluated pixels of the same images."""
    import numpy as np

    rel = np.concatenate(
        [
            np.abs(o["depth"] - r["depth"])[r["valid"]] / r["depth"][r["valid"]]
            for r, o in zip(reference, other)
        ]
    )
    return {
        "images": len(reference),
        "mean_relative": float(np.mean(rel)),
        "p99_relative": float(np.percentile(rel, 99)),
        "max_relative": float(np.max(rel)),
    }


def run_workdir(args) -> dict:
    from dgr_jax import evaluate, paths, storage
    from dgr_jax.predict import _config_from_workdir

    config = _config_from_workdir(args.workdir, args.config)
    if args.images:
        with config.unlocked():
            for cfg in config.evals.values():
                cfg.num_images = args.images
    workdir = storage.absolute(args.workdir)
    model_def, mesh, state, state_sh, step = evaluate.restore_for_inference(
        config, workdir, "latest"
    )
    evaluators = evaluate.make_evaluators(config, paths.data_dir_of(config, workdir), mesh)
    return {
        "case": "workdir",
        "workdir": args.workdir,
        "step": int(step),
        "model": config.model.to_dict(),
        "evals": {n: compare(ev, model_def, state, state_sh, mesh) for n, ev in evaluators.items()},
    }


def run_newcrfs(args) -> dict:
    import numpy as np
    from newcrfs_layout import Arch, official_newcrfs_keys, released_layout, synthetic_state_dict

    from configs import base
    from dgr_jax import configlib, evaluate, protocol
    from dgr_jax.convert.checkpoint import save_converted
    from dgr_jax.convert.newcrfs import convert_newcrfs_checkpoint
    from dgr_jax.data.synthetic import render_example
    from dgr_jax.evaluators.depth_eval import DepthEvaluator
    from dgr_jax.models.encoders.swin import SWIN_VARIANTS

    variant = SWIN_VARIANTS[args.swin]
    # NewCRFDepth's decoder (the same for every backbone size): configs/nyu_newcrfs.py.
    arch = Arch(
        embed=variant.embed_dim,
        depths=tuple(variant.depths),
        heads=tuple(variant.num_heads),
        window=7,
        crf_dims=(128, 256, 512, 1024),
        crf_heads=(4, 8, 16, 32),
        crf_window=7,
        crf_depth=2,
        psp=512,
        pools=(1, 2, 3, 6),
    )
    nyu = args.frames == "nyu"
    sd = synthetic_state_dict(official_newcrfs_keys(arch), seed=args.seed)
    weights = convert_newcrfs_checkpoint(released_layout(sd), variant="nyu" if nyu else "kitti")
    if nyu:  # full NYU frame, Eigen crop
        frame, kind, model_size = (protocol.NYU_HEIGHT, protocol.NYU_WIDTH), "indoor", None
        eval_cfg = base.depth_eval("nyu", crop="eigen", max_depth=protocol.NYU_MAX_DEPTH)
    else:  # a KITTI frame, KB-cropped to 352x1216 for the model, Garg crop
        frame, kind = (375, 1242), "outdoor"
        model_size = (protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH)
        eval_cfg = base.depth_eval("kitti", crop="garg", max_depth=protocol.KITTI_MAX_DEPTH)
        eval_cfg.kb_crop = True
    eval_cfg.batch_size, eval_cfg.num_pictures = 1, 0
    source = [render_example(kind, args.seed, i, *frame) for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        save_converted(Path(tmp) / "weights", weights)
        config = configlib.inference_config(
            weights.model_cfg,
            init_from=str(Path(tmp) / "weights"),
            input_size=model_size or frame,
        )
        model_def, mesh, state, state_sh, _ = evaluate.restore_for_inference(config, tmp, "latest")
    evaluator = DepthEvaluator(
        eval_cfg,
        name=args.frames,
        source=source,
        input_size=tuple(config.input.size),
        mesh=mesh,
        matmul_precision="highest",
    )
    n_params = sum(int(np.prod(v.shape)) for v in sd.values())
    return {
        "case": "newcrfs",
        "swin": args.swin,
        "frames": args.frames,
        "frame_size": list(frame),
        "model_input": list(config.input.size),
        "official_parameters": n_params,
        "weights": f"random official layout (tests/newcrfs_layout.py, seed {args.seed})",
        "images": "synthetic renders (dgr_jax/data/synthetic.py)",
        "flip_tta": eval_cfg.flip_tta,
        "evals": {args.frames: compare(evaluator, model_def, state, state_sh, mesh)},
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="case", required=True)
    w = sub.add_parser("workdir", help="a trained workdir on its test set")
    w.add_argument("--workdir", required=True)
    w.add_argument("--config", default=None, help="instead of the workdir's config.json")
    w.add_argument("--images", type=int, default=0, help="first N test images (0 = all)")
    n = sub.add_parser("newcrfs", help="a converted random NeWCRFs on NYU / KITTI frames")
    n.add_argument("--frames", choices=("nyu", "kitti"), required=True)
    n.add_argument("--swin", default="T", choices=("T", "S", "B", "L"))
    n.add_argument("--images", type=int, default=4)
    n.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import jax

    from dgr_jax import compile_cache

    compile_cache.enable()
    start = time.perf_counter()
    out = run_workdir(args) if args.case == "workdir" else run_newcrfs(args)
    out["device"] = str(jax.devices()[0].device_kind)
    out["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
