"""The fit / cost table of every recipe on TPU slices and an H100 host, compiled without them.

    python benchmarks/aot_table.py --out benchmarks/aot_table.jsonl        # resumable
    python benchmarks/aot_table.py --out F --table                         # markdown from F

Each cell runs `python -m dgr_jax.aot --config configs/<recipe>.py --target T
--config.dtype=D --no-predict [--max-batch]` in a subprocess and appends one JSON line
{"cell": {...}, "exit": status, "wall_s": seconds, "result": the --json object or null,
"error": the `error:` line} to --out; cells already in the file are skipped, so the command
can be stopped and started again (a cell that ran out of time is tried again). Cells run in
priority order: the predict precision cells (NeWCRFs, float32, every target), every recipe on
v5e:2x4 in bfloat16 at the recipe's batch, the variants there (DGR / OTDL off, remat, FSDP),
then h100:8, the other targets, float32, and the max-batch searches. Run it in an environment with
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
# What DGR, OTDL, rematerialisation and FSDP change, on one TPU target in bfloat16; the "on"
# side is the recipe's own cell (nyu_newcrfs is nyu_newcrfs_dgr with both off: a zero loss
# weight drops the term).
VARIANT_TARGET, VARIANT_DTYPE = "v5e:2x4", "bfloat16"
VARIANTS = (
    ("nyu_vit_dgr", "DGR off", ("model.dgr.enabled=False",)),
    ("nyu_vit_dgr", "OTDL off", ("loss.terms.otdl=0.0",)),
    ("nyu_vit_dgr", "DGR and OTDL off", ("model.dgr.enabled=False", "loss.terms.otdl=0.0")),
    ("nyu_newcrfs_dgr", "DGR off", ("model.dgr.enabled=False",)),
    ("nyu_newcrfs_dgr", "OTDL off", ("loss.terms.otdl=0.0",)),
    ("nyu_vit_dgr", "remat", ("remat=True",)),
    ("nyu_vit_dgr", "fsdp", ("sharding=fsdp",)),
    ("nyu_newcrfs", "remat", ("remat=True",)),
    ("nyu_newcrfs", "fsdp", ("sharding=fsdp",)),
)
# The cost of eval_precision="highest" (issue 30): the predict program of the released-
# checkpoint host at both precisions, float32 (what converted checkpoints evaluate in).
PRECISION_RECIPE = "nyu_newcrfs"


def cells() -> list[dict]:
    """Every cell, in the order they run (breadth first).

    Plain cells: {recipe, target, dtype, max_batch}; variant cells add "variant" and
    "overrides"; precision cells add "precision_cost" (predict only, both precisions).
    """
    plain = [
        {"recipe": recipe, "target": target, "dtype": dtype, "max_batch": max_batch}
        for max_batch in (False, True)
        for dtype in DTYPES
        for target in TARGETS
        for recipe in RECIPES
    ]
    variants = [
        {
            "recipe": recipe,
            "target": VARIANT_TARGET,
            "dtype": VARIANT_DTYPE,
            "max_batch": False,
            "variant": name,
            "overrides": list(overrides),
        }
        for recipe, name, overrides in VARIANTS
    ]
    precision = [
        {
            "recipe": PRECISION_RECIPE,
            "target": target,
            "dtype": "float32",
            "max_batch": False,
            "precision_cost": True,
        }
        for target in TARGETS
    ]
    first = len(RECIPES)  # every recipe on the first target in bfloat16, then the variants
    return precision + plain[:first] + variants + plain[first:]


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
            *(f"--config.{o}" for o in cell.get("overrides", ())),
            *(["--no-train", "--precision-cost"] if cell.get("precision_cost")
              else ["--no-predict"]),
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
        if cell["max_batch"] or "variant" in cell or "precision_cost" in cell:
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
    total = len(RECIPES) * len(TARGETS) * len(DTYPES)
    lines.append(
        f"\n{len(not_run)} of the {total} cells (11 recipes x 5 targets x 2 dtypes): not run yet."
    )
    return "\n".join(lines)


def _header(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _unfinished(row: dict | None) -> str | None:
    """Why a cell has no result ("not run yet", "failed: ..."), None when it has one."""
    if row is not None and row["result"] is not None:
        return None
    return "not run yet" if row is None else f"failed: {row['error']}"


def _ratio(a, b) -> str:
    return "-" if a is None or b is None or not b else f"{100 * (a / b - 1):+.1f}%"


def variants_table(path: str) -> str:
    """Each variant against its recipe's own cell: flops, bytes accessed, peak memory."""
    rows = done(path)
    lines = _header(
        [f"recipe ({VARIANT_TARGET}, {VARIANT_DTYPE})", "setting", "fits", "peak GiB / device"]
        + ["GFLOP / device", "GB accessed / device", "peak vs recipe", "GFLOP vs recipe"]
        + ["bytes vs recipe", "compile s"]
    )
    for cell in (c for c in cells() if "variant" in c):
        base_cell = {k: cell[k] for k in ("recipe", "target", "dtype", "max_batch")}
        row, base = rows.get(_key(cell)), rows.get(_key(base_cell))
        name = f"| {cell['recipe']} | {cell['variant']} (`{' '.join(cell['overrides'])}`) |"
        if why := _unfinished(row):
            lines.append(f"{name} {why} | | | | | | | |")
            continue
        t = row["result"]["train_step"]
        b = base["result"]["train_step"] if base and base["result"] else {}
        lines.append(
            f"{name} {'yes' if t['fits'] else '**no**'} | {_gib(t.get('peak_bytes'))} | "
            f"{_num(t.get('flops'), 1e9)} | {_num(t.get('bytes_accessed'), 1e9)} | "
            f"{_ratio(t.get('peak_bytes'), b.get('peak_bytes'))} | "
            f"{_ratio(t.get('flops'), b.get('flops'))} | "
            f"{_ratio(t.get('bytes_accessed'), b.get('bytes_accessed'))} | "
            f"{t['compile_s']:.0f} |"
        )
    return "\n".join(lines)


def _num(value, unit: float) -> str:
    return "-" if value is None else f"{value / unit:,.1f}"


def precision_table(path: str) -> str:
    """predict at eval_precision "highest" against "default" on every target."""
    rows = done(path)
    lines = _header(
        [f"{PRECISION_RECIPE} predict (float32)", "target", "precision", "dots / convs"]
        + ["peak GiB / device", "GFLOP / device", "GB accessed / device", "roofline ms"]
        + ["code MiB", "compile s"]
    )
    for cell in (c for c in cells() if "precision_cost" in c):
        row = rows.get(_key(cell))
        if why := _unfinished(row):
            lines.append(f"| | {cell['target']} | {why} | | | | | | | |")
            continue
        res = row["result"]
        for key in ("predict", "predict_at_default", "predict_at_highest"):
            p = res.get(key)
            if p is None:
                continue
            dots = ", ".join(f"{k} {v}" for k, v in sorted(p["dot_precision"].items()))
            roof = "-" if p.get("roofline_s") is None else f"{p['roofline_s'] * 1e3:,.1f}"
            lines.append(
                f"| {p['frame'][0]}x{p['frame'][1]}, batch {p['batch_size']} | {cell['target']} "
                f"| {p['matmul_precision']} | {dots} | {_gib(p.get('peak_bytes'))} | "
                f"{_num(p.get('flops'), 1e9)} | {_num(p.get('bytes_accessed'), 1e9)} | {roof} "
                f"| {_num(p.get('code_bytes'), 2**20)} | {p['compile_s']:.0f} |"
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
        print(table(args.out), variants_table(args.out), precision_table(args.out), sep="\n\n")
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
