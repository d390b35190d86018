"""Procedural textures for the synthetic dataset, drawn on surface coordinates in metres.

Each texture maps uv (N, 2) to an albedo (N, 3) in [0, 1]. Patterns are chosen at random per
surface and are independent of the geometry, so image edges (paint, stripes, grain) and depth
edges (occlusions) are decorrelated: the sparse-pixel study relies on that.
"""

from __future__ import annotations

import dataclasses

import numpy as np

TEXTURE_KINDS = ("plain", "checker", "stripes", "noise", "wood")


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic integer hash of lattice points -> uniform values in [0, 1)."""
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 1442695041) & (
        0xFFFFFFFF
    )
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    h = h ^ (h >> 16)
    return (h & 0xFFFFFF).astype(np.float64) / float(0x1000000)


def value_noise(uv: np.ndarray, scale: float, seed: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1] at uv (N, 2); `scale` is the coarsest cell size in metres."""
    total = np.zeros(len(uv))
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        p = uv / (scale / 2**octave)
        i = np.floor(p)
        f = p - i
        f = f * f * (3.0 - 2.0 * f)  # smoothstep interpolation
        ix, iy = i[:, 0], i[:, 1]
        s = seed + 101 * octave
        v00, v10 = _hash01(ix, iy, s), _hash01(ix + 1, iy, s)
        v01, v11 = _hash01(ix, iy + 1, s), _hash01(ix + 1, iy + 1, s)
        top = v00 + (v10 - v00) * f[:, 0]
        bottom = v01 + (v11 - v01) * f[:, 0]
        total += amplitude * (top + (bottom - top) * f[:, 1])
        norm += amplitude
        amplitude *= 0.5
    return total / norm


@dataclasses.dataclass(frozen=True)
class Texture:
    """A two-colour procedural pattern (mixing weight w in [0, 1] per point)."""

    kind: str
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    scale: float  # pattern period / cell size in metres
    angle: float  # pattern orientation in radians
    seed: int

    def albedo(self, uv: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle), np.sin(self.angle)
        rot = uv @ np.array([[c, -s], [s, c]])
        if self.kind == "plain":
            # Plain paint still carries faint low-frequency variation, like real walls.
            w = 0.15 * value_noise(rot, self.scale * 4, self.seed, octaves=2)
        elif self.kind == "checker":
            cells = np.floor(rot / self.scale).astype(np.int64)
            w = ((cells[:, 0] + cells[:, 1]) % 2).astype(np.float64)
        elif self.kind == "stripes":
            w = (np.sin(2 * np.pi * rot[:, 0] / self.scale) > 0.0).astype(np.float64)
        elif self.kind == "noise":
            w = value_noise(rot, self.scale, self.seed, octaves=4)
        elif self.kind == "wood":
            warp = value_noise(rot * np.array([1.0, 0.15]), self.scale, self.seed, octaves=3)
            w = 0.5 + 0.5 * np.sin(2 * np.pi * (rot[:, 1] / (0.2 * self.scale) + 4.0 * warp))
        else:
            raise ValueError(f"unknown texture kind {self.kind!r}; valid: {TEXTURE_KINDS}")
        a, b = np.asarray(self.color_a), np.asarray(self.color_b)
        return a + (b - a) * w[:, None]


def random_texture(
    rng: np.random.Generator, kinds: tuple[str, ...] = TEXTURE_KINDS, scale=(0.05, 0.6)
) -> Texture:
    """Draw a texture with random kind, colours, period and orientation."""
    base = rng.uniform(0.15, 0.9, size=3)
    other = np.clip(base * rng.uniform(0.3, 1.6) + rng.normal(0.0, 0.15, size=3), 0.02, 0.98)
    return Texture(
        kind=str(rng.choice(kinds)),
        color_a=tuple(base),
        color_b=tuple(other),
        scale=float(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1])))),
        angle=float(rng.uniform(0.0, np.pi)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
