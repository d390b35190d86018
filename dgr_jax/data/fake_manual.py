"""Tiny fake copies of the NYU (BTS) and KITTI (Eigen) manual-dir layouts, for tests and benchmarks.

    copy = make_nyu(tmp_path / "nyu")        # M/sync, M/official_splits/test, M/splits/*.txt
    copy = make_kitti(tmp_path / "kitti")    # M/raw, M/data_depth_annotated/{train,val}, M/splits
    copy.depth_png["test"][id]               # the uint16 values written for that example

Nothing here is real data: RGB is a random gradient plus noise, depth PNGs hold random 16-bit
values (with invalid zeros; sparse for KITTI). The returned `FakeCopy` records what was
written per split and id, so tests can check decoded depth == PNG / scale exactly. The files
and list lines follow the hosts' formats, including the details that trip loaders: BTS's
leading "/" in NYU training lines, NeWCRFs' 3-path dense list, KITTI's "None" lines and its
annotated depth split into train/ and val/ folders.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from dgr_jax import protocol
from dgr_jax.data.builders import kitti_depth_eigen, nyu_depth_v2_bts, nyu_mat

# Focal lengths written into the fake KITTI lists per date (the real lists' values differ per
# calibration day; the builder must take each line's own).
KITTI_FOCALS = {"2011_09_26": protocol.KITTI_FOCAL, "2011_09_28": 707.0493}


@dataclasses.dataclass
class FakeCopy:
    """What a fake manual dir holds, per split and example id."""

    root: Path
    depth_png: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    rgb: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
    image_file: dict[str, dict[str, Path]] = dataclasses.field(default_factory=dict)
    focal: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    def add(self, split: str, ex_id: str, png, rgb, image_file, focal: float) -> None:
        self.depth_png.setdefault(split, {})[ex_id] = png
        self.rgb.setdefault(split, {})[ex_id] = rgb
        self.image_file.setdefault(split, {})[ex_id] = image_file
        self.focal.setdefault(split, {})[ex_id] = focal


def random_rgb(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 (h, w, 3): a colour gradient plus noise (compresses and decodes like a photo-ish)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0 * xx], axis=-1) * 200
    noise = rng.normal(0, 12, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def random_depth_png(
    rng: np.random.Generator, h: int, w: int, max_value: int, valid_fraction: float
) -> np.ndarray:
    """uint16 (h, w) depth PNG values in [1, max_value], 0 (invalid) outside a random mask."""
    values = rng.integers(1, max_value + 1, size=(h, w)).astype(np.uint16)
    return np.where(rng.uniform(size=(h, w)) < valid_fraction, values, 0).astype(np.uint16)


def save_depth_png(path: Path, png: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(png, np.uint16)).save(path)  # mode I;16: a 16-bit PNG


def save_rgb(path: Path, rgb: np.ndarray) -> np.ndarray:
    """Save RGB as JPEG or PNG by suffix; return the pixels PIL decodes from the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, **({"quality": 90} if path.suffix == ".jpg" else {}))
    with Image.open(path) as im:
        return np.asarray(im)


