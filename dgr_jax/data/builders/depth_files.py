"""TFDS builder `depth_files`: any RGB + depth pairs, described by BTS-style file lists.

    python -m dgr_jax.data.build depth_files --manual_dir M --data_dir D \
        --depth_scale 1000 [--max_depth 10] [--crop test=t,l,h,w]

The manual dir M holds `train.txt`, `test.txt` and optionally `val.txt`, one example per line,
in the format BTS / NeWCRFs / PixelFormer users already have:

    <rgb path> <depth path or None> [focal in pixels]

Paths are relative to M, absolute, or gs:// URLs. Depth files, by suffix:
  .png          single-channel 16-bit PNG, metres = value / depth_scale (1000: millimetres,
                256: KITTI)
  .npy          float32 (H, W) metres
  .tif / .tiff  32-bit float TIFF (PIL mode "F"), metres
0, negative and non-finite values are invalid (stored as 0), and with `max_depth` > 0 so is
everything beyond it. A depth of `None` means no ground truth: the example is kept (training
masks it out, `predict` can use it) and stored with an all-zero depth, which the evaluator
leaves out of the metrics and counts (`num_images` vs `num_valid_images` in its metrics.json);
the build counts such lines per split in the dataset's metadata. A missing focal is stored
as 0 (unknown).

[ours] Every line of every list is checked before anything is written: the files exist, the
images open, RGB and depth have the same size, a crop fits. All problems come in one message
(the first few of each kind and the line counts per split); nothing is half-built. The build
arguments (depth scale, max depth, crops) and a hash of the lists are the on-disk config name,
so two builds never mix and an edited list is built afresh. Images are stored as their original
bytes (cropped ones as lossless PNG); builders never resize.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from dgr_jax import storage
from dgr_jax.data.builders import base, manual
from dgr_jax.registry import DATASETS

SPLITS = ("train", "test", "val")  # train and test are required, val is optional
REQUIRED = ("train", "test")
NO_GT = "None"  # the depth column of lines without ground truth
DEPTH_SUFFIXES = (".png", ".npy", ".tif", ".tiff")
_MAX_LISTED = 5  # problems of one kind listed in the error message

LAYOUT = """\
  M/train.txt, M/test.txt [, M/val.txt]
      one example per line: "<rgb path> <depth path or None> [focal]", paths relative to M,
      absolute, or gs://
  depth files: 16-bit PNG (metres = value / depth_scale), float32 .npy, or 32-bit float TIFF
      (metres); 0 or non-finite = invalid
"""
SOURCES = "Your own data: README.md, 'Your own data'; the list format: docs/datasets.md."
CTX = manual.Context(
    dataset="depth_files",
    expected_image="an RGB image file (PNG, JPEG, ...) that PIL opens",
    expected_depth="a 16-bit PNG (metres x depth_scale), a float32 .npy or a 32-bit float TIFF "
    "(metres), the same size as its RGB image",
    sources=SOURCES,
)


@dataclasses.dataclass(eq=False)
class DepthFilesConfig(tfds.core.BuilderConfig):
    depth_scale: float = 1000.0
    max_depth: float = 0.0  # 0: no cap
    crops: tuple = ()  # ((split, (top, left, height, width)), ...)
    lists_hash: str = ""


@dataclasses.dataclass(frozen=True)
class FileJob:
    """One line to build: its files, focal, crop, and where it was named."""

    key: str
    id: str
    image: str
    depth: str | None  # None: no ground truth
    focal: float
    origin: str
    depth_scale: float
    max_depth: float
    crop: tuple[int, int, int, int] | None


def parse_crop(value: Any) -> tuple[int, int, int, int] | None:
    """(top, left, height, width) from a tuple / list or "t,l,h,w"; None for () / "" / None."""
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        crop = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        crop = ()
    if len(crop) != 4 or min(crop) < 0 or crop[2] == 0 or crop[3] == 0:
        raise base.DatasetError(
            f"depth_files: crop {value!r} is not 'top,left,height,width' (4 integers >= 0, "
            "height and width > 0)"
        )
    return crop


def resolve(root: str, column: str) -> str:
    """A list column as a path: gs:// and absolute paths as given, others relative to M."""
    if storage.is_remote(column) or os.path.isabs(column):
        return column
    return storage.join(root, column)


def _number(value: float) -> str:
    return f"{value:g}".replace(".", "p").replace("-", "m")


def _list_texts(manual_dir: str) -> dict[str, str]:
    """{split: text} of the lists present in `manual_dir`."""
    texts = {}
    for split in SPLITS:
        path = storage.join(manual_dir, f"{split}.txt")
        if storage.isfile(path):
            texts[split] = storage.read_text(path)
    return texts


