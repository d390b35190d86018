"""What the manual-dir builders share: split lists, file checks, decoding, errors, workers.

The real datasets (`nyu_depth_v2_bts`, `kitti_depth_eigen`) are built from files the user
already has, in the folder layout and split-list format of the PyTorch hosts (BTS, NeWCRFs,
PixelFormer: lines "<rgb> <depth or None> [focal]"); nothing is downloaded. This module is ours.
It reads the lists, checks every referenced file before the long build starts, decodes every
image and 16-bit depth PNG once with PIL (as the hosts' loaders do) so that a corrupt file fails
the build with its name, and turns each problem with the user's files into a short
`DatasetError` that names the file and the list line, says what is expected where, and where
the data and the lists come from.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import io
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from dgr_jax import storage
from dgr_jax.data.builders.base import DatasetError, encode_png
from dgr_jax.storage import Path  # epath: the user's files may be local or on gs://

log = logging.getLogger("dgr_jax.data")

# PIL modes of a single-channel 16-bit PNG (Pillow opens them as I;16; older releases as I).
DEPTH_PNG_MODES = ("I;16", "I;16B", "I;16L", "I")
# Missing files listed in one error message (the total is always given).
_MAX_LISTED = 5


@dataclasses.dataclass(frozen=True)
class ListLine:
    """One non-empty line of a split list: its 1-based number and its columns."""

    number: int
    columns: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Context:
    """What error messages say about a dataset: its name, the expected files, the sources."""

    dataset: str
    expected_image: str  # e.g. "an RGB JPEG of the BTS sync set"
    expected_depth: str  # e.g. "a 16-bit PNG, depth in mm (metres x 1000), 0 = invalid"
    sources: str  # where users get the data and the split lists

    def error(self, problem: str, expected: str, hint: str = "") -> DatasetError:
        """A DatasetError: what is wrong, what is expected where, where the data comes from."""
        hint = f"\n  {hint}" if hint else ""
        return DatasetError(
            f"{self.dataset}: {problem}\n  Expected: {expected}\n  {self.sources}{hint}"
        )


@dataclasses.dataclass(frozen=True)
class Job:
    """One example to build: the files to read and where in which list they were named."""

    key: str  # unique within the split (the list line number)
    id: str
    image: str
    depth: str
    focal: float
    origin: str  # "line 12 of M/splits/x.txt", for error messages
    depth_scale: float  # metres = png / depth_scale


def read_split_list(path: Path, ctx: Context, expected: str) -> list[ListLine]:
    """The non-empty lines of a split list, or a DatasetError saying where it should be."""
    if not path.is_file():
        raise ctx.error(f"split list {path} not found.", expected)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ctx.error(f"cannot read split list {path} ({e}).", expected) from None
    lines = [
        ListLine(number, tuple(row.split()))
        for number, row in enumerate(text.splitlines(), start=1)
        if row.strip() and not row.lstrip().startswith("#")
    ]
    if not lines:
        raise ctx.error(f"split list {path} is empty.", expected)
    for line in lines:
        if len(line.columns) < 2:
            raise ctx.error(
                f"line {line.number} of {path} has {len(line.columns)} column(s): "
                f"{' '.join(line.columns)!r}.",
                "lines '<rgb path> <depth path or None> [focal]' separated by spaces",
            )
    return lines


def focal_of(line: ListLine, default: float) -> float:
    """The third column as a focal length; `default` when absent or a path (NeWCRFs' dense list)."""
    if len(line.columns) < 3:
        return default
    try:
        return float(line.columns[2])
    except ValueError:
        return default


def drop_missing(
    jobs: Sequence[Job], ctx: Context, *, list_path: Path, expected: str, skip_missing: bool
) -> list[Job]:
    """Check that every image and depth file of `jobs` exists.

    Missing files are an error naming them and their lines, unless `skip_missing`, in which case
    their lines are left out and counted in the log.
    """
    missing = [
        (job, path) for job in jobs for path in (job.image, job.depth) if not storage.isfile(path)
    ]
    if not missing:
        return list(jobs)
    bad = {job.key for job, _ in missing}
    if skip_missing:
        log.warning(
            "%s: %d of %d lines of %s name missing files and are left out (--skip_missing); "
            "first: %s (%s)",
            ctx.dataset,
            len(bad),
            len(jobs),
            list_path,
            missing[0][1],
            missing[0][0].origin,
        )
        return [job for job in jobs if job.key not in bad]
    listed = "\n".join(f"    {path}  ({job.origin})" for job, path in missing[:_MAX_LISTED])
    more = f"\n    ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    raise ctx.error(
        f"{len(missing)} file(s) named in {list_path} do not exist ({len(bad)} of "
        f"{len(jobs)} lines):\n{listed}{more}",
        expected,
        "To build without these lines, pass --skip_missing (they are counted in the log).",
    )


