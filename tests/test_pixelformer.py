"""PixelFormer: the skip attention module (SAM) and the bin centre predictor (BCP) + bin head
against numpy references of their equations, forward shapes at the hosts' sizes, the
multiple-of-32 refusal, the DGR hook, the recipes, and a training step of the smoke recipe
sharded over 8 fake devices."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from model_helpers import random_fill

from dgr_jax import optim, protocol, sharding, steps
from dgr_jax.convert.torch_layout import flatten
from dgr_jax.data import augment
from dgr_jax.losses import make_loss
from dgr_jax.models import build_model
from dgr_jax.models.decoders.newcrfs import IdentityHead
from dgr_jax.models.decoders.pixelformer import BCP, BinHead, PixelFormerDecoder
from dgr_jax.models.decoders.pixelformer_sam import SAM
from dgr_jax.models.encoders.swin import Swin
from dgr_jax.registry import DECODERS

TINY_ENCODER = {"variant": "tiny_test", "window_size": 7}  # widths 16, 32, 64, 128
# sam1, sam2 keep the encoder width (no proj_e, as every level of the official base07), sam3,
# sam4 project it; every level projects its queries (widths 8, 12, 16, 32 -> 16, 32, 48, 64).
TINY_DECODER = {
    "max_depth": 10.0,
    "sam_dims": (16, 32, 48, 64),
    "sam_heads": (2, 2, 4, 4),
    "psp_channels": 32,
    "ppm_norm_groups": 16,
    "num_bins": 16,
    "bcp_hidden": 64,
}


SMALL_ENCODER = {**TINY_ENCODER, "depths": (1, 1, 1, 1)}  # one block per stage: faster compiles


def pixelformer_cfg(decoder=TINY_DECODER, dgr=None, encoder=TINY_ENCODER) -> dict:
    return {
        "encoder": {"name": "swin", **encoder},
        "decoder": {"name": "pixelformer", **decoder},
        "dgr": dgr or {"enabled": False},
        "head": {"name": "identity"},
    }


def abstract_pixelformer(decoder=TINY_DECODER, dgr=None, encoder=TINY_ENCODER):
    return nnx.eval_shape(
        lambda: build_model(pixelformer_cfg(decoder, dgr, encoder), rngs=nnx.Rngs(0))
    )


def _pure64(module) -> dict:
    return jax.tree.map(lambda a: np.asarray(a, np.float64), nnx.to_pure_dict(nnx.state(module)))


def _ln(x, p):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _dense(x, p):
    return x @ p["kernel"] + p["bias"]


def _conv3x3(x, p):
    """torch Conv2d(k=3, padding=1) on NHWC with a (3, 3, I, O) kernel."""
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = sum(
        xp[:, dy : dy + h, dx : dx + w] @ p["kernel"][dy, dx] for dy in range(3) for dx in range(3)
    )
    return out + p["bias"]


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# ------------------------------------------------------------------------------------------
# SAM against its equations, in pixel space (no window partition).
# ------------------------------------------------------------------------------------------
def _sam_reference(p, e, q, window, heads):
    """out = LN_sam(x) + ep + qp, x = qp + proj(attn) then x + MLP(LN2 x), where the attention
    of pixel i over pixel j (same window of the grid zero-padded to window multiples, no shift,
    no mask: padded pixels are keys/values too) uses Q from LN1(qp), K and V from LNv(ep)."""
    qp = _conv3x3(q, p["proj_q"]) if p.get("proj_q") else q
    ep = _conv3x3(e, p["proj_e"]) if p.get("proj_e") else e
    blk = p["sam_block"]
    b, h, w, c = qp.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    pad = ((0, 0), (0, hp - h), (0, wp - w), (0, 0))
    qn = np.pad(_ln(qp, blk["norm1"]), pad).reshape(b, -1, c)
    en = np.pad(_ln(ep, blk["normv"]), pad).reshape(b, -1, c)
    rh, rw = (a.ravel() for a in np.meshgrid(np.arange(hp), np.arange(wp), indexing="ij"))
    same = (rh[:, None] // window == rh[None] // window) & (
        rw[:, None] // window == rw[None] // window
    )
    dh = rh[:, None] % window - rh[None] % window + window - 1
    dw = rw[:, None] % window - rw[None] % window + window - 1
    bias = blk["attn"]["relative_position_bias_table"][dh * (2 * window - 1) + dw]  # (N, N, h)
    queries = _dense(qn, blk["attn"]["q"])
    kv = _dense(en, blk["attn"]["kv"])
    d = c // heads
    out = np.zeros_like(queries)
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        logits = queries[..., sl] @ kv[..., :c][..., sl].transpose(0, 2, 1) * d**-0.5
        logits = np.where(same, logits + bias[..., i], -np.inf)
        out[..., sl] = _softmax(logits) @ kv[..., c:][..., sl]
    out = _dense(out, blk["attn"]["proj"]).reshape(b, hp, wp, c)[:, :h, :w]
    x = qp + out
    x = x + _dense(_gelu(_dense(_ln(x, blk["norm2"]), blk["mlp"]["fc1"])), blk["mlp"]["fc2"])
    return _ln(x, p["norm_sam"]) + ep + qp


@pytest.mark.parametrize(("input_dim", "v_dim"), [(6, 4), (8, 8)])
def test_sam_matches_its_equations(input_dim, v_dim):
    window, heads, c = 3, 2, 8  # a 5x7 map pads to 6x9: padded keys in most windows
    sam = random_fill(
        nnx.eval_shape(
            lambda: SAM(input_dim, c, v_dim, window=window, num_heads=heads, rngs=nnx.Rngs(0))
        ),
        seed=1,
    )
    assert (sam.proj_e is None) == (input_dim == c) and (sam.proj_q is None) == (v_dim == c)
    rs = np.random.RandomState(2)
    e = rs.randn(2, 5, 7, input_dim).astype(np.float32)
    q = rs.randn(2, 5, 7, v_dim).astype(np.float32)
    ref = _sam_reference(_pure64(sam), e.astype(np.float64), q.astype(np.float64), window, heads)
    got = nnx.jit(lambda m, a, b: m(a, b))(sam, e, q)
    np.testing.assert_allclose(np.asarray(got), ref, atol=2e-5)
    with pytest.raises(ValueError, match="multiples of 32"):
        nnx.eval_shape(lambda m, a, b: m(a, b), sam, e, q[:, :4])


def test_bcp_and_bin_head_match_their_equations():
    """centres_i = min + (max - min) (sum_{j<i} p_j + p_i / 2), p = softmax(fc2 gelu(fc1 mean q));
    depth = sum_i softmax_i(conv(x)) centres_i."""
    lo, hi, bins = protocol.PIXELFORMER_MIN_DEPTH, 80.0, 16
    bcp = random_fill(
        nnx.eval_shape(lambda: BCP(12, 24, bins, min_depth=lo, max_depth=hi, rngs=nnx.Rngs(0))),
        seed=3,
    )
    q = np.random.RandomState(4).rand(2, 3, 5, 12).astype(np.float32)  # post-ReLU queries
    p = _pure64(bcp)
    logits = _dense(_gelu(_dense(q.astype(np.float64).mean((1, 2)), p["fc1"])), p["fc2"])
    prob = _softmax(logits)
    ref = lo + (hi - lo) * (np.cumsum(prob, -1) - prob / 2)
    centres = np.asarray(nnx.jit(lambda m, x: m(x))(bcp, q))
    np.testing.assert_allclose(centres, ref, rtol=1e-5)
    assert np.all(np.diff(centres, axis=-1) > 0) and lo < centres.min() and centres.max() < hi

    head = random_fill(nnx.eval_shape(lambda: BinHead(6, bins, rngs=nnx.Rngs(0))), seed=5)
    x = np.random.RandomState(6).randn(2, 4, 5, 6).astype(np.float32)
    ref = _softmax(_conv3x3(x.astype(np.float64), _pure64(head)["conv"])) * ref[:, None, None]
    depth = nnx.jit(lambda m, a, c: m(a, c))(head, x, centres)
    np.testing.assert_allclose(np.asarray(depth)[..., 0], ref.sum(-1), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# The whole model.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(480, 640), (352, 1216)])  # NYU; KITTI KB crop
def test_forward_shapes_at_host_sizes(size):
    model = abstract_pixelformer()
    images = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
    depth, aux = nnx.eval_shape(lambda m, x: m(x), model, images)
    assert depth.shape == (2, *size, 1) and depth.dtype == jnp.float32
    assert aux == {}


@pytest.mark.parametrize(
    ("size", "message"),
    [((464, 624), "divisible by 32"), ((470, 630), "divisible by 32"), ((477, 640), "multiples")],
)
def test_sides_not_multiple_of_32_are_refused_before_compiling(size, message):
    """The official model crashes with a view error; ours says what to do, at trace time."""
    images = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
    with pytest.raises(ValueError, match=message):
        nnx.eval_shape(lambda m, x: m(x), abstract_pixelformer(), images)


def test_forward_is_metric_depth_inside_the_bins_range():
    model = random_fill(abstract_pixelformer(encoder=SMALL_ENCODER), seed=7)
    images = np.random.RandomState(8).randn(2, 64, 96, 3).astype(np.float32)
    depth = np.asarray(nnx.jit(lambda m, x: m(x)[0])(model, images))
    assert depth.shape == (2, 64, 96, 1) and depth.dtype == np.float32
    assert np.all(depth > protocol.PIXELFORMER_MIN_DEPTH) and np.all(depth < 10.0)
    assert depth.std() > 1e-3  # not a constant map


def test_registry_dgr_hook_and_identity_head():
    assert DECODERS.get("pixelformer") is PixelFormerDecoder
    model = abstract_pixelformer()
    assert isinstance(model.encoder, Swin) and isinstance(model.head, IdentityHead)
    assert model.decoder.dgr is None
    assert model.decoder.sam2.proj_e is None and model.decoder.sam3.proj_e is not None
    names = {p[0] for p in flatten(nnx.to_pure_dict(nnx.state(model.decoder)))}
    assert names == {"psp", "sam1", "sam2", "sam3", "sam4", "bcp", "disp_head"}
    dgr = {"enabled": True, "positions": ("stage1", "stage4")}
    hooked = abstract_pixelformer(dgr=dgr)
    assert set(hooked.decoder.dgr.keys()) == {"stage1", "stage4"}
    with pytest.raises(ValueError, match="encoder stages"):  # DPT positions mean nothing here
        abstract_pixelformer(dgr={"enabled": True, "positions": ("reassemble",)})


# ------------------------------------------------------------------------------------------
# Recipes.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nyu_pixelformer", "kitti_pixelformer_dgr"])
def test_recipes_build_the_model_and_their_input_pipeline(name):
    module = importlib.import_module(f"configs.{name}")
    cfg = module.get_config()
    assert cfg.optim.name == "adam" and cfg.optim.lr == protocol.PIXELFORMER_LR
    assert cfg.optim.weight_decay == 0.0 and cfg.batch_size == 8
    assert cfg.optim.end_lr_factor == protocol.POLY_END_FACTOR and cfg.optim.power == 0.9
    steps_per_epoch = cfg.total_steps // protocol.PIXELFORMER_EPOCHS
    assert steps_per_epoch in (
        protocol.NYU_TRAIN_COUNT_DENSE // 8,
        protocol.KITTI_EIGEN_TRAIN_COUNT // 8,
    )
    assert cfg.model.decoder.min_depth == protocol.PIXELFORMER_MIN_DEPTH
    assert ("otdl" in cfg.loss.terms) == cfg.model.dgr.enabled == name.endswith("_dgr")
    model = nnx.eval_shape(lambda: build_model(cfg.model, rngs=nnx.Rngs(0)))
    assert model.encoder.out_channels["stage4"] == 1536  # Swin-L
    depth, _ = nnx.eval_shape(
        lambda m, x: m(x), model, jax.ShapeDtypeStruct((1, *cfg.input.size, 3), jnp.float32)
    )
    assert depth.shape == (1, *cfg.input.size, 1)
    # The official augmentation chain on a frame of the dataset's size.
    nyu = name.startswith("nyu")
    frame = (480, 640) if nyu else (375, 1242)
    rs = np.random.RandomState(0)
    record = {
        "image": rs.randint(0, 256, (*frame, 3)).astype(np.uint8),
        "depth": rs.uniform(0.5, 9.0, frame).astype(np.float32),
    }
    assert ("cutdepth(swap_rows_cols=True)" in cfg.input.pp_train) == nyu
    out = augment.Preprocess(cfg.input.pp_train)(record, np.random.default_rng(1))
    assert out["image"].shape == (*cfg.input.size, 3) and out["depth"].shape == cfg.input.size


@pytest.mark.slow
def test_smoke_recipe_takes_a_sharded_train_step_on_8_devices():
    """configs/nyu_pixelformer_dgr.py:smoke (tiny PixelFormer + DGR, SILog + OTDL, Adam): the
    trainer's step with the batch split over 8 fake devices; finite loss, both terms computed,
    parameters and the PSP's BatchNorm statistics move. One Swin block per stage and DGR on one
    stage only, to keep the compile short (the full smoke model compiles ~1.5x longer)."""
    config = importlib.import_module("configs.nyu_pixelformer_dgr").get_config("smoke")
    with config.unlocked():
        config.model.encoder.depths = SMALL_ENCODER["depths"]
        config.model.dgr.positions = ("stage4",)
    mesh = sharding.make_mesh(config.mesh)
    assert mesh.shape["data"] == 8
    model_def = steps.model_def_from_config(config)
    tx, schedule = optim.make_optimizer(config.optim, config.total_steps)
    model = random_fill(nnx.eval_shape(lambda: model_def.build(nnx.Rngs(0))), seed=9)
    params, rest = steps.ModelDef.split(model)
    state = {
        "params": params,
        "rest": rest,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.PRNGKey(0),
        "nonfinite_step": jnp.full((), -1, jnp.int32),
    }
    state_sh = sharding.state_shardings(jax.eval_shape(lambda: state), mesh, config.sharding)
    batch_sh = sharding.batch_sharding(mesh)
    step = jax.jit(
        steps.make_train_step(
            model_def, make_loss(config.loss), tx, schedule, min_depth=config.loss.min_depth
        ),
        in_shardings=(state_sh, {"image": batch_sh, "depth": batch_sh}),
        out_shardings=(state_sh, sharding.replicated(mesh)),
    )
    rs = np.random.RandomState(10)
    h, w = config.input.size
    batch = {
        "image": rs.randn(8, h, w, 3).astype(np.float32),
        "depth": rs.uniform(0.5, 9.0, (8, h, w)).astype(np.float32),
    }
    batch = jax.device_put(batch, {"image": batch_sh, "depth": batch_sh})
    new_state, metrics = step(jax.device_put(state, state_sh), batch)
    assert len(batch["image"].sharding.device_set) == 8
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss_otdl"]) > 0
    assert int(new_state["nonfinite_step"]) == -1 and int(new_state["step"]) == 1
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, new_state["params"])
    assert max(jax.tree.leaves(moved)) > 0
    stats = new_state["rest"]["decoder"]["psp"]["bottleneck"]["norm"]["mean"]
    assert not np.allclose(stats, rest["decoder"]["psp"]["bottleneck"]["norm"]["mean"])
