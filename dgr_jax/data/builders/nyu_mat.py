"""NYU-Depth-v2's official test set read from `nyu_depth_v2_labeled.mat` + `splits.mat`.

[BTS utils/extract_official_train_test_set_from_mat.py] For image i (0-based; `testNdxs` in
splits.mat are 1-based MATLAB indices):
  depth PNG = uint16(rawDepths[i] * 1000)  (float32 product, truncated), so depth = PNG / 1000 m,
              0 where the Kinect gave nothing (the raw, not the in-painted, depth);
  RGB       = images[i] with everything outside rows 7:474, cols 7:632 set to black
              (`protocol.NYU_TEST_RGB_BOX`);
  files     official_splits/test/<sceneTypes[i]>/rgb_%05d.jpg, sync_depth_%05d.png.
[ours] The same pixels and depth values; the RGB is kept lossless (PNG) where BTS writes an
OpenCV JPEG (quality 95), so images from this source differ from BTS's official_splits JPEGs by
the JPEG error. Ids are "<sceneType>/rgb_%05d", the names the BTS test list uses.

Axis order. The real labelled file is MATLAB v7.3, i.e. HDF5, read with h5py; h5py shows
MATLAB's column-major arrays with their axes reversed: images (N, 3, W, H) uint8, rawDepths
(N, W, H) float32, sceneTypes (1, N) object references to uint16 character arrays.
`scipy.io.loadmat` (MATLAB v5 files, e.g. the tests' fakes, and splits.mat) gives MATLAB's own
order: images (H, W, 3, N), rawDepths (H, W, N), sceneTypes a (N, 1) cell array of strings.
Both become (H, W, 3) uint8 and (H, W) float32 here. h5py is optional: without it a v7.3 file
fails with a message that says `pip install h5py`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io

from dgr_jax import protocol
from dgr_jax.data.builders.base import DatasetError, encode_png

MAT_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
_VARIABLES = ("images", "rawDepths", "sceneTypes")


def _is_hdf5(path: Path, dataset: str) -> bool:
    try:
        return scipy.io.matlab.matfile_version(str(path))[0] == 2
    except Exception as e:
        raise DatasetError(
            f"{dataset}: {path} is not a MATLAB file ({e}); expected the official NYU-Depth-v2 "
            f"{MAT_FILE} and {SPLITS_FILE}"
        ) from None


def _load_v5(path: Path, names: tuple[str, ...], dataset: str) -> dict:
    try:
        data = scipy.io.loadmat(str(path), variable_names=list(names))
    except Exception as e:
        raise DatasetError(f"{dataset}: cannot read {path} ({e}); is it complete?") from None
    missing = [n for n in names if n not in data]
    if missing:
        raise DatasetError(
            f"{dataset}: {path} has no variable(s) {missing}; expected the official NYU file "
            f"with {list(names)}"
        )
    return data


def _h5py_module():
    """h5py if it is installed, else None (it is optional: only the v7.3 .mat needs it)."""
    if importlib.util.find_spec("h5py") is None:
        return None
    import h5py

    return h5py


def _h5py(path: Path, dataset: str):
    h5py = _h5py_module()
    if h5py is None:
        raise DatasetError(
            f"{dataset}: {path} is a MATLAB v7.3 (HDF5) file and reading it needs h5py, which "
            "is not installed: `pip install h5py`, then build again. (Or extract the test set "
            "with BTS's utils/extract_official_train_test_set_from_mat.py into "
            "M/official_splits/test/ and add M/splits/nyudepthv2_test_files_with_gt.txt.)"
        )
    try:
        return h5py.File(str(path), "r")
    except Exception as e:
        raise DatasetError(
            f"{dataset}: cannot read {path} as HDF5 ({e}); is it complete?"
        ) from None


def official_test_indices(splits_path: Path, dataset: str) -> np.ndarray:
    """0-based indices of the official test images (`testNdxs` of splits.mat, 1-based)."""
    if _is_hdf5(splits_path, dataset):
        with _h5py(splits_path, dataset) as f:
            ndx = np.asarray(f["testNdxs"][()])
    else:
        ndx = _load_v5(splits_path, ("testNdxs",), dataset)["testNdxs"]
    return np.asarray(ndx, dtype=np.int64).ravel() - 1


def check_readable(mat_path: Path, dataset: str) -> None:
    """Fail now (before any split is built) if the labelled .mat cannot be read or is wrong."""
    if _is_hdf5(mat_path, dataset):
        with _h5py(mat_path, dataset) as f:
            names = set(f.keys())
    else:
        names = {name for name, _, _ in scipy.io.whosmat(str(mat_path))}
    missing = [n for n in _VARIABLES if n not in names]
    if missing:
        raise DatasetError(
            f"{dataset}: {mat_path} has no variable(s) {missing}; expected the official "
            f"NYU-Depth-v2 {MAT_FILE} with {list(_VARIABLES)}"
        )


def bts_test_arrays(image: np.ndarray, raw_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 with the black border, depth float32 metres) as BTS's extraction gives them."""
    top, bottom, left, right = protocol.NYU_TEST_RGB_BOX
    rgb = np.zeros_like(image, dtype=np.uint8)
    rgb[top:bottom, left:right] = image[top:bottom, left:right]
    scale = np.float32(protocol.NYU_DEPTH_PNG_SCALE)
    png = (np.asarray(raw_depth, np.float32) * scale).astype(np.uint16)
    return rgb, png.astype(np.float32) / scale


