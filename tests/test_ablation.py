"""The DGR / OTDL ablation study: configs, run checks, statistics from per_image.csv, end to end."""

from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from json_helpers import assert_strict_json_tree

from dgr_jax import configlib, jsonio
from dgr_jax.analysis.ablation import outputs as ablation_outputs
from dgr_jax.analysis.ablation import stats as ablation_stats
from dgr_jax.analysis.ablation import study as ablation
from dgr_jax.analysis.common import runs as arms
from dgr_jax.evaluators.eval_steps import ALL_METRIC_NAMES
from dgr_jax.trainer import data_seed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = [
    "configs/ablation_synthetic.py",
    "configs/ablation_synthetic.py:smoke",
    "configs/ablation_nyu_newcrfs.py",
    "configs/ablation_nyu_newcrfs.py:smoke",
    "configs/ablation_kitti_newcrfs.py",
    "configs/ablation_kitti_newcrfs.py:smoke",
    "configs/ablation_nyu_pixelformer.py",
    "configs/ablation_nyu_pixelformer.py:smoke",
    "configs/ablation_kitti_pixelformer.py",
    "configs/ablation_kitti_pixelformer.py:smoke",
]
ALL_METRICS = ALL_METRIC_NAMES


def _load(spec: str):
    return configlib.load(os.path.join(ROOT, spec))


# ----- Configs and runs ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS)
def test_study_configs_resolve_into_runs_that_differ_only_as_their_arms_say(spec, tmp_path):
    config = _load(spec)
    runs = ablation.resolve_runs(config, str(tmp_path))
    ablation.check_runs(runs, config)  # raises on a difference no override names
    main = [r for r in runs if r.arm in config.main_arms]
    assert len(main) == len(config.main_arms) * len(config.seeds) and len(config.seeds) >= 2
    assert len(config.main_arms) == 6 and config.baseline in config.main_arms
    by = {(r.arm, r.seed): r.config for r in runs}
    h, s0 = config.baseline, config.seeds[0]
    for seed in config.seeds:  # seeds change the initialisation only: same data, same order
        assert data_seed(by[(h, seed)]) == config.data_seed and by[(h, seed)].seed == seed
        keys = {k for k, _, _ in arms.config_differences(by[(h, s0)], by[(h, seed)])}
        assert keys <= {"seed"}
    plain, full = by[(h, s0)], by[(f"{h}+dgr+otdl", s0)]
    assert not plain.model.dgr.enabled and plain.loss.terms.otdl == 0.0
    assert full.model.dgr.enabled and full.loss.terms.otdl > 0
    assert by[(f"{h}+otdl_rows", s0)].loss.otdl.geometry == "rows"
    assert by[("cnn", s0)].model.encoder.name == "resnet"
    # The OTDL weight is the same in every config that trains with it.
    assert full.loss.terms.otdl == _load("configs/synthetic_vit_dgr.py").loss.terms.otdl
    for _, arm, baseline, kind in config.claims:
        assert {arm, baseline} <= set(config.main_arms) and kind in config.metrics
    for m in (*config.metrics.accuracy, *config.metrics.continuity, *config.metrics.table):
        assert m in ALL_METRICS
    # Only smoke studies compile for compile speed (their step times mean little).
    assert config.fast_compile == spec.endswith("smoke")
    if not spec.endswith("smoke"):
        # stencils, learnable, placement, mass, epsilon, two OTDL weights (+ the reference's)
        assert len(config.exploratory_arms) == 7


def test_every_dgr_config_weighs_otdl_like_the_synthetic_ones():
    weight = _load("configs/synthetic_vit_dgr.py").loss.terms.otdl
    specs = [
        f"configs/{d}_{h}_dgr.py" for d in ("nyu", "kitti") for h in ("newcrfs", "pixelformer")
    ]
    for spec in (*specs, "configs/nyu_vit_dgr.py", "configs/kitti_vit_dgr.py"):
        assert _load(spec).loss.terms.otdl == weight == 500.0, spec


def test_weights_and_user_overrides_reach_the_right_runs(tmp_path):
    config = _load("configs/ablation_nyu_newcrfs.py:smoke")
    with config.unlocked():
        config.init_from = "/w/swin"
        config.arms.cnn.init_from = "/w/resnet"
        config.overrides = ("total_steps=3",)
    runs = ablation.resolve_runs(config, str(tmp_path))
    ablation.check_runs(runs, config)
    for run in runs:
        assert run.config.init_from == ("/w/resnet" if run.arm == "cnn" else "/w/swin")
        assert run.config.total_steps == 3
    with config.unlocked():
        config.exploratory_seed = 7
    with pytest.raises(ValueError, match="exploratory_seed"):
        ablation.resolve_runs(config, str(tmp_path))


