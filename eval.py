"""Evaluate a trained (or converted) model with every evaluator of the config.

    python eval.py --config configs/synthetic_vit_dgr.py --workdir runs/quickstart
    python eval.py --config configs/X.py --workdir DIR --checkpoint best
    python eval.py --config configs/nyu_newcrfs.py --workdir DIR --config.init_from=CONVERTED

Writes DIR/eval/<name>/metrics.json, report.md, per_image.csv and images/*.png.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "the training workdir (or an output dir)")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest", "latest | best | a step number")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax/tfds INFO chatter hides the progress
        logging.set_verbosity(logging.WARNING)
    from dgr_jax import compile_cache, jsonio, storage

    compile_cache.enable()  # ~/.cache/dgr_jax/xla; DGR_JAX_NO_COMPILATION_CACHE=1 switches it off
    from dgr_jax.data.builders.base import DatasetError
    from dgr_jax.data.watchdog import EXIT_STALLED, InputStalled
    from dgr_jax.evaluate import evaluate_checkpoint, nest

    try:
        metrics = evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _CHECKPOINT.value)
    except InputStalled as e:  # config.input.stall_timeout_s without an example
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_STALLED
    except (DatasetError, FileNotFoundError, ValueError, storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    print(jsonio.dumps(nest(metrics), indent=2))
    return 0


if __name__ == "__main__":
    app.run(main)
