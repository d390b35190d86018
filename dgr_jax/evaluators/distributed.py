"""Multi-process helpers of the evaluators (ours).

Each process evaluates the images i with i % process_count == process_index; these helpers
bring per-image results to every process. With one process they return their input unchanged,
so the single-process path does no collective work.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def local_rows(x: jax.Array) -> np.ndarray:
    """This process's rows of a batch-sharded global array, in global order, as NumPy.

    Replicas (e.g. over a `model` mesh axis) are de-duplicated by their index.
    """
    if x.is_fully_addressable:
        return np.asarray(x)
    shards = {}
    for shard in x.addressable_shards:
        start = shard.index[0].start or 0
        shards.setdefault(start, shard.data)
    return np.concatenate([np.asarray(shards[k]) for k in sorted(shards)], axis=0)


def gather_rows(values: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Concatenate every process's `values` ({name: (n_p, ...)}) in process order.

    Args:
        values: per-process arrays with the same keys, dtypes and trailing shapes everywhere;
            the leading sizes n_p may differ.
        rows: an upper bound of n_p shared by all processes (arrays are padded to it for the
            collective, then trimmed).
    """
    if jax.process_count() == 1:
        return values
    count = np.asarray([len(next(iter(values.values())))], np.int64)
    padded = {}
    for name, v in values.items():
        pad = np.zeros((rows - len(v), *v.shape[1:]), v.dtype)
        padded[name] = np.concatenate([v, pad], axis=0)
    gathered = multihost_utils.process_allgather({"count": count, **padded})  # (P, rows, ...)
    counts = np.asarray(gathered.pop("count"))[:, 0]
    return {
        name: np.concatenate([np.asarray(g)[p, : counts[p]] for p in range(len(counts))], axis=0)
        for name, g in gathered.items()
    }


def encode_strings(strings: list[str]) -> np.ndarray:
    """UTF-8 strings -> a uint8 (N, L) array padded with zeros, L agreed by all processes."""
    encoded = [s.encode("utf-8") for s in strings]
    length = max([len(e) for e in encoded] + [1])
    if jax.process_count() > 1:
        lengths = multihost_utils.process_allgather(np.asarray([length], np.int64))
        length = int(np.max(lengths))
    out = np.zeros((len(encoded), length), np.uint8)
    for i, e in enumerate(encoded):
        out[i, : len(e)] = np.frombuffer(e, np.uint8)
    return out


def decode_strings(array: np.ndarray) -> list[str]:
    """Inverse of `encode_strings`."""
    return [bytes(row).rstrip(b"\0").decode("utf-8", errors="replace") for row in array]


def decode_id(value: Any) -> str:
    """A record's `id` (bytes, str or a 0-d array of either) as str."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
