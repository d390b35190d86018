"""The persistent compilation cache: bit-identical results, and bad entries never break a run."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dgr_jax import compile_cache

WORKER = pathlib.Path(__file__).with_name("compile_cache_worker.py")
PAYLOAD = b"x" * 1000 + bytes(range(256))


def test_entries_name_their_key_and_check_their_payload():
    stored = compile_cache.wrap_entry("jit_f-abc", PAYLOAD)
    assert compile_cache.unwrap_entry("jit_f-abc", stored) == (PAYLOAD, "")
    problems = {
        "other key": compile_cache.unwrap_entry("jit_g-def", stored)[1],
        "truncated": compile_cache.unwrap_entry("jit_f-abc", stored[:-10])[1],
        "flipped": compile_cache.unwrap_entry(
            "jit_f-abc", stored[:-5] + bytes([stored[-5] ^ 1]) + stored[-4:]
        )[1],
        "plain jax": compile_cache.unwrap_entry("jit_f-abc", PAYLOAD)[1],
        "empty": compile_cache.unwrap_entry("jit_f-abc", b"")[1],
    }
    assert "another program" in problems["other key"]
    assert "truncated" in problems["truncated"]
    assert "checksum" in problems["flipped"]
    assert "header" in problems["plain jax"] and "header" in problems["empty"]


def test_switch_off_and_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.default_dir() == str(tmp_path / "dgr_jax" / "xla")
    for value, off in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv(compile_cache.DISABLE_ENV, value)
        assert compile_cache.disabled() is off


def test_the_test_session_uses_the_guarded_cache():
    """conftest enables the cache in this process: a JAX upgrade that moves the internals the
    guard wraps must fail here, not silently drop the protection."""
    from jax._src import compilation_cache as cc

    if compile_cache.disabled():
        pytest.skip(f"{compile_cache.DISABLE_ENV} is set")
    assert compile_cache.enable() == os.environ["JAX_COMPILATION_CACHE_DIR"]
    assert compile_cache.install_guard()
    assert getattr(cc.get_file_cache, "_dgr_jax_guarded", False)


def test_multi_process_runs_use_only_an_explicit_directory(monkeypatch):
    """Only process 0 writes entries, so with per-host caches the other processes compile while
    process 0 loads, and the first collective times out (gloo: 30 s): off unless explicit."""
    import jax

    saved = (jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache)
    monkeypatch.delenv(compile_cache.DISABLE_ENV, raising=False)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert compile_cache.enable() is None
        assert not jax.config.jax_enable_compilation_cache
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", "/shared/xla")
        assert compile_cache.enable() == "/shared/xla"
        assert jax.config.jax_enable_compilation_cache
    finally:
        jax.config.update("jax_compilation_cache_dir", saved[0])
        jax.config.update("jax_enable_compilation_cache", saved[1])


def _run(out: pathlib.Path, env: dict) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(out) as f:
        return {k: f[k] for k in f.files}, proc.stderr


def _same_bits(a: dict, b: dict) -> None:
    keys = [k for k in a if k not in ("hits", "misses", "cache_dir")]
    assert keys == [k for k in b if k not in ("hits", "misses", "cache_dir")]
    for key in keys:
        assert a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.slow
def test_results_are_bit_identical_and_bad_entries_are_replaced(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "DGR_JAX_"))}
    base["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    cache = tmp_path / "xdg" / "dgr_jax" / "xla"

    # Off: switched off even though JAX's own variable names a directory.
    elsewhere = tmp_path / "elsewhere"
    off_env = {
        **base,
        "DGR_JAX_NO_COMPILATION_CACHE": "1",
        "JAX_COMPILATION_CACHE_DIR": str(elsewhere),
    }
    off, _ = _run(tmp_path / "off.npz", off_env)
    assert str(off["cache_dir"]) == "None" and int(off["hits"]) == int(off["misses"]) == 0
    assert not elsewhere.exists() or not any(elsewhere.iterdir())

    # Cold (the per-user default directory), then warm: the same bits, loaded not compiled.
    cold, _ = _run(tmp_path / "cold.npz", base)
    assert str(cold["cache_dir"]) == str(cache)
    assert int(cold["hits"]) == 0 and int(cold["misses"]) >= 3
    entries = sorted(cache.glob("*-cache"))
    assert len(entries) >= 3
    warm, _ = _run(tmp_path / "warm.npz", base)
    assert int(warm["hits"]) == len(entries) and int(warm["misses"]) == 0
    _same_bits(off, cold)
    _same_bits(off, warm)

    # Damage every entry: truncated, one flipped byte, another program's executable
    # under the key (a stale or misplaced file). (A file without our header: the unit test.)
    by_name = {p.name.split("-")[0]: p for p in entries}
    train, predict = by_name["jit_train_step"], by_name["jit_predict"]
    blobs = {p: p.read_bytes() for p in entries}
    train.write_bytes(blobs[train][: len(blobs[train]) // 2])
    flipped = bytearray(blobs[predict])
    flipped[len(flipped) // 2] ^= 0xFF
    predict.write_bytes(bytes(flipped))
    others = [p for p in entries if p not in (train, predict)]
    for p in others:
        p.write_bytes(blobs[train])
    damaged, stderr = _run(tmp_path / "damaged.npz", base)
    _same_bits(off, damaged)
    assert stderr.count("is unusable") == len(entries), stderr[-3000:]
    assert "truncated" in stderr and "checksum" in stderr and "another program" in stderr

    # The damaged entries were replaced by sound ones: the next run loads everything, quietly.
    again, stderr = _run(tmp_path / "again.npz", base)
    assert int(again["hits"]) == len(entries) and "is unusable" not in stderr
    _same_bits(off, again)
