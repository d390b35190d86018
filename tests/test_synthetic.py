"""The procedural renderer: analytic geometry, occlusion, the two scene kinds, determinism."""

import numpy as np
import pytest

from dgr_jax import protocol
from dgr_jax.data import raycast, synthetic
from dgr_jax.data.render import Camera, Light, Surface, primitive_bounds, render


def _grey(points, uv):
    return np.full((len(points), 3), 0.5)


def _render(prims, cam):
    surfaces = [Surface(p, _grey, primitive_bounds(p)) for p in prims]
    return render(surfaces, Light(position=np.array([0.0, 3.0, 0.0])), cam)


def _front_camera(h=24, w=32, focal=20.0, height=0.0):
    return Camera.look(h, w, focal, (0.0, height, 0.0), yaw=0.0, pitch_down=0.0)


def test_fronto_parallel_plane_has_constant_depth():
    _, depth, ids = _render([raycast.Plane((0.0, 0.0, 1.0), 3.0)], _front_camera())
    np.testing.assert_allclose(depth, 3.0, rtol=1e-6)
    assert (ids == 0).all()


def test_floor_depth_matches_pinhole_formula():
    h, w, f, cam_h = 24, 32, 20.0, 1.5
    _, depth, _ = _render([raycast.Plane((0.0, 1.0, 0.0), 0.0)], _front_camera(h, w, f, cam_h))
    rows = np.arange(h) + 0.5 - h / 2  # pixel-centre offset from the horizon
    below = rows > 0
    expected = cam_h * f / rows[below]  # z = camera height * focal / (v - cy)
    np.testing.assert_allclose(depth[below], np.repeat(expected[:, None], w, 1), rtol=1e-6)
    assert (depth[~below] == 0).all()  # rays above the horizon miss the floor


def test_sphere_in_front_of_wall_makes_a_depth_discontinuity():
    wall, sphere = raycast.Plane((0.0, 0.0, 1.0), 5.0), raycast.Sphere((0.0, 0.0, 3.0), 0.5)
    _, depth, ids = _render([wall, sphere], _front_camera(33, 33, 30.0))
    assert depth[16, 16] == pytest.approx(2.5, rel=1e-6)  # nearest point of the sphere
    assert depth[0, 0] == pytest.approx(5.0)
    # Along the middle row depth jumps from the sphere (< 3) straight to the wall (5).
    row = depth[16]
    jumps = np.abs(np.diff(row))
    assert jumps.max() > 1.5 and set(np.unique(ids)) == {0, 1}


def test_box_and_cylinder_front_faces():
    box = raycast.Box((0.0, 0.0, 4.0), (1.0, 1.0, 0.5))
    _, depth, _ = _render([box], _front_camera())
    assert depth[12, 16] == pytest.approx(3.5, rel=1e-6)
    cyl = raycast.Cylinder((0.0, 2.0), 0.5, -1.0, 1.0)
    _, depth, _ = _render([cyl], _front_camera(25, 25, 20.0))
    assert depth[12, 12] == pytest.approx(1.5, rel=1e-3)


def test_indoor_example_is_dense_and_bounded():
    ex = synthetic.render_example("indoor", 0, 3, 48, 64)
    assert ex["image"].shape == (48, 64, 3) and ex["image"].dtype == np.uint8
    assert ex["depth"].dtype == np.float32
    assert (ex["depth"] > 0).all() and ex["depth"].max() <= protocol.NYU_MAX_DEPTH
    assert ex["focal"] == pytest.approx(protocol.NYU_FOCAL * 64 / protocol.NYU_WIDTH)
    assert ex["image"].std() > 10  # textured, lit: not a flat image


def test_outdoor_example_is_sparse_lidar_like():
    ex = synthetic.render_example("outdoor", 0, 1, 96, 320)
    valid = ex["depth"] > 0
    assert 0.05 < valid.mean() < 0.5
    assert ex["depth"].max() < protocol.KITTI_MAX_DEPTH
    assert not valid[:10].any()  # the top rows are above the highest beam: no returns


def test_rendering_is_deterministic_per_seed_and_index():
    a = synthetic.render_example("indoor", 7, 5, 24, 32)
    b = synthetic.render_example("indoor", 7, 5, 24, 32)
    c = synthetic.render_example("indoor", 7, 6, 24, 32)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["depth"], b["depth"])
    assert not np.array_equal(a["depth"], c["depth"])


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="valid"):
        synthetic.render_example("underwater", 0, 0)