def load_image(path: str, origin: str, ctx: Context) -> tuple[bytes, tuple[int, int], bool]:
    """(encoded bytes, (H, W), converted) of an RGB image file, fully decoded once to check it.

    The file's own bytes are kept (no re-encoding), so decoding the stored record gives exactly
    the pixels PIL gives for the file. A non-RGB file (grayscale, palette, RGBA) is converted to
    RGB and stored as a lossless PNG instead (`converted` is True).
    """
    try:
        data = storage.read_bytes(path)
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # full decode: truncated or corrupt files fail here
            if im.mode == "RGB":
                return data, (im.height, im.width), False
            rgb = np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
        raise ctx.error(
            f"cannot decode {path} ({origin}): {e}. The file is corrupt or not an image; "
            "restore it from your download.",
            ctx.expected_image,
        ) from None
    return encode_png(rgb), rgb.shape[:2], True


def load_depth_png(path: str, scale: float, origin: str, ctx: Context) -> np.ndarray:
    """A 16-bit depth PNG as float32 metres: png / scale, 0 = invalid (as the hosts' loaders)."""
    try:
        with Image.open(io.BytesIO(storage.read_bytes(path))) as im:
            im.load()
            mode = im.mode
            png = np.asarray(im) if mode in DEPTH_PNG_MODES else None
    except Exception as e:
        raise ctx.error(
            f"cannot decode {path} ({origin}): {e}. The file is corrupt or not a PNG; "
            "restore it from your download.",
            ctx.expected_depth,
        ) from None
    if png is None:
        raise ctx.error(
            f"{path} ({origin}) is a PIL mode {mode!r} image, not a single-channel 16-bit PNG; "
            "is the list's depth column pointing at the right files?",
            ctx.expected_depth,
        )
    # float32 / float32, as `np.asarray(png, np.float32) / 1000.0` in BTS/NeWCRFs.
    return png.astype(np.float32) / np.float32(scale)


def load_example(job: Job, ctx: Context) -> dict[str, Any]:
    """Read and check one example (runs in worker processes); element contract + `converted`."""
    image, size, converted = load_image(job.image, job.origin, ctx)
    depth = load_depth_png(job.depth, job.depth_scale, job.origin, ctx)
    if depth.shape != size:
        raise ctx.error(
            f"{job.image} is {size[0]}x{size[1]} but its depth {job.depth} is "
            f"{depth.shape[0]}x{depth.shape[1]} ({job.origin}).",
            "image and depth of one line have the same size (both at full resolution)",
        )
    return {
        "image": image,
        "depth": depth,
        "focal": np.float32(job.focal),
        "id": job.id,
        "converted": converted,
    }