def make_nyu(
    root: Path,
    *,
    scenes: tuple[str, ...] = ("kitchen_0028b", "bedroom_0130"),
    frames_per_scene: int = 2,
    test_scenes: tuple[str, ...] = ("bathroom", "office"),
    size: tuple[int, int] = (24, 32),
    seed: int = 0,
    dense_list: bool = True,
    test_folder: bool = True,
    mat: bool = False,
    mat_images: int = 5,
) -> FakeCopy:
    """A BTS-layout NYU manual dir; with `mat`, also the official .mat pair (v5, via scipy)."""
    rng = np.random.default_rng(seed)
    h, w = size
    copy = FakeCopy(Path(root))
    max_png = int(protocol.NYU_MAX_DEPTH * protocol.NYU_DEPTH_PNG_SCALE)
    bts, dense, test = [], [], []
    for scene in scenes:
        for k in range(frames_per_scene):
            rgb_rel, depth_rel = f"{scene}/rgb_{k:05d}.jpg", f"{scene}/sync_depth_{k:05d}.png"
            png = random_depth_png(rng, h, w, max_png, 0.9)
            save_depth_png(copy.root / "sync" / depth_rel, png)
            pixels = save_rgb(copy.root / "sync" / rgb_rel, random_rgb(rng, h, w))
            copy.add(
                "train", rgb_rel[:-4], png, pixels, copy.root / "sync" / rgb_rel, protocol.NYU_FOCAL
            )
            bts.append(f"/{rgb_rel} /{depth_rel} {protocol.NYU_FOCAL}")
            dense.append(f"{rgb_rel} {depth_rel} {scene}/dense/sync_depth_dense_{k:05d}.png")
    splits = copy.root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / nyu_depth_v2_bts.TRAIN_LIST).write_text("\n".join(bts) + "\n")
    if dense_list:
        (splits / nyu_depth_v2_bts.TRAIN_LIST_DENSE).write_text("\n".join(dense) + "\n")
    if test_folder:
        base = copy.root / "official_splits" / "test"
        for i, scene in enumerate(test_scenes):
            rgb_rel, depth_rel = f"{scene}/rgb_{i:05d}.jpg", f"{scene}/sync_depth_{i:05d}.png"
            png = random_depth_png(rng, h, w, max_png, 0.8)
            save_depth_png(base / depth_rel, png)
            pixels = save_rgb(base / rgb_rel, random_rgb(rng, h, w))
            copy.add("test", rgb_rel[:-4], png, pixels, base / rgb_rel, protocol.NYU_FOCAL)
            test.append(f"{rgb_rel} {depth_rel} {protocol.NYU_FOCAL}")
        (splits / nyu_depth_v2_bts.TEST_LIST).write_text("\n".join(test) + "\n")
    if mat:
        _write_mat(copy, rng, h, w, mat_images, test_scenes, max_png)
    return copy


def _write_mat(copy: FakeCopy, rng, h: int, w: int, n: int, scenes, max_png: int) -> None:
    """nyu_depth_v2_labeled.mat (MATLAB v5 axis order) + splits.mat; odd images are test."""
    images = np.stack([random_rgb(rng, h, w) for _ in range(n)], axis=-1)  # (H, W, 3, N)
    pngs = np.stack([random_depth_png(rng, h, w, max_png, 0.8) for _ in range(n)], axis=-1)
    # Raw depth 0.7 mm above each integer mm: BTS truncates (uint16 cast), so the stored depth
    # is the integer mm, which a rounding implementation would miss.
    raw = np.where(
        pngs > 0,
        (pngs.astype(np.float32) + np.float32(0.7)) / np.float32(protocol.NYU_DEPTH_PNG_SCALE),
        0,
    )
    scene_names = [scenes[i % len(scenes)] for i in range(n)]
    cells = np.empty((n, 1), dtype=object)
    for i, name in enumerate(scene_names):
        cells[i, 0] = name
    scipy.io.savemat(
        copy.root / nyu_mat.MAT_FILE,
        {"images": images, "rawDepths": raw.astype(np.float32), "sceneTypes": cells},
    )
    test_1based = np.arange(2, n + 1, 2)  # MATLAB indices of the odd 0-based images
    train_1based = np.arange(1, n + 1, 2)
    scipy.io.savemat(
        copy.root / nyu_mat.SPLITS_FILE,
        {"testNdxs": test_1based[:, None], "trainNdxs": train_1based[:, None]},
    )
    for i in test_1based - 1:
        ex_id = f"{scene_names[i]}/rgb_{i:05d}"
        copy.add("test_mat", ex_id, pngs[..., i], images[..., i], None, protocol.NYU_FOCAL)


