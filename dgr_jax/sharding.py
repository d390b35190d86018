"""Device mesh and sharding policy from the config; model code stays placement-agnostic.

Mesh axes are ("data", "model"). `config.mesh.data = -1` takes every device not used by the
model axis; an explicit smaller size uses the first data x model devices. Policies for the
train state (`config.sharding`):
  data_parallel  every array replicated; the batch is split over "data".
  fsdp           each parameter / optimizer-state array is split over "data" along its largest
                 dimension divisible by the data-axis size (arrays smaller than
                 FSDP_MIN_SIZE elements stay replicated); XLA inserts the all-gathers.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

FSDP_MIN_SIZE = 2**14  # below this many elements sharding costs more than it saves
POLICIES = ("data_parallel", "fsdp")


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: list | None = None) -> Mesh:
    """A ("data", "model") mesh over all devices (or `devices`)."""
    devices = list(jax.devices() if devices is None else devices)
    model = int(mesh_cfg.model)
    if model < 1 or len(devices) % model:
        raise ValueError(f"mesh.model={model} must divide the {len(devices)} devices")
    data = int(mesh_cfg.data)
    if data == -1:
        data = len(devices) // model
    if data < 1 or data * model > len(devices):
        raise ValueError(
            f"mesh data={mesh_cfg.data} x model={model} needs more than the {len(devices)} "
            "devices; set mesh.data=-1 to take them all"
        )
    # A smaller mesh uses the first data x model devices (e.g. a 1-device reference run).
    grid = np.asarray(devices[: data * model]).reshape(data, model)
    return Mesh(grid, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over "data", everything else replicated."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], data_size: int) -> P:
    if int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE or data_size == 1:
        return P()
    for axis in np.argsort(shape)[::-1]:  # largest dimension first
        if shape[axis] % data_size == 0:
            spec = [None] * len(shape)
            spec[axis] = "data"
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, policy: str) -> Any:
    """A pytree of NamedSharding matching `abstract_state` (leaves with .shape)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown sharding policy {policy!r}; valid: {', '.join(POLICIES)}")
    data_size = mesh.shape["data"]

    def leaf(x):
        if policy == "data_parallel" or not getattr(x, "shape", ()):
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, _fsdp_spec(tuple(x.shape), data_size))

    return jax.tree.map(leaf, abstract_state)
