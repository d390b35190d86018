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
