"""Multi-process helpers: `jax.distributed` start-up from flags or the environment, barriers.

One process per host. `initialize(...)` is a no-op for single-process runs; with explicit
arguments it starts the coordination service on the given address (CPU runs use gloo
collectives); with `auto=True` it lets JAX detect TPU pods, SLURM or GKE.
"""

from __future__ import annotations

import jax


def initialize(
    coordinator_address: str = "",
    num_processes: int = 1,
    process_id: int = 0,
    *,
    auto: bool = False,
) -> None:
    """Start jax.distributed when asked; must run before any other JAX call."""
    if coordinator_address:
        # CPU collectives across processes need gloo; the setting is ignored on GPU/TPU.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    elif auto:
        jax.distributed.initialize()


def sync(name: str) -> None:
    """Barrier across processes (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
