"""Evaluation matmul precision: every dot / convolution of the prediction program is pinned, the
HLO counter that shows it, and the one-bfloat16-pass emulation that measures what it guards."""

import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from configs import (
    base,
    nyu_newcrfs_dgr,
    nyu_pixelformer_dgr,
    synthetic_cnn,
    synthetic_vit_dgr,
)
from dgr_jax import evaluate, hlo_stats, precision, protocol, steps, xla_options
from dgr_jax.bf16_emulation import one_bf16_pass
from dgr_jax.evaluators.depth_eval import DepthEvaluator

# Smoke models covering every host: ViT + DPT + DGR, ResNet, Swin + NeWCRFs CRF blocks + DGR,
# Swin + PixelFormer SAM / skip attention + DGR.
_CONFIGS = {
    "synthetic_vit_dgr": synthetic_vit_dgr,
    "synthetic_cnn": synthetic_cnn,
    "nyu_newcrfs_dgr": nyu_newcrfs_dgr,
    "nyu_pixelformer_dgr": nyu_pixelformer_dgr,
}


def _lowered_predict(config, matmul_precision: str, size=(32, 64)):
    """StableHLO of the evaluation program as evaluate.make_predict_fn builds it."""
    model_def = steps.model_def_from_config(config)
    params, rest = jax.eval_shape(model_def.init, jax.random.key(0))
    images = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
    replicated = NamedSharding(Mesh(np.asarray(jax.devices()[:1]), ("data",)), P())
    predict = evaluate.make_predict_fn(
        model_def,
        {"params": replicated, "rest": replicated},
        replicated,
        matmul_precision=matmul_precision,
    )
    return predict.lower(params, rest, images).as_text()


# Tracing the Swin hosts twice takes ~30-40 s on the shared 2-core machine.
_SLOW = {"nyu_newcrfs_dgr", "nyu_pixelformer_dgr"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in _SLOW else []) for n in _CONFIGS]
)
def test_every_dot_and_convolution_of_evaluation_is_pinned(name):
    config = _CONFIGS[name].get_config("smoke")
    highest = hlo_stats.dot_precision(_lowered_predict(config, "highest"))
    assert set(highest) == {"HIGHEST"} and highest["HIGHEST"] > 10, highest
    # "default" forces nothing, even under the tests' global "highest" (conftest.py); the only
    # HIGHEST ops left are those that ask for it themselves (jax.image.resize).
    with jax.default_matmul_precision("highest"):
        default = hlo_stats.dot_precision(_lowered_predict(config, "default"))
    assert sum(default.values()) == highest["HIGHEST"]
    assert default.get("DEFAULT", 0) > 0.8 * highest["HIGHEST"], default


def test_config_key_and_validation():
    assert base.base_config().eval_precision == "highest"
    assert precision.eval_precision({}) == "highest"  # configs written before the key
    with pytest.raises(ValueError, match="eval_precision='fast'; valid: highest, high, default"):
        precision.eval_precision({"eval_precision": "fast"})


