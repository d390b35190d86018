"""NeWCRFs: torch-exact ops, the FC-CRF level against a numpy reference of its equations, the PSP
head against torch modules, forward shapes at the hosts' sizes, the DGR hook, and a sharded
training step on 8 fake devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from model_helpers import random_fill

from dgr_jax.convert.torch_layout import assign_pure_dict, flatten
from dgr_jax.models import DepthModel, build_model
from dgr_jax.models.blocks import host_common as ops
from dgr_jax.models.blocks.host_common import PSPHead
from dgr_jax.models.decoders.newcrfs import IdentityHead, NeWCRFsDecoder, convex_upsample
from dgr_jax.models.decoders.newcrfs_crf import NewCRF
from dgr_jax.models.encoders.swin import Swin
from dgr_jax.registry import DECODERS, HEADS

torch = pytest.importorskip("torch")
F = torch.nn.functional

TINY_ENCODER = {"variant": "tiny_test", "window_size": 7}
TINY_DECODER = {
    "max_depth": 10.0,
    "crf_dims": (16, 32, 64, 128),
    "crf_heads": (1, 2, 2, 4),
    "psp_channels": 32,
    "ppm_norm_groups": 16,
}


# One block per Swin stage and per CRF level: same structure, shorter compiles.
SMALL_ENCODER = {**TINY_ENCODER, "depths": (1, 1, 1, 1)}
SMALL_DECODER = {**TINY_DECODER, "crf_depth": 1}


def newcrfs_cfg(encoder=TINY_ENCODER, decoder=TINY_DECODER, dgr=None) -> dict:
    """`config.model` of NeWCRFs (what configs/nyu_newcrfs.py holds, tiny)."""
    return {
        "encoder": {"name": "swin", **encoder},
        "decoder": {"name": "newcrfs", **decoder},
        "dgr": dgr or {"enabled": False},
        "head": {"name": "identity"},
    }


def abstract_newcrfs(encoder=TINY_ENCODER, decoder=TINY_DECODER, **dgr_hook) -> DepthModel:
    """NeWCRFs as `build_model` makes it (shapes only); `dgr_hook` (dgr=, dgr_factory=) builds
    the same DepthModel by hand with a DGR stand-in, which configs cannot name."""
    if not dgr_hook:
        return nnx.eval_shape(lambda: build_model(newcrfs_cfg(encoder, decoder), rngs=nnx.Rngs(0)))

    def build():
        rngs = nnx.Rngs(0)
        swin = Swin(**encoder, rngs=rngs)
        dec = NeWCRFsDecoder(swin.out_channels, **decoder, **dgr_hook, rngs=rngs)
        return DepthModel(swin, dec, IdentityHead(dec.out_features, rngs=rngs))

    return nnx.eval_shape(build)


def small_newcrfs(seed: int = 0) -> DepthModel:
    return random_fill(abstract_newcrfs(SMALL_ENCODER, SMALL_DECODER), seed)


# ------------------------------------------------------------------------------------------
# Ops with torch semantics.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "out"), [((2, 3), (15, 20)), ((6, 6), (2, 3)), ((5, 7), (20, 28))]
)
@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_bilinear_matches_torch(size, out, align_corners):
    x = np.random.RandomState(0).randn(2, 3, *size).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(x), size=out, mode="bilinear", align_corners=align_corners)
    got = ops.resize_bilinear(x.transpose(0, 2, 3, 1), out, align_corners=align_corners)
    np.testing.assert_allclose(np.asarray(got), ref.numpy().transpose(0, 2, 3, 1), atol=1e-6)


@pytest.mark.parametrize(
    ("size", "out"), [((15, 20), (6, 6)), ((11, 38), (3, 3)), ((2, 3), (6, 6))]
)
def test_adaptive_avg_pool_matches_torch(size, out):
    x = np.random.RandomState(1).randn(2, 4, *size).astype(np.float32)
    ref = F.adaptive_avg_pool2d(torch.from_numpy(x), out).numpy().transpose(0, 2, 3, 1)
    got = ops.adaptive_avg_pool(x.transpose(0, 2, 3, 1), out)
    np.testing.assert_allclose(np.asarray(got), ref, atol=1e-6)


def test_pixel_shuffle_matches_torch():
    x = np.arange(2 * 12 * 3 * 5, dtype=np.float32).reshape(2, 12, 3, 5)
    ref = torch.nn.PixelShuffle(2)(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(ops.pixel_shuffle(x.transpose(0, 2, 3, 1), 2)), ref)


def test_convex_upsample_matches_unfold_formulation():
    """out[4h+i, 4w+j] = sum_k softmax_k(mask[k, i, j, h, w]) * unfold3x3(disp)[k, h, w]."""
    rs = np.random.RandomState(2)
    disp, mask = rs.rand(2, 1, 5, 6).astype(np.float32), rs.randn(2, 144, 5, 6).astype(np.float32)
    m = torch.softmax(torch.from_numpy(mask).view(2, 1, 9, 4, 4, 5, 6), dim=2)
    patches = F.unfold(torch.from_numpy(disp), kernel_size=3, padding=1).view(2, 1, 9, 1, 1, 5, 6)
    ref = (m * patches).sum(2).permute(0, 1, 4, 2, 5, 3).reshape(2, 20, 24).numpy()
    got = convex_upsample(disp.transpose(0, 2, 3, 1), mask.transpose(0, 2, 3, 1), 4)
    np.testing.assert_allclose(np.asarray(got)[..., 0], ref, atol=1e-6)


# ------------------------------------------------------------------------------------------
# FC-CRF level against its equations, in pixel space (no window partition, no roll).
# ------------------------------------------------------------------------------------------
def _ln(x, p):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * p["scale"] + p["bias"]


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _crf_block_reference(p, x, v, window, shift, heads):
    """x <- x + proj(attention(LN x -> q, k; v)), x <- x + MLP(LN x), written per pixel pair.

    Pixels i, j interact iff they fall in the same window of the grid padded to window
    multiples and cyclically shifted by `shift`; pairs from different regions of the shift get
    -100; the bias is the learned table at their offset inside the window.
    """
    b, h, w, c = x.shape
    hp, wp = -(-h // window) * window, -(-w // window) * window
    pad = ((0, 0), (0, hp - h), (0, wp - w), (0, 0))
    xn, vp = np.pad(_ln(x, p["norm1"]), pad), np.pad(v, pad)
    rh, rw = np.meshgrid((np.arange(hp) - shift) % hp, (np.arange(wp) - shift) % wp, indexing="ij")
    rh, rw = rh.ravel(), rw.ravel()  # position of each pixel after the roll

    def region(r, n):
        return (r >= n - window).astype(int) + (r >= n - shift).astype(int) if shift else 0 * r

    same_window = (rh[:, None] // window == rh[None] // window) & (
        rw[:, None] // window == rw[None] // window
    )
    label = region(rh, hp) * 3 + region(rw, wp)
    dh = rh[:, None] % window - rh[None] % window + window - 1
    dw = rw[:, None] % window - rw[None] % window + window - 1
    bias = p["attn"]["relative_position_bias_table"][dh * (2 * window - 1) + dw]  # (N, N, h)
    extra = np.where(label[:, None] != label[None], -100.0, 0.0)
    d = c // heads
    tokens, values = xn.reshape(b, -1, c), vp.reshape(b, -1, c)
    qk = tokens @ p["attn"]["qk"]["kernel"] + p["attn"]["qk"]["bias"]
    out = np.zeros_like(tokens)
    for head in range(heads):
        q = qk[..., head * d : (head + 1) * d] * d**-0.5
        k = qk[..., c + head * d : c + (head + 1) * d]
        logits = q @ k.transpose(0, 2, 1) + bias[..., head] + extra
        logits = np.where(same_window, logits, -np.inf)
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out[..., head * d : (head + 1) * d] = a @ values[..., head * d : (head + 1) * d]
    out = out @ p["attn"]["proj"]["kernel"] + p["attn"]["proj"]["bias"]
    x = x + out.reshape(b, hp, wp, c)[:, :h, :w]
    hidden = _gelu(_ln(x, p["norm2"]) @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"])
    return x + hidden @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]


def test_crf_level_matches_pixel_space_reference():
    window, heads, c = 4, 2, 8
    level = random_fill(
        nnx.eval_shape(
            lambda: NewCRF(c, c, c, window=window, num_heads=heads, depth=2, rngs=nnx.Rngs(0))
        ),
        seed=3,
    )
    assert level.proj_x is None and level.proj_v is None  # equal widths: no projections
    rs = np.random.RandomState(4)
    x, v = rs.randn(2, 9, 11, c).astype(np.float32), rs.randn(2, 9, 11, c).astype(np.float32)
    params = nnx.to_pure_dict(nnx.state(level))
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    ref = x.astype(np.float64)
    for i, shift in enumerate((0, window // 2)):  # the same v feeds both blocks
        ref = _crf_block_reference(params["blocks"][i], ref, v, window, shift, heads)
    ref = _ln(ref, params["norm"])
    np.testing.assert_allclose(np.asarray(level(x, v)), ref, atol=2e-5)


# ------------------------------------------------------------------------------------------
# PSP head against torch modules with the same weights.
# ------------------------------------------------------------------------------------------
def test_psp_head_matches_torch_modules():
    cin, ch, groups, scales = 12, 8, 4, (1, 2, 3, 6)
    head = random_fill(
        nnx.eval_shape(
            lambda: PSPHead(cin, ch, pool_scales=scales, norm_groups=groups, rngs=nnx.Rngs(0))
        ),
        seed=5,
    )
    p = jax.tree.map(lambda a: torch.tensor(np.asarray(a)), nnx.to_pure_dict(nnx.state(head)))
    x = np.random.RandomState(6).randn(2, cin, 5, 7).astype(np.float32)
    xt = torch.from_numpy(x)
    outs = [xt]
    for i, s in enumerate(scales):
        st = p["stages"][i]
        y = F.conv2d(F.adaptive_avg_pool2d(xt, s), st["conv"]["kernel"].permute(3, 2, 0, 1))
        y = F.relu(F.group_norm(y, groups, st["norm"]["scale"], st["norm"]["bias"], eps=1e-5))
        outs.append(F.interpolate(y, size=(5, 7), mode="bilinear", align_corners=False))
    bt = p["bottleneck"]
    y = F.conv2d(torch.cat(outs, 1), bt["conv"]["kernel"].permute(3, 2, 0, 1), padding=1)
    n = bt["norm"]
    y = F.batch_norm(y, n["mean"], n["var"], n["scale"], n["bias"], training=False, eps=1e-5)
    ref = F.relu(y).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(head(x.transpose(0, 2, 3, 1))), ref, atol=2e-5)


# ------------------------------------------------------------------------------------------
# The whole model.
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(480, 640), (352, 1216)])  # NYU; KITTI KB crop
def test_forward_shapes_at_host_sizes(size):
    model = abstract_newcrfs()
    images = jax.ShapeDtypeStruct((2, *size, 3), jnp.float32)
    depth, aux = nnx.eval_shape(lambda m, x: m(x), model, images)
    assert depth.shape == (2, *size, 1) and depth.dtype == jnp.float32
    assert aux == {}


def test_forward_is_bounded_depth_with_convex_upsampling():
    decoder = {**TINY_DECODER, "up_mode": "mask"}
    model = random_fill(abstract_newcrfs(TINY_ENCODER, decoder), seed=7)
    images = np.random.RandomState(8).randn(2, 64, 96, 3).astype(np.float32)
    depth, _ = nnx.jit(lambda m, x: m(x))(model, images)
    depth = np.asarray(depth)
    assert depth.shape == (2, 64, 96, 1)
    assert np.all(depth > 0) and np.all(depth < TINY_DECODER["max_depth"])
    assert depth.std() > 1e-3  # not a constant map
    with pytest.raises(ValueError, match="divisible by 32"):  # at trace time: shapes only
        nnx.eval_shape(lambda m, x: m(x), model, images[:, :48])


class _Scale(nnx.Module):
    """A trivial DGR stand-in: multiplies by a learnable per-channel scale."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))

    def __call__(self, x):
        return x * self.scale[...]


