"""GPU target descriptions for compiling without the GPU (XLA's `GpuTargetConfig` text).

`jax.experimental.topologies.get_topology_desc(platform="cuda", target_config=TEXT,
topology="1x1xN")` (with `jax-cuda13-plugin` installed) describes N such GPUs in one host, as in
jax's `tests/deviceless_aot_test.py`. Each field's source is written next to it:
  [CG]  CUDA C++ Programming Guide, "Technical Specifications per Compute Capability" (9.0 and
        8.0 columns) and "Features and Technical Specifications".
  [H]   NVIDIA H100 Tensor Core GPU datasheet / architecture whitepaper (SXM5: 132 SMs,
        128 FP32 units per SM, 50 MB L2, 1.98 GHz boost, 3.35 TB/s).
  [A]   NVIDIA A100 Tensor Core GPU datasheet / architecture whitepaper (SXM4 80GB: 108 SMs,
        64 FP32 units per SM, 40 MB L2, 1.41 GHz boost, 2039 GB/s).
  [J]   the H100 description posted in jax issue #28376 (device_info as XLA reads it from an
        H100 80GB HBM3 through the CUDA driver: byte counts, bandwidth, memory size).
  [V]   software versions this project pins: jax-cuda13-plugin 0.10.2 is built for CUDA 13.0 and
        cuDNN 9 (assumed 9.12); the compiler uses them to choose kernels and fusions.
"""

from __future__ import annotations

# (field, value, source); nested messages are written as "name { ... }" by `_text`.
H100_SXM: list[tuple[str, object, str]] = [
    ("threads_per_block_limit", 1024, "CG"),
    ("threads_per_warp", 32, "CG"),
    ("shared_memory_per_block", 49152, "CG: 48 KB without opt-in"),
    ("shared_memory_per_core", 233472, "CG: 228 KB per SM (cc 9.0)"),
    ("threads_per_core_limit", 2048, "CG: 2048 resident threads per SM"),
    ("core_count", 132, "H: 132 SMs (SXM5)"),
    ("fpus_per_core", 128, "H: 128 FP32 units per SM"),
    ("block_dim_limit_x", 2147483647, "CG"),
    ("block_dim_limit_y", 65535, "CG"),
    ("block_dim_limit_z", 65535, "CG"),
    ("memory_bandwidth", 3352320000000, "J (H: 3.35 TB/s)"),
    ("l2_cache_size", 52428800, "J, H: 50 MB"),
    ("clock_rate_ghz", 1.98, "H: boost clock"),
    ("device_memory_size", 84929347584, "J: what the driver reports usable of 80 GB"),
    ("shared_memory_per_block_optin", 232448, "CG: 227 KB with opt-in (cc 9.0)"),
    ("cuda_compute_capability", {"major": 9, "minor": 0}, "CG: H100 is 9.0"),
    ("registers_per_core_limit", 65536, "CG: 64K 32-bit registers per SM"),
    ("registers_per_block_limit", 65536, "CG"),
]

A100_SXM: list[tuple[str, object, str]] = [
    ("threads_per_block_limit", 1024, "CG"),
    ("threads_per_warp", 32, "CG"),
    ("shared_memory_per_block", 49152, "CG: 48 KB without opt-in"),
    ("shared_memory_per_core", 167936, "CG: 164 KB per SM (cc 8.0)"),
    ("threads_per_core_limit", 2048, "CG: 2048 resident threads per SM"),
    ("core_count", 108, "A: 108 SMs"),
    ("fpus_per_core", 64, "A: 64 FP32 units per SM"),
    ("block_dim_limit_x", 2147483647, "CG"),
    ("block_dim_limit_y", 65535, "CG"),
    ("block_dim_limit_z", 65535, "CG"),
    ("memory_bandwidth", 2039000000000, "A: 2039 GB/s (80GB SXM)"),
    ("l2_cache_size", 41943040, "A: 40 MB"),
    ("clock_rate_ghz", 1.41, "A: boost clock"),
    ("device_memory_size", 85899345920, "A: 80 GB (81920 MiB as the driver lists it)"),
    ("shared_memory_per_block_optin", 166912, "CG: 163 KB with opt-in (cc 8.0)"),
    ("cuda_compute_capability", {"major": 8, "minor": 0}, "CG: A100 is 8.0"),
    ("registers_per_core_limit", 65536, "CG: 64K 32-bit registers per SM"),
    ("registers_per_block_limit", 65536, "CG"),
]

# name -> (device_info fields, device_description_str)
TARGETS: dict[str, tuple[list, str]] = {
    "h100": (H100_SXM, "NVIDIA H100 80GB HBM3"),
    "a100": (A100_SXM, "NVIDIA A100-SXM4-80GB"),
}

# [V]: the plugin's CUDA runtime and cuDNN (assumed minor version).
_RUNTIME = "runtime_version { major: 13 minor: 0 patch: 0 } dnn_version_info { major: 9 minor: 12 }"


def _value(value) -> str:
    if isinstance(value, dict):
        return "{ " + " ".join(f"{k}: {v}" for k, v in value.items()) + " }"
    return f": {value}"


def target_config(name: str) -> str:
    """The `GpuTargetConfig` text proto of GPU `name` ("h100" | "a100")."""
    fields, description = TARGETS[name]
    info = " ".join(f"{field} {_value(value)}".replace(" :", ":") for field, value, _ in fields)
    return (
        f'gpu_device_info {{ {info} }} platform_name: "CUDA" {_RUNTIME} '
        f'device_description_str: "{description}"'
    )