def test_hlo_counts_on_a_lowered_cpu_program():
    def f(a, b, k):
        x = jnp.dot(a, b, precision="highest")  # (8, 8)
        y = jnp.dot(x, b)  # DEFAULT
        z = jax.lax.dot_general(y, b, (((1,), (0,)), ((), ())), precision=("highest", "default"))
        conv = jax.lax.conv_general_dilated(
            z[None, :, :, None], k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return conv + jax.lax.conv_general_dilated(
            z[None, :, :, None],
            k,
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision="highest",
        )

    a = jnp.ones((8, 8))
    with jax.default_matmul_precision(None):  # not the tests' global "highest" (conftest.py)
        lowered = jax.jit(f).lower(a, a, jnp.ones((3, 3, 1, 1)))
    want = {"DEFAULT": 2, "HIGHEST": 2, "HIGHEST/DEFAULT": 1}
    assert hlo_stats.dot_precision(lowered.as_text()) == want  # StableHLO
    assert hlo_stats.dot_precision(lowered.as_text("hlo")) == want
    assert hlo_stats.dot_precision(lowered.compile().as_text()) == want  # XLA:CPU keeps them


def test_hlo_counts_gpu_custom_calls():
    line = (
        "%gemm = (f32[8,8]{1,0}, s8[0]{0}) custom-call(f32[8,8]{1,0} %a, f32[8,8]{1,0} %b), "
        'custom_call_target="__cublas$gemm", backend_config={"gemm_backend_config":'
        '{"precision_config":{"operand_precision":["HIGHEST","HIGHEST"],"algorithm":"ALG_UNSET"}}}'
    )
    plain = line.replace('"HIGHEST","HIGHEST"', '"DEFAULT","DEFAULT"')
    assert hlo_stats.dot_precision(line + "\n" + plain) == {"DEFAULT": 1, "HIGHEST": 1}


def test_one_bf16_pass_matmul_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 256)).astype(np.float32)
    y = rng.standard_normal((256, 8)).astype(np.float32)
    got = np.asarray(jax.jit(one_bf16_pass(jnp.matmul))(x, y), np.float64)
    # bfloat16 operands, exact products, accumulated in float64 here (float32 there).
    ref = x.astype(ml_dtypes.bfloat16).astype(np.float64) @ y.astype(ml_dtypes.bfloat16).astype(
        np.float64
    )
    scale = np.abs(x).astype(np.float64) @ np.abs(y)
    np.testing.assert_array_less(np.abs(got - ref), 256 * 2**-24 * scale + 1e-30)
    # ... and it is not the float32 product: bfloat16 keeps 8 significant bits.
    exact = x.astype(np.float64) @ y
    assert np.max(np.abs(got - exact) / scale) > 1e-4
    # A dot that asks for HIGHEST itself (jax.image.resize's) stays float32, as on a TPU, even
    # under the tests' global "highest" (conftest.py), which the emulation clears.
    pinned = jax.jit(one_bf16_pass(lambda a, b: jnp.matmul(a, b, precision="highest")))(x, y)
    np.testing.assert_allclose(pinned, exact, rtol=1e-5, atol=1e-4)


def test_one_bf16_pass_rounds_convolutions_inside_calls():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    k = rng.standard_normal((3, 3, 4, 2)).astype(np.float32)

    def conv(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    @jax.jit  # a nested call and a custom VJP: both inlined
    def model(x, k):
        return jax.nn.relu(conv(x, k)) * 2.0

    got = jax.jit(one_bf16_pass(model))(x, k)
    rounded = [a.astype(ml_dtypes.bfloat16).astype(np.float32) for a in (x, k)]
    with jax.default_matmul_precision("highest"):
        want = model(*rounded)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert np.max(np.abs(np.asarray(got) - np.asarray(model(x, k)))) > 1e-4


def _source(n=3, size=(32, 64)):
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.integers(0, 256, (*size, 3), dtype=np.uint8),
            "depth": rng.uniform(0.5, 9.0, size).astype(np.float32),
            "id": f"img{i}",
        }
        for i in range(n)
    ]


def test_highest_metrics_equal_float32_metrics_and_name_the_precision(tmp_path):
    config = synthetic_vit_dgr.get_config("smoke")
    model_def = steps.model_def_from_config(config)
    params, rest = jax.jit(model_def.init)(jax.random.key(0))
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    sh = NamedSharding(mesh, P())
    eval_cfg = base.depth_eval(
        "synthetic_depth/indoor", crop="none", max_depth=protocol.NYU_MAX_DEPTH, batch_size=2
    )
    eval_cfg.num_pictures = 0

    def metrics(predict, matmul_precision=None, out_dir=None):
        ev = DepthEvaluator(
            eval_cfg,
            name="test",
            source=_source(),
            input_size=(32, 64),
            mesh=mesh,
            matmul_precision=matmul_precision,
        )
        return ev.run(lambda x: predict(params, rest, x), out_dir=out_dir)

    highest = evaluate.make_predict_fn(
        model_def, {"params": sh, "rest": sh}, sh, matmul_precision="highest"
    )
    out = tmp_path / "eval"
    got = metrics(highest, "highest", str(out))
    # float32 on the CPU: no precision asked for at all (XLA:CPU computes float32 products),
    # compiled with the same XLA options.
    with jax.default_matmul_precision(None):
        float32 = metrics(xla_options.jit(steps.make_predict(model_def)))
    # Exactly equal, NaN included (a metric undefined on these tiny frames is NaN in both).
    assert got.keys() == float32.keys()
    for key, value in got.items():
        assert value == float32[key] or (np.isnan(value) and np.isnan(float32[key])), key
    written = json.loads((out / "metrics.json").read_text())
    assert written["protocol"]["matmul_precision"] == "highest"
    assert "matmul precision `highest`" in (out / "report.md").read_text()
