"""Published per-chip figures of the accelerators `dgr_jax.aot` compiles for.

Every number is the vendor's public figure for one chip, with its source next to it. A chip
may expose several JAX devices (TPU7x: two TensorCores, each its own device); `per_device`
divides by that. Figures are peaks: the roofline built from them is a lower bound on step time.

Float32 on the matrix units: XLA:TPU computes float32 dots at the default precision in one
bfloat16 MXU pass, so a float32 program's dots run at the bfloat16 peak (3 passes at "high",
6 at "highest"; `jax.lax.Precision` docs). XLA:GPU on Ampere / Hopper uses TF32 tensor cores for
float32 dots at the default precision, so `peak_fp32_flops` there is the dense TF32 figure
(the plain FP32 CUDA-core figure is in the comment). Vendors do not publish a float32 figure
for TPUs.
"""

from __future__ import annotations

import dataclasses

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One chip's published peaks; `devices_per_chip` JAX devices share them."""

    name: str
    peak_bf16_flops: float  # dense, per chip
    peak_fp32_flops: float  # float32 dots at the default precision (module docstring)
    hbm_bytes: int  # per chip
    hbm_bandwidth: float  # bytes / s per chip
    devices_per_chip: int
    source: str

    def per_device(self, value: float) -> float:
        return value / self.devices_per_chip

    def peak_flops(self, dtype: str) -> float:
        """Per-device peak for the compute dtype ("bfloat16" | "float32")."""
        peak = self.peak_bf16_flops if dtype == "bfloat16" else self.peak_fp32_flops
        return self.per_device(peak)


TFLOPS, GBPS = 1e12, 1e9

CHIPS: dict[str, Chip] = {
    # docs.cloud.google.com/tpu/docs/v4: 275 TFLOPs bf16, 32 GiB HBM2 at 1200 GBps per chip.
    # Two TensorCores per chip run as one "megacore" device (the default on v4).
    "v4": Chip(
        "TPU v4",
        275 * TFLOPS,
        275 * TFLOPS,
        32 * GIB,
        1200 * GBPS,
        1,
        "https://cloud.google.com/tpu/docs/v4",
    ),
    # docs.cloud.google.com/tpu/docs/v5e: 197 TFLOPs bf16, 16 GB HBM2 at 819 GBps per chip.
    "v5e": Chip(
        "TPU v5e",
        197 * TFLOPS,
        197 * TFLOPS,
        16 * GIB,
        819 * GBPS,
        1,
        "https://cloud.google.com/tpu/docs/v5e",
    ),
    # docs.cloud.google.com/tpu/docs/v5p: 459 TFLOPs bf16, 95 GiB HBM2e at 2765 GBps per chip
    # (one megacore device per chip).
    "v5p": Chip(
        "TPU v5p",
        459 * TFLOPS,
        459 * TFLOPS,
        95 * GIB,
        2765 * GBPS,
        1,
        "https://cloud.google.com/tpu/docs/v5p",
    ),
    # docs.cloud.google.com/tpu/docs/v6e: 918 TFLOPs bf16, 32 GB HBM at 1638 GBps per chip.
    "v6e": Chip(
        "TPU v6e",
        918 * TFLOPS,
        918 * TFLOPS,
        32 * GIB,
        1638 * GBPS,
        1,
        "https://cloud.google.com/tpu/docs/v6e",
    ),
    # docs.cloud.google.com/tpu/docs/tpu7x: 2307 TFLOPs bf16, 192 GiB HBM at 7380 GBps per
    # chip; two TensorCores per chip, each its own JAX device.
    "tpu7x": Chip(
        "TPU7x",
        2307 * TFLOPS,
        2307 * TFLOPS,
        192 * GIB,
        7380 * GBPS,
        2,
        "https://cloud.google.com/tpu/docs/tpu7x",
    ),
    # NVIDIA H100 SXM5 80GB datasheet: BF16 tensor 989 TFLOPS dense (1979 with sparsity), TF32
    # 494.7 dense (989 sparse), FP32 (CUDA cores) 67 TFLOPS; 80 GB HBM3 at 3.35 TB/s.
    "h100": Chip(
        "NVIDIA H100 SXM5 80GB",
        989 * TFLOPS,
        494.7 * TFLOPS,
        80 * GIB,
        3350 * GBPS,
        1,
        "https://www.nvidia.com/en-us/data-center/h100/ (datasheet)",
    ),
    # NVIDIA A100 80GB SXM datasheet: BF16 tensor 312 TFLOPS dense, TF32 156 dense, FP32 (CUDA
    # cores) 19.5 TFLOPS; 80 GB HBM2e at 2039 GB/s.
    "a100": Chip(
        "NVIDIA A100 SXM4 80GB",
        312 * TFLOPS,
        156 * TFLOPS,
        80 * GIB,
        2039 * GBPS,
        1,
        "https://www.nvidia.com/en-us/data-center/a100/ (datasheet)",
    ),
}
