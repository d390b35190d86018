"""Target names -> compile-only devices: TPU slices and GPU hosts described, not attached.

    "v5e:2x4", "v4:2x2x1", ...   a TPU slice (libtpu's topology names; `jax[tpu]` installed)
    "h100:8", "a100:4"           N GPUs in one host (`jax-cuda13-plugin` installed)

`describe(name)` never touches a real accelerator: JAX's own backend stays the CPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from dgr_jax.aot import chips, gpu_targets

# pip commands named in the error when a plugin is missing (requirements-aot.txt pins both).
TPU_PIP = 'pip install "jax[tpu]==0.10.2"'
GPU_PIP = "pip install jax-cuda13-plugin==0.10.2"

# TPU topologies checked with libtpu 0.0.42 (any other name libtpu accepts works too), and
# the topology options each generation needs so the devices are what a JAX user gets on the
# real slice: v4 runs its two TensorCores per chip as one "megacore" device.
TPU_EXAMPLES = ("v4:2x2x1", "v5e:2x2", "v5e:2x4", "v5e:4x4", "v5p:2x2x1", "v6e:2x4", "tpu7x:2x2x1")
_TPU_OPTIONS = {"v4": {"chip_config_name": "megacore"}}
_GPU_RE = re.compile(r"^(?P<gpu>[a-z0-9]+):(?P<n>\d+)$")
_TPU_RE = re.compile(r"^(?P<gen>[a-z0-9]+):(?P<dims>\d+(x\d+)*)$")


class TargetError(ValueError):
    """A target that cannot be described here; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    platform: str  # "tpu" | "cuda"
    devices: list
    chip: chips.Chip

    @property
    def device_kind(self) -> str:
        return self.devices[0].device_kind

    @property
    def hbm_bytes(self) -> int:
        return int(self.chip.per_device(self.chip.hbm_bytes))


def valid_names() -> str:
    gpus = ", ".join(f"{g}:N" for g in gpu_targets.TARGETS)
    return (
        f"TPU topologies such as {', '.join(TPU_EXAMPLES)} (generations "
        f"{', '.join(g for g in chips.CHIPS if g not in gpu_targets.TARGETS)}), or {gpus} "
        "(N GPUs in one host)"
    )


def _quiet_libtpu() -> None:
    # Without a TPU libtpu logs that it cannot find the slice's hosts; a placeholder keeps
    # the output clean (the compile does not depend on it). Only in this process.
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # other JAX processes may run


def describe(name: str) -> Target:
    """The compile-only devices of target `name` (raises TargetError)."""
    import jax
    from jax.experimental import topologies

    # Compile for the target, run nothing on it: JAX's own backend stays the CPU (and the
    # plugins do not look for hardware).
    jax.config.update("jax_platforms", "cpu")
    gpu = _GPU_RE.match(name)
    if gpu and gpu["gpu"] in gpu_targets.TARGETS:
        n = int(gpu["n"])
        if n < 1:
            raise TargetError(f"target {name!r}: need at least one GPU")
        try:
            import jax_plugins.xla_cuda13  # noqa: F401
        except ImportError:
            raise TargetError(
                f"target {name!r} needs the CUDA compiler plugin, which is not installed: "
                f"{GPU_PIP} (or pip install -r requirements-aot.txt, in its own environment: "
                "README, 'Running on a TPU pod')"
            ) from None
        topo = topologies.get_topology_desc(
            platform="cuda",
            target_config=gpu_targets.target_config(gpu["gpu"]),
            topology=f"1x1x{n}",
        )
        return Target(name, "cuda", list(topo.devices), chips.CHIPS[gpu["gpu"]])
    tpu = _TPU_RE.match(name)
    if not tpu or tpu["gen"] not in chips.CHIPS or tpu["gen"] in gpu_targets.TARGETS:
        raise TargetError(f"unknown target {name!r}; valid targets: {valid_names()}")
    try:
        import libtpu  # noqa: F401
    except ImportError:
        raise TargetError(
            f"target {name!r} needs the TPU compiler (libtpu), which is not installed: "
            f"{TPU_PIP} (or pip install -r requirements-aot.txt, in its own environment: "
            "README, 'Running on a TPU pod')"
        ) from None
    _quiet_libtpu()
    try:
        topo = topologies.get_topology_desc(
            topology_name=name, platform="tpu", **_TPU_OPTIONS.get(tpu["gen"], {})
        )
    except Exception as e:  # libtpu's own message says what is wrong with the name
        raise TargetError(
            f"target {name!r}: libtpu rejects it ({str(e).splitlines()[0]}); valid targets: "
            f"{valid_names()}"
        ) from None
    devices = list(topo.devices)
    chip = chips.CHIPS[tpu["gen"]]
    num_chips = math.prod(int(d) for d in tpu["dims"].split("x"))
    if len(devices) != num_chips * chip.devices_per_chip:
        raise TargetError(
            f"target {name!r}: libtpu describes {len(devices)} devices for {num_chips} chips, "
            f"not the {chip.devices_per_chip} per chip the chip figures assume"
        )
    return Target(name, "tpu", devices, chip)
