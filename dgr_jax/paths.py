"""Where a run reads and writes: the data directory of a run and the start-up checks of its paths.

Shared by the trainer, `eval.py`, `dgr_jax.predict` and the studies (kept out of `trainer.py` so
that `evaluate.py` does not import the trainer).
"""

from __future__ import annotations

import ml_collections

from dgr_jax import storage


def data_dir_of(config: ml_collections.ConfigDict, workdir: str) -> str:
    """`config.data_dir`, or `<workdir>/data` when it is empty."""
    return config.data_dir or storage.join(workdir, "data")


def check_paths(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Every location the run will use, checked before anything is built or compiled.

    gs:// paths need credentials and an existing bucket (`storage.check`); the error names the
    path and says what is wrong.
    """
    storage.check(workdir, "--workdir")
    for key in ("data_dir", "init_from"):
        if config.get(key):
            storage.check(config[key], f"config.{key}")
    if config.input.get("manual_dir"):
        storage.check(config.input.manual_dir, "config.input.manual_dir")
