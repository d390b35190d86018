"""Test-wide set-up: 8 fake CPU devices (before JAX initialises) and small shared fixtures."""

import os

# Sharding tests need several devices; on CPU XLA fakes them. This must happen before the first
# JAX operation, so it lives at conftest import time.
_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
# The project's persistent XLA compilation cache (dgr_jax/compile_cache.py: per user,
# ~/.cache/dgr_jax/xla unless JAX_COMPILATION_CACHE_DIR says otherwise;
# DGR_JAX_NO_COMPILATION_CACHE=1 switches it off), set through JAX's environment variables so
# that the test processes and every subprocess they start share it: the tests compile the same
# tiny programs many times, and a second run of the suite on the same machine compiles little.
from dgr_jax import compile_cache  # noqa: E402  (imports no JAX)

if not compile_cache.disabled():
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", compile_cache.default_dir())
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(compile_cache.MAX_BYTES))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Keep tests deterministic and quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
compile_cache.enable()  # this process too: thresholds from the environment, self-checking entries


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run first (otherwise in collection order): with two test processes
    (`-n 2`) the long end-to-end runs then overlap the many short tests instead of running
    last, side by side or alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