def test_dgr_hook_is_applied_on_selected_stages():
    seen = []

    def factory(channels, *, rngs):
        seen.append(channels)
        return _Scale(channels, rngs=rngs)

    def hooked(value, stages):
        model = abstract_newcrfs(
            SMALL_ENCODER, SMALL_DECODER, dgr={"positions": stages}, dgr_factory=factory
        )
        pure = flatten(nnx.to_pure_dict(nnx.state(plain)))  # the same encoder/decoder weights
        for s in stages:
            pure[("decoder", "dgr", s, "scale")] = np.full(
                model.encoder.out_channels[s], value, np.float32
            )
        assign_pure_dict(model, pure)
        return model

    images = np.random.RandomState(9).randn(1, 32, 64, 3).astype(np.float32)
    plain = small_newcrfs(seed=10)
    hooked_model = hooked(1.0, ("stage2", "stage4"))
    assert seen == [32, 128]  # one module per selected stage, built with its width
    assert set(hooked_model.decoder.dgr.keys()) == {"stage2", "stage4"}
    fwd = nnx.jit(lambda m, x: m(x)[0])
    expected = np.asarray(fwd(plain, images))
    assert np.all(expected > 0) and np.all(expected < TINY_DECODER["max_depth"])
    np.testing.assert_allclose(np.asarray(fwd(hooked_model, images)), expected, atol=1e-6)
    hooked_model.decoder.dgr["stage4"].scale[...] = jnp.zeros(128)  # same graph: no recompilation
    assert np.abs(np.asarray(fwd(hooked_model, images)) - expected).max() > 1e-3


