"""Depth Anything V2 as a host: per-group learning rates, partial init_from, the patch-14
evaluation frame, and the smoke recipes starting from a converted tiny checkpoint."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from depth_anything_layout import official_state_dict
from flax import nnx

from dgr_jax import configlib, evaluate, optim, steps, weights
from dgr_jax.convert import depth_anything, save_converted
from dgr_jax.convert.torch_layout import assign_pure_dict
from dgr_jax.data.augment import keep_aspect_size
from dgr_jax.evaluators.eval_steps import final_prediction
from dgr_jax.evaluators.eval_steps import resize_image as _resize_image
from dgr_jax.models import build_model
from dgr_jax.predict import model_input_size

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name: str, arg: str = "smoke") -> ml_collections.ConfigDict:
    return configlib.load(os.path.join(ROOT, f"configs/{name}.py:{arg}"))


def test_param_groups_freeze_bit_identically_and_scale_the_learning_rate():
    config = _config("nyu_depth_anything_v2")
    params = {
        "encoder": {"vit": {"w": jnp.zeros((3, 4))}, "reassemble_stage": {"w": jnp.zeros(5)}},
        "head": {"w": jnp.zeros(6)},
    }
    grads = jax.tree.map(lambda p: jnp.linspace(-1.0, 2.0, p.size).reshape(p.shape), params)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step moves each weight by lr (sign of the gradient): 5e-6 on the DINOv2
    # encoder, 5e-5 on the rest (the reassemble convs belong to the official DPT head).
    np.testing.assert_allclose(jnp.abs(updates["encoder"]["vit"]["w"]), 5e-6, rtol=1e-4)
    np.testing.assert_allclose(jnp.abs(updates["head"]["w"]), 5e-5, rtol=1e-4)
    np.testing.assert_allclose(jnp.abs(updates["encoder"]["reassemble_stage"]["w"]), 5e-5, 1e-4)
    assert float(schedule(config.total_steps)) == 0.0  # poly 0.9 down to 0
    # A frozen group (lr_scale 0) stays bit-identical through AdamW steps with weight decay.
    with config.unlocked():
        config.optim.param_groups.encoder.lr_scale = 0.0
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    params = jax.tree.map(lambda p: p + 0.5, params)
    state, before = tx.init(params), params
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(params["encoder"]["vit"]["w"], before["encoder"]["vit"]["w"])
    assert not np.array_equal(params["head"]["w"], before["head"]["w"])
    # Overlapping groups are refused.
    with config.unlocked():
        config.optim.param_groups.head = {"include": ("*",), "lr_scale": 2.0}
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    with pytest.raises(ValueError, match="make them disjoint"):
        tx.init(params)


def _converted(tmp_path, max_depth=None, name="da2"):
    weights_ = depth_anything.convert_depth_anything_checkpoint(
        official_state_dict(), encoder="tiny_test", max_depth=max_depth
    )
    return str(save_converted(str(tmp_path / name), weights_)), weights_


def _abstract_state(config):
    model_def = steps.model_def_from_config(config)
    tx, _ = optim.make_optimizer(config.optim, config.total_steps)
    return model_def, tx, jax.eval_shape(lambda: steps.init_state(model_def, tx, 0))


def test_partial_init_loads_the_encoder_and_refuses_a_relative_head(tmp_path):
    relative, _ = _converted(tmp_path)
    config = _config("nyu_depth_anything_v2")
    _, _, abstract = _abstract_state(config)
    init = weights.read_init_weights(
        abstract, relative, config.model, complete=False, include=config.init_from_include
    )
    loaded = set(init.arrays["params"])
    assert loaded and all(k.startswith("encoder/vit/") for k in loaded)
    assert any(k.startswith("head/") for k in init.missing)
    assert "left out by init_from_include" in init.report
    # All of a relative checkpoint into the metric recipe: the head's kind is named.
    with pytest.raises(ValueError, match="'relu' head and the config has a 'sigmoid' head"):
        weights.read_init_weights(abstract, relative, config.model, complete=False)
    init = weights.read_init_weights(
        abstract, relative, config.model, complete=False, exclude=("head/*",)
    )
    assert not any(k.startswith("head/") for k in init.arrays["params"])
    with pytest.raises(ValueError, match="leave no array"):
        weights.read_init_weights(
            abstract, relative, config.model, complete=False, include=("nothing/*",)
        )


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["nyu_depth_anything_v2", "kitti_depth_anything_v2_dgr"])
def test_smoke_recipe_first_step_predicts_what_the_converted_model_predicts(tmp_path, recipe):
    """A metric checkpoint (max_depth of the recipe) loaded whole: the trainer's first state
    predicts what the converted model predicts, also with the zero-initialised DGR blocks."""
    config = _config(recipe)
    max_depth = float(config.model.head.max_depth)
    path, converted = _converted(tmp_path, max_depth=max_depth)
    with config.unlocked():
        config.init_from_include = ()
    model_def, tx, abstract = _abstract_state(config)
    init = weights.read_init_weights(abstract, path, config.model, complete=False)
    assert all(k.startswith("decoder/dgr_") for k in init.missing)
    assert bool(init.missing) == config.model.dgr.enabled
    state = steps.init_state(model_def, tx, 0)
    shardings = jax.tree.map(lambda x: x.sharding, {k: state[k] for k in ("params", "rest")})
    state = weights.apply_init_weights(state, init, shardings)
    images = jnp.asarray(np.random.RandomState(0).randn(2, *config.input.size, 3), jnp.float32)
    ours = steps.make_predict(model_def)(state["params"], state["rest"], images)
    reference = nnx.eval_shape(lambda: build_model(converted.model_cfg, rngs=nnx.Rngs(0)))
    assign_pure_dict(reference, converted.tree)
    expected, _ = reference(images)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_patch14_evaluation_frame_resize_and_align_corners():
    """The official evaluation frame: aspect kept, >= 518, multiples of 14; bicubic image
    resize and the prediction back with corners aligned, as torch does."""
    torch = pytest.importorskip("torch")
    assert keep_aspect_size((480, 640), 518, 518, 14) == (518, 686)
    assert keep_aspect_size((352, 1216), 518, 518, 14) == (518, 1792)
    assert keep_aspect_size((375, 1242), 518, 518, 14) == (518, 1722)  # official KITTI frame
    nyu, kitti = (
        _config("nyu_depth_anything_v2", "vits"),
        _config("kitti_depth_anything_v2", "vitb"),
    )
    assert evaluate.eval_frame_size(nyu, "test") == (518, 686)
    assert evaluate.eval_frame_size(kitti, "test") == (518, 1792)
    assert nyu.evals.test.image_resize == "bicubic" and nyu.evals.test.pred_align_corners
    # predict.py sizes a patch-14 model's input to multiples of 14 (not 32).
    assert model_input_size((480, 640), nyu.model) == (476, 644)
    image = np.random.RandomState(0).randint(0, 256, (30, 44, 3)).astype(np.uint8)
    ours = np.asarray(_resize_image(jnp.asarray(image), (42, 56), "bicubic"))
    x = torch.from_numpy(image.astype(np.float32).transpose(2, 0, 1)[None])
    ref = torch.nn.functional.interpolate(x, (42, 56), mode="bicubic", align_corners=False)
    np.testing.assert_allclose(ours, ref[0].numpy().transpose(1, 2, 0), atol=1e-3)
    pred = np.random.RandomState(1).uniform(1, 9, (1, 42, 56, 1)).astype(np.float32)
    out = final_prediction(
        jnp.asarray(pred), None, flip_tta="none", gt_size=(30, 44), paste_kb=False,
        min_depth=1e-3, max_depth=10.0, align_corners=True,
    )  # fmt: skip
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(pred[..., 0])[None], (30, 44), mode="bilinear", align_corners=True
    )
    np.testing.assert_allclose(np.asarray(out), ref[0].numpy(), rtol=1e-5)


@pytest.mark.parametrize("arg", ["smoke"])
def test_ablation_study_resolves_and_its_cnn_arm_builds(arg, tmp_path):
    from dgr_jax.analysis.ablation import study as ablation

    config = _config("ablation_nyu_depth_anything_v2", arg)
    runs = ablation.resolve_runs(config, str(tmp_path))
    ablation.check_runs(runs, config)  # raises on a difference no override names
    by = {(r.arm, r.seed): r.config for r in runs}
    s0 = config.seeds[0]
    assert not by[("da2", s0)].model.dgr.enabled and by[("da2+dgr+otdl", s0)].model.dgr.enabled
    cnn = by[("cnn", s0)]
    model = nnx.eval_shape(lambda: build_model(cnn.model, rngs=nnx.Rngs(0)))
    image = jax.ShapeDtypeStruct((1, *cnn.input.size, 3), jnp.float32)
    depth, _ = nnx.eval_shape(lambda m, x: m(x, train=False), model, image)
    assert depth.shape == (1, *cnn.input.size, 1)


def test_resize_keep_aspect_op_is_bicubic_for_images_and_nearest_for_depth():
    from dgr_jax.data import augment

    rng = np.random.default_rng(0)
    ex = {
        "image": rng.integers(0, 256, (30, 40, 3)).astype(np.uint8),
        "depth": rng.uniform(0.5, 9.0, (30, 40)).astype(np.float32),
    }
    out = augment.parse("resize_keep_aspect(42,42,multiple=14,method='bicubic')|normalize")[0](
        ex, rng
    )
    assert out["image"].shape == (42, 56, 3) and out["depth"].shape == (42, 56)
    assert set(np.unique(out["depth"])) <= set(np.unique(ex["depth"]))  # nearest: no new depth
    bilinear = augment.resize(42, 56)(ex, rng)["image"]
    assert not np.array_equal(out["image"], bilinear)  # the method reaches the image
    with pytest.raises(ValueError, match="resize method"):
        augment.resize(42, 56, method="lanczos")(ex, rng)
