"""Orbax checkpoints of the train state and the data-iterator state, atomic and async.

Layout: `<workdir>/checkpoints/<step>/{state, data, metrics}`; orbax writes each step to a
temporary folder and renames it when complete, so a run killed at any moment leaves only
whole checkpoints. Kept: the latest `keep` steps plus the best one by the main evaluation
metric (orbax's `max_to_keep` together with `best_fn` would delete the latest; a preservation
policy keeps both). Every process calls save/restore (multi-host); orbax coordinates.
On gs:// (a pod's work directory) orbax marks a finished step with a `commit_success.txt` file
instead of a rename, and tensorstore writes the arrays; nothing here differs. Files and
folders get the umask's modes (orbax and tensorstore create them as ordinary files; checked
under umask 022 and 077 by tests/test_permissions.py), so nothing here sets any.
"""

from __future__ import annotations

from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cmgr

from dgr_jax import storage


def _metric_fn(name: str):
    return lambda metrics: float(metrics[name])


def use_whole_array_saves() -> None:
    """On a single process, save each replicated array from one device, in one piece.

    orbax's default `jax.Array` handler saves "replica-parallel": each of an array's N replicas
    copies 1/N of it to the host, which lets N hosts share the writing. On one process every
    replica is local, so that only turns each array into N `lax.slice` programs, each compiled
    on first use: the two 0.2M-parameter models of the sparse-pixel smoke study on 8 CPU
    devices compiled 264 of them for their first saves (16.8 s of the study's 118 s of XLA
    compilation). One process therefore registers an `ArrayHandler` without replica-parallel
    (the same files on disk: restores are unaffected); several processes keep orbax's default.
    """
    if jax.process_count() > 1:
        return
    current = ocp.type_handlers.get_type_handler(jax.Array)
    if not getattr(current, "_use_replica_parallel", True):
        return  # already registered
    handler = ocp.type_handlers.ArrayHandler(
        use_replica_parallel=False,
        # Keep the default handler's per-array metadata store (its class is not public API).
        array_metadata_store=getattr(current, "_array_metadata_store", None),
    )
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


class Checkpointer:
    """Save / restore {"state": pytree of arrays, "data": JSON} per step."""

    def __init__(
        self,
        directory: storage.PathLike,
        *,
        keep: int = 2,
        best_metric: str | None = None,
        best_mode: str = "min",
        read_only: bool = False,
    ):
        use_whole_array_saves()
        self.directory = storage.absolute(directory)  # local or gs:// (orbax writes both)
        self.best_metric = best_metric
        policies: list[Any] = [cmgr.LatestN(n=max(1, keep))]
        best_fn = None
        if best_metric:
            best_fn = _metric_fn(best_metric)
            policies.append(
                cmgr.BestN(
                    get_metric_fn=best_fn,
                    reverse=best_mode == "min",  # BestN keeps the tail of an ascending sort
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=cmgr.AnyPreservationPolicy(policies),
            best_fn=best_fn,
            best_mode=best_mode,
            enable_async_checkpointing=True,
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            storage.path(self.directory), options=options, item_names=("state", "data")
        )

    def save(self, step: int, state: Any, data_state: dict, metrics: dict | None = None) -> None:
        """Start an async save; returns once device arrays are copied to the host."""
        if metrics is not None and self.best_metric not in metrics:
            metrics = None  # a step without the main metric is kept only while it is latest
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
            ),
            metrics=metrics,
            force=True,
        )

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """Restore onto `abstract_state` (ShapeDtypeStructs with shardings)."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["data"])

    def resolve(self, which: str | int) -> int:
        """ "latest" | "best" | a step number -> an existing step (clear error otherwise)."""
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoints in {self.directory}")
        if which == "latest":
            return steps[-1]
        if which == "best":
            best = self._manager.best_step() if self.best_metric else None
            if best is None:
                raise FileNotFoundError(
                    f"no checkpoint in {self.directory} has evaluation metrics; use latest"
                )
            return best
        step = int(which)
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step}; available: {steps}")
        return step

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_with_shardings(abstract: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings: the restore target."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )
