"""Report helpers (published-number matching, worst images) and depth pictures."""

import importlib

import numpy as np
import pytest
from PIL import Image

from dgr_jax import protocol, viz
from dgr_jax.evaluators import report
from dgr_jax.evaluators.depth_eval import DepthEvaluator


def _protocol(**kw):
    p = {
        "dataset": "nyu_depth_v2_bts",
        "split": "test",
        "crop": "eigen",
        "kb_crop": False,
        "min_depth": protocol.MIN_DEPTH_EVAL,
        "max_depth": protocol.NYU_MAX_DEPTH,
        "flip_tta": "blend",
        "resize": "none",
        "num_images": protocol.NYU_TEST_COUNT,
    }
    p.update(kw)
    return p


def test_published_numbers_only_for_the_standard_protocol():
    means = {"abs_rel": 0.1, "rmse": 0.4, "d1": 0.9}
    table = "\n".join(report.published_table(_protocol(), means))
    assert "NeWCRFs (released ckpt)" in table and "0.3310" in table and "**ours**" in table
    assert "Note" not in table
    other = "\n".join(report.published_table(_protocol(flip_tta="none"), means))
    assert "not shown" in other and "flip_tta" in other
    kitti = _protocol(
        dataset="kitti_depth",
        crop="garg",
        kb_crop=True,
        max_depth=protocol.KITTI_MAX_DEPTH,
        num_images=10,
    )
    table = "\n".join(report.published_table(kitti, means))
    assert "2.0716" in table and "10 images were evaluated" in table
    assert "No published" in report.published_table(_protocol(dataset="synthetic"), means)[0]


@pytest.mark.parametrize(
    ("name", "row"),
    [("nyu_pixelformer", "| PixelFormer (paper) | 0.0900 | 0.3220 | 0.9290 |"),
     ("kitti_pixelformer_dgr", "| PixelFormer (paper) | 0.0510 | 2.0810 | 0.9760 |")],
)  # fmt: skip
def test_pixelformer_configs_report_pixelformer_published_numbers(name, row):
    """The evaluator of a PixelFormer recipe states the standard protocol, so its report puts
    PixelFormer's published numbers beside ours (no data needed: protocol and table only)."""
    config = importlib.import_module(f"configs.{name}").get_config()
    evaluator = DepthEvaluator(
        config.evals.test, name="test", source=[], input_size=config.input.size
    )
    family = report.dataset_family(config.evals.test.dataset)
    proto = evaluator.protocol(protocol.STANDARD_PROTOCOLS[family]["num_images"])
    means = {"abs_rel": 0.1, "rmse": 0.4, "d1": 0.9}
    text = report.render_report(
        name="test",
        protocol=proto,
        means=means,
        counts={},
        metric_names=("abs_rel",),
        edge_names=(),
        per_image={"abs_rel": np.zeros(0), "rmse": np.zeros(0), "d1": np.zeros(0)},
        indices=[],
        ids=[],
    )
    assert row in text and "**ours**" in text and "not shown" not in text


def test_worst_indices_skip_nan():
    per_image = {"abs_rel": np.array([0.1, np.nan, 0.5, 0.3])}
    assert list(report.worst_indices(per_image, 2)) == [2, 3]


def test_colorize_and_panel(tmp_path):
    depth = np.linspace(0.5, 5.0, 12 * 16).reshape(12, 16)
    depth[0, 0] = 0.0
    depth[0, 1] = np.nan
    rgb = viz.colorize(depth, 0.5, 5.0)
    assert rgb.shape == (12, 16, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all() and (rgb[0, 1] == 0).all() and rgb[5, 5].any()
    # Near and far ends of the scale get different colours.
    assert not np.array_equal(rgb[1, 0], rgb[-1, -1])
    err = viz.colorize(np.zeros((4, 4)), 0.0, 1.0, "inferno", positive_only=False)
    assert err.any()  # an error of 0 is a value, not invalid
    strip = viz.side_by_side([rgb, rgb[:6]])
    assert strip.shape == (12, 34, 3)
    path = tmp_path / "p" / "panel.png"
    image = np.zeros((12, 16, 3), np.uint8)
    viz.save_panel(
        str(path),
        [
            ("RGB", image),
            ("gt", depth),
            ("pred", depth * 1.1),
            ("err", np.abs(depth * 0.1), {"vmin": 0, "vmax": 1}),
        ],
    )
    with Image.open(path) as im:
        assert im.size[0] > im.size[1] > 0
