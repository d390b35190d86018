"""TFDS builder `kitti_depth_eigen`: KITTI Eigen split from the files BTS / NeWCRFs users have.

    python -m dgr_jax.data.build kitti_depth_eigen --manual_dir M --data_dir D

The manual dir holds KITTI raw (synced + rectified), the official annotated depth maps and the
Eigen split lists (`LAYOUT` below, docs/datasets.md); nothing is downloaded.

[BTS, NeWCRFs] List lines are "<date>/<drive>/image_02/data/<frame>.png
<drive>/proj_depth/groundtruth/image_02/<frame>.png <focal>", or "... None <focal>" where KITTI
has no annotated depth (45 of the 697 test lines, which evaluation skips: 652 are evaluated).
Depth = PNG / 256 metres, 0 = invalid (sparse, projected and accumulated LiDAR).
[ours] Images are stored at full resolution as their original PNG bytes; the KB crop
(352x1216) is a pipeline/evaluator op, never applied here. Lines without ground truth are left
out and counted in the log. The annotated depth of a drive is found directly under
data_depth_annotated/ (BTS users merge train/ and val/ there), under its train/ or val/ folder
(the official zip), or under a <date>/ folder. Every file is decoded once during the build.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from dgr_jax import protocol
from dgr_jax.data.builders import base, manual
from dgr_jax.registry import DATASETS
from dgr_jax.storage import Path  # epath: the manual dir may be local or gs://

TRAIN_LIST = "eigen_train_files_with_gt.txt"
TEST_LIST = "eigen_test_files_with_gt.txt"
GT_DIR = "data_depth_annotated"
RAW_DIR = "raw"
NO_GT = "None"  # the depth column of lines without ground truth

LAYOUT = f"""\
  M/{RAW_DIR}/<date>/<date>_drive_<nnnn>_sync/image_02/data/<frame>.png
      KITTI raw, synced + rectified (M/<date>/... without {RAW_DIR}/, as in BTS's
      kitti_dataset folder, works too)
  M/{GT_DIR}/[train/|val/]<date>_drive_<nnnn>_sync/proj_depth/groundtruth/image_02/<frame>.png
      KITTI's annotated depth maps (data_depth_annotated.zip, unzipped)
  M/splits/{TRAIN_LIST}
      {protocol.KITTI_EIGEN_TRAIN_COUNT:,} lines "<date>/<drive>/image_02/data/<frame>.png \
<drive>/proj_depth/groundtruth/image_02/<frame>.png <focal>"
  M/splits/{TEST_LIST}
      {protocol.KITTI_EIGEN_TEST_LINES} lines, {protocol.KITTI_EIGEN_TEST_WITH_GT} with \
