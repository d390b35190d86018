"""The two depth networks of the comparative study: resolve, train if needed, check, freeze.

[paper] The Transformer and CNN depth networks are trained "under identical data processing and
loss conditions" (method.md section 1). [ours] Each arm is an experiment config plus a workdir;
`ensure_trained` runs the real trainer (`dgr_jax.trainer.train_and_evaluate`) when the workdir
has no finished run, and `check_identical_conditions` compares the two configs key by key,
allowing differences only under `may_differ` (the encoder; `init_from`, since each backbone has
its own pretrained weights). The frozen model is restored the way `dgr_jax.evaluate.
evaluate_checkpoint` does (abstract state, shardings, orbax restore of the latest step) and its
parameters are only ever passed as arguments with `jax.lax.stop_gradient`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dgr_jax import checkpoint, configlib, jsonio, optim, sharding, steps, storage

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class FrozenArm:
    """A restored, frozen depth network of one arm."""

    name: str  # the study's key, e.g. "transformer"
    label: str  # for figures, e.g. "Transformer (ViT-Ti/16)"
    config: ml_collections.ConfigDict
    workdir: str
    step: int
    model_def: steps.ModelDef
    params: Any  # replicated on the mesh; never updated
    rest: Any

    @property
    def num_params(self) -> int:
        return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params))

    def predict_fn(self) -> Callable[[Any, Any, jax.Array], jax.Array]:
        """predict(params, rest, normalised images) -> depth (B, H, W), no gradient to params."""
        predict = steps.make_predict(self.model_def)

        def frozen_predict(params, rest, images):
            params, rest = jax.lax.stop_gradient((params, rest))
            return predict(params, rest, images)[..., 0]

        return frozen_predict


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

    Returns True when the trainer ran.
    """
    step = latest_step(workdir)
    if step is not None and step >= config.total_steps:
        log(f"  {workdir}: checkpoint at step {step}; using it")
        return False
    from dgr_jax.trainer import train_and_evaluate

    what = "training" if step is None else f"resuming from step {step}"
    log(f"  {workdir}: {what} to step {config.total_steps}")
    train_and_evaluate(config, workdir)
    return True


def restore_frozen(
    name: str, label: str, config: ml_collections.ConfigDict, workdir: str, mesh
) -> FrozenArm:
    """Restore the latest checkpoint of `workdir`, replicated on `mesh`."""
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    abstract = jax.eval_shape(lambda: steps.init_state(model_def, tx, config.seed))
    state_sh = sharding.state_shardings(abstract, mesh, "data_parallel")
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
    try:
        step = ckpt.resolve("latest")
        state, _ = ckpt.restore(step, checkpoint.abstract_with_shardings(abstract, state_sh))
    finally:
        ckpt.close()
    return FrozenArm(
        name=name,
        label=label,
        config=config,
        workdir=workdir,
        step=int(step),
        model_def=model_def,
        params=state["params"],
        rest=state["rest"],
    )


def clamp_depth(depth: jax.Array, min_depth: float, max_depth: float) -> jax.Array:
    """The evaluator's clamp: [min, max], NaN -> min."""
    return jnp.where(jnp.isnan(depth), min_depth, jnp.clip(depth, min_depth, max_depth))
