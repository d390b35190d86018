"""Crop boxes against the pixel boxes in shared/notes/peers.md section 2.1."""

import jax.numpy as jnp
import numpy as np
import pytest

from dgr_jax.evaluators import crops


def _box_of(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_nyu_eigen_box_at_480x640():
    mask = crops.eigen_crop_mask(480, 640)
    assert mask.shape == (480, 640) and mask.dtype == bool
    assert _box_of(mask) == (45, 471, 41, 601)
    assert mask.sum() == (471 - 45) * (601 - 41)


def test_nyu_eigen_box_scales_with_size():
    top, bottom, left, right = crops.eigen_crop_box(240, 320)
    assert (top, bottom, left, right) == (22, 235, 20, 300)


# (H, W): (Garg rows, cols), (KITTI-Eigen rows, cols), KB (top, left)
KITTI = {
    (375, 1242): ((153, 371, 44, 1197), (124, 342, 44, 1197), (23, 13)),
    (370, 1224): ((151, 366, 43, 1180), (122, 337, 43, 1180), (18, 4)),
    (374, 1238): ((152, 370, 44, 1193), (124, 341, 44, 1193), (22, 11)),
    (376, 1241): ((153, 372, 44, 1196), (124, 343, 44, 1196), (24, 12)),
    (352, 1216): ((143, 349, 43, 1172), (117, 321, 43, 1172), (0, 0)),
}


@pytest.mark.parametrize("size", list(KITTI))
def test_kitti_boxes(size):
    garg, eigen, kb = KITTI[size]
    assert _box_of(crops.garg_crop_mask(*size)) == garg
    assert _box_of(crops.kitti_eigen_crop_mask(*size)) == eigen
    assert _box_of(crops.crop_mask("garg_full_res", *size)) == garg
    assert crops.kb_crop_box(*size) == kb


def test_kb_crop_and_uncrop():
    h, w = 375, 1242
    image = np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3)
    cropped = crops.kb_crop(image)
    assert cropped.shape == (352, 1216, 3)
    assert cropped[0, 0, 0] == image[23, 13, 0] and cropped[-1, -1, 0] == image[-1, 13 + 1215, 0]
    depth = np.ones((2, 352, 1216), np.float32)
    for pasted in (
        crops.kb_uncrop(depth, h, w),
        np.asarray(crops.kb_uncrop(jnp.asarray(depth), h, w)),
    ):
        assert pasted.shape == (2, h, w)
        assert pasted.sum() == depth.sum() and pasted[0, 23, 13] == 1 and pasted[0, 22, 13] == 0


def test_errors():
    with pytest.raises(ValueError, match="at least"):
        crops.kb_crop_box(300, 1242)
    with pytest.raises(ValueError, match="valid crops"):
        crops.crop_mask("garg2", 10, 10)
    assert crops.crop_mask("none", 3, 4).all()
