"""Counts of the dot and convolution ops of a compiled or lowered program, per operand precision.

`dot_precision(text)` reads HLO text (`compiled.as_text()`, `lowered.as_text("hlo")`) or
StableHLO text (`lowered.as_text()`) and returns e.g. `{"HIGHEST": 12, "DEFAULT": 3}`:

- HLO: `dot(...)` / `convolution(...)` instructions (fused computations included), with
  `operand_precision={highest,highest}`; without the attribute an op is DEFAULT. GPU programs
  whose dots became cuBLAS / cuDNN custom calls carry `"operand_precision":[...]` in their
  backend config, and count too.
- StableHLO: `stablehlo.dot_general` / `stablehlo.dot` (`precision = [HIGHEST, HIGHEST]`) and
  `stablehlo.convolution` (`precision_config = [#stablehlo<precision HIGHEST>, ...]`).

When the two operands differ the key is "LHS/RHS" (e.g. "HIGHEST/DEFAULT").
"""

from __future__ import annotations

import re

# An HLO instruction line: "%name = type op(operands), attributes".
_HLO_OP = re.compile(r"=\s*\S.*?\s(dot|convolution)\(")
_HLO_PRECISION = re.compile(r"operand_precision=\{([a-z_,\s]*)\}")
_HLO_CUSTOM = re.compile(r'custom_call_target="(__cublas\$[^"]*|__cudnn\$conv[^"]*)"')
_JSON_PRECISION = re.compile(r'\\?"operand_precision\\?"\s*:\s*\[([^\]]*)\]')
_SHLO_DOT = re.compile(r"stablehlo\.(dot_general|dot|convolution)\b")
_SHLO_PRECISION = re.compile(r"precision\s*=\s*\[([A-Z_,\s]*)\]")
_SHLO_CONV_PRECISION = re.compile(r"precision_config\s*=\s*\[([^\]]*)\]")


def _key(values: list[str]) -> str:
    names = [v.strip().strip('"\\').upper() for v in values if v.strip().strip('"\\')]
    names = names or ["DEFAULT"]
    if len(set(names)) == 1:
        return names[0]
    return "/".join(names)


def _precision_of_line(line: str) -> str | None:
    """The precision key of one dot / convolution line, None when the line holds neither."""
    if "stablehlo." in line:
        if not _SHLO_DOT.search(line):
            return None
        match = _SHLO_PRECISION.search(line)
        if match:
            return _key(match.group(1).split(","))
        match = _SHLO_CONV_PRECISION.search(line)
        if match:
            return _key(re.findall(r"precision\s+([A-Z_]+)", match.group(1)))
        return "DEFAULT"
    if _HLO_OP.search(line):
        match = _HLO_PRECISION.search(line)
        return _key(match.group(1).split(",")) if match else "DEFAULT"
    if _HLO_CUSTOM.search(line):
        match = _JSON_PRECISION.search(line)
        return _key(match.group(1).split(",")) if match else "DEFAULT"
    return None


def dot_precision(text: str) -> dict[str, int]:
    """{precision: number of dot / convolution ops} of an HLO or StableHLO text, sorted by key."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        key = _precision_of_line(line)
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
