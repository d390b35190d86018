"""Compiling for TPU / GPU without one (`python -m dgr_jax.aot`) and the one train-step builder.

The TPU / GPU compiles run `python -m dgr_jax.aot` in a subprocess of the interpreter named by
DGR_JAX_AOT_PYTHON (an environment with requirements-aot.txt; CI sets it), else this one; they
are skipped, with the pip command, where that interpreter lacks the plugin. One TPU compile and
one GPU compile in all (each ~20-80 s on 2 shared cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import pytest

from dgr_jax import configlib, hlo_stats, sharding, train_program
from dgr_jax.aot import hlo, targets
from dgr_jax.steps import ModelDef

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = "configs/synthetic_vit_dgr.py:smoke"
AOT_PYTHON = os.environ.get("DGR_JAX_AOT_PYTHON", sys.executable)
FIELDS = (
    "argument_bytes",
    "output_bytes",
    "alias_bytes",
    "temp_bytes",
    "code_bytes",
    "peak_bytes",
    "fits",
    "flops",
    "bytes_accessed",
    "collectives",
    "roofline_s",
    "compile_s",
    "dot_precision",
)


def _has(module: str) -> bool:
    probe = [AOT_PYTHON, "-c", f"import importlib.util as u; exit(u.find_spec({module!r}) is None)"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def _aot(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("XLA_FLAGS", None)  # no fake CPU devices: the target's devices are what counts
    return subprocess.run(
        [AOT_PYTHON, "-m", "dgr_jax.aot", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_trainer_and_aot_build_the_identical_step(tmp_path, monkeypatch):
    """The trainer's step comes from `build_train_program`; lowered for the CPU, its HLO text is
    the one `dgr_jax.aot` compiles (same function, shardings, donation)."""
    from dgr_jax import trainer
    from dgr_jax.aot import plan

    config = configlib.load(os.path.join(ROOT, SMOKE))
    with config.unlocked():
        config.data_dir = str(tmp_path.parent / "shared_data")
    captured = {}
    build = train_program.build_train_program

    class Stop(Exception):
        pass

    def spy(cfg, mesh):
        captured["program"] = build(cfg, mesh)
        raise Stop

    monkeypatch.setattr(trainer.train_program, "build_train_program", spy)
    # No data needed: the step is built before the first batch is read.
    monkeypatch.setattr(trainer.datasets, "ensure_built", lambda *a, **k: None)
    monkeypatch.setattr(trainer.datasets, "open_split", lambda *a, **k: None)
    with pytest.raises(Stop):
        trainer.train_and_evaluate(config, str(tmp_path / "run"))
    ours = captured["program"]
    cpu = targets.Target("cpu", "cpu", jax.devices(), targets.chips.CHIPS["v5e"])
    theirs = build(config, plan.mesh_for(config, cpu))
    text = [p.step.lower(*p.abstract_inputs()).as_text() for p in (ours, theirs)]
    assert text[0] == text[1]
    assert "jax.buffer_donor" in text[0] or "tf.aliasing_output" in text[0]  # state donated


def test_abstract_inputs_allocate_nothing_and_match_the_state():
    config = configlib.load(os.path.join(ROOT, SMOKE))
    mesh = sharding.make_mesh(config.mesh)
    program = train_program.build_train_program(config, mesh)
    state, batch = program.abstract_inputs()
    leaves = jax.tree.leaves(state) + jax.tree.leaves(batch)
    assert all(isinstance(x, jax.ShapeDtypeStruct) and x.sharding is not None for x in leaves)
    assert batch["image"].shape == (config.batch_size, *config.input.size, 3)
    assert isinstance(program.model_def, ModelDef)


def test_hlo_collectives_and_dot_precision():
    text = """
  %all-reduce.1 = f32[128,4]{1,0} all-reduce(f32[128,4]{1,0} %p), replica_groups={}
  %ag-start = (f32[4]{0}, f32[16]{0}) all-gather-start(f32[4]{0} %x), dimensions={0}
  %ag-done = f32[16]{0:T(256)} all-gather-done((f32[4]{0}, f32[16]{0}) %ag-start)
  %t = (bf16[2,2]{1,0:T(2,128)(2,1)}, f32[8]{0}) all-reduce(bf16[2,2] %a, f32[8] %b)
  %dot.3 = f32[8,8]{1,0} dot(f32[8,4] %a, f32[4,8] %b), operand_precision={highest,highest}
  %dot.4 = f32[8,8]{1,0} dot(f32[8,4] %a, f32[4,8] %b), lhs_contracting_dims={1}
  %conv = f32[1,8,8,4]{3,2,1,0} convolution(f32[1,8,8,3] %x, f32[3,3,3,4] %w), window={size=3x3}
