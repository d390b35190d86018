"""The studies' command line: the flags of `train.py`, multi-process start-up, how a study stops.

    python -m dgr_jax.analysis.<study> --config C --workdir W \
        [--multihost | --coordinator_address HOST:PORT --num_processes N --process_id I]

Multi-process: one process per host, each with the same flags but its `--process_id` (or
`--multihost` where JAX detects the cluster); every run of the study uses all processes'
devices and process 0 writes the study's files. Exit status: 0 done; `EXIT_PREEMPTED` (75) when
a SIGTERM stopped the study (the current run saved at the agreed step; rerunning the same
command resumes it and skips the finished runs); 2 for a refused start (`error: ...` on
stderr: a changed study config, a data set or training error).
"""

from __future__ import annotations

import importlib
import sys

from dgr_jax.preemption import EXIT_PREEMPTED, Preempted


def run(module: str) -> None:
    """Define the flags and run `<module>.study.run_study(config, workdir, command=...)`.

    The study is imported after `jax.distributed` started (nothing may touch JAX before).
    """
    from absl import app, flags
    from absl import logging as absl_logging
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", None, "study config", lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, "output directory (local or gs://)")
    coordinator = flags.DEFINE_string("coordinator_address", "", "multi-host: host:port of 0")
    num_processes = flags.DEFINE_integer("num_processes", 1, "multi-host: number of processes")
    process_id = flags.DEFINE_integer("process_id", 0, "multi-host: this process's index")
    auto = flags.DEFINE_bool("multihost", False, "multi-host with cluster auto-detection")
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> int:
        del argv
        if not flags.FLAGS["verbosity"].present:  # orbax/tfds INFO chatter hides the progress
            absl_logging.set_verbosity(absl_logging.WARNING)
        from dgr_jax import compile_cache, multihost

        multihost.initialize(
            coordinator.value, num_processes.value, process_id.value, auto=auto.value
        )
        compile_cache.enable()
        from dgr_jax.analysis.common.workdir import StudyConfigChanged
        from dgr_jax.data.builders.base import DatasetError
        from dgr_jax.trainer import TrainingError

        run_study = importlib.import_module(f"{module}.study").run_study
        command = f"python -m {module} " + " ".join(sys.argv[1:])
        try:
            run_study(config.value, workdir.value, command=command)
        except Preempted as e:
            print(str(e), flush=True)
            return EXIT_PREEMPTED
        except (StudyConfigChanged, DatasetError, TrainingError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
        return 0

    app.run(main)
