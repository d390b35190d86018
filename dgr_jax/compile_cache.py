"""JAX's persistent compilation cache, on by default for every command of the project.

XLA compilation is most of the start-up of `train.py`, `eval.py`, `predict` and the analysis
tools on a CPU (a small model's train step compiles in 15-20 s on 2 cores), and most of the
test suite's time. JAX can keep compiled executables on disk, keyed by the program, the
compiler options, the devices and the jax / jaxlib versions, so a second run of the same
program loads it instead of compiling it. Results are bit-identical (the same executable runs;
`tests/test_compile_cache.py` checks it).

A bad entry must never break a run. JAX itself turns an entry it cannot decompress or
deserialize into a warning and a fresh compilation, but it keeps the bad file (so it warns on
every later run), and it runs whatever executable a file holds: a file that holds another
program under the key (stale or misplaced) fails the run with an arity error (measured). So
every entry we write carries a header with the SHA-256 of its key, the CRC-32 and the length
of its payload (`_GuardedCache`); an entry whose header does not match (truncated, corrupted,
another program's, or written without the header) is deleted, reported once as a warning and
compiled afresh, and the fresh executable takes its place.

Where:
  - `JAX_COMPILATION_CACHE_DIR`, when set, is used as is (JAX's own variable);
  - otherwise `$XDG_CACHE_HOME/dgr_jax/xla` (default `~/.cache/dgr_jax/xla`): per user and per
    machine, which is what it must be (executables are specific to the machine's devices),
    and created 0700 whatever the umask (see `make_private_dir`: JAX runs what it finds there);
  - `DGR_JAX_NO_COMPILATION_CACHE=1` switches it off, whatever else is set.
Entries of programs that compile in under `MIN_COMPILE_SECONDS` are not written (reading a file
costs about as much); the directory is kept under `MAX_BYTES` by JAX's least-recently-used
eviction. JAX's own variables for both (`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`,
`JAX_COMPILATION_CACHE_MAX_SIZE`) win when set.

Multi-process runs (one process per host) get the cache only when `JAX_COMPILATION_CACHE_DIR`
names it explicitly. JAX writes entries from process 0 only, so with a per-host default
directory the other hosts never find theirs: process 0 loads its programs in a second while
the others compile for minutes, and the first collective waits on them. On CPU clusters
(gloo) that wait is limited to 30 s, after which the run aborts ("Gloo context initialization
failed: DEADLINE_EXCEEDED"): measured here with two processes on loopback, one with a warm
cache and one compiling under load. Point `JAX_COMPILATION_CACHE_DIR` at a directory every
host reads (a bucket, as JAX's documentation does for pods) to use it there; on CPU clusters
the processes' cache keys differ (measured: the second process never hits the first's
entries), so leave it off there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import warnings
import zlib

DISABLE_ENV = "DGR_JAX_NO_COMPILATION_CACHE"
# Below this compile time an entry is not written: reading it back costs about as much.
MIN_COMPILE_SECONDS = 0.2
# JAX evicts least-recently-used entries above this size (our entries are 0.1-5 MB each).
MAX_BYTES = 4 * 1024**3


def default_dir() -> str:
    """`$XDG_CACHE_HOME/dgr_jax/xla`, or `~/.cache/dgr_jax/xla`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dgr_jax", "xla")


