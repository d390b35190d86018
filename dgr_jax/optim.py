"""Optimiser and learning-rate schedule from `config.optim`.

The hosts' schedule (NeWCRFs/PixelFormer train.py): lr_t = (lr0 - lr_end) (1 - t/T)^0.9 + lr_end
with lr_end = 0.1 * lr0, updated every step; optionally preceded by a linear warm-up from 0.
Adam as the hosts (NeWCRFs ignores its weight-decay flag), AdamW as an option; gradient
clipping by global norm when `grad_clip > 0`.
"""

from __future__ import annotations

import ml_collections
import optax


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


def make_optimizer(
    optim_cfg: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, schedule); the schedule is also used for logging."""
    schedule = make_schedule(optim_cfg, total_steps)
    if optim_cfg.name == "adam":
        opt = optax.adam(schedule, eps=float(optim_cfg.eps))
    elif optim_cfg.name == "adamw":
        opt = optax.adamw(
            schedule, eps=float(optim_cfg.eps), weight_decay=float(optim_cfg.weight_decay)
        )
    else:
        raise ValueError(f"unknown optimizer {optim_cfg.name!r}; valid: adam, adamw")
    parts = []
    if float(optim_cfg.grad_clip) > 0:
        parts.append(optax.clip_by_global_norm(float(optim_cfg.grad_clip)))
    parts.append(opt)
    return optax.chain(*parts), schedule