def make_kitti(
    root: Path,
    *,
    size: tuple[int, int] = (24, 40),
    seed: int = 0,
    frames: int = 2,
    raw_subdir: bool = True,
    valid_fraction: float = 0.1,
) -> FakeCopy:
    """A KITTI Eigen manual dir: GT of one train drive in train/, one in val/, the test drives'
    in val/ and merged (BTS style), and one test line without ground truth ("None")."""
    rng = np.random.default_rng(seed)
    h, w = size
    copy = FakeCopy(Path(root))
    raw_root = copy.root / "raw" if raw_subdir else copy.root
    gt_root = copy.root / kitti_depth_eigen.GT_DIR
    max_png = int(protocol.KITTI_MAX_DEPTH * protocol.KITTI_DEPTH_PNG_SCALE)
    layout = {
        "train": [("2011_09_26", 1, "train"), ("2011_09_28", 2, "val")],
        "test": [("2011_09_26", 9, "val"), ("2011_09_28", 37, "")],
    }
    lists: dict[str, list[str]] = {"train": [], "test": []}
    for split, drives in layout.items():
        for date, number, sub in drives:
            drive = f"{date}_drive_{number:04d}_sync"
            for f in range(frames):
                frame = f"{5 * f + number:010d}.png"
                rgb_rel = f"{date}/{drive}/image_02/data/{frame}"
                depth_rel = f"{drive}/proj_depth/groundtruth/image_02/{frame}"
                pixels = save_rgb(raw_root / rgb_rel, random_rgb(rng, h, w))
                png = random_depth_png(rng, h, w, max_png, valid_fraction)
                save_depth_png(gt_root / sub / depth_rel, png)
                focal = KITTI_FOCALS[date]
                copy.add(split, rgb_rel[:-4], png, pixels, raw_root / rgb_rel, focal)
                lists[split].append(f"{rgb_rel} {depth_rel} {focal}")
    # A test frame that KITTI did not annotate: the image exists, the list says None.
    rgb_rel = "2011_09_26/2011_09_26_drive_0009_sync/image_02/data/0000000099.png"
    save_rgb(raw_root / rgb_rel, random_rgb(rng, h, w))
    lists["test"].insert(1, f"{rgb_rel} {kitti_depth_eigen.NO_GT} {protocol.KITTI_FOCAL}")
    splits = copy.root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / kitti_depth_eigen.TRAIN_LIST).write_text("\n".join(lists["train"]) + "\n")
    (splits / kitti_depth_eigen.TEST_LIST).write_text("\n".join(lists["test"]) + "\n")
    return copy


def write_mat_v73(path: Path, images: np.ndarray, raw_depths: np.ndarray, scenes) -> None:
    """Rewrite the labelled .mat as MATLAB v7.3 (HDF5, needs h5py), in the layout h5py shows the
    real file: images (N, 3, W, H), rawDepths (N, W, H), sceneTypes (1, N) references to uint16
    character arrays. `images` (H, W, 3, N) and `raw_depths` (H, W, N) are in MATLAB order."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = np.transpose(images, (3, 2, 1, 0))  # (H, W, 3, N) -> (N, 3, W, H)
        f["rawDepths"] = np.transpose(raw_depths, (2, 1, 0))  # (H, W, N) -> (N, W, H)
        refs = f.create_group("#refs#")
        ref_type = h5py.special_dtype(ref=h5py.Reference)
        scene_refs = np.empty((1, len(scenes)), dtype=ref_type)
        for i, name in enumerate(scenes):
            chars = refs.create_dataset(f"s{i}", data=np.array([[ord(c)] for c in name], "u2"))
            scene_refs[0, i] = chars.ref
        f.create_dataset("sceneTypes", data=scene_refs, dtype=ref_type)
    # The MATLAB header in the user block: text, then version 0x0200 and the endian mark "IM".
    header = b"MATLAB 7.3 MAT-file, fake for tests".ljust(124, b" ") + b"\x00\x02IM"
    with open(path, "r+b") as f:
        f.write(header)
