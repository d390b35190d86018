"""python -m dgr_jax.predict on a folder: every output per image, corrupt files skipped."""

import os

import numpy as np
import pytest
from flax import nnx
from PIL import Image

from dgr_jax import configlib, predict
from dgr_jax.convert.checkpoint import Converted, save_converted
from dgr_jax.models import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_weights(tmp_path) -> str:
    config = configlib.load(os.path.join(ROOT, "configs/synthetic_vit_dgr.py:smoke"))
    model = build_model(config.model, rngs=nnx.Rngs(0))
    out = tmp_path / "weights"
    save_converted(out, Converted(model, config.model.to_dict(), ()))
    return str(out)


@pytest.mark.slow
def test_predict_folder_writes_png_npy_ply_and_skips_corrupt_files(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 64, 3), dtype=np.uint8)).save(images / "b.jpg")
    (images / "broken.png").write_bytes(b"not a png at all")
    out = tmp_path / "out"
    rc = predict.main(
        [
            "--weights",
            _tiny_weights(tmp_path),
            "--input",
            str(images),
            "--output",
            str(out),
            "--focal",
            "40",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped" in err
    for name, (h, w) in {"a": (40, 50), "b": (30, 64)}.items():
        depth = np.load(out / f"{name}.npy")
        assert depth.shape == (h, w) and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all()
        png = np.asarray(Image.open(out / f"{name}_depth.png"))
        assert png.dtype == np.uint16 and png.shape == (h, w)
        np.testing.assert_array_equal(png, np.round(depth * 1000).astype(np.uint16))
        assert np.asarray(Image.open(out / f"{name}_color.png")).shape == (h, w, 3)
        header = (out / f"{name}.ply").read_bytes().split(b"end_header\n")[0].decode()
        assert f"element vertex {h * w}" in header
    assert not (out / "broken.npy").exists()


def test_ply_points_back_project_with_the_pinhole_model(tmp_path):
    depth = np.full((2, 2), 2.0, np.float32)
    image = np.zeros((2, 2, 3), np.uint8)
    path = tmp_path / "p.ply"
    assert predict.write_ply(str(path), depth, image, focal=1.0) == 4
    body = path.read_bytes().split(b"end_header\n")[1]
    pts = np.frombuffer(body, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("c", "u1", 3)])
    # pixel (0, 0) centre is (-0.5, -0.5) from the principal point: x = y = -0.5 * z / f
    assert pts["x"][0] == -1.0 and pts["y"][0] == -1.0 and pts["z"][0] == 2.0
