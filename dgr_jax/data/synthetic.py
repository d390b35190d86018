"""Procedural indoor and outdoor depth scenes: the embedded default dataset.

Deterministic per (seed, index): `render_example(kind, seed, index, height, width)` always gives
the same image and depth. Two kinds:

- "indoor" (NYU-like): a room (floor, walls, ceiling) with boxes, spheres and cylinders; every
  surface has an independent procedural texture (plain paint, checker, stripes, noise, wood) so
  image edges and depth edges are decorrelated; a ceiling point light with hard shadows; NYU
  intrinsics (focal 518.8579 px at 480x640, scaled with the width); a random camera pose inside
  the room. Ground truth: dense z-depth in metres, every pixel valid, at most 10 m.
- "outdoor" (KITTI-like): a road with lane markings, pavements, building blocks, poles, trees and
  cars (boxes), the sun with shadows and a sky gradient. KITTI intrinsics (focal 721.5377 px at
  1242 px width, scaled). Ground truth imitates projected LiDAR: z-depth sampled along 64
  scan lines with dropout, nothing from the sky or beyond 80 m (valid fraction ~25%).

Everything here is [ours]: it exists so that the whole framework trains, evaluates and runs the
sparse-pixel study without downloads.
"""

from __future__ import annotations

import numpy as np

from dgr_jax import protocol
from dgr_jax.data import raycast, textures
from dgr_jax.data.render import Camera, Light, Surface, primitive_bounds, render

KINDS = ("indoor", "outdoor")
DEFAULT_SIZE = {"indoor": (240, 320), "outdoor": (192, 640)}
_KIND_SEED = {"indoor": 11, "outdoor": 23}
# KITTI full-resolution width that the KITTI focal length refers to.
_KITTI_WIDTH = 1242.0
# Simulated LiDAR: 64 beams from +2 deg to -24.8 deg elevation (Velodyne HDL-64E geometry).
_LIDAR_BEAMS = 64
_LIDAR_ELEVATION = (2.0, -24.8)
_LIDAR_DROPOUT = 0.1


def _textured(tex: textures.Texture):
    return lambda points, uv: tex.albedo(uv)


def _surface(prim, tex: textures.Texture, casts_shadow: bool = True) -> Surface:
    return Surface(prim, _textured(tex), primitive_bounds(prim), casts_shadow)


def _room_albedo(room: raycast.Room, face_textures: list[textures.Texture]):
    def albedo(points: np.ndarray, uv: np.ndarray) -> np.ndarray:
        face = room.face_id(points)
        out = np.zeros((len(points), 3))
        for f, tex in enumerate(face_textures):
            m = face == f
            if m.any():
                out[m] = tex.albedo(uv[m])
        return out

    return albedo


def indoor_scene(rng: np.random.Generator, height: int, width: int):
    """A random furnished room and a camera inside it."""
    room_w, room_d, room_h = rng.uniform(3.0, 5.5), rng.uniform(4.0, 7.5), rng.uniform(2.4, 3.1)
    room = raycast.Room(-room_w / 2, room_w / 2, 0.0, room_d, room_h)
    floor = textures.random_texture(rng, ("wood", "checker", "noise", "plain"), (0.1, 0.8))
    ceiling = textures.Texture("plain", (0.85, 0.85, 0.8), (0.8, 0.8, 0.78), 1.0, 0.0, 0)
    walls = [textures.random_texture(rng, ("plain", "stripes", "noise", "plain")) for _ in range(4)]
    surfaces = [Surface(room, _room_albedo(room, [floor, ceiling, *walls]), None, False)]

    cam_pos = np.array(
        [rng.uniform(-0.3, 0.3) * room_w, rng.uniform(1.0, 1.7), rng.uniform(0.2, 0.8)]
    )
    focal = protocol.NYU_FOCAL * width / protocol.NYU_WIDTH
    cam = Camera.look(
        height,
        width,
        focal,
        cam_pos,
        yaw=np.deg2rad(rng.uniform(-30, 30)),
        pitch_down=np.deg2rad(rng.uniform(-5, 20)),
        roll=np.deg2rad(rng.uniform(-3, 3)),
    )
    for _ in range(int(rng.integers(3, 9))):
        x = rng.uniform(room.x0 + 0.4, room.x1 - 0.4)
        z = rng.uniform(cam_pos[2] + 1.0, room.z1 - 0.4)
        kind = rng.choice(["box", "box", "sphere", "cylinder"])
        tex = textures.random_texture(rng)
        if kind == "box":
            half = (rng.uniform(0.15, 0.7), rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.7))
            y = half[1] if rng.uniform() < 0.8 else rng.uniform(half[1], room_h - half[1])
            prim = raycast.Box((x, y, z), half, float(rng.uniform(0, np.pi)))
        elif kind == "sphere":
            r = rng.uniform(0.12, 0.45)
            prim = raycast.Sphere((x, rng.uniform(r, 1.6), z), r)
        else:
            prim = raycast.Cylinder((x, z), rng.uniform(0.05, 0.35), 0.0, rng.uniform(0.3, 2.2))
        surfaces.append(_surface(prim, tex))
    light = Light(
        position=np.array(
            [rng.uniform(-0.3, 0.3) * room_w, room_h - 0.05, rng.uniform(1.0, room_d - 1.0)]
        ),
        reference_distance=rng.uniform(1.8, 2.6),
        ambient=rng.uniform(0.25, 0.4),
    )
    return surfaces, light, cam, None