def config_name(depth_scale: float, max_depth: float, crops: dict, lists_hash: str) -> str:
    """The on-disk name of one build: every build argument and the lists' hash."""
    name = f"scale{_number(depth_scale)}_max{_number(max_depth)}"
    for split, crop in sorted(crops.items()):
        name += f"_{split}crop{'x'.join(str(v) for v in crop)}"
    return f"{name}_{lists_hash}"


@DATASETS.register("depth_files")
class DepthFiles(manual.ManualDirBuilder, tfds.core.GeneratorBasedBuilder):
    """Your own RGB + depth pairs from file lists (module docstring)."""

    VERSION = tfds.core.Version(base.VERSION)
    RELEASE_NOTES = {base.VERSION: "Initial release."}
    LAYOUT = LAYOUT
    SOURCES = SOURCES
    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT + SOURCES

    @classmethod
    def from_args(
        cls,
        config_name_: str | None,
        data_dir: str,
        *,
        manual_dir: str = "",
        depth_scale: float = 1000.0,
        max_depth: float = 0.0,
        train_crop: Any = (),
        test_crop: Any = (),
        val_crop: Any = (),
        **unused,
    ) -> DepthFiles:
        """The builder of the lists in `manual_dir` with these build arguments."""
        if config_name_:
            raise base.DatasetError(
                f"depth_files has no named configs, not {config_name_!r}: use depth_files and "
                "the build arguments (depth_scale, max_depth, crops)"
            )
        if not manual_dir:
            raise base.DatasetError(
                "depth_files needs the manual dir (config.input.manual_dir or --manual_dir): "
                "its lists name the dataset.\n" + LAYOUT
            )
        if not float(depth_scale) > 0:
            raise base.DatasetError(f"depth_files: depth_scale must be > 0, not {depth_scale}")
        crops = {
            split: crop
            for split, value in (("train", train_crop), ("test", test_crop), ("val", val_crop))
            if (crop := parse_crop(value)) is not None
        }
        texts = _list_texts(manual_dir)
        digest = hashlib.sha256(storage.absolute(manual_dir).encode())
        for split, text in sorted(texts.items()):
            digest.update(f"\0{split}\0{text}".encode())
        lists_hash = digest.hexdigest()[:10]
        config = DepthFilesConfig(
            name=config_name(float(depth_scale), float(max_depth), crops, lists_hash),
            version=base.VERSION,
            description=f"file lists of {manual_dir}",
            depth_scale=float(depth_scale),
            max_depth=float(max_depth),
            crops=tuple(sorted(crops.items())),
            lists_hash=lists_hash,
        )
        return cls(config=config, data_dir=data_dir, file_format="array_record")

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="Your own RGB + depth pairs (metres, 0 = invalid) from file lists.",
            features=base.depth_features("png"),
            metadata=tfds.core.MetadataDict(
                depth_scale=cfg.depth_scale,
                max_depth=cfg.max_depth,
                crops={split: list(crop) for split, crop in cfg.crops},
                lists_hash=cfg.lists_hash,
            ),
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        cfg = self.builder_config
        jobs = {}
        for split in SPLITS:
            list_path = storage.join(root, f"{split}.txt")
            if split not in REQUIRED and not storage.isfile(list_path):
                continue
            jobs[split] = list_jobs(root, split, cfg, dict(cfg.crops).get(split))
        summary = validate(jobs)  # raises with every problem before anything is written
        self.info.metadata["splits"] = summary
        for split, s in summary.items():
            manual.log.info(
                "depth_files/%s: %d examples, %d without ground truth (kept for prediction, "
                "left out of the metrics), frames %dx%d to %dx%d",
                split,
                s["examples"],
                s["without_depth"],
                *s["min_size"],
                *s["max_size"],
            )
        return {
            split: self._generate_examples(generate(split_jobs, split))
            for split, split_jobs in jobs.items()
        }

    def _generate_examples(self, examples):
        """The (key, example) pairs that `_split_generators` set up after checking the files."""
        yield from examples


