"""The fit / cost table of every recipe on TPU slices and an H100 host, compiled without them.

    python benchmarks/aot_table.py --out benchmarks/aot_table.jsonl        # resumable
    python benchmarks/aot_table.py --out F --table                         # markdown from F

Each cell runs `python -m dgr_jax.aot --config configs/<recipe>.py --target T
--config.dtype=D --no-predict [--max-batch]` in a subprocess and appends one JSON line
{"cell": {...}, "exit": status, "wall_s": seconds, "result": the --json object or null,
"error": the `error:` line} to --out; cells already in the file are skipped, so the command
can be stopped and started again (a cell that ran out of time is tried again). Cells run in
priority order: every recipe on v5e:2x4 in bfloat16 at the recipe's batch, then h100:8, then
the other targets, then float32, then the max-batch searches. Run it in an environment with
requirements-aot.txt (README).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = (
    "nyu_vit_dgr",
    "nyu_cnn",
    "kitti_vit_dgr",
    "nyu_newcrfs",
    "nyu_newcrfs_dgr",
    "kitti_newcrfs",
    "kitti_newcrfs_dgr",
    "nyu_pixelformer",
    "nyu_pixelformer_dgr",
    "kitti_pixelformer",
    "kitti_pixelformer_dgr",
)
TARGETS = ("v5e:2x4", "h100:8", "v4:2x2x1", "v5p:2x2x1", "v6e:2x4")
DTYPES = ("bfloat16", "float32")


def cells() -> list[dict]:
    """Every cell, in the order they run (breadth first)."""
    out = []
    for max_batch in (False, True):
        for dtype in DTYPES:
            for target in TARGETS:
                for recipe in RECIPES:
                    out.append(
                        {"recipe": recipe, "target": target, "dtype": dtype, "max_batch": max_batch}
                    )
    return out


def _key(cell: dict) -> str:
    return json.dumps(cell, sort_keys=True)


def done(path: str) -> dict[str, dict]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return {_key(r["cell"]): r for r in rows}


def run_cell(cell: dict, python: str, timeout: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.json")
        cmd = [
            python, "-m", "dgr_jax.aot",
            "--config", f"configs/{cell['recipe']}.py",
            "--target", cell["target"],
            f"--config.dtype={cell['dtype']}",
            "--no-predict",
            "--json", out,
        ]  # fmt: skip
        if cell["max_batch"]:
            cmd.append("--max-batch")
        env = {**os.environ, "PYTHONPATH": ROOT}
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
            status, stderr = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            status, stderr = None, f"error: no result within {timeout} s"
        wall = time.perf_counter() - start
        result = None
        if os.path.exists(out):
            with open(out) as f:
                result = json.load(f)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    return {
        "cell": cell,
        "command": " ".join(cmd[1:]),
        "exit": status,
        "wall_s": round(wall, 1),
        "result": result,
        "error": errors[-1] if errors else (stderr.strip().splitlines() or [None])[-1],
    }


def _gib(value) -> str:
    return "-" if value is None else f"{value / 2**30:.2f}"


def table(path: str) -> str:
    rows = done(path)
    lines = [
        "| recipe | target | dtype | fits at recipe batch | peak GiB / device (HBM) | max batch "
        "| train-step GFLOP / device | roofline ms | MFU ceiling | compile s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    not_run: list[dict] = []
    for cell in cells():
        if cell["max_batch"]:
            continue
        row = rows.get(_key(cell))
        search = rows.get(_key({**cell, "max_batch": True}))
        name = f"| {cell['recipe']} | {cell['target']} | {cell['dtype']} |"
        if row is None or row["result"] is None:
            if row is None:
                not_run.append(cell)
                continue
            if row["exit"] is None:
                why = f"compile not finished within {row['wall_s']:.0f} s (shared machine)"
            else:
                why = f"failed: {row['error']}"
            lines.append(f"{name} {why} | | | | | | |")
            continue
        res, train = row["result"], row["result"]["train_step"]
        batch = f"{res['batch_size']} ({res['per_device_batch']}/device)"
        fits = f"{'yes' if train['fits'] else '**no**'}, {batch}"
        peak = f"{_gib(train.get('peak_bytes'))} ({_gib(res['hbm_bytes'])})"
        best = "not run yet"
        if search is not None and search["result"] is not None:
            best = str(search["result"].get("max_batch"))
        flops = "-" if train.get("flops") is None else f"{train['flops'] / 1e9:,.0f}"
        roof = "-" if train.get("roofline_s") is None else f"{train['roofline_s'] * 1e3:,.1f}"
        mfu = "-" if train.get("mfu_ceiling") is None else f"{train['mfu_ceiling']:.2f}"
        seconds = f"{train['compile_s']:.0f}"
        lines.append(f"{name} {fits} | {peak} | {best} | {flops} | {roof} | {mfu} | {seconds} |")
    total = len([c for c in cells() if not c["max_batch"]])
    lines.append(
        f"\n{len(not_run)} of the {total} cells (11 recipes x 5 targets x 2 dtypes): not run yet."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/aot_table.jsonl")
    parser.add_argument("--python", default=sys.executable, help="interpreter with the plugins")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--table", action="store_true", help="print the markdown table only")
    parser.add_argument("--only", default="", help="comma-separated recipes / targets to run")
    args = parser.parse_args()
    if args.table:
        print(table(args.out))
        return 0
    only = {x for x in args.only.split(",") if x}
    for cell in cells():
        if only and not only & {cell["recipe"], cell["target"]}:
            continue
        previous = done(args.out).get(_key(cell))
        if previous is not None and previous["exit"] is not None:
            continue  # a cell that timed out runs again; its new line replaces the old one
        row = run_cell(cell, args.python, args.timeout)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{row['wall_s']:>7.0f} s  exit {row['exit']}  {_key(cell)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
