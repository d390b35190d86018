"""Find, build and open datasets by the names configs use ("synthetic_depth/indoor", ...).

`open_split(...)` returns a random-access data source (`len(src)`, `src[i]` -> dict of numpy
arrays following the element contract in dgr_jax/data/builders/base.py), building the dataset
first when it can build itself (synthetic) or when a manual dir with the user's files is given
(nyu_depth_v2_bts, kitti_depth_eigen; without one, the error says what to place where).

A `data_dir` on an object store (gs://) is read directly: the array_record reader TFDS uses
opens gs:// files itself (with the machine's Google credentials). It cannot write them, so a
dataset missing there is built into a local temporary folder and uploaded, `dataset_info.json`
last: TFDS takes that file as "prepared", so a reader never sees a half-uploaded dataset.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import tensorflow_datasets as tfds

from dgr_jax import storage
from dgr_jax.data import builders  # noqa: F401  (registers the builders)
from dgr_jax.data.builders.base import DatasetError
from dgr_jax.registry import DATASETS


class _QuietTfds(logging.Filter):
    """Drop TFDS notices that are noise for our builders (they hide training progress)."""

    NOISE = ("Using custom data configuration", "OpenCV is not installed")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(n in record.getMessage() for n in self.NOISE)


logging.getLogger("absl").addFilter(_QuietTfds())
if not sys.stdout.isatty():  # progress bars in a log file are only escape codes
    tfds.disable_progress_bar()


def parse_name(dataset: str) -> tuple[str, str | None]:
    """Split a dataset name: "synthetic_depth/indoor" -> ("synthetic_depth", "indoor").

    A name without a config ("nyu_depth_v2_bts") gives (name, None).
    """
    name, _, config = dataset.partition("/")
    return name, (config or None)


def get_builder(
    dataset: str,
    data_dir: str,
    *,
    manual_dir: str = "",
    build_args: Mapping[str, Any] | None = None,
) -> tfds.core.DatasetBuilder:
    """The (possibly not yet prepared) builder for `dataset` under `data_dir`."""
    name, config = parse_name(dataset)
    try:
        cls = DATASETS.get(name)
    except KeyError as e:
        raise DatasetError(str(e.args[0])) from None
    return cls.from_args(
        config, os.path.expanduser(data_dir), manual_dir=manual_dir, **dict(build_args or {})
    )


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return (builder.data_path / "dataset_info.json").exists()


def ensure_built(
    dataset: str,
    data_dir: str,
    *,
    manual_dir: str = "",
    build_args: Mapping[str, Any] | None = None,
) -> tfds.core.DatasetBuilder:
    """Build `dataset` into `data_dir` unless it is there already; return the builder."""
    builder = get_builder(dataset, data_dir, manual_dir=manual_dir, build_args=build_args)
    if not is_prepared(builder):
        # Builders made from the user's files check the manual dir first, so a missing one
        # gives instructions (what goes where, the command, where to get the data).
        check_manual_dir = getattr(builder, "check_manual_dir", None)
        if check_manual_dir is not None:
            check_manual_dir(manual_dir, os.path.expanduser(data_dir))
        download_config = tfds.download.DownloadConfig(
            manual_dir=os.path.expanduser(manual_dir) if manual_dir else None
        )
        if storage.is_remote(data_dir):
            _build_and_upload(dataset, data_dir, manual_dir, build_args, download_config)
            return get_builder(dataset, data_dir, manual_dir=manual_dir, build_args=build_args)
        builder.download_and_prepare(download_config=download_config, file_format="array_record")
    return builder


def _build_and_upload(dataset, data_dir, manual_dir, build_args, download_config) -> None:
    """Build into a local temporary folder (under $TMPDIR), copy it to `data_dir`, delete it."""
    with tempfile.TemporaryDirectory(prefix="dgr_jax_tfds_") as local:
        staged = get_builder(dataset, local, manual_dir=manual_dir, build_args=build_args)
        staged.download_and_prepare(download_config=download_config, file_format="array_record")
        relative = os.path.relpath(os.fspath(staged.data_path), local)  # name/config/version
        target = storage.join(data_dir, relative)
        count = storage.copy_tree(staged.data_path, target, last=("dataset_info.json",))
        logging.getLogger("dgr_jax.data").info(
            "%s: built locally, uploaded %d files to %s", dataset, count, target
        )


def open_split(
    dataset: str,
    split: str,
    data_dir: str,
    *,
    manual_dir: str = "",
    build_args: Mapping[str, Any] | None = None,
):
    """Random-access source of one split, building the dataset first if needed."""
    builder = ensure_built(dataset, data_dir, manual_dir=manual_dir, build_args=build_args)
    if split not in builder.info.splits:
        raise DatasetError(f"{dataset} has splits {sorted(builder.info.splits)}, not {split!r}")
    return builder.as_data_source(split=split)
