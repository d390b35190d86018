"""Checkpointer: single-process saves compile nothing, and a replicated / sharded state
round-trips exactly onto its shardings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from dgr_jax import checkpoint


def _state(mesh) -> dict:
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    # Odd, distinct shapes: a slice program per (shape, replica) would be a fresh compile each.
    shapes = [(3 + i, 5 + 2 * i) for i in range(6)]
    state = {
        f"w{i}": jax.device_put(np.arange(np.prod(s), dtype=np.float32).reshape(s) + i, replicated)
        for i, s in enumerate(shapes)
    }
    state["sharded"] = jax.device_put(np.arange(16 * 3, dtype=np.float32).reshape(16, 3), sharded)
    state["step"] = jax.device_put(jnp.int32(7), replicated)
    return state


def test_save_compiles_no_slice_programs_and_restores_onto_the_shardings(tmp_path):
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    state = _state(mesh)
    jax.block_until_ready(state)

    compiles: list[str] = []

    def listener(event: str, duration: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), keep=2)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        ckpt.save(7, state, {"epoch": 1})
        ckpt.wait()
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    # orbax's replica-parallel default slices each replicated array into one program per device
    # (here 6 arrays x 8 devices); one process must save whole arrays instead.
    assert compiles == []

    abstract = checkpoint.abstract_with_shardings(
        jax.eval_shape(lambda: state), jax.tree.map(lambda a: a.sharding, state)
    )
    restored, data = ckpt.restore(ckpt.resolve("latest"), abstract)
    ckpt.close()
    assert data == {"epoch": 1}
    for key, value in state.items():
        np.testing.assert_array_equal(np.asarray(restored[key]), np.asarray(value))
        assert restored[key].sharding.is_equivalent_to(value.sharding, value.ndim), key
