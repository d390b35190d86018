"""One process of test_permissions.py (run by it, not by pytest).

    python tests/permissions_worker.py UMASK OUT_DIR

Sets the umask first, while this process has a single thread (os.umask is process-wide, so a
test process with other threads could not change it safely), then runs each writer path of the
project into OUT_DIR/<writer>/ and writes OUT_DIR/modes.json: {writer: {"modes": {relative
path: "0o644", ...}, "seconds": ...} or {"error": traceback}}. Folders are listed with a
trailing "/". Every path is tiny: no model is compiled (but predict's), no dataset built.
"""

from __future__ import annotations

import os
import sys

os.umask(int(sys.argv[1], 8))
OUT = os.path.abspath(sys.argv[2])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import json  # noqa: E402
import stat  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

from dgr_jax import compile_cache  # noqa: E402

compile_cache.enable()


def write_json(out: str) -> None:
    from dgr_jax import jsonio
    from dgr_jax.evaluators import report

    jsonio.write(os.path.join(out, "config.json"), {"a": 1.0})
    jsonio.write(os.path.join(out, "config.json"), {"a": 2.0})  # a rewrite, as on resume
    report.write_metrics_json(os.path.join(out, "eval", "test", "metrics.json"), {"x": np.nan})


def write_pictures(out: str) -> None:
    from dgr_jax import metric_writer, storage, viz

    depth = np.linspace(0.5, 3.0, 12, dtype=np.float32).reshape(3, 4)
    viz.save_png(os.path.join(out, "images", "rgb.png"), np.zeros((3, 4, 3), np.uint8))
    viz.save_png(os.path.join(out, "images", "depth16.png"), np.ones((3, 4), np.uint16))
    viz.save_panel(os.path.join(out, "images", "panel.png"), [("depth", depth)], dpi=20)
    storage.write_text(os.path.join(out, "train_metrics.jsonl"), '{"step": 1, "loss": 1.0}\n')
    metric_writer.plot_training_curves(out)  # train_curves.png (matplotlib through storage)


def write_logs(out: str) -> None:
    from dgr_jax import metric_writer, storage

    writer = metric_writer.MetricWriter(out)  # train/eval JSONL and the TensorBoard event file
    writer.write_scalars(1, {"loss": 1.0})
    writer.write_scalars(2, {"loss": 0.5})
    writer.write_scalars(2, {"abs_rel": 0.1}, kind="eval")
    writer.close()
    metric_writer.truncate_jsonl(os.path.join(out, "train_metrics.jsonl"), 1)  # resume rewrite
    src = os.path.join(out, "..", "copy_src")
    storage.write_text(os.path.join(src, "a", "b.txt"), "b")
    storage.copy_tree(src, os.path.join(out, "copied"))


def write_reports(out: str) -> None:
    from dgr_jax import storage
    from dgr_jax.analysis.sparse_pixel import outputs as study_outputs
    from dgr_jax.analysis.sparse_pixel import report as study_report
    from dgr_jax.evaluators import report

    values = {"abs_rel": np.asarray([0.1, np.nan])}
    report.write_per_image_csv(os.path.join(out, "per_image.csv"), [0, 1], ["a", "b"], values)
    study_report.write_csv(os.path.join(out, "study.csv"), [{"arm": "x"}], ["arm"])
    storage.write_text(os.path.join(out, "report.md"), "# report\n")  # as depth_eval writes it
    study_outputs.save_mask_net(out, "arm", 0.5, {"w": np.ones(2, np.float32)})  # .npz


def write_converted_and_predictions(out: str) -> None:
    import jax
    from flax import nnx
    from PIL import Image

    from dgr_jax import configlib, predict
    from dgr_jax.convert.checkpoint import ConvertedWeights, save_converted
    from dgr_jax.models import build_model

    # Zeros of the tiny CNN's shapes: built abstractly, so nothing is compiled.
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    model = nnx.eval_shape(lambda: build_model(config.model, rngs=nnx.Rngs(0)))
    tree = jax.tree.map(lambda v: np.zeros(v.shape, v.dtype), nnx.to_pure_dict(nnx.state(model)))
    weights = os.path.join(out, "converted")
    save_converted(weights, ConvertedWeights(tree, config.model.to_dict()))
    images = os.path.join(out, "..", "predict_inputs")
    os.makedirs(images, exist_ok=True)
    Image.fromarray(np.zeros((8, 12, 3), np.uint8)).save(os.path.join(images, "a.png"))

    class ConstantDepth:  # predict's writing, without compiling a model
        def __init__(self, config, *_):
            self.size = tuple(config.input.size)

        def __call__(self, normalised):
            return np.full(normalised.shape[:2], 2.0, np.float32)

    predict.Predictor = ConstantDepth
    args = ["--weights", weights, "--input", images, "--output", os.path.join(out, "predictions")]
    if predict.main([*args, "--focal", "10"]) != 0:
        raise RuntimeError("predict failed")


def write_checkpoints(out: str) -> None:
    import jax.numpy as jnp

    from dgr_jax import checkpoint

    ckpt = checkpoint.Checkpointer(os.path.join(out, "checkpoints"), keep=1)
    ckpt.save(1, {"w": jnp.ones(4), "b": {"c": jnp.zeros((2, 3))}}, {"epoch": 0})
    ckpt.close()


def write_compile_cache(out: str) -> None:
    import jax
    import jax.numpy as jnp
    from jax._src import compilation_cache

    # The other writers compiled with the test session's cache (warm: fast); this program's
    # entry goes to a fresh cache in `out`, through the project's self-checking wrapper.
    compilation_cache.reset_cache()
    jax.config.update("jax_compilation_cache_dir", os.path.join(out, "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    compile_cache.install_guard()
    jax.jit(lambda x: jnp.cumsum(x * 3.25) - 1.5)(jnp.arange(7.0)).block_until_ready()


def write_dataset(out: str) -> None:
    from dgr_jax.data import datasets

    tiny = {"num_train": 2, "num_test": 1, "height": 8, "width": 8}
    datasets.ensure_built("synthetic_depth/indoor", out, build_args=tiny)  # TFDS's writers


WRITERS = {
    "json": write_json,
    "pictures": write_pictures,
    "logs": write_logs,
    "reports": write_reports,
    "converted_and_predictions": write_converted_and_predictions,
    "checkpoints": write_checkpoints,
    "compile_cache": write_compile_cache,
    "dataset": write_dataset,
}


def modes(folder: str) -> dict[str, str]:
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, folder) + ("/" if name in dirs else "")
            found[rel] = oct(stat.S_IMODE(os.lstat(full).st_mode))
    return found


def main() -> None:
    results = {}
    for name, write in WRITERS.items():
        out = os.path.join(OUT, name)
        os.makedirs(out)
        start = time.perf_counter()
        try:
            write(out)
            results[name] = {"modes": modes(out), "seconds": time.perf_counter() - start}
        except Exception:
            results[name] = {"error": traceback.format_exc()}
    with open(os.path.join(OUT, "modes.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