ground truth (the others have "{NO_GT}" as depth)
"""
SOURCES = (
    "Where to get them: the raw data (synced+rectified drives) and data_depth_annotated.zip "
    "from the KITTI website (cvlibs.net, 'raw data' and 'depth prediction' pages; BTS's "
    "utils/kitti_archives_to_download.txt lists the raw archives); the split lists from BTS's "
    "train_test_inputs/ (github.com/cleinc/bts) or NeWCRFs' data_splits/ "
    "(github.com/aliyun/NeWCRFs). More: docs/datasets.md."
)
CTX = manual.Context(
    dataset="kitti_depth_eigen",
    expected_image=f"an RGB PNG of KITTI raw at "
    f"M/{RAW_DIR}/<date>/<drive>/image_02/data/<frame>.png",
    expected_depth=f"a single-channel 16-bit PNG, depth x {protocol.KITTI_DEPTH_PNG_SCALE:g} "
    "(0 = invalid), at "
    f"M/{GT_DIR}/[train/|val/]<drive>/proj_depth/groundtruth/image_02/<frame>.png",
    sources=SOURCES,
)


@DATASETS.register("kitti_depth_eigen")
class KittiDepthEigen(manual.ManualDirBuilder, tfds.core.GeneratorBasedBuilder):
    """KITTI Eigen split with KITTI's annotated depth, full-resolution frames."""

    VERSION = tfds.core.Version(base.VERSION)
    RELEASE_NOTES = {base.VERSION: "Initial release."}
    LAYOUT = LAYOUT
    SOURCES = SOURCES
    MANUAL_DOWNLOAD_INSTRUCTIONS = LAYOUT + SOURCES
    skip_missing = False  # leave out list lines whose files are missing (counted in the log)

    @classmethod
    def from_args(
        cls,
        config_name: str | None,
        data_dir: str,
        *,
        manual_dir: str = "",
        skip_missing: bool = False,
        **unused,
    ) -> KittiDepthEigen:
        """The builder for `kitti_depth_eigen` under `data_dir`."""
        if config_name:
            raise base.DatasetError(
                f"kitti_depth_eigen has no configs, not {config_name!r}: use kitti_depth_eigen"
            )
        builder = cls(data_dir=data_dir, file_format="array_record")
        builder.skip_missing = bool(skip_missing)
        return builder

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "KITTI Eigen split: full-resolution RGB (original PNG bytes) and KITTI's "
                "annotated depth in metres (PNG / 256, 0 = invalid); lines without ground "
                "truth are left out."
            ),
            features=base.depth_features("png"),
            metadata=tfds.core.MetadataDict(depth_png_scale=protocol.KITTI_DEPTH_PNG_SCALE),
        )

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        image_root = root / RAW_DIR if (root / RAW_DIR).is_dir() else root
        gt_root = root / GT_DIR
        if not gt_root.is_dir():
            raise CTX.error(f"{gt_root} does not exist.", CTX.expected_depth)
        drives = find_drives(gt_root)
        train, _ = self._list_jobs(root, TRAIN_LIST, image_root, gt_root, drives)
        test, lines = self._list_jobs(root, TEST_LIST, image_root, gt_root, drives)
        name = self.dataset_name()
        manual.check_count(name, "train", len(train), (protocol.KITTI_EIGEN_TRAIN_COUNT,))
        manual.check_count(
            name, "the test list", lines, (protocol.KITTI_EIGEN_TEST_LINES,), unit="lines"
        )
        manual.check_count(name, "test", len(test), (protocol.KITTI_EIGEN_TEST_WITH_GT,))
        return {
            "train": self._generate_examples(manual.generate(train, CTX, "train")),
            "test": self._generate_examples(manual.generate(test, CTX, "test")),
        }

    def _generate_examples(self, examples):
        """The (key, example) pairs that `_split_generators` set up after checking the files."""
        yield from examples

    def _list_jobs(
        self, root: Path, list_name: str, image_root: Path, gt_root: Path, drives: dict
    ) -> tuple[list[manual.Job], int]:
        """(jobs of the lines with ground truth, number of lines) of one split list."""
        list_path = root / "splits" / list_name
        lines = manual.read_split_list(
            list_path,
            CTX,
            f"the split list {list_path}: lines '<rgb> <depth or {NO_GT}> <focal>', rgb "
            f"relative to {image_root}/, depth relative to {gt_root}/[train/|val/]",
        )
        jobs = []
        for line in lines:
            rgb, depth = line.columns[:2]
            if depth == NO_GT:
                continue
            drive = depth.split("/", 1)[0]
            jobs.append(
                manual.Job(
                    key=f"{line.number:06d}",
                    id=rgb.rsplit(".", 1)[0],
                    image=str(image_root / rgb),
                    depth=str(drives.get(drive, gt_root) / depth),
                    focal=manual.focal_of(line, protocol.KITTI_FOCAL),
                    origin=f"line {line.number} of {list_path}",
                    depth_scale=protocol.KITTI_DEPTH_PNG_SCALE,
                )
            )
        if len(jobs) < len(lines):
            manual.log.info(
                "%s: %d of %d lines of %s have no ground truth (%r) and are left out",
                CTX.dataset,
                len(lines) - len(jobs),
                len(lines),
                list_path.name,
                NO_GT,
            )
        jobs = manual.drop_missing(
            jobs,
            CTX,
            list_path=list_path,
            expected=f"the raw image under {image_root}/ and the annotated depth under "
            f"{gt_root}/[train/|val/] for each line",
            skip_missing=self.skip_missing,
        )
        return manual.unique_ids(jobs), len(lines)


def find_drives(gt_root: Path) -> dict[str, Path]:
    """Drive folder name -> the folder holding it, for drives up to one level below `gt_root`.

    A drive is a folder with a `proj_depth` subfolder; it may sit in `gt_root` itself or in any
    subfolder of it (train/, val/, <date>/).
    """
    drives: dict[str, Path] = {}
    for d in sorted(p for p in gt_root.iterdir() if p.is_dir()):
        if (d / "proj_depth").is_dir():
            drives.setdefault(d.name, gt_root)
            continue
        for sub in sorted(p for p in d.iterdir() if p.is_dir()):
            if (sub / "proj_depth").is_dir():
                drives.setdefault(sub.name, d)
    return drives