class _RoadTexture:
    """Asphalt with dashed lane markings for |x| < half_width, pavement beyond (uv = (x, -z))."""

    def __init__(self, rng: np.random.Generator, half_width: float):
        self.half_width = half_width
        self.asphalt = textures.Texture(
            "noise", (0.18, 0.18, 0.19), (0.3, 0.3, 0.31), 0.5, 0.0, int(rng.integers(1 << 30))
        )
        self.pavement = textures.random_texture(rng, ("checker", "noise"), (0.3, 1.0))

    def __call__(self, points: np.ndarray, uv: np.ndarray) -> np.ndarray:
        x, z = uv[:, 0], -uv[:, 1]
        out = np.where(
            (np.abs(x) < self.half_width)[:, None],
            self.asphalt.albedo(uv),
            self.pavement.albedo(uv),
        )
        dashes = (np.abs(x) < 0.08) & (np.mod(z, 6.0) < 3.0)
        edges = np.abs(np.abs(x) - (self.half_width - 0.2)) < 0.07
        out[dashes | edges] = 0.85
        return out


def outdoor_scene(rng: np.random.Generator, height: int, width: int):
    """A random street: road, pavements, buildings, poles, trees and cars, lit by the sun."""
    road_half = rng.uniform(3.5, 6.0)
    surfaces = [
        Surface(raycast.Plane((0.0, 1.0, 0.0), 0.0), _RoadTexture(rng, road_half), None, False)
    ]
    for side in (-1.0, 1.0):
        z = rng.uniform(3.0, 12.0)
        while z < 150.0:
            length, depth_x = rng.uniform(8.0, 25.0), rng.uniform(8.0, 15.0)
            x_edge = road_half + rng.uniform(2.5, 6.0)
            tall = rng.uniform(4.0, 22.0)
            prim = raycast.Box(
                (side * (x_edge + depth_x / 2), tall / 2, z + length / 2),
                (depth_x / 2, tall / 2, length / 2),
            )
            facade = textures.random_texture(
                rng, ("checker", "stripes", "noise", "plain"), (0.8, 3.0)
            )
            surfaces.append(_surface(prim, facade))
            z += length + rng.uniform(0.0, 8.0)
        z = rng.uniform(4.0, 15.0)
        while z < 80.0:
            x = side * (road_half + rng.uniform(0.8, 2.0))
            if rng.uniform() < 0.5:  # pole
                prim = raycast.Cylinder((x, z), rng.uniform(0.06, 0.15), 0.0, rng.uniform(3.5, 8.0))
                surfaces.append(_surface(prim, textures.random_texture(rng, ("plain", "noise"))))
            else:  # tree: trunk and crown
                trunk_h = rng.uniform(1.5, 3.5)
                trunk = raycast.Cylinder((x, z), rng.uniform(0.1, 0.25), 0.0, trunk_h)
                crown = raycast.Sphere((x, trunk_h + 1.0, z), rng.uniform(1.0, 2.2))
                surfaces.append(
                    _surface(
                        trunk,
                        textures.Texture("wood", (0.3, 0.2, 0.1), (0.4, 0.3, 0.15), 0.4, 0.0, 3),
                    )
                )
                green = textures.Texture(
                    "noise",
                    (0.1, 0.3, 0.08),
                    (0.25, 0.5, 0.15),
                    0.6,
                    0.0,
                    int(rng.integers(1 << 30)),
                )
                surfaces.append(_surface(crown, green))
            z += rng.uniform(8.0, 25.0)
    for _ in range(int(rng.integers(2, 10))):
        parked = rng.uniform() < 0.5
        side = rng.choice([-1.0, 1.0])
        x = side * (road_half - 1.1 if parked else rng.uniform(1.3, max(1.4, road_half - 1.5)))
        z = rng.uniform(5.0, 60.0)
        half = (rng.uniform(0.8, 1.0), rng.uniform(0.7, 0.85), rng.uniform(1.9, 2.4))
        prim = raycast.Box((x, half[1] + 0.1, z), half, float(rng.normal(0.0, 0.08)))
        surfaces.append(_surface(prim, textures.random_texture(rng, ("plain", "noise", "stripes"))))

    focal = protocol.KITTI_FOCAL * width / _KITTI_WIDTH
    cam = Camera.look(
        height,
        width,
        focal,
        (rng.uniform(-1.5, 1.5), 1.65, 0.0),
        yaw=np.deg2rad(rng.uniform(-8, 8)),
        pitch_down=np.deg2rad(rng.uniform(-1, 4)),
        roll=np.deg2rad(rng.uniform(-1, 1)),
    )
    azimuth, elevation = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.uniform(25, 60))
    sun = np.array(
        [
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
            np.cos(elevation) * np.cos(azimuth),
        ]
    )
    light = Light(direction=sun, ambient=rng.uniform(0.3, 0.45))
    top, horizon = rng.uniform(0.3, 0.5, 3) * np.array([0.6, 0.8, 1.0]), np.array([0.85, 0.9, 0.95])

    def sky(dirs: np.ndarray) -> np.ndarray:
        up = np.clip(dirs[:, 1] / np.linalg.norm(dirs, axis=-1), 0.0, 1.0)[:, None]
        return horizon + (top - horizon) * np.sqrt(up)

    return surfaces, light, cam, sky