def test_a_run_folder_with_another_config_is_refused_naming_the_keys(tmp_path):
    config = _load("configs/ablation_synthetic.py:smoke")
    runs = ablation.resolve_runs(config, str(tmp_path))
    run = next(r for r in runs if r.arm == "vit+dgr" and r.seed == 1)
    written = jsonio.config_json(run.config)
    os.makedirs(run.workdir)
    jsonio.write(os.path.join(run.workdir, "config.json"), written)
    ablation.check_runs(runs, config)  # the study's own config: accepted
    written["optim"]["lr"] = 1.0
    written["model"]["dgr"]["se_reduction"] = 2
    jsonio.write(os.path.join(run.workdir, "config.json"), written)
    with pytest.raises(ValueError, match=r"(?s)model\.dgr\.se_reduction.*optim\.lr"):
        ablation.check_runs(runs, config)


def test_an_arm_that_differs_beyond_its_overrides_is_refused(tmp_path):
    config = _load("configs/ablation_synthetic.py:smoke")
    runs = ablation.resolve_runs(config, str(tmp_path))
    run = next(r for r in runs if r.arm == "vit+otdl")
    with run.config.unlocked():
        run.config.optim.lr = 1.0
    with pytest.raises(ValueError, match=r"optim\.lr"):
        ablation.check_runs(runs, config)


# ----- Statistics from per_image.csv ----------------------------------------------------------
def _fake_study(config, rng):
    """per-run per-image metrics of a made-up study, with some undefined edge scores."""
    n = 12
    per_run = {}
    arms_ = [*config.main_arms, *config.exploratory_arms]
    for i, arm in enumerate(arms_):
        seeds = config.seeds if arm in config.main_arms else (config.exploratory_seed,)
        for seed in seeds:
            values = {m: rng.uniform(0.1, 1.0, n) + 0.01 * i for m in ALL_METRICS}
            values["edge_f1_0.50"][rng.integers(0, n)] = np.nan
            per_run[(arm, seed)] = values
    constant = {m: rng.uniform(0.1, 1.0, n) for m in ALL_METRICS}
    return [f"img{k}" for k in range(n)], per_run, {"per_image": constant}


def _recompute_delta(rows, metric, arm, baseline, seeds) -> float:
    """The contract of summary.json's delta, from per_image.csv rows alone."""
    table: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["arm"] in (arm, baseline) and int(row["seed"]) in seeds:
            v = float(row[metric]) if row[metric] else np.nan
            table.setdefault((row["arm"], row["image"]), []).append(v)
    images = sorted({img for _, img in table})
    diffs = []
    for img in images:
        a, b = table[(arm, img)], table[(baseline, img)]
        if np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
            diffs.append(np.mean(a) - np.mean(b))
    return float(np.mean(diffs))