def make_private_dir(path: str) -> None:
    """Create the per-user default cache folder readable and writable by its owner only (0700).

    JAX runs whatever executable an entry holds (the header check is a checksum, not a
    signature), so whoever can write here can run code as the user: under a umask that lets
    a shared group write (002 with a common group), the folder must still be the user's own.
    Nobody else gains by reading it either: the entries are for this user's programs on this
    machine, and every account has its own default cache. The entries inside follow the umask
    (JAX writes them as ordinary files); an existing folder is left as it is. A directory
    named with `JAX_COMPILATION_CACHE_DIR` is the user's choice (it may be meant to be shared,
    by hosts or a group) and is not created or changed here.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)


def disabled() -> bool:
    """True when `DGR_JAX_NO_COMPILATION_CACHE` is set to anything but "", "0" or "false"."""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def enable() -> str | None:
    """Turn the persistent cache on (call before the first compilation); its directory or None.

    Idempotent. With `DGR_JAX_NO_COMPILATION_CACHE=1` it turns the cache off instead, even
    when `JAX_COMPILATION_CACHE_DIR` is set, and returns None; likewise in a multi-process run
    without an explicit `JAX_COMPILATION_CACHE_DIR` (see the module docstring). Multi-process
    callers must call it after `jax.distributed.initialize` (`dgr_jax.multihost.initialize`).
    """
    import jax

    path = jax.config.jax_compilation_cache_dir  # JAX_COMPILATION_CACHE_DIR, if set
    if disabled() or (not path and jax.process_count() > 1):
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    if not path:
        path = default_dir()
        try:
            make_private_dir(path)
        except OSError as e:  # a read-only home: run without the cache rather than fail
            print(f"compilation cache off: cannot create {path} ({e})", flush=True)
            return None
        jax.config.update("jax_compilation_cache_dir", path)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    install_guard()
    return path


# --------------------------------------------------------------------------------------------
# Entries that check themselves.
# --------------------------------------------------------------------------------------------
_MAGIC = b"DGRJAXC1"
_HEADER = struct.Struct("<8s32sIQ")  # magic, sha256(key), crc32(payload), len(payload)


def wrap_entry(key: str, payload: bytes) -> bytes:
    """The bytes stored for `key`: a header that names the key and checks the payload."""
    digest = hashlib.sha256(key.encode()).digest()
    return _HEADER.pack(_MAGIC, digest, zlib.crc32(payload), len(payload)) + payload


def unwrap_entry(key: str, stored: bytes) -> tuple[bytes | None, str]:
    """(payload, "") when `stored` is a sound entry for `key`, else (None, what is wrong)."""
    if len(stored) < _HEADER.size or stored[: len(_MAGIC)] != _MAGIC:
        return None, "no dgr_jax header (written by plain JAX, or overwritten)"
    magic, digest, crc, length = _HEADER.unpack_from(stored)
    payload = stored[_HEADER.size :]
    if digest != hashlib.sha256(key.encode()).digest():
        return None, "it holds another program's executable"
    if len(payload) != length:
        return None, f"truncated ({len(payload)} of {length} bytes)"
    if zlib.crc32(payload) != crc:
        return None, "its checksum does not match (corrupted)"
    return payload, ""


def install_guard() -> bool:
    """Make JAX's persistent cache store self-checking entries; False if JAX's internals moved.

    JAX builds its file cache lazily with `compilation_cache.get_file_cache(path)`; we wrap
    what that returns (and the cache itself, if JAX already built it). Private JAX API, pinned
    with jax in requirements.txt; `tests/test_compile_cache.py` fails if it stops applying.
    """
    try:
        from jax._src import compilation_cache as cc
        from jax._src.compilation_cache_interface import CacheInterface
    except ImportError:  # pragma: no cover - a jax without these internals
        return False
    if getattr(cc.get_file_cache, "_dgr_jax_guarded", False):
        return True
    if not hasattr(cc, "get_file_cache") or not hasattr(cc, "_cache"):
        return False  # pragma: no cover

    class _GuardedCache(CacheInterface):
        """JAX's LRU file cache with `wrap_entry` on the way in and `unwrap_entry` out."""

        def __init__(self, inner):
            self._inner = inner

        @property
        def _path(self):  # JAX reads the directory from here
            return self._inner._path

        @_path.setter
        def _path(self, value):
            self._inner._path = value

        def get(self, key: str) -> bytes | None:
            stored = self._inner.get(key)
            if stored is None:
                return None
            payload, problem = unwrap_entry(key, stored)
            if payload is None:
                self._discard(key, problem)
            return payload

        def put(self, key: str, value: bytes) -> None:
            self._inner.put(key, wrap_entry(key, value))

        def clear(self) -> None:
            self._inner.clear()

        def _discard(self, key: str, problem: str) -> None:
            warnings.warn(
                f"dgr_jax: compilation cache entry {key[:60]}... in {self._path} is unusable "
                f"({problem}); deleted it and compiling afresh",
                stacklevel=2,
            )
            for suffix in ("-cache", "-atime"):  # jax._src.lru_cache's file names
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(str(self._path), key + suffix))

    original = cc.get_file_cache

    def get_file_cache(path):
        made = original(path)
        if made is None:
            return None
        cache, where = made
        return _GuardedCache(cache), where

    get_file_cache._dgr_jax_guarded = True
    cc.get_file_cache = get_file_cache
    if cc._cache is not None and not isinstance(cc._cache, _GuardedCache):
        cc._cache = _GuardedCache(cc._cache)
    return True
