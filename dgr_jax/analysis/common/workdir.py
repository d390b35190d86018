"""A study's work directory: one design per directory, written by process 0 (ours).

A study's results are only comparable within one design, and a study is resumed by rerunning
its command: so the study config is recorded in `<workdir>/config.json` at the first start and
every later start must bring the same config, key by key, or is refused with the keys that
changed (`StudyConfigChanged`) before anything runs. Every process checks (they read the same
file, so all refuse alike); process 0 writes, after a barrier, so no process reads a half
written record. `is_writer()` is the one place that says which process writes a study's files.
"""

from __future__ import annotations

import json

import jax
import ml_collections

from dgr_jax import jsonio, multihost, storage
from dgr_jax.analysis.common import runs

CONFIG_FILE = "config.json"


class StudyConfigChanged(ValueError):
    """The study config differs from the one recorded in the workdir at its first start."""


def is_writer() -> bool:
    """True on the process that writes the study's files (process 0)."""
    return jax.process_index() == 0


def config_changes(recorded: dict, config: ml_collections.ConfigDict) -> list[tuple]:
    """(key, recorded value, new value) for every dotted key that differs."""
    # Through JSON, as the record was: tuples become lists, NaN null, so only real changes show.
    new = json.loads(jsonio.dumps(jsonio.config_json(config)))
    return runs.config_differences(recorded, new)


def check_and_record_config(workdir: str, config: ml_collections.ConfigDict) -> bool:
    """Refuse a changed study config; record it at the first start. True when it was recorded
    before (a rerun). Call on every process, before anything of the study runs."""
    path = storage.join(workdir, CONFIG_FILE)
    recorded = jsonio.read(path) if storage.exists(path) else None
    if recorded is not None:
        changes = config_changes(recorded, config)
        if changes:
            lines = "\n".join(f"  {k}: recorded {a!r}, now {b!r}" for k, a, b in changes)
            raise StudyConfigChanged(
                f"{workdir} holds a study started with another config ({path}); a study's "
                f"results must come from one design. Changed keys:\n{lines}\n"
                "Rerun with the recorded config to resume, or start the changed study in a new "
                "workdir."
            )
    multihost.sync("study_config_checked")
    if recorded is None and is_writer():
        jsonio.write(path, jsonio.config_json(config))
    return recorded is not None