def ordered_map(
    fn: Callable[[Any], Any], jobs: Iterable[Any], *, workers: int, window: int = 0
) -> Iterator[Any]:
    """`map(fn, jobs)` over worker processes, in order, with at most `window` results pending.

    `ProcessPoolExecutor.map` submits every job at once and keeps every finished result until it
    is consumed, which for 36k NYU frames would hold tens of GB; this keeps memory bounded.
    """
    if workers <= 1:
        yield from map(fn, jobs)
        return
    window = window or 4 * workers
    # spawn, not fork: the caller may be a multi-threaded JAX process.
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        it = iter(jobs)
        pending = collections.deque(pool.submit(fn, job) for job in itertools.islice(it, window))
        while pending:
            result = pending.popleft().result()
            for job in itertools.islice(it, 1):
                pending.append(pool.submit(fn, job))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def num_workers(count: int) -> int:
    """Worker processes for `count` examples: none for small builds (tests), else all cores."""
    return 1 if count < 256 else max(1, os.cpu_count() or 1)


def generate(jobs: Sequence[Job], ctx: Context, split: str) -> Iterator[tuple[str, dict]]:
    """The (key, example) pairs of one split, decoded in worker processes, in list order."""
    converted = 0
    fn = functools.partial(load_example, ctx=ctx)
    results = ordered_map(fn, jobs, workers=num_workers(len(jobs)))
    for job, ex in zip(jobs, results, strict=True):
        converted += ex.pop("converted")
        yield job.key, ex
    if converted:
        log.warning(
            "%s/%s: %d images were not RGB files and are stored converted to RGB (lossless PNG)",
            ctx.dataset,
            split,
            converted,
        )


def unique_ids(jobs: list[Job]) -> list[Job]:
    """Give repeated list entries distinct ids ("<id>@<line>"); the contract wants unique ids."""
    seen: set[str] = set()
    out = []
    for job in jobs:
        if job.id in seen:
            job = dataclasses.replace(job, id=f"{job.id}@{job.key}")
        seen.add(job.id)
        out.append(job)
    return out


def check_count(
    dataset: str, what: str, got: int, expected: Sequence[int], unit: str = "examples"
) -> None:
    """Warn (never fail) when a split's size differs from the standard copies'."""
    if got in expected:
        log.info("%s: %s has %d %s, as the standard copy", dataset, what, got, unit)
        return
    standard = " or ".join(f"{n:,}" for n in expected)
    log.warning(
        "%s: %s has %d %s; the standard copies have %s. Results will not be comparable with "
        "published numbers unless your split lists and files are complete (docs/datasets.md).",
        dataset,
        what,
        got,
        unit,
        standard,
    )


class ManualDirBuilder:
    """Mixin for TFDS builders built from the user's files; `datasets.ensure_built` calls
    `check_manual_dir` before building, so a missing manual dir gives instructions, not a
    traceback. Subclasses set LAYOUT (the expected files, as text) and SOURCES."""

    LAYOUT = ""
    SOURCES = ""

    def dataset_name(self) -> str:
        configs = getattr(self, "BUILDER_CONFIGS", None)
        if configs and self.builder_config.name != configs[0].name:
            return f"{self.name}/{self.builder_config.name}"
        return self.name

    def instructions(self, data_dir: str) -> str:
        name = self.dataset_name()
        return (
            f"Place your files like this (M is any folder; nothing is downloaded):\n{self.LAYOUT}"
            f"Then build:\n  python -m dgr_jax.data.build {name} --manual_dir M --data_dir "
            f"{data_dir or 'D'}\n(or set config.input.manual_dir=M and the trainer builds it on "
            f"first use).\n{self.SOURCES}"
        )

    def check_manual_dir(self, manual_dir: str, data_dir: str) -> None:
        """Raise a DatasetError with instructions unless `manual_dir` is a non-empty folder."""
        name = self.dataset_name()
        if not manual_dir:
            raise DatasetError(
                f"{name} is not built in {data_dir} and no manual dir was given.\n"
                + self.instructions(data_dir)
            )
        path = storage.path(manual_dir)
        if not path.is_dir() or not any(path.iterdir()):
            state = "is empty" if path.is_dir() else "does not exist"
            raise DatasetError(
                f"{name}: the manual dir {path} {state}.\n" + self.instructions(data_dir)
            )
