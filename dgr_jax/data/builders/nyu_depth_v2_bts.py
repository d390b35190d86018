"""TFDS builder `nyu_depth_v2_bts`: NYU-Depth-v2 from the files BTS / NeWCRFs users already have.

    python -m dgr_jax.data.build nyu_depth_v2_bts --manual_dir M --data_dir D
    python -m dgr_jax.data.build nyu_depth_v2_bts/dense --manual_dir M --data_dir D

Configs: `bts` (default; BTS's training list, 24,231 frames) and `dense` (the list NeWCRFs and
PixelFormer train on, 36,253 frames). Both have the same test split, the official 654 images.
The manual dir is BTS's `dataset/nyu_depth_v2/` folder plus the split lists (`LAYOUT` below,
docs/datasets.md); nothing is downloaded.

[BTS, NeWCRFs] List lines are "<rgb> <depth> <focal>", relative to M/sync/ (training, with a
leading "/") and M/official_splits/test/; depth = PNG / 1000 metres, 0 = invalid; focal from the
line. NeWCRFs' dense list has a dense-depth path as third column, which its loader ignores
(it reads the second column and a fixed focal); so do we.
[BTS] Without official_splits/, the test split is extracted from the official
nyu_depth_v2_labeled.mat + splits.mat as BTS's script does (see nyu_mat.py).
[ours] The RGB is stored as the original JPEG bytes, so decoding a record gives exactly the
pixels PIL gives PyTorch users for the file; depth as float32 metres. Every file is decoded once
during the build (a corrupt one fails it with its name and list line), in worker processes
for large lists, streaming (memory stays bounded). Split sizes that differ from the standard
copies are warned about, not refused.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from dgr_jax import protocol
from dgr_jax.data.builders import base, manual, nyu_mat
from dgr_jax.registry import DATASETS
from dgr_jax.storage import Path  # epath: the manual dir may be local or gs://

TRAIN_LIST = "nyudepthv2_train_files_with_gt.txt"
TRAIN_LIST_DENSE = "nyudepthv2_train_files_with_gt_dense.txt"
TEST_LIST = "nyudepthv2_test_files_with_gt.txt"

LAYOUT = f"""\
  M/sync/<scene>/rgb_<id>.jpg, M/sync/<scene>/sync_depth_<id>.png
      the training frames (BTS's sync.zip, unzipped)
  M/official_splits/test/<scene>/rgb_<id>.jpg, .../sync_depth_<id>.png
      the {protocol.NYU_TEST_COUNT} official test images (BTS's extraction of the labelled .mat)
  M/splits/{TRAIN_LIST}
      BTS training list, {protocol.NYU_TRAIN_COUNT_BTS:,} lines "/<scene>/rgb_<id>.jpg \
/<scene>/sync_depth_<id>.png {protocol.NYU_FOCAL}"
  M/splits/{TRAIN_LIST_DENSE}
      only for nyu_depth_v2_bts/dense: NeWCRFs/PixelFormer list, \
{protocol.NYU_TRAIN_COUNT_DENSE:,} lines
  M/splits/{TEST_LIST}
      test list, {protocol.NYU_TEST_COUNT} lines "<scene>/rgb_<id>.jpg <scene>/sync_depth_<id>.png \
{protocol.NYU_FOCAL}"
  Instead of official_splits/ and the test list, the official M/{nyu_mat.MAT_FILE} +
  M/{nyu_mat.SPLITS_FILE} also work (the .mat is HDF5: needs `pip install h5py`).
"""
SOURCES = (
    "Where to get them: sync.zip and the official_splits/ test set as the BTS README says "
    "(github.com/cleinc/bts, pytorch/README.md 'Preparation for Training' and the root README's "
    "NYU test-set steps); nyu_depth_v2_labeled.mat and splits.mat from the NYU-Depth-v2 "
    "website; the split lists from BTS's train_test_inputs/ or NeWCRFs' data_splits/ "
    "(github.com/aliyun/NeWCRFs). More: docs/datasets.md."
)
CTX = manual.Context(
    dataset="nyu_depth_v2_bts",
    expected_image="an RGB JPEG of the BTS layout (M/sync/<scene>/rgb_<id>.jpg for training, "
    "M/official_splits/test/<scene>/rgb_<id>.jpg for test)",
    expected_depth="a single-channel 16-bit PNG, depth in millimetres (0 = invalid), e.g. "
    "M/sync/<scene>/sync_depth_<id>.png",
    sources=SOURCES,
)


@dataclasses.dataclass(eq=False)
class NyuConfig(tfds.core.BuilderConfig):
    train_list: str = TRAIN_LIST


@DATASETS.register("nyu_depth_v2_bts")
class NyuDepthV2Bts(manual.ManualDirBuilder, tfds.core.GeneratorBasedBuilder):
    """NYU-Depth-v2, BTS sync training frames and the official 654 test images."""

    VERSION = tfds.core.Version(base.VERSION)
    RELEASE_NOTES = {base.VERSION: "Initial release."}
    BUILDER_CONFIGS = [
        NyuConfig(name="bts", description="BTS training list", train_list=TRAIN_LIST),
        NyuConfig(
            name="dense", description="NeWCRFs/PixelFormer list", train_list=TRAIN_LIST_DENSE
        ),
    ]
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
    ) -> NyuDepthV2Bts:
        """The builder for `nyu_depth_v2_bts[/bts|/dense]` under `data_dir`."""
        names = [c.name for c in cls.BUILDER_CONFIGS]
        name = config_name or names[0]
        if name not in names:
            raise base.DatasetError(
                f"nyu_depth_v2_bts has configs {names}, not {name!r}: use nyu_depth_v2_bts "
                "(BTS list) or nyu_depth_v2_bts/dense (NeWCRFs list)"
            )
        builder = cls(config=name, data_dir=data_dir, file_format="array_record")
        builder.skip_missing = bool(skip_missing)
        return builder

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "NYU-Depth-v2 in the BTS layout: RGB (original JPEG bytes), raw Kinect depth "
                "in metres (PNG / 1000, 0 = invalid), focal from the split list."
            ),
            features=base.depth_features("jpeg"),
            metadata=tfds.core.MetadataDict(
                train_list=self.builder_config.train_list,
                depth_png_scale=protocol.NYU_DEPTH_PNG_SCALE,
            ),
        )

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        train = self._list_jobs(root, self.builder_config.train_list, root / "sync", "train")
        manual.check_count(
            self.dataset_name(),
            "train",
            len(train),
            (protocol.NYU_TRAIN_COUNT_BTS, protocol.NYU_TRAIN_COUNT_DENSE),
        )
        if (root / "splits" / TEST_LIST).is_file() or not (root / nyu_mat.MAT_FILE).is_file():
            test = self._list_jobs(root, TEST_LIST, root / "official_splits" / "test", "test")
            manual.check_count(self.dataset_name(), "test", len(test), (protocol.NYU_TEST_COUNT,))
            test_gen = manual.generate(test, CTX, "test")
            self.info.metadata["test_source"] = f"splits/{TEST_LIST} + official_splits/test"
        else:
            test_gen = self._mat_test(root)
            self.info.metadata["test_source"] = f"{nyu_mat.MAT_FILE} + {nyu_mat.SPLITS_FILE}"
        return {
            "train": self._generate_examples(manual.generate(train, CTX, "train")),
            "test": self._generate_examples(test_gen),
        }

    def _generate_examples(self, examples):
        """The (key, example) pairs that `_split_generators` set up after checking the files."""
        yield from examples

    def _list_jobs(self, root: Path, list_name: str, base_dir: Path, split: str):
        list_path = root / "splits" / list_name
        expected = f"the {split} list {list_path}: lines '<rgb> <depth> [focal]' relative to "
        expected += f"{base_dir}/"
        if split == "test":
            expected += (
                f" (or instead the official {nyu_mat.MAT_FILE} + {nyu_mat.SPLITS_FILE} in {root}/)"
            )
        lines = manual.read_split_list(list_path, CTX, expected)
        jobs = []
        for line in lines:
            rgb, depth = (c.lstrip("/") for c in line.columns[:2])
            jobs.append(
                manual.Job(
                    key=f"{line.number:06d}",
                    id=rgb.rsplit(".", 1)[0],
                    image=str(base_dir / rgb),
                    depth=str(base_dir / depth),
                    focal=manual.focal_of(line, protocol.NYU_FOCAL),
                    origin=f"line {line.number} of {list_path}",
                    depth_scale=protocol.NYU_DEPTH_PNG_SCALE,
                )
            )
        jobs = manual.drop_missing(
            jobs,
            CTX,
            list_path=list_path,
            expected=f"the files of each {list_name} line under {base_dir}/ (BTS layout)",
            skip_missing=self.skip_missing,
        )
        return manual.unique_ids(jobs)

    def _mat_test(self, root: Path):
        """Check the .mat source now (not after the train split) and return its generator."""
        splits = root / nyu_mat.SPLITS_FILE
        if not splits.is_file():
            raise CTX.error(
                f"{root / nyu_mat.MAT_FILE} is there but {splits} is not.",
                f"the official {nyu_mat.SPLITS_FILE} (testNdxs) next to {nyu_mat.MAT_FILE}, or "
                f"M/splits/{TEST_LIST} with M/official_splits/test/",
            )
        count = len(nyu_mat.official_test_indices(splits, CTX.dataset))
        manual.check_count(self.dataset_name(), "test", count, (protocol.NYU_TEST_COUNT,))
        nyu_mat.check_readable(root / nyu_mat.MAT_FILE, CTX.dataset)
        return nyu_mat.iter_test_examples(root, CTX.dataset)