def lidar_mask(cam: Camera, rng: np.random.Generator) -> np.ndarray:
    """Pixels hit by a simulated 64-beam LiDAR at the camera centre: bool (H, W).

    A pixel is on beam k when the elevation of its ray is within half a pixel of the beam's
    elevation; each return is dropped with probability 10%.
    """
    d = cam.camera_dirs()  # (H*W, 3) camera frame, y down
    elevation = np.rad2deg(np.arctan2(-d[:, 1], np.hypot(d[:, 0], d[:, 2])))
    half_pixel = np.rad2deg(0.5 / cam.focal) * np.ones_like(elevation)
    beams = np.linspace(*_LIDAR_ELEVATION, _LIDAR_BEAMS)
    # Distance of each pixel's elevation to the nearest beam.
    nearest = np.min(np.abs(elevation[:, None] - beams[None, :]), axis=1)
    on_beam = nearest <= half_pixel
    kept = rng.uniform(size=on_beam.shape) >= _LIDAR_DROPOUT
    return (on_beam & kept).reshape(cam.height, cam.width)


def render_example(
    kind: str, seed: int, index: int, height: int | None = None, width: int | None = None
) -> dict:
    """Render one example of the contract: image uint8 (H,W,3), depth float32 (H,W) metres."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; valid: {KINDS}")
    h, w = height or DEFAULT_SIZE[kind][0], width or DEFAULT_SIZE[kind][1]
    rng = np.random.default_rng([seed, index, _KIND_SEED[kind]])
    scene = indoor_scene if kind == "indoor" else outdoor_scene
    surfaces, light, cam, sky = scene(rng, h, w)
    image, depth, _ = render(surfaces, light, cam, sky=sky, rng=rng)
    if kind == "indoor":
        depth = np.minimum(depth, protocol.NYU_MAX_DEPTH)
    else:
        depth = np.where(lidar_mask(cam, rng) & (depth < protocol.KITTI_MAX_DEPTH), depth, 0.0)
    return {
        "image": image,
        "depth": depth.astype(np.float32),
        "focal": np.float32(cam.focal),
        "id": f"{kind}_{seed}_{index:06d}",
    }
