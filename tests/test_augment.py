"""Preprocessing ops keep image and depth aligned and never invent depth."""

import numpy as np
import pytest

from dgr_jax import protocol
from dgr_jax.data import augment


def _coords_example(h=20, w=30):
    """Image channels encode (row, col), depth encodes row * 100 + col + 1 (never 0)."""
    rows, cols = np.mgrid[0:h, 0:w]
    image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    depth = (rows * 100 + cols + 1).astype(np.float32)
    return {"image": image, "depth": depth}


def _apply(pp_op, ex, seed=0):
    return pp_op(ex, np.random.default_rng(seed))


def test_flip_twice_is_identity_and_flips_both():
    ex = _coords_example()
    once = _apply(augment.flip(p=1.0), ex)
    assert np.array_equal(once["image"][:, 0, 1], ex["image"][:, -1, 1])
    assert np.array_equal(once["depth"][:, 0], ex["depth"][:, -1])
    twice = _apply(augment.flip(p=1.0), once)
    assert np.array_equal(twice["image"], ex["image"]) and np.array_equal(
        twice["depth"], ex["depth"]
    )


@pytest.mark.parametrize("seed", range(5))
def test_random_crop_uses_the_same_offsets_for_image_and_depth(seed):
    out = _apply(augment.random_crop(8, 12), _coords_example(), seed)
    rows, cols = out["image"][..., 0].astype(int), out["image"][..., 1].astype(int)
    assert out["depth"].shape == (8, 12)
    assert np.array_equal(out["depth"], (rows * 100 + cols + 1).astype(np.float32))


def test_random_crop_larger_than_image_says_what_to_change():
    with pytest.raises(ValueError, match="at least 40x12"):
        _apply(augment.random_crop(40, 12), _coords_example())


@pytest.mark.parametrize("seed", range(3))
def test_rotation_is_nearest_for_depth_and_keeps_invalid_invalid(seed):
    ex = _coords_example(40, 40)
    ex["depth"][10:20, 10:20] = 0.0  # an invalid hole
    out = _apply(augment.rotate(10.0), ex, seed)
    values = set(np.unique(out["depth"]).tolist())
    assert values <= set(np.unique(ex["depth"]).tolist())  # nearest: no invented depths
    angle = np.random.default_rng(seed).uniform(-10.0, 10.0)  # the op's single draw
    if abs(angle) > 3.0:  # then a corner of the frame comes from outside the image
        assert out["depth"][0, 0] == 0.0 or out["depth"][0, -1] == 0.0
    assert (out["depth"][13:17, 13:17] == 0).all()  # the hole's centre stays invalid
    # Image and depth rotate together: where depth is valid, the image's (row, col) matches.
    valid = out["depth"] > 0
    r, c = (out["depth"][valid] - 1) // 100, (out["depth"][valid] - 1) % 100
    err_r = np.abs(out["image"][..., 0][valid].astype(float) - r)
    assert np.median(err_r) <= 1.0 and np.median(np.abs(out["image"][..., 1][valid] - c)) <= 1.0


def test_zero_rotation_is_identity():
    ex = _coords_example()
    out = _apply(augment.rotate(0.0), ex)
    assert np.array_equal(out["image"], ex["image"]) and np.array_equal(out["depth"], ex["depth"])


def test_kb_crop_is_bottom_aligned_and_centred():
    h, w = 375, 1242
    ex = {
        "image": np.zeros((h, w, 3), np.uint8),
        "depth": np.arange(h * w, dtype=np.float32).reshape(h, w),
    }
    out = _apply(augment.kb_crop(), ex)
    assert out["depth"].shape == (protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH)
    assert out["depth"][0, 0] == ex["depth"][23, 13]  # top = 375 - 352, left = (1242 - 1216) // 2


@pytest.mark.parametrize("op", ["gamma", "brightness", "colour"])
def test_photometric_ops_change_only_the_image_within_range(op):
    ex = _coords_example()
    ex["image"] = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    factory = augment.PP_OPS.get(op)
    changed = 0
    for seed in range(20):
        out = _apply(factory(p=0.5), ex, seed)
        assert np.array_equal(out["depth"], ex["depth"])
        img = augment._as_float(out["image"])
        assert img.min() >= 0.0 and img.max() <= 1.0
        changed += not np.allclose(img, ex["image"] / 255.0)
    assert 3 <= changed <= 17  # applied with probability ~0.5


