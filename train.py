"""Train (or resume) and evaluate a depth model.

    python train.py --config configs/synthetic_vit_dgr.py --workdir runs/quickstart
    python train.py --config configs/nyu_vit_dgr.py --workdir runs/nyu --config.data_dir=D
    python train.py --config configs/X.py:smoke --workdir DIR --config.total_steps=100

Running the same command again on the same workdir resumes from the latest checkpoint.
Multi-host: start one process per host with --coordinator_address/--num_processes/--process_id,
or --multihost on TPU pods / SLURM / GKE (auto-detected).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config file", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "output directory (checkpoints, metrics, pictures)")
_COORD = flags.DEFINE_string("coordinator_address", "", "multi-host: host:port of process 0")
_NPROC = flags.DEFINE_integer("num_processes", 1, "multi-host: number of processes")
_PID = flags.DEFINE_integer("process_id", 0, "multi-host: this process's index")
_AUTO = flags.DEFINE_bool("multihost", False, "multi-host with cluster auto-detection")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> int:
    del argv
    if not flags.FLAGS["verbosity"].present:  # orbax/tfds INFO chatter hides the progress
        logging.set_verbosity(logging.WARNING)
    from dgr_jax import compile_cache, multihost

    multihost.initialize(_COORD.value, _NPROC.value, _PID.value, auto=_AUTO.value)
    # ~/.cache/dgr_jax/xla; DGR_JAX_NO_COMPILATION_CACHE=1 switches it off; multi-process runs
    # use it only where JAX_COMPILATION_CACHE_DIR names a directory every host shares.
    compile_cache.enable()
    from dgr_jax.data.builders.base import DatasetError
    from dgr_jax.data.watchdog import EXIT_STALLED, InputStalled
    from dgr_jax.preemption import EXIT_PREEMPTED, Preempted
    from dgr_jax.trainer import TrainingError, train_and_evaluate

    try:
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except Preempted as e:  # multi-process SIGTERM: every process saved the agreed step
        print(e, flush=True)
        return EXIT_PREEMPTED
    except InputStalled as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_STALLED
    except (DatasetError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    app.run(main)
