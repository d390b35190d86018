"""Optimiser and learning-rate schedule from `config.optim`.

The hosts' schedule (NeWCRFs/PixelFormer train.py): lr_t = (lr0 - lr_end) (1 - t/T)^0.9 + lr_end
with lr_end = 0.1 * lr0, updated every step; optionally preceded by a linear warm-up from 0.
Adam as the hosts (NeWCRFs ignores its weight-decay flag), AdamW as an option; gradient
clipping by global norm when `grad_clip > 0`.

Parameter groups (`config.optim.param_groups`, empty by default): name -> {"include": globs on
parameter paths ("encoder/vit/*"; `fnmatch`, "*" crosses "/"), "lr_scale": multiplies the
schedule (0 freezes the group: no update, no optimiser state), "weight_decay": None for
`optim.weight_decay`}. Parameters no group includes form the default group (lr_scale 1); a
parameter two groups include is an error. Fine-tuning a foundation model uses it to give the
pre-trained encoder a smaller learning rate than the new head (Depth Anything V2's
`metric_depth/train.py`: encoder lr, 10x for the rest). Clipping, when on, is over all groups.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import optax

DEFAULT_GROUP = "default"


def make_schedule(optim_cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Poly decay to `end_lr_factor * lr` over `total_steps`, after `warmup_steps` of ramp."""
    lr = float(optim_cfg.lr)
    warmup = int(optim_cfg.warmup_steps)
    decay = optax.polynomial_schedule(
        init_value=lr,
        end_value=lr * float(optim_cfg.end_lr_factor),
        power=float(optim_cfg.power),
        transition_steps=max(1, total_steps - warmup),
    )
    if warmup <= 0:
        return decay
    ramp = optax.linear_schedule(0.0, lr, warmup)
    return optax.join_schedules([ramp, decay], boundaries=[warmup])


def _base_optimizer(
    name: str, schedule: optax.Schedule, *, eps: float, weight_decay: float
) -> optax.GradientTransformation:
    if name == "adam":
        return optax.adam(schedule, eps=eps)
    if name == "adamw":
        return optax.adamw(schedule, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: adam, adamw")


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def group_labels(params: Any, groups: Mapping[str, Mapping[str, Any]]) -> Any:
    """The tree of `params` with each leaf replaced by its group's name.

    A group that includes no parameter is allowed (a recipe's encoder group under another
    encoder, e.g. an ablation's CNN arm); it is simply empty.

    Raises:
        ValueError: a parameter included by two groups.
    """

    def label(path, _leaf):
        key = _path_str(path)
        hits = [n for n, g in groups.items() if any(fnmatch.fnmatch(key, p) for p in g["include"])]
        if len(hits) > 1:
            raise ValueError(f"parameter {key} is in optim.param_groups {hits}; make them disjoint")
        return hits[0] if hits else DEFAULT_GROUP

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(
    optim_cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, schedule); the schedule (the default group's) is also logged."""
    schedule = make_schedule(optim_cfg, total_steps)
    eps, decay = float(optim_cfg.eps), float(optim_cfg.weight_decay)
    groups = {k: dict(v) for k, v in (optim_cfg.get("param_groups") or {}).items()}
    if DEFAULT_GROUP in groups:
        raise ValueError(f"optim.param_groups: {DEFAULT_GROUP!r} is the name of the rest")
    opt = _base_optimizer(optim_cfg.name, schedule, eps=eps, weight_decay=decay)
    if groups:
        transforms = {DEFAULT_GROUP: opt}
        for name, group in groups.items():
            scale = float(group.get("lr_scale", 1.0))
            wd = group.get("weight_decay")
            if scale == 0:
                transforms[name] = optax.set_to_zero()  # frozen: params stay bit-identical
                continue
            transforms[name] = _base_optimizer(
                optim_cfg.name,
                lambda step, s=scale: s * schedule(step),
                eps=eps,
                weight_decay=decay if wd is None else float(wd),
            )
        opt = optax.multi_transform(transforms, lambda params: group_labels(params, groups))
    parts = []
    if float(optim_cfg.grad_clip) > 0:
        parts.append(optax.clip_by_global_norm(float(optim_cfg.grad_clip)))
    parts.append(opt)
    return optax.chain(*parts), schedule
