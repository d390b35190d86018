"""The studies' training runs: resolve an arm's config, compare configs, train or resume.

[ours] A run is an experiment config plus a workdir. `resolve_arm_config` loads the experiment
config with the study's overrides; `config_differences` / `check_identical_conditions` compare
configs key by key, allowing differences only under `may_differ` (the paper's arms are trained
"under identical data processing and loss conditions", method.md section 1);
`ensure_trained` runs the real trainer (`dgr_jax.trainer.train_and_evaluate`) when the workdir
has no finished run, and raises `dgr_jax.preemption.Preempted` when the run stopped early (so a
study never goes on with an unfinished run); `stop_if_preempted` ends a study between its phases
on a SIGTERM that came after its last training step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from dgr_jax import checkpoint, configlib, jsonio, preemption, storage
from dgr_jax.preemption import Preempted

# dgr_jax/analysis/common/runs.py -> the repository root (configs/ lives there).
REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)


def _spec_path(spec: str) -> str:
    """A config spec whose path is relative to the cwd or, failing that, to the repository."""
    path, sep, arg = spec.partition(":")
    if not os.path.exists(path) and os.path.exists(os.path.join(REPO_ROOT, path)):
        path = os.path.join(REPO_ROOT, path)
    return path + sep + arg


def resolve_arm_config(
    spec: str, overrides: Sequence[str], *, data_dir: str, mesh: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
    """Load an arm's experiment config, apply the study's overrides, share its data dir."""
    config = configlib.load(_spec_path(spec), list(overrides))
    with config.unlocked():
        config.data_dir = data_dir
        config.mesh = ml_collections.ConfigDict(mesh.to_dict())
    return config


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, tuple):
        tree = list(tree)
    return {prefix[:-1]: tree}


def config_differences(
    a: Any, b: Any, may_differ: Sequence[str] = ()
) -> list[tuple[str, Any, Any]]:
    """(key, value_a, value_b) for every dotted key whose values differ, outside `may_differ`.

    `a`, `b`: ConfigDicts or plain (JSON) dicts. A key under a `may_differ` prefix is ignored.
    """
    fa = _flatten(a.to_dict() if hasattr(a, "to_dict") else a)
    fb = _flatten(b.to_dict() if hasattr(b, "to_dict") else b)

    def allowed(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in may_differ)

    diffs = []
    for key in sorted(set(fa) | set(fb)):
        if allowed(key):
            continue
        va, vb = fa.get(key, "<missing>"), fb.get(key, "<missing>")
        if va != vb:
            diffs.append((key, va, vb))
    return diffs


def check_identical_conditions(
    configs: dict[str, Any], may_differ: Sequence[str], what: str = "configs"
) -> list[str]:
    """Raise unless every arm's config equals the first one's outside `may_differ`.

    Returns the dotted keys that were compared (for the summary).
    """
    names = list(configs)
    first = configs[names[0]]
    for name in names[1:]:
        diffs = config_differences(first, configs[name], may_differ)
        if diffs:
            lines = "\n".join(f"  {k}: {names[0]}={va!r} {name}={vb!r}" for k, va, vb in diffs)
            raise ValueError(
                f"the study's arms must share data, augmentation, loss and schedule; their "
                f"{what} differ outside {tuple(may_differ)}:\n{lines}"
            )
    flat = _flatten(first.to_dict() if hasattr(first, "to_dict") else first)
    return sorted(k for k in flat if not any(k == p or k.startswith(p + ".") for p in may_differ))


def trained_config(workdir: str) -> dict | None:
    """The config a workdir was trained with (its config.json), or None."""
    path = storage.join(workdir, "config.json")
    if not storage.exists(path):
        return None
    return jsonio.read(path)


def latest_step(workdir: str) -> int | None:
    ckpt_dir = storage.join(workdir, "checkpoints")
    if not any(n.isdigit() for n in storage.listdir(ckpt_dir)):
        return None
    ckpt = checkpoint.Checkpointer(ckpt_dir, read_only=True)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


def ensure_trained(config: ml_collections.ConfigDict, workdir: str, log=print) -> bool:
    """Train (or resume) the arm unless its workdir holds a checkpoint at >= total_steps.

    Returns True when the trainer ran. Raises `Preempted` when the run stopped before
    total_steps: multi-process, the trainer raises it after saving the agreed step; one process,
    the trainer saves and returns on SIGTERM, and the latest checkpoint says so.
    """
    step = latest_step(workdir)
    if step is not None and step >= config.total_steps:
        log(f"  {workdir}: checkpoint at step {step}; using it")
        return False
    from dgr_jax.trainer import train_and_evaluate

    what = "training" if step is None else f"resuming from step {step}"
    log(f"  {workdir}: {what} to step {config.total_steps}")
    train_and_evaluate(config, workdir)
    step = latest_step(workdir)
    if step is None or step < config.total_steps:
        raise Preempted(step or 0)
    return True


class PreemptedBetweenPhases(Preempted):
    """SIGTERM outside training: every finished run is saved, nothing else needs saving."""

    def __init__(self, where: str):
        Exception.__init__(
            self,
            f"preempted {where}: every finished run is saved; rerun the same command to finish "
            "the study",
        )
        self.step = None


def stop_if_preempted(where: str) -> None:
    """Multi-process: raise `PreemptedBetweenPhases` once any process got SIGTERM.

    Call on every process at the same places (between a study's phases): the processes agree
    there as the trainer's processes agree at a step (`preemption.reached_sync_point`), so a
    SIGTERM after the last training step still ends the study in time, on every process.
    """
    if preemption.reached_sync_point():
        raise PreemptedBetweenPhases(where)
