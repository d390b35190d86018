"""Vectorised numpy ray casting against a handful of analytic primitives.

Used by the procedural synthetic dataset (`dgr_jax/data/synthetic.py`). Conventions:
- World frame: x right, y up, z forward; the floor / ground is y = 0.
- A ray is o + t * d with `o` (3,) or (N, 3) and `d` (N, 3). Primary rays use camera-frame
  directions with z = 1 (not normalised), so the hit parameter t *is* the z-depth in metres.
- `distance(o, d) -> (N,)` returns the smallest t > EPS of a hit, `inf` where the ray misses.
- `surface(p) -> (normal (M, 3), uv (M, 2))` at hit points: the unit normal facing the outside
  (the inside for `Room`) and 2-D surface coordinates in metres that textures are drawn on, so
  texture and geometry are independent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

EPS = 1e-4  # minimum hit distance (metres), avoids self-intersection of shadow rays
_INF = np.inf


def _rot_y(yaw: float) -> np.ndarray:
    """Rotation about the world y axis (3, 3)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _first_positive(t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Smallest root > EPS of two (N,) candidate arrays (NaN/inf allowed), inf if none."""
    t0 = np.where(t0 > EPS, t0, _INF)
    t1 = np.where(t1 > EPS, t1, _INF)
    return np.minimum(t0, t1)


@dataclasses.dataclass(frozen=True)
class Plane:
    """The infinite plane {p : n . p = offset}; uv along two tangents."""

    normal: tuple[float, float, float]
    offset: float

    def distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        n = np.asarray(self.normal)
        denom = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (self.offset - np.asarray(o) @ n) / denom
        return np.where((np.abs(denom) > 1e-12) & (t > EPS), t, _INF)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = np.asarray(self.normal, dtype=np.float64)
        helper = np.array([0.0, 0.0, 1.0]) if abs(n[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        t1 = np.cross(n, helper)
        t1 /= np.linalg.norm(t1)
        t2 = np.cross(n, t1)
        uv = np.stack([p @ t1, p @ t2], axis=-1)
        return np.broadcast_to(n, p.shape).copy(), uv


@dataclasses.dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float

    def distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        oc = np.asarray(o) - np.asarray(self.center)  # (N, 3) or (3,)
        a = np.einsum("ij,ij->i", d, d)
        b = 2.0 * (d @ oc if oc.ndim == 1 else np.einsum("ij,ij->i", d, oc))
        c = (oc @ oc if oc.ndim == 1 else np.einsum("ij,ij->i", oc, oc)) - self.radius**2
        disc = b * b - 4.0 * a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t = _first_positive((-b - sq) / (2.0 * a), (-b + sq) / (2.0 * a))
        return np.where(disc >= 0.0, t, _INF)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = p - np.asarray(self.center)
        n = rel / self.radius
        # Longitude along the equator (metres of arc) and height: an unwrapped sphere.
        uv = np.stack([np.arctan2(rel[:, 0], rel[:, 2]) * self.radius, rel[:, 1]], axis=-1)
        return n, uv


@dataclasses.dataclass(frozen=True)
class Cylinder:
    """A vertical (y-axis) closed cylinder from y0 to y1."""

    center_xz: tuple[float, float]
    radius: float
    y0: float
    y1: float

    def distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        o = np.broadcast_to(np.asarray(o, dtype=np.float64), d.shape)
        cx, cz = self.center_xz
        ox, oz = o[:, 0] - cx, o[:, 2] - cz
        a = d[:, 0] ** 2 + d[:, 2] ** 2
        b = 2.0 * (ox * d[:, 0] + oz * d[:, 2])
        c = ox**2 + oz**2 - self.radius**2
        disc = b * b - 4.0 * a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            roots = [(-b - sq) / (2.0 * a), (-b + sq) / (2.0 * a)]
        side = _INF
        for t in roots:
            y = o[:, 1] + t * d[:, 1]
            ok = (disc >= 0.0) & (a > 1e-12) & (t > EPS) & (y >= self.y0) & (y <= self.y1)
            side = np.minimum(side, np.where(ok, t, _INF))
        caps = _INF
        for y_cap in (self.y0, self.y1):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (y_cap - o[:, 1]) / d[:, 1]
                x, z = o[:, 0] + t * d[:, 0] - cx, o[:, 2] + t * d[:, 2] - cz
            ok = (t > EPS) & (x * x + z * z <= self.radius**2)
            caps = np.minimum(caps, np.where(ok, t, _INF))
        return np.minimum(side, caps)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cx, cz = self.center_xz
        rx, rz = p[:, 0] - cx, p[:, 2] - cz
        on_cap = (np.abs(p[:, 1] - self.y1) < 1e-6 * max(1.0, abs(self.y1))) | (
            np.abs(p[:, 1] - self.y0) < 1e-6 * max(1.0, abs(self.y0))
        )
        on_cap &= rx * rx + rz * rz < (self.radius * 0.999) ** 2
        r = np.sqrt(rx * rx + rz * rz) + 1e-12
        n_side = np.stack([rx / r, np.zeros_like(r), rz / r], axis=-1)
        n_cap = np.zeros_like(p)
        n_cap[:, 1] = np.where(p[:, 1] > 0.5 * (self.y0 + self.y1), 1.0, -1.0)
        n = np.where(on_cap[:, None], n_cap, n_side)
        uv_side = np.stack([np.arctan2(rx, rz) * self.radius, p[:, 1]], axis=-1)
        uv_cap = np.stack([rx, rz], axis=-1)
        return n, np.where(on_cap[:, None], uv_cap, uv_side)


@dataclasses.dataclass(frozen=True)
class Box:
    """A box with half extents `half`, centred at `center`, rotated by `yaw` about y."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float = 0.0

    def _to_local(self, v: np.ndarray, is_point: bool) -> np.ndarray:
        r = _rot_y(self.yaw)  # local -> world
        if is_point:
            v = v - np.asarray(self.center)
        return v @ r  # world -> local is R^T v; row vectors: v @ R

    def distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ol = self._to_local(np.asarray(o, dtype=np.float64), True)
        dl = self._to_local(d, False)
        h = np.asarray(self.half)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl
            t_a = (-h - ol) * inv
            t_b = (h - ol) * inv
        t_near = np.nanmax(np.minimum(t_a, t_b), axis=-1)
        t_far = np.nanmin(np.maximum(t_a, t_b), axis=-1)
        hit = (t_far >= t_near) & (t_far > EPS)
        t = np.where(t_near > EPS, t_near, t_far)  # t_far when the origin is inside
        return np.where(hit, t, _INF)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        local = self._to_local(p, True)
        h = np.asarray(self.half)
        rel = np.abs(local) / h
        axis = np.argmax(rel, axis=-1)  # the face's axis: the coordinate closest to its bound
        n_local = np.zeros_like(local)
        rows = np.arange(len(p))
        n_local[rows, axis] = np.sign(local[rows, axis])
        n = n_local @ _rot_y(self.yaw).T
        # uv: the two local coordinates spanning the face.
        other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        uv = np.stack([local[rows, other[:, 0]], local[rows, other[:, 1]]], axis=-1)
        return n, uv


@dataclasses.dataclass(frozen=True)
class Room:
    """The inside of an axis-aligned box [x0, x1] x [0, height] x [z0, z1] (floor at y = 0).

    `face_id(p)` tells which of the six faces was hit (0 floor, 1 ceiling, 2 left, 3 right,
    4 back, 5 front) so each can carry its own material.
    """

    x0: float
    x1: float
    z0: float
    z1: float
    height: float

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([self.x0, 0.0, self.z0]), np.array([self.x1, self.height, self.z1])

    def distance(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo, hi = self._bounds()
        o = np.asarray(o, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(d > 0, (hi - o) / d, np.where(d < 0, (lo - o) / d, _INF))
        t = np.min(t, axis=-1)
        return np.where(t > EPS, t, _INF)

    def face_id(self, p: np.ndarray) -> np.ndarray:
        lo, hi = self._bounds()
        dist = np.stack(
            [
                np.abs(p[:, 1] - lo[1]),
                np.abs(p[:, 1] - hi[1]),
                np.abs(p[:, 0] - lo[0]),
                np.abs(p[:, 0] - hi[0]),
                np.abs(p[:, 2] - lo[2]),
                np.abs(p[:, 2] - hi[2]),
            ],
            axis=-1,
        )
        return np.argmin(dist, axis=-1)

    def surface(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        face = self.face_id(p)
        normals = np.array(
            [[0, 1, 0], [0, -1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1], [0, 0, -1]], dtype=float
        )
        n = normals[face]
        # uv: floor/ceiling (x, z); side walls (z, y); back/front walls (x, y).
        uv_idx = np.array([[0, 2], [0, 2], [2, 1], [2, 1], [0, 1], [0, 1]])[face]
        rows = np.arange(len(p))
        uv = np.stack([p[rows, uv_idx[:, 0]], p[rows, uv_idx[:, 1]]], axis=-1)
        return n, uv
