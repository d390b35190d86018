"""Test-wide set-up: 8 fake CPU devices (before JAX initialises) and small shared fixtures."""

import os

# Sharding tests need several devices; on CPU XLA fakes them. This must happen before the first
# JAX operation, so it lives at conftest import time.
_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
# One persistent XLA compilation cache for the whole session, subprocesses included (they
# inherit the environment): the trainer tests compile the same tiny programs several times.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="dgr_jax_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Keep tests deterministic and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run first (otherwise in collection order): with two test processes
    (`-n 2`) the long end-to-end runs then overlap the many short tests instead of running
    last, side by side or alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
