"""Every JSON file a run writes must parse with a strict reader (no bare NaN / Infinity)."""

from __future__ import annotations

import pathlib

from dgr_jax import jsonio


def assert_strict_json_tree(root) -> list[str]:
    """Parse every *.json and every line of every *.jsonl under `root` strictly; their names."""
    checked = []
    for path in sorted(pathlib.Path(root).rglob("*.json*")):
        if path.suffix not in (".json", ".jsonl") or not path.is_file():
            continue
        if "checkpoints" in path.parts or path.parts[-2:-1] == ("data",):
            continue  # orbax's and TFDS's own files
        text = path.read_text()
        lines = (
            [ln for ln in text.splitlines() if ln.strip()] if path.suffix == ".jsonl" else [text]
        )
        for line in lines:
            try:
                jsonio.loads_strict(line)
            except ValueError as e:
                raise AssertionError(f"{path} is not strict JSON: {e}") from None
        checked.append(str(path.relative_to(root)))
    return checked