def list_jobs(root: str, split: str, cfg: DepthFilesConfig, crop) -> list[FileJob]:
    """The jobs of `<root>/<split>.txt`; the list's format is checked here, the files later."""
    list_path = storage.path(storage.join(root, f"{split}.txt"))
    lines = manual.read_split_list(
        list_path,
        CTX,
        f"{list_path}: lines '<rgb path> <depth path or {NO_GT}> [focal]' "
        f"({', '.join(f'{s}.txt' for s in REQUIRED)} are required)",
    )
    jobs = []
    for line in lines:
        rgb, depth = line.columns[:2]
        origin = f"line {line.number} of {list_path}"
        if len(line.columns) > 2:
            try:
                float(line.columns[2])
            except ValueError:
                raise CTX.error(
                    f"{origin}: the third column {line.columns[2]!r} is not a number.",
                    "'<rgb path> <depth path or None> [focal in pixels]'",
                ) from None
        if depth != NO_GT and not depth.lower().endswith(DEPTH_SUFFIXES):
            raise CTX.error(
                f"{origin}: depth file {depth!r} has an unknown suffix.",
                f"a depth file ending in {', '.join(DEPTH_SUFFIXES)}, or {NO_GT}",
            )
        jobs.append(
            FileJob(
                key=f"{line.number:06d}",
                id=rgb.rsplit(".", 1)[0],
                image=resolve(root, rgb),
                depth=None if depth == NO_GT else resolve(root, depth),
                focal=manual.focal_of(line, 0.0),
                origin=origin,
                depth_scale=cfg.depth_scale,
                max_depth=cfg.max_depth,
                crop=crop,
            )
        )
    return _unique_ids(jobs)


def _unique_ids(jobs: list[FileJob]) -> list[FileJob]:
    seen: set[str] = set()
    out = []
    for job in jobs:
        if job.id in seen:
            job = dataclasses.replace(job, id=f"{job.id}@{job.key}")
        seen.add(job.id)
        out.append(job)
    return out


def _image_size(path: str) -> tuple[int, int]:
    """(H, W) from the file's header (PIL reads no pixels here)."""
    with Image.open(io.BytesIO(storage.read_bytes(path))) as im:
        return im.height, im.width


def _depth_size(path: str) -> tuple[int, int]:
    """(H, W) of a depth file from its header; raises ValueError if it is not a depth map."""
    data = storage.read_bytes(path)
    if path.lower().endswith(".npy"):
        fp = io.BytesIO(data)
        version = np.lib.format.read_magic(fp)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(fp)
        if len(shape) != 2 or not np.issubdtype(dtype, np.floating):
            raise ValueError(f"a {dtype} array of shape {shape}, not a float (H, W) array")
        return int(shape[0]), int(shape[1])
    with Image.open(io.BytesIO(data)) as im:
        allowed = manual.DEPTH_PNG_MODES if path.lower().endswith(".png") else ("F",)
        if im.mode not in allowed:
            kind = "16-bit PNG" if allowed != ("F",) else "32-bit float TIFF"
            raise ValueError(f"PIL mode {im.mode!r}, not a single-channel {kind}")
        return im.height, im.width


def _check_job(job: FileJob) -> dict[str, Any]:
    """The problems of one line (missing / unreadable / mismatch) and its frame size."""
    out: dict[str, Any] = {"missing": [], "unreadable": [], "mismatch": None, "size": None}
    paths = [job.image] + ([job.depth] if job.depth else [])
    out["missing"] = [p for p in paths if not storage.isfile(p)]
    if out["missing"]:
        return out
    try:
        size = _image_size(job.image)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
        out["unreadable"].append(f"{job.image}: {e}")
        return out
    if job.depth:
        try:
            depth_size = _depth_size(job.depth)
        except Exception as e:
            out["unreadable"].append(f"{job.depth}: {e}")
            return out
        if depth_size != size:
            out["mismatch"] = (
                f"{job.image} is {size[0]}x{size[1]}, its depth {job.depth} is "
                f"{depth_size[0]}x{depth_size[1]}"
            )
            return out
    if job.crop is not None:
        top, left, h, w = job.crop
        if top + h > size[0] or left + w > size[1]:
            out["mismatch"] = (
                f"crop (top {top}, left {left}, {h}x{w}) does not fit {job.image} "
                f"({size[0]}x{size[1]})"
            )
            return out
        size = (h, w)
    out["size"] = size
    return out