"""
    assert hlo.collectives(text) == {
        "all-gather": {"count": 1, "bytes": 64},
        "all-reduce": {"count": 2, "bytes": 128 * 4 * 4 + 2 * 2 * 2 + 8 * 4},
    }
    assert hlo_stats.dot_precision(text) == {"DEFAULT": 2, "HIGHEST": 1}


_MEMORY = {
    "affine": lambda k: 3e9 + 1.5e9 * k,  # weights + activations per example
    "convex": lambda k: 2e9 + 0.4e9 * k + 0.05e9 * k * k,
    "step": lambda k: 5e9 + 2e9 * k - (1e9 if k >= 4 else 0),  # the layout changes at 4
}


@pytest.mark.parametrize("shape", sorted(_MEMORY))
@pytest.mark.parametrize("start", [1, 3, 8, 40])
def test_max_batch_search_is_exact_and_cheap_for_affine_memory(shape, start):
    from dgr_jax.aot.plan import search_largest

    capacity, memory = 16 * 2**30, _MEMORY[shape]
    probes: list[int] = []

    def probe(k):
        probes.append(k)
        return memory(k) <= capacity, memory(k) if memory(k) <= capacity else None

    fits0 = memory(start) <= capacity
    best = search_largest(probe, start, fits0, memory(start) if fits0 else None, capacity=capacity)
    assert best == max(k for k in range(1, 100) if memory(k) <= capacity)
    assert best in probes and best + 1 in probes  # confirmed by compiling both sides
    if shape == "affine" and start == 3:
        assert probes == [6, 9, 10]  # 2 * start, then the line's crossing (9.45) and 10


def test_max_batch_search_when_not_one_example_fits():
    from dgr_jax.aot.plan import search_largest

    probes: list[int] = []
    probe = lambda k: (probes.append(k), (False, None))[1]  # noqa: E731
    assert search_largest(probe, 8, False, None, capacity=1) == 0
    assert probes == [4, 2, 1]


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(targets.TargetError, match="valid targets: TPU topologies such as v4:2x2x1"):
        targets.describe("v9z:2x2")
    with pytest.raises(targets.TargetError, match="h100:N"):
        targets.describe("h200:8")


@pytest.mark.slow
def test_smoke_compiles_for_a_tpu_slice(tmp_path):
    if not _has("libtpu"):
        pytest.skip(f"no libtpu in {AOT_PYTHON}: {targets.TPU_PIP}")
    out = tmp_path / "plan.json"
    run = _aot("--config", SMOKE, "--target", "v5e:2x2", "--precision-cost", "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and "train_step" in run.stdout
    result = json.loads(out.read_text())
    assert (result["target"], result["num_devices"], result["device_kind"]) == (
        "v5e:2x2",
        4,
        "TPU v5 lite",
    )
    assert result["hbm_bytes"] == 16 * 2**30
    assert (result["batch_size"], result["per_device_batch"]) == (8, 2)
    for name in ("train_step", "predict"):
        assert set(FIELDS) <= set(result[name]), name
        assert result[name]["fits"] and result[name]["roofline_s"] > 0
    # Evaluation at config.eval_precision ("highest"): every dot / convolution pinned, and the
    # same program at "default" beside it (what the setting costs on the target).
    predict, default = result["predict"], result["predict_at_default"]
    assert predict["matmul_precision"] == "highest" and set(predict["dot_precision"]) == {"HIGHEST"}
    assert set(default["dot_precision"]) == {"DEFAULT"}
    assert sum(default["dot_precision"].values()) == sum(predict["dot_precision"].values())
    train = result["train_step"]
    # The gradients are all-reduced over the 4 data-parallel devices.
    assert train["collectives"]["all-reduce"]["bytes"] > 0
    # Flops within 10% of the same step's CPU cost analysis: the CPU program on the same 4-device
    # data-parallel mesh, per device, times the 4 devices (measured: TPU 86.6 MFLOP vs CPU 80.6
    # per device; against one CPU device, 308 MFLOP, the replicated optimizer update counts 4x).
    config = configlib.load(os.path.join(ROOT, SMOKE))
    program = train_program.build_train_program(
        config, sharding.make_mesh(config.mesh, jax.devices()[:4])
    )
    cpu_flops = program.step.lower(*program.abstract_inputs()).compile().cost_analysis()["flops"]
    assert train["flops"] * 4 == pytest.approx(cpu_flops * 4, rel=0.10)
    # Resident on one device: at least the replicated parameters and optimizer state.
    state, _ = program.abstract_inputs()
    state_bytes = sum(
        x.size * x.dtype.itemsize
        for x in jax.tree.leaves({"params": state["params"], "opt_state": state["opt_state"]})
    )
    assert train["peak_bytes"] >= state_bytes


@pytest.mark.slow
def test_smoke_compiles_for_an_h100_host(tmp_path):
    if not _has("jax_plugins.xla_cuda13"):
        pytest.skip(f"no CUDA plugin in {AOT_PYTHON}: {targets.GPU_PIP}")
    out = tmp_path / "plan.json"
    run = _aot("--config", SMOKE, "--target", "h100:4", "--json", str(out))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["device_kind"] == "NVIDIA H100 80GB HBM3" and result["num_devices"] == 4
    for name in ("train_step", "predict"):
        assert set(FIELDS) <= set(result[name]), name
        assert result[name]["fits"] and 0 < result[name]["peak_bytes"] < result["hbm_bytes"]
    assert result["train_step"]["flops"] is None  # XLA:GPU reports no cost analysis


@pytest.mark.slow
def test_batch_far_too_large_exits_2_with_the_compilers_reason(tmp_path):
    # On a TPU slice: XLA:TPU refuses the program at once (RESOURCE_EXHAUSTED); XLA:GPU first
    # rematerialises towards its limit for minutes (measured: 395 s for the same batch on h100:4).
    if not _has("libtpu"):
        pytest.skip(f"no libtpu in {AOT_PYTHON}: {targets.TPU_PIP}")
    out = tmp_path / "plan.json"
    run = _aot(
        "--config", SMOKE, "--target", "v5e:2x2", "--config.batch_size=1048576", "--no-predict",
        "--json", str(out),
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "does not fit v5e:2x2" in error[0] and "batch_size" in error[0]
    assert "Ran out of memory" in error[0]
    train = json.loads(out.read_text())["train_step"]
    assert not train["fits"] and "exceeds available HBM" in train["compiler_message"]


@pytest.mark.slow
def test_no_train_compiles_predict_only(tmp_path):
    if not _has("libtpu"):
        pytest.skip(f"no libtpu in {AOT_PYTHON}: {targets.TPU_PIP}")
    out = tmp_path / "plan.json"
    run = _aot("--config", SMOKE, "--target", "v5e:2x2", "--no-train", "--json", str(out))
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert "train_step" not in result and result["predict"]["fits"]
    assert "train_step" not in run.stdout and "predict (highest)" in run.stdout


def test_no_train_with_no_predict_is_refused():
    run = _aot("--config", SMOKE, "--target", "v5e:2x2", "--no-train", "--no-predict")
    assert run.returncode == 2 and "--no-train compiles predict only" in run.stderr


def test_unknown_target_exits_2_without_a_traceback():
    run = _aot("--config", SMOKE, "--target", "nonesuch:8")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: unknown target 'nonesuch:8'; valid targets:")


def test_batch_not_divisible_over_the_slice_exits_2():
    if not _has("libtpu"):
        pytest.skip(f"no libtpu in {AOT_PYTHON}: {targets.TPU_PIP}")
    run = _aot("--config", SMOKE, "--target", "v5e:2x2", "--config.batch_size=6")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "batch_size=6 is not divisible by the 4 data-parallel devices" in run.stderr


def test_missing_tpu_plugin_names_the_pip_command():
    import importlib.util

    if importlib.util.find_spec("libtpu") is not None:
        pytest.skip("this interpreter has libtpu")
    env = {**os.environ, "PYTHONPATH": ROOT}
    run = subprocess.run(
        [sys.executable, "-m", "dgr_jax.aot", "--config", SMOKE, "--target", "v5e:2x2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: target 'v5e:2x2' needs the TPU compiler (libtpu)")
    assert targets.TPU_PIP in run.stderr