def _scene_name(cell) -> str:
    value = np.asarray(cell).ravel()
    while value.dtype == object:  # nested cells
        value = np.asarray(value[0]).ravel()
    return str(value[0]) if value.dtype.kind == "U" else "".join(map(chr, value))


def iter_test_examples(root: Path, dataset: str) -> Iterator[tuple[str, dict]]:
    """(key, example) for the official test images, streaming one image at a time (h5py)."""
    mat_path, splits_path = root / MAT_FILE, root / SPLITS_FILE
    indices = official_test_indices(splits_path, dataset)
    if _is_hdf5(mat_path, dataset):
        with _h5py(mat_path, dataset) as f:
            missing = [n for n in _VARIABLES if n not in f]
            if missing:
                raise DatasetError(f"{dataset}: {mat_path} has no variable(s) {missing}")
            images, depths, scenes = f["images"], f["rawDepths"], f["sceneTypes"]
            refs = np.asarray(scenes).ravel()
            _check_range(indices, images.shape[0], mat_path, dataset)
            for i in indices:
                # (3, W, H) -> (H, W, 3); (W, H) -> (H, W)
                image = np.transpose(images[i], (2, 1, 0))
                scene = "".join(map(chr, np.asarray(f[refs[i]][()]).ravel()))
                yield _example(i, scene, image, np.asarray(depths[i]).T)
    else:
        data = _load_v5(mat_path, _VARIABLES, dataset)
        images, depths, scenes = data["images"], data["rawDepths"], data["sceneTypes"]
        cells = np.asarray(scenes, dtype=object).ravel()
        _check_range(indices, images.shape[-1], mat_path, dataset)
        for i in indices:
            yield _example(i, _scene_name(cells[i]), images[..., i], depths[..., i])


def _check_range(indices: np.ndarray, n: int, mat_path: Path, dataset: str) -> None:
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise DatasetError(
            f"{dataset}: {SPLITS_FILE} names images 1..{indices.max() + 1} but {mat_path} has "
            f"{n}; expected the official pair of files"
        )


def _example(i: int, scene: str, image: np.ndarray, raw_depth: np.ndarray) -> tuple[str, dict]:
    rgb, depth = bts_test_arrays(image, raw_depth)
    ex_id = f"{scene}/rgb_{i:05d}"
    example = {"image": encode_png(rgb), "depth": depth, "focal": np.float32(protocol.NYU_FOCAL)}
    return f"{i:05d}", {**example, "id": ex_id}
