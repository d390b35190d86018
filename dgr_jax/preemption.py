"""How a run stops early on SIGTERM (preemption) and how the command lines report it.

A preempted run saves an agreed step on every process, then `train_and_evaluate` raises
`Preempted`; the entry points (`train.py`, the studies) print `preempted: saved step N; rerun the
same command to resume` and exit with `EXIT_PREEMPTED` on every process.
"""

from __future__ import annotations

# EX_TEMPFAIL of sysexits.h: "temporary failure; the user is invited to retry". Non-zero, so a
# scheduler's restart policy treats the run as unfinished, and distinct from a failure (1, 2).
EXIT_PREEMPTED = 75


class Preempted(Exception):
    """Raised after the agreed step was saved and committed on every process."""

    def __init__(self, step: int):
        super().__init__(f"preempted: saved step {step}; rerun the same command to resume")
        self.step = step


# Calls of `reached_sync_point` in this process so far. JAX's agreed point is "the largest
# counter any process last passed, plus one", compared for equality, so the counter must grow
# over the whole process: a study trains several runs in one process, each from step 0 (a
# trainer's step number would never reach a point agreed from the previous run's last step;
# reproduced with two processes on loopback), and polls between its phases too.
_calls = 0
_agreed = False  # the agreed call has passed (in every process alike)


def reached_sync_point() -> bool:
    """Multi-process: True on every process from the same call on once any process got SIGTERM.

    Every process must call it at the same places in the same order (every step of every
    training run, between a study's phases). JAX's answer is True for exactly one call; this one
    stays True after it, so a call made only to register the place (the trainer's before it
    compiles a run) cannot lose the agreement: every process then stops at its next call that
    acts. False when `jax.distributed` was not started (one process) or its preemption service
    is off.
    """
    global _calls, _agreed
    import jax

    if jax.process_count() == 1 or not jax.config.jax_enable_preemption_service:
        return False
    from jax.experimental import multihost_utils

    _calls += 1
    _agreed = multihost_utils.reached_preemption_sync_point(_calls) or _agreed
    return _agreed