def test_registry_builder_and_identity_head():
    assert DECODERS.get("newcrfs") is NeWCRFsDecoder
    cfg = newcrfs_cfg(dgr={"enabled": True, "positions": ("reassemble",)})
    with pytest.raises(ValueError, match="encoder stages"):  # DPT positions mean nothing here
        nnx.eval_shape(lambda: build_model(cfg, rngs=nnx.Rngs(0)))
    model = abstract_newcrfs()
    assert isinstance(model.encoder, Swin) and isinstance(model.head, IdentityHead)
    assert model.decoder.dgr is None and model.decoder.max_depth == 10.0
    # The decoder already ends in metres: the identity head only checks the size.
    head = HEADS.get("identity")(model.decoder.out_features, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 32, 64, 1), jnp.bfloat16)
    assert head(x, (32, 64)).dtype == jnp.float32
    with pytest.raises(ValueError, match="input size"):
        head(x, (64, 64))


@pytest.mark.slow
def test_sharded_train_step_on_8_devices():
    """Data-parallel step (batch over 8 fake devices, replicated params): finite SILog loss,
    parameters and BatchNorm statistics move."""
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    model = small_newcrfs(seed=11)
    graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def silog(pred, gt):  # inline stand-in for the losses module: 10 sqrt(E d^2 - 0.85 E[d]^2)
        valid = gt > 0.1
        d = jnp.where(valid, jnp.log(pred) - jnp.log(jnp.where(valid, gt, 1.0)), 0.0)
        n = jnp.maximum(valid.sum(), 1)
        return 10.0 * jnp.sqrt((d**2).sum() / n - 0.85 * (d.sum() / n) ** 2)

    def loss_fn(params, stats, images, gt):
        m = nnx.merge(graphdef, params, stats, copy=True)
        depth, _ = m(images, train=True)
        return silog(depth[..., 0], gt), nnx.state(m, nnx.BatchStat)

    def step(params, stats, opt_state, images, gt):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, images, gt)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    step = jax.jit(
        step,
        in_shardings=(repl, repl, repl, data, data),
        out_shardings=(repl, repl, repl, repl),
    )
    rs = np.random.RandomState(12)
    images = jax.device_put(rs.randn(8, 32, 64, 3).astype(np.float32), data)
    gt = jax.device_put(rs.uniform(0.5, 9.0, (8, 32, 64)).astype(np.float32), data)
    new_params, new_stats, _, loss = step(params, stats, opt_state, images, gt)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert len(images.sharding.device_set) == 8
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, new_params)
    assert max(jax.tree.leaves(moved)) > 0
    bn_mean = new_stats["decoder"]["psp"]["bottleneck"]["norm"]["mean"][...]
    assert not np.allclose(bn_mean, stats["decoder"]["psp"]["bottleneck"]["norm"]["mean"][...])


@pytest.mark.parametrize(
    ("name", "arg"),
    [
        ("nyu_newcrfs", None),
        ("nyu_newcrfs", "smoke"),
        ("nyu_newcrfs_dgr", "smoke"),
        ("kitti_newcrfs_dgr", "smoke"),
    ],
)
def test_configs_build_the_model(name, arg):
    import importlib

    from dgr_jax import protocol

    cfg = importlib.import_module(f"configs.{name}").get_config(arg)
    assert cfg.optim.lr == protocol.NEWCRFS_LR and cfg.optim.name == "adam"
    assert "silog" in cfg.loss.terms
    model = nnx.eval_shape(lambda: build_model(cfg.model, rngs=nnx.Rngs(0)))
    assert (model.decoder.dgr is not None) == cfg.model.dgr.enabled
    if arg is None:
        assert model.encoder.out_channels["stage4"] == 1536  # Swin-L
    images = jax.ShapeDtypeStruct((1, *cfg.input.size, 3), jnp.float32)
    depth, _ = nnx.eval_shape(lambda m, x: m(x), model, images)
    assert depth.shape == (1, *cfg.input.size, 1)
