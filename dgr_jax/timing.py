"""Interleaved timing of several sides in one process (ours; the benchmarks' and the study's).

The sides of a comparison run in one process, interleaved A B, B A, A B ... after warm-up
(compilation, first-call allocations), and each side reports the median of its repeats.
Interleaving spreads slow drifts of a shared machine (other jobs starting or stopping) over
both sides; the median drops isolated stalls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def interleave_order(names: Sequence[str], repeats: int) -> list[str]:
    """A B, B A, A B, ...: each round reverses the previous one, so no side always goes first."""
    order: list[str] = []
    for r in range(repeats):
        order += list(names) if r % 2 == 0 else list(reversed(names))
    return order


def time_interleaved(
    sides: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of each call, per side; every callable must block until its work is done.

    Warm-up calls (not timed) run first for every side, then the timed calls interleave.
    """
    names = list(sides)
    for _ in range(warmup):
        for name in names:
            sides[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in interleave_order(names, repeats):
        start = time.perf_counter()
        sides[name]()
        times[name].append(time.perf_counter() - start)
    return times