def test_normalize_uses_imagenet_statistics():
    ex = {"image": np.full((2, 2, 3), 255, np.uint8), "depth": np.ones((2, 2), np.float32)}
    out = _apply(augment.normalize(), ex)
    expected = (1.0 - np.array(protocol.IMAGENET_MEAN)) / np.array(protocol.IMAGENET_STD)
    np.testing.assert_allclose(out["image"][0, 0], expected, rtol=1e-6)


def test_parse_errors_name_the_problem():
    with pytest.raises(ValueError, match="valid names: .*flip"):
        augment.parse("flipp|normalize")
    with pytest.raises(ValueError, match="must end with 'normalize'"):
        augment.parse("flip")
    ops = augment.parse("rotate(2.5)|flip|random_crop(4,6)|photometric(0.75,1.25)|normalize")
    assert len(ops) == 5


def test_preprocess_outputs_float_arrays_of_the_crop_size():
    rec = _coords_example()
    rec["id"] = b"x"
    out = augment.Preprocess("flip|random_crop(8,12)|normalize")(rec, np.random.default_rng(0))
    assert set(out) == {"image", "depth"}
    assert out["image"].shape == (8, 12, 3) and out["image"].dtype == np.float32


def _official_cutdepth(img, depth, a, b, c, d):
    """PixelFormer bb0ae9f dataloader.py's CutDepth, written from its formula (NYU branch):
    img float32 (H, W, 3) in [0, 1], depth (H, W, 1) metres."""
    H, W = img.shape[0], img.shape[1]
    l_, u = int(a * W), int(b * H)  # the official `l`
    w, h = int(max((W - a * W) * c * 0.75, 1)), int(max((H - b * H) * d * 0.75, 1))
    depth_copied = np.repeat(depth, 3, axis=2)
    M = np.ones(img.shape)
    M[l_ : l_ + h, u : u + w, :] = 0
    return (M * img + (1 - M) * depth_copied).astype(np.float32)


@pytest.mark.parametrize("seed", range(12))
def test_cutdepth_reproduces_pixelformer_formula(seed):
    rs = np.random.RandomState(seed)
    h, w = 24, 40  # wider than high, as NYU: rectangles whose row start l >= H paste nothing
    image = rs.randint(0, 256, (h, w, 3)).astype(np.uint8)
    depth = rs.uniform(0.5, 10.0, (h, w)).astype(np.float32)
    depth[rs.rand(h, w) < 0.2] = 0.0  # invalid pixels are pasted as 0 too
    ex = {"image": image, "depth": depth}
    a, b, c, d = np.random.default_rng(seed).uniform(size=4)  # the op's four draws
    ref = _official_cutdepth(image.astype(np.float32) / 255.0, depth[..., None], a, b, c, d)
    out = _apply(augment.cutdepth(swap_rows_cols=True), ex, seed)
    np.testing.assert_array_equal(out["image"], ref)
    assert np.array_equal(out["depth"], depth)  # the depth map is untouched
    # The paper's rectangle (default) is the transposed placement of the corner.
    paper = _apply(augment.cutdepth(), ex, seed)["image"]
    top, left = int(b * h), int(a * w)
    rect_w = int(max((w - a * w) * c * 0.75, 1))
    rect_h = int(max((h - b * h) * d * 0.75, 1))
    pasted = np.zeros((h, w), bool)
    pasted[top : top + rect_h, left : left + rect_w] = True
    np.testing.assert_array_equal(paper[pasted][:, 0], depth[pasted])
    np.testing.assert_array_equal(paper[~pasted], image[~pasted].astype(np.float32) / 255.0)


def test_cutdepth_swap_pastes_nothing_when_the_row_start_leaves_the_frame():
    ex = {"image": np.full((24, 40, 3), 128, np.uint8), "depth": np.full((24, 40), 5.0, "f4")}
    seeds = [s for s in range(200) if np.random.default_rng(s).uniform() * 40 >= 24]
    out = _apply(augment.cutdepth(swap_rows_cols=True), ex, seeds[0])
    np.testing.assert_array_equal(out["image"], np.full((24, 40, 3), 128 / 255.0, np.float32))


def test_parse_accepts_keyword_arguments_and_names_bad_ones():
    op = augment.parse("cutdepth(swap_rows_cols=True)|normalize")[0]
    assert callable(op)
    with pytest.raises(ValueError, match="bad arguments"):
        augment.parse("cutdepth(swap=True)|normalize")
    with pytest.raises(ValueError, match="Python literals"):
        augment.parse("cutdepth(swap_rows_cols=yes)|normalize")
