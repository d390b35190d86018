"""Strict JSON for every file and line the project writes: undefined numbers become `null`.

Python's `json` writes NaN and Infinity as bare `NaN` / `Infinity`, which is not JSON: `jq`,
JavaScript's `JSON.parse` and most readers refuse the whole file. Metrics are legitimately
undefined at times (edge precision of a prediction with no edges, a metric over zero valid
pixels), so every writer goes through `dumps`, which turns non-finite floats into `null`,
numpy scalars and arrays into plain numbers and lists, and then refuses anything else that is
not JSON (`allow_nan=False`). Readers that want the numbers back use `nan_if_none`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from dgr_jax import storage


def strict(value: Any) -> Any:
    """A copy of `value` that strict JSON can hold: NaN / inf -> None, numpy -> Python."""
    if isinstance(value, Mapping):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if hasattr(value, "__array__") and getattr(value, "ndim", None) is not None:
        return strict(np.asarray(value))  # a jax array
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """`json.dumps` of `strict(value)`; raises on anything that is still not JSON."""
    return json.dumps(strict(value), allow_nan=False, **kwargs)


def write(path: str | os.PathLike, value: Any, *, indent: int | None = 2) -> None:
    """Write `value` as strict JSON (plus a newline), atomically: a reader never sees half.

    `path` may be local or on an object store (gs://); see `storage.write_bytes`.
    """
    storage.write_text(path, dumps(value, indent=indent) + "\n")


def read(path: str | os.PathLike) -> Any:
    """Parse a JSON file (local or gs://)."""
    return json.loads(storage.read_text(path))


def _refuse_constant(name: str) -> None:
    raise ValueError(f"not strict JSON: bare {name}")


def loads_strict(text: str) -> Any:
    """`json.loads` that refuses NaN / Infinity, as jq and JavaScript do."""
    return json.loads(text, parse_constant=_refuse_constant)


def nan_if_none(value: Any) -> float:
    """A number read back from our JSON: null (undefined) -> NaN."""
    return math.nan if value is None else float(value)


def config_json(config: Any) -> Any:
    """A ConfigDict as strict-JSON-ready data (what `config.json` of a run holds)."""
    return strict(json.loads(config.to_json_best_effort()))
