"""Facts read off HLO text: collectives (count, bytes); dot precisions are `dgr_jax.hlo_stats`.

Counts are static: an op inside a loop body counts once. Asynchronous collectives
(`all-gather-start` / `all-gather-done`) count once, under the synchronous name, with the bytes
of their result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

COLLECTIVES = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "collective-permute",
    "collective-broadcast",
    "ragged-all-to-all",
)
_OPCODE = re.compile(r"\s*(?P<op>[a-z][a-z0-9\-]*)\(")
_ARRAY = re.compile(
    r"\b(?P<dtype>pred|s4|u4|s8|u8|s16|u16|s32|u32|s64|u64|f8e\w+|bf16|f16|f32|"
    r"f64|c64|c128)\[(?P<dims>[0-9,]*)\]"
)
_DTYPE_BYTES = {
    "pred": 1,
    "s4": 0.5,
    "u4": 0.5,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "s32": 4,
    "u32": 4,
    "s64": 8,
    "u64": 8,
    "bf16": 2,
    "f16": 2,
    "f32": 4,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}


def shape_bytes(shape: str) -> int:
    """Bytes of an HLO result type, e.g. "f32[8,128]{1,0}" or a tuple of such."""
    total = 0.0
    for m in _ARRAY.finditer(shape):
        dims = [int(d) for d in m["dims"].split(",") if d]
        per = _DTYPE_BYTES.get(m["dtype"], 1)  # f8 variants: 1 byte
        total += per * int(np.prod(dims, dtype=np.int64))
    return int(total)


def instructions(hlo_text: str) -> Iterator[tuple[str, str, str]]:
    """(result type, opcode, line) of every instruction "%name = TYPE opcode(...)".

    The type may be a tuple whose element layouts hold parentheses (TPU tiling "T(8,128)").
    """
    for line in hlo_text.splitlines():
        head, eq, rest = line.partition(" = ")
        name = head.strip().removeprefix("ROOT ")
        if not eq or not name or " " in name:
            continue
        if rest.startswith("("):
            depth = 0
            end = 0
            for end, ch in enumerate(rest, start=1):  # noqa: B007  (end is used below)
                depth += ch == "("
                depth -= ch == ")"
                if depth == 0:
                    break
        else:
            end = rest.find(" ")
            if end < 0:
                continue
        m = _OPCODE.match(rest, end)
        if m:
            yield rest[:end], m["op"], line


def collectives(hlo_text: str) -> dict[str, dict[str, int]]:
    """{op: {"count", "bytes"}} over every computation of a (compiled) HLO module."""
    out: dict[str, dict[str, int]] = {}
    for shape, op, _ in instructions(hlo_text):
        if op.endswith("-start"):
            continue  # counted at its "-done", whose result is the collective's output
        name = op.removesuffix("-done")
        if name not in COLLECTIVES:
            continue
        entry = out.setdefault(name, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += shape_bytes(shape)
    return dict(sorted(out.items()))
