"""Strict JSON: undefined numbers are written as null, and a strict reader accepts every file."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from dgr_jax import jsonio


def test_non_finite_numbers_become_null_and_numpy_becomes_python():
    value = {
        "nan": float("nan"),
        "inf": np.float32(np.inf),
        "neg_inf": -math.inf,
        "ok": np.float64(0.25),
        "count": np.int64(3),
        "flag": np.bool_(True),
        "array": np.array([1.0, np.nan]),
        "jax": jnp.asarray([2.0, jnp.inf]),
        "nested": [(1, float("nan"))],
    }
    text = jsonio.dumps(value)
    assert "NaN" not in text and "Infinity" not in text
    assert jsonio.loads_strict(text) == {
        "nan": None,
        "inf": None,
        "neg_inf": None,
        "ok": 0.25,
        "count": 3,
        "flag": True,
        "array": [1.0, None],
        "jax": [2.0, None],
        "nested": [[1, None]],
    }


def test_strict_reader_refuses_what_python_json_writes():
    with pytest.raises(ValueError, match="NaN"):
        jsonio.loads_strict(json.dumps({"x": float("nan")}))


def test_dumps_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        jsonio.dumps({"x": object()})


def test_write_is_atomic_and_strict(tmp_path):
    path = tmp_path / "m.json"
    jsonio.write(path, {"a": float("nan")})
    assert jsonio.loads_strict(path.read_text()) == {"a": None}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left behind
    with pytest.raises(TypeError):
        jsonio.write(path, {"a": object()})
    assert jsonio.loads_strict(path.read_text()) == {"a": None}  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_nan_if_none_reads_null_back_as_nan():
    assert math.isnan(jsonio.nan_if_none(None)) and jsonio.nan_if_none(2) == 2.0


def test_benchmark_lines_are_strict_json(capsys):
    from benchmarks import harness

    harness.emit({"benchmark": "probe", "ratio": float("nan"), "ms": np.float32(1.5)})
    line = capsys.readouterr().out.strip().splitlines()[-1]
    parsed = jsonio.loads_strict(line)
    assert parsed["ratio"] is None and parsed["ms"] == 1.5
