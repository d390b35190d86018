"""TFDS builder `synthetic_depth`: procedural indoor / outdoor scenes (dgr_jax/data/synthetic.py).

    python -m dgr_jax.data.build synthetic_depth/indoor --data_dir DIR \
        --num_train 2000 --num_test 200 --seed 0 [--height 240 --width 320]

Builder configs `indoor` (NYU-like, dense depth <= 10 m) and `outdoor` (KITTI-like, sparse
LiDAR-like depth <= 80 m). The build arguments are part of the on-disk config name
(e.g. `indoor_240x320_n2000_t200_s0`), so builds with different arguments live side by side and
a data dir never silently holds a different build than the config asks for. Train and test
examples come from disjoint index ranges of the same deterministic generator, and rendering is
spread over worker processes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os

import tensorflow_datasets as tfds

from dgr_jax.data import synthetic
from dgr_jax.data.builders import base
from dgr_jax.registry import DATASETS

# Test examples are rendered from indices TEST_OFFSET + i, disjoint from the training indices.
TEST_OFFSET = 10_000_000


@dataclasses.dataclass(eq=False)
class SyntheticDepthConfig(tfds.core.BuilderConfig):
    kind: str = "indoor"
    num_train: int = 2000
    num_test: int = 200
    seed: int = 0
    height: int = 0  # 0: the kind's default size
    width: int = 0


def _render_encoded(args: tuple[str, int, int, int, int]) -> dict:
    kind, seed, index, height, width = args
    ex = synthetic.render_example(kind, seed, index, height, width)
    ex["image"] = base.encode_png(ex["image"])
    return ex


@DATASETS.register("synthetic_depth")
class SyntheticDepth(tfds.core.GeneratorBasedBuilder):
    """Procedurally rendered RGB-D scenes; see dgr_jax/data/synthetic.py."""

    VERSION = tfds.core.Version(base.VERSION)
    RELEASE_NOTES = {base.VERSION: "Initial release."}
    BUILDER_CONFIGS = [
        SyntheticDepthConfig(name="indoor", kind="indoor"),
        SyntheticDepthConfig(name="outdoor", kind="outdoor"),
    ]

    @classmethod
    def from_args(
        cls,
        config_name: str | None,
        data_dir: str,
        *,
        num_train: int = 2000,
        num_test: int = 200,
        seed: int = 0,
        height: int = 0,
        width: int = 0,
        **unused,
    ) -> SyntheticDepth:
        """The builder for `synthetic_depth/<kind>` with the given build arguments."""
        kind = config_name or "indoor"
        if kind not in synthetic.KINDS:
            raise base.DatasetError(
                f"synthetic_depth has configs {synthetic.KINDS}, not {kind!r}: "
                "use e.g. synthetic_depth/indoor"
            )
        h, w = height or synthetic.DEFAULT_SIZE[kind][0], width or synthetic.DEFAULT_SIZE[kind][1]
        config = SyntheticDepthConfig(
            name=f"{kind}_{h}x{w}_n{num_train}_t{num_test}_s{seed}",
            version=base.VERSION,
            description=f"synthetic {kind} scenes, {h}x{w}",
            kind=kind,
            num_train=num_train,
            num_test=num_test,
            seed=seed,
            height=h,
            width=w,
        )
        return cls(config=config, data_dir=data_dir, file_format="array_record")

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="Procedural indoor (NYU-like) / outdoor (KITTI-like) RGB-D scenes.",
            features=base.depth_features("png"),
            metadata=tfds.core.MetadataDict(
                kind=cfg.kind,
                num_train=cfg.num_train,
                num_test=cfg.num_test,
                seed=cfg.seed,
                height=cfg.height,
                width=cfg.width,
            ),
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        return {
            "train": self._generate_examples(0, cfg.num_train),
            "test": self._generate_examples(TEST_OFFSET, cfg.num_test),
        }

    def _generate_examples(self, offset: int, count: int):
        cfg = self.builder_config
        jobs = [(cfg.kind, cfg.seed, offset + i, cfg.height, cfg.width) for i in range(count)]
        workers = min(os.cpu_count() or 1, max(1, count // 8))
        if workers <= 1:
            results = map(_render_encoded, jobs)
            for ex in results:
                yield ex["id"], ex
            return
        # spawn, not fork: the caller may be a multi-threaded JAX process.
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for ex in pool.map(_render_encoded, jobs, chunksize=4):
                yield ex["id"], ex