def validate(jobs: dict[str, Sequence[FileJob]]) -> dict[str, dict]:
    """Check every line of every split; one DatasetError with all problems, or the summary.

    Returns {split: {"lines", "examples", "without_depth", "min_size", "max_size"}}.
    """
    problems: dict[str, list[str]] = {"missing": [], "unreadable": [], "mismatch": []}
    counts: dict[str, dict[str, int]] = {}
    summary: dict[str, dict] = {}
    all_jobs = [(split, job) for split, split_jobs in jobs.items() for job in split_jobs]
    results = manual.ordered_map(
        _check_job, [job for _, job in all_jobs], workers=manual.num_workers(len(all_jobs))
    )
    for (split, job), result in zip(all_jobs, results, strict=True):
        c = counts.setdefault(split, {"lines": 0, "bad": 0})
        c["lines"] += 1
        bad = False
        for path in result["missing"]:
            problems["missing"].append(f"{path}  ({job.origin})")
            bad = True
        for text in result["unreadable"]:
            problems["unreadable"].append(f"{text}  ({job.origin})")
            bad = True
        if result["mismatch"]:
            problems["mismatch"].append(f"{result['mismatch']}  ({job.origin})")
            bad = True
        c["bad"] += bad
        if not bad:
            s = summary.setdefault(split, {"examples": 0, "without_depth": 0, "sizes": set()})
            s["examples"] += 1
            s["without_depth"] += job.depth is None
            s["sizes"].add(result["size"])
    if any(problems.values()):
        raise CTX.error(_report(problems, counts), CTX.expected_depth, _FIX)
    out = {}
    for split, s in summary.items():
        heights, widths = zip(*s["sizes"], strict=True)
        out[split] = {
            "lines": counts[split]["lines"],
            "examples": s["examples"],
            "without_depth": s["without_depth"],
            "min_size": [min(heights), min(widths)],
            "max_size": [max(heights), max(widths)],
        }
    return out


_FIX = (
    "Nothing was written. Fix or remove these lines and build again (paths are relative to "
    "the manual dir unless absolute or gs://)."
)
_TITLES = {
    "missing": "missing files",
    "unreadable": "unreadable files",
    "mismatch": "RGB / depth size mismatches (or crops that do not fit)",
}


def _report(problems: dict[str, list[str]], counts: dict[str, dict[str, int]]) -> str:
    per_split = ", ".join(
        f"{split}: {c['bad']} of {c['lines']} lines with problems" for split, c in counts.items()
    )
    parts = [f"the file lists have problems ({per_split})."]
    for kind, items in problems.items():
        if not items:
            continue
        more = f"\n    ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
        listed = "\n".join(f"    {item}" for item in items[:_MAX_LISTED])
        parts.append(f"  {len(items)} {_TITLES[kind]}:\n{listed}{more}")
    return "\n".join(parts)


def load_depth(job: FileJob) -> np.ndarray:
    """float32 (H, W) metres, 0 where invalid (0, negative, non-finite, beyond max_depth)."""
    path = job.depth
    data = storage.read_bytes(path)
    try:
        if path.lower().endswith(".npy"):
            depth = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        elif path.lower().endswith(".png"):
            depth = manual.load_depth_png(path, job.depth_scale, job.origin, CTX)
        else:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                depth = np.asarray(im, dtype=np.float32)
    except base.DatasetError:
        raise
    except Exception as e:
        raise CTX.error(f"cannot decode {path} ({job.origin}): {e}.", CTX.expected_depth) from None
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(depth) | (depth <= 0)
        if job.max_depth > 0:
            invalid |= depth > job.max_depth
    return np.where(invalid, np.float32(0), depth).astype(np.float32)


def load_example(job: FileJob) -> dict[str, Any]:
    """Read one example (runs in worker processes): the element contract + `converted`."""
    image, size, converted = manual.load_image(job.image, job.origin, CTX)
    depth = np.zeros(size, np.float32) if job.depth is None else load_depth(job)
    if depth.shape != size:  # checked from the headers before; the pixels must agree
        raise CTX.error(
            f"{job.image} is {size[0]}x{size[1]} but its depth {job.depth} is "
            f"{depth.shape[0]}x{depth.shape[1]} ({job.origin}).",
            "image and depth of one line have the same size",
        )
    if job.crop is not None:
        top, left, h, w = job.crop
        with Image.open(io.BytesIO(image)) as im:
            rgb = np.asarray(im.convert("RGB"))[top : top + h, left : left + w]
        image, converted = base.encode_png(rgb), True
        depth = depth[top : top + h, left : left + w]
    return {
        "image": image,
        "depth": np.ascontiguousarray(depth),
        "focal": np.float32(job.focal),
        "id": job.id,
        "converted": converted and job.crop is None,
    }


def generate(jobs: Sequence[FileJob], split: str) -> Iterator[tuple[str, dict]]:
    """The (key, example) pairs of one split, decoded in worker processes, in list order."""
    converted = 0
    fn = load_example
    for job, ex in zip(
        jobs, manual.ordered_map(fn, jobs, workers=manual.num_workers(len(jobs))), strict=True
    ):
        converted += ex.pop("converted")
        yield job.key, ex
    if converted:
        manual.log.warning(
            "depth_files/%s: %d images were not RGB files and are stored converted to RGB "
            "(lossless PNG)",
            split,
            converted,
        )
