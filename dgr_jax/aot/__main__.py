"""python -m dgr_jax.aot: does this recipe fit that TPU slice / GPU host, with what batch?

    python -m dgr_jax.aot --config configs/nyu_vit_dgr.py --target v5e:2x4
    python -m dgr_jax.aot --config configs/X.py:smoke --target h100:8 --config.dtype=bfloat16 \
        --max-batch --json plan.json

Compiles, for the target, exactly the trainer's train step and the evaluator's predict function
at the evaluation frame (abstract inputs only), prints a short table and (--json) writes one
JSON object. `--no-predict` / `--no-train` compile one of the two; `--precision-cost` adds
predict at the other `config.eval_precision`. Exit status 2 with one `error:` paragraph when
the train step does not fit or the target cannot be compiled for; 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_ERROR = 2
MIB = 2**20


class PlanError(Exception):
    """Exit 2 with this message."""


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m dgr_jax.aot", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", required=True, help="configs/X.py[:arg]")
    parser.add_argument("--target", required=True, help="e.g. v5e:2x4, v4:2x2x1, h100:8")
    parser.add_argument("--max-batch", action="store_true", help="bisect the largest batch")
    parser.add_argument("--eval", default=None, help="evaluation to compile (default: first)")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument(
        "--no-predict", action="store_true", help="compile the train step only (faster)"
    )
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="compile the predict program only (no train_step in the JSON; e.g. with "
        "--precision-cost)",
    )
    parser.add_argument(
        "--precision-cost",
        action="store_true",
        help="also compile predict at the other eval precision (highest vs default) and report "
        "both, to see what config.eval_precision costs on the target",
    )
    args, rest = parser.parse_known_args(argv)
    if args.no_train and (args.no_predict or args.max_batch):
        parser.error("--no-train compiles predict only: not with --no-predict or --max-batch")
    overrides = []
    for item in rest:
        if not item.startswith("--config.") or "=" not in item:
            parser.error(f"unrecognised argument {item!r} (overrides are --config.key=value)")
        overrides.append(item.removeprefix("--config."))
    return args, overrides


def _mib(value) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


def _table(result: dict) -> str:
    lines = [
        f"target {result['target']}: {result['num_devices']} x {result['device_kind']}, "
        f"{_mib(result['hbm_bytes'])} MiB HBM per device; global batch {result['batch_size']} "
        f"({result['per_device_batch']} per device), {result['dtype']}",
        f"{'program':<20}{'fits':>5}{'peak MiB':>10}{'args':>8}{'temp':>8}{'GFLOP':>9}"
        f"{'roofline ms':>12}{'compile s':>10}",
    ]
    names = ["train_step", "predict"] + [k for k in result if k.startswith("predict_at_")]
    for name in names:
        r = result.get(name)
        if r is None:
            continue
        flops = "-" if r.get("flops") is None else f"{r['flops'] / 1e9:,.1f}"
        roof = "-" if r.get("roofline_s") is None else f"{r['roofline_s'] * 1e3:,.2f}"
        label = name if name != "predict" else f"predict ({r.get('matmul_precision')})"
        lines.append(
            f"{label:<20}{'yes' if r['fits'] else 'NO':>5}{_mib(r.get('peak_bytes')):>10}"
            f"{_mib(r.get('argument_bytes')):>8}{_mib(r.get('temp_bytes')):>8}{flops:>9}"
            f"{roof:>12}{r['compile_s']:>10.1f}"
        )
    if "max_batch" in result:
        lines.append(f"max batch: {result['max_batch']} (recipe batch {result['batch_size']})")
    return "\n".join(lines)


def _advice(result: dict) -> str:
    tips = ["a smaller --config.batch_size"]
    if "max_batch" in result and result["max_batch"]:
        tips[0] += f" (at most {result['max_batch']} fits)"
    if result["dtype"] != "bfloat16":
        tips.append("--config.dtype=bfloat16")
    if not result["remat"]:
        tips.append("--config.remat=True")
    if result["sharding"] != "fsdp":
        tips.append("--config.sharding=fsdp")
    tips.append("a larger slice")
    return ", ".join(tips)


def plan(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    from dgr_jax import configlib
    from dgr_jax.aot import plan as plan_lib
    from dgr_jax.aot import targets

    try:
        config = configlib.load(args.config, overrides)
    except (FileNotFoundError, KeyError) as e:
        raise PlanError(str(e).strip("'\"")) from None
    try:
        target = targets.describe(args.target)
    except targets.TargetError as e:
        raise PlanError(str(e)) from None
    try:
        mesh = plan_lib.mesh_for(config, target)
        from dgr_jax.train_program import check_batch

        check_batch(config, mesh)
    except ValueError as e:
        raise PlanError(f"target {target.name}: {e}") from None
    data = mesh.shape["data"]
    eval_name = args.eval or next(iter(config.evals.keys()), None)
    result: dict[str, Any] = {
        "config": args.config,
        "overrides": overrides,
        "target": target.name,
        "device_kind": target.device_kind,
        "num_devices": len(target.devices),
        "mesh": dict(mesh.shape),
        "hbm_bytes": target.hbm_bytes,
        "chip": {
            "name": target.chip.name,
            "peak_flops_per_device": target.chip.peak_flops(config.dtype),
            "hbm_bandwidth_per_device": target.chip.per_device(target.chip.hbm_bandwidth),
            "source": target.chip.source,
        },
        "dtype": config.dtype,
        "sharding": config.sharding,
        "remat": bool(config.get("remat", False)),
        "batch_size": int(config.batch_size),
        "per_device_batch": int(config.batch_size) // data,
    }
    if not args.no_train:
        result["train_step"] = plan_lib.train_step(config, target)
    if eval_name is not None and not args.no_predict:
        try:  # e.g. an evaluation frame known only from the data (depth_files)
            result["predict"] = plan_lib.predict(config, target, eval_name)
        except ValueError as e:
            raise PlanError(f"predict of evaluation {eval_name!r}: {e} (or --no-predict)") from None
        if args.precision_cost:
            used = result["predict"]["matmul_precision"]
            other = "default" if used != "default" else "highest"
            result[f"predict_at_{other}"] = plan_lib.predict(config, target, eval_name, other)
    if args.max_batch:
        best, tries = plan_lib.max_batch(
            config,
            target,
            start=int(config.batch_size),
            start_fits=bool(result["train_step"]["fits"]),
            start_peak=result["train_step"].get("peak_bytes"),
        )
        result["max_batch"], result["max_batch_tries"] = best, tries
    return result


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parse(sys.argv[1:] if argv is None else argv)
    try:
        result = plan(args, overrides)
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    print(_table(result), flush=True)
    if args.json:
        from dgr_jax import jsonio

        jsonio.write(args.json, result)  # strict JSON (no NaN), written atomically
    train = result.get("train_step")  # None with --no-train
    if train is not None and not train["fits"]:
        need = (
            f"it needs {_mib(train['peak_bytes'])} MiB per device"
            if train.get("peak_bytes") is not None
            else f"the compiler reports {train.get('compiler_message', '').rstrip('.')}"
        )
        print(
            f"error: the train step of {args.config} at global batch {result['batch_size']} "
            f"({result['per_device_batch']} per device, {result['dtype']}, sharding "
            f"{result['sharding']}) does not fit {result['target']}: {need}, against "
            f"{_mib(result['hbm_bytes'])} MiB of HBM per device. Try {_advice(result)}.",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