def test_every_delta_can_be_recomputed_from_per_image_csv(tmp_path):
    config = _load("configs/ablation_synthetic.py:smoke")
    ids, per_run, constant = _fake_study(config, np.random.default_rng(0))
    stats = ablation_stats.study_statistics(config, per_run, constant, list(ALL_METRICS))
    ablation_outputs.write_tables(str(tmp_path), ids, per_run, list(ALL_METRICS), config)
    with open(tmp_path / "per_image.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["arm", "seed", "image", *ALL_METRICS]
        rows = list(reader)
    seeds = [int(s) for s in config.seeds]
    assert stats["claims"] and stats["comparisons"]
    for c in [*stats["claims"], *stats["comparisons"]]:
        expected = _recompute_delta(rows, c["metric"], c["arm"], c["baseline"], seeds)
        np.testing.assert_allclose(c["delta"], expected, rtol=1e-12, atol=1e-15)
        assert c["ci"][0] <= c["delta"] <= c["ci"][1]
    for c in stats["exploratory"]:
        expected = _recompute_delta(
            rows, c["metric"], c["arm"], c["baseline"], [config.exploratory_seed]
        )
        np.testing.assert_allclose(c["delta"], expected, rtol=1e-12, atol=1e-15)
    with open(tmp_path / "ablation.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["arm", "seed", "metric", "value"]
    got = {(r["arm"], int(r["seed"]), r["metric"]): float(r["value"]) for r in table}
    for arm in config.main_arms:
        mean = np.mean([got[(arm, s, "abs_rel")] for s in seeds])
        np.testing.assert_allclose(stats["arms"][arm]["abs_rel"]["mean"], mean, rtol=1e-12)


def test_claims_follow_the_config_and_the_verdict_rule():
    config = _load("configs/ablation_synthetic.py:smoke")
    ids, per_run, constant = _fake_study(config, np.random.default_rng(1))
    # vit+dgr is much better than vit on abs_rel (lower) in every seed and image.
    for seed in config.seeds:
        per_run[("vit+dgr", seed)]["abs_rel"] = per_run[("vit", seed)]["abs_rel"] - 0.3
    stats = ablation_stats.study_statistics(config, per_run, constant, list(ALL_METRICS))
    names = {c["name"] for c in stats["claims"]}
    assert len(names) == len(config.claims)
    kinds = {"accuracy": config.metrics.accuracy, "continuity": config.metrics.continuity}
    assert len(stats["claims"]) == sum(len(kinds[k]) for *_, k in config.claims)
    dgr = next(c for c in stats["claims"] if c["arm"] == "vit+dgr" and c["metric"] == "abs_rel")
    assert dgr["better"] == "lower" and dgr["verdict"] == "supported"
    np.testing.assert_allclose(dgr["delta"], -0.3)
    for c in stats["claims"]:
        assert c["verdict"] in ("supported", "contradicted", "not shown")
        higher = c["metric"].startswith("edge_f1") or c["metric"].startswith("normal_within")
        assert c["better"] == ("higher" if higher else "lower")


def test_summary_md_renders_every_section_from_summary_json(tmp_path):
    config = _load("configs/ablation_synthetic.py")  # with the exploratory arms
    ids, per_run, constant = _fake_study(config, np.random.default_rng(2))
    constant["depth"] = 2.3
    constant["means"] = {m: float(np.mean(v)) for m, v in constant["per_image"].items()}
    stats = ablation_stats.study_statistics(config, per_run, constant, list(ALL_METRICS))
    runs = ablation.resolve_runs(config, str(tmp_path))
    arm_cost = {"params": 7e6, "forward_gflops": 1.0, "params_ratio": 1.0}
    cost = {
        "reference": "vit",
        "batch_size": 8,
        "timing_repeats": 5,
        "arms": {a: dict(arm_cost, forward_flops_ratio=1.0) for a in config.main_arms},
        "dgr": {
            "arm": "vit+dgr",
            "reference": "vit",
            "params_pct": 1.35,
            "forward_flops_pct": 3.5,
            "params_budget_pct": 2.0,
            "flops_budget_pct": 3.0,
            "params_within_budget": True,
            "flops_within_budget": False,
            "step_time_pct": 4.0,
        },
    }
    protocol = {
        "dataset": "synthetic_depth/indoor",
        "split": "test",
        "crop": "none",
        "min_depth": 1e-3,
        "max_depth": 10.0,
        "flip_tta": "blend",
        "resize": "none",
        "kb_crop": False,
        "num_images": len(ids),
    }
    summary = ablation_outputs.summary_dict(
        config,
        command="python -m dgr_jax.analysis.ablation ...",
        runs=runs,
        run_seconds={},
        conditions={"num_keys": 100, "arm_keys": {}},
        stats=stats,
        cost=cost,
        constant=constant,
        protocol=protocol,
        num_images=len(ids),
        timing=dict.fromkeys(("runs_s", "statistics_s", "cost_s", "outputs_s", "total_s"), 60.0)
        | {"cpu_s": 100.0},
        load=((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)),
    )
    ablation_outputs.write_summary(str(tmp_path), summary)
    data = jsonio.loads_strict((tmp_path / "summary.json").read_text())
    text = (tmp_path / "summary.md").read_text()
    for section in (
        "## Ablation table",
        "## The paper's claims",
        "## Every arm against",
        "## Cost",
    ):
        assert section in text, section
    assert "## Exploratory" in text and all(f"`{a}`" in text for a in config.exploratory_arms)
    assert "over budget" in text and "within budget" in text
    for c in data["claims"]:
        assert f"{c['delta']:+.4f}" in text and f"**{c['verdict']}**" in text
    for a in config.main_arms:
        assert f"{data['arms'][a]['abs_rel']['mean']:.4f}" in text


# ----- End to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_study_end_to_end_and_resume(tmp_path):
    config = _load("configs/ablation_synthetic.py:smoke")
    with config.unlocked():
        # One of the 8 fake devices: the programs are those of the command line on one CPU
        # (8-way partitioned ones compile several times slower; sharding is tested elsewhere).
        config.mesh.data = 1
    workdir = tmp_path / "study"
    summary = ablation.run_study(config, str(workdir))
    print("smoke study timing (s):", {k: round(v) for k, v in summary["timing"].items()})
    print(
        "runs (s):",
        [(r["arm"], r["seed"], round(r["seconds_this_invocation"])) for r in summary["runs"]],
    )

    for name in ("ablation.csv", "per_image.csv", "summary.json", "summary.md"):
        assert (workdir / name).stat().st_size > 0, name
    for name in ("ablation.png", "gradients.png", "curves.png"):
        assert (workdir / name).stat().st_size > 10_000, name
    for arm in config.main_arms:
        for seed in config.seeds:
            run = workdir / "arms" / arm / f"seed{seed}"
            assert (run / "checkpoints" / str(4)).is_dir() and (run / "tb").is_dir()
            assert (run / "eval" / "test" / "per_image.csv").exists()
    assert {"summary.json", "config.json"} <= set(assert_strict_json_tree(workdir))

    data = json.loads((workdir / "summary.json").read_text())
    assert set(data["arms"]) == {*config.main_arms, *config.exploratory_arms}
    assert set(data["arms"]["vit"]["abs_rel"]) == {"mean", "std"}
    for c in data["claims"]:
        assert set(c) >= {"name", "arm", "baseline", "metric", "better", "delta", "ci", "verdict"}
        assert c["verdict"] in ("supported", "contradicted", "not shown")
    dgr = data["cost"]["dgr"]
    assert dgr["params_pct"] > 0 and isinstance(dgr["params_within_budget"], bool)
    assert data["cost"]["arms"]["vit"]["step_time_ratio"] == 1.0
    assert all("step_ms" in data["cost"]["arms"][a] for a in config.cost.timing_arms)
    for a in config.cost.timing_arms:  # each ratio is to the reference's time of its series
        c = data["cost"]["arms"][a]
        if a != config.cost.reference:
            np.testing.assert_allclose(c["step_ms"] / c["reference_step_ms"], c["step_time_ratio"])
    assert all("forward_gflops" in data["cost"]["arms"][a] for a in config.main_arms)

    with open(workdir / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["arm", "seed", "image"]
    seeds = [int(s) for s in config.seeds]
    text = (workdir / "summary.md").read_text()
    for c in data["claims"]:
        expected = _recompute_delta(rows, c["metric"], c["arm"], c["baseline"], seeds)
        np.testing.assert_allclose(c["delta"], expected, rtol=1e-9, atol=1e-12)
        assert f"{c['delta']:+.4f}" in text  # summary.md prints summary.json's numbers
    assert "**supported**" in text or "**not shown**" in text or "**contradicted**" in text
    assert len(summary["claims"]) == len(data["claims"])

    # Started again, the study reuses every finished run (no training, no evaluation) and
    # resumes an unfinished one: here one whose last checkpoint and evaluation are gone.
    runs = ablation.resolve_runs(config, str(workdir))
    ablation.check_runs(runs, config)
    cut = workdir / "arms" / "vit+dgr" / "seed1"
    shutil.rmtree(cut / "checkpoints" / "4")
    shutil.rmtree(cut / "eval")
    seconds = ablation.train_and_evaluate_runs(runs, config.eval_name)
    assert max(s for k, s in seconds.items() if k != ("vit+dgr", 1)) < 10, seconds
    assert (cut / "checkpoints" / "4").is_dir() and (
        cut / "eval" / "test" / "per_image.csv"
    ).exists()
    log = [json.loads(line) for line in (cut / "train_metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]  # resumed at step 2, one uninterrupted log
    # A study config that no longer matches the finished runs is refused, naming the key.
    with config.unlocked():
        config.base_overrides = (*config.base_overrides, "optim.lr=0.123")
    with pytest.raises(ValueError, match=r"optim\.lr"):
        ablation.run_study(config, str(workdir))


@pytest.mark.parametrize("host", ["newcrfs", "pixelformer"])
@pytest.mark.parametrize("dataset", ["nyu", "kitti"])
def test_the_cnn_arm_of_each_host_study_builds(host, dataset, tmp_path):
    """The CNN reference is a ResNet under the host's decoder: it must trace at the recipe's size
    (abstractly: nothing is compiled)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from dgr_jax.models import build_model

    config = _load(f"configs/ablation_{dataset}_{host}.py")
    run = next(r for r in ablation.resolve_runs(config, str(tmp_path)) if r.arm == "cnn")
    model = nnx.eval_shape(lambda: build_model(run.config.model, rngs=nnx.Rngs(0)))
    h, w = run.config.input.size
    image = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
    depth, _ = nnx.eval_shape(lambda m, x: m(x, train=False), model, image)
    assert depth.shape == (1, h, w, 1)
