"""The standard depth evaluator: the BTS-family protocol, jit-compiled and sharded.

Protocol (the PyTorch hosts', NeWCRFs `newcrfs/eval.py` and BTS `utils/eval_with_pngs.py`;
constants in `dgr_jax/protocol.py`, method.md section 5):
1. Optional KITTI KB crop of image and ground truth to 352x1216 (`kb_crop`). With
   crop="garg_full_res" only the image is cropped; the prediction is pasted back into a zero map
   of the full frame at the KB offsets and the Garg crop is taken on the full-resolution GT (BTS).
2. ImageNet normalisation. The model sees the evaluation frame (`frame.py`): the image as
   read (480x640, 352x1216: the hosts' eval dataloaders never resize), or `input_size` when a
   config sets one; a frame that is not a multiple of the model's stride is resized to the
   nearest multiple or zero-padded, as `fit` says, and the protocol says which.
3. Prediction, with horizontal-flip TTA: "blend" (NeWCRFs post_process_depth, the published
   numbers), "mean" or "none".
4. The prediction is resized (bilinear) to the ground-truth size when it differs, clamped to
   [min_depth, max_depth] (NaN -> min, inf -> max).
5. valid = min_depth < gt < max_depth (strict) AND the crop mask (AND, for garg_full_res, the
   pasted window, which holds for the Garg box anyway).
6. The nine metrics (`metrics.py`), the edge metrics (`edges.py`) and the continuity metrics
   (`continuity.py`; focal from the record) per image, on device (`eval_steps.py`); means
   over images, leaving out images without a valid pixel (NaN).

Ours: the batching. Batches are padded with a per-example mask so every test image counts
exactly once; each batch goes onto the mesh with `NamedSharding(mesh, P("data"))`. Ground truth
may differ in size between images (KITTI frames); the metric step is jitted once per ground-truth
size and run on each group of equal size within a batch. Resizing is bilinear with half-pixel
centres and no antialiasing (= torch `F.interpolate(..., "bilinear", align_corners=False)`).
Multi-process: process p evaluates images i % P == p; prediction runs in lockstep on the global
mesh, metrics run on each process's local device, and per-image results are all-gathered before
averaging; only process 0 writes files.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dgr_jax import protocol, storage, viz
from dgr_jax.evaluators import crops, distributed, frame, report
from dgr_jax.evaluators.continuity import continuity_metric_names, record_focal
from dgr_jax.evaluators.edges import edge_metric_names
from dgr_jax.evaluators.eval_steps import (
    ALL_METRIC_NAMES,
    final_prediction,
    global_batch_size,
    jitted_metric_step,
    jitted_normalise,
    resize_image,
)
from dgr_jax.evaluators.metrics import METRIC_NAMES, aggregate
from dgr_jax.evaluators.tta import FLIP_TTA_MODES
from dgr_jax.registry import EVALUATORS

log = logging.getLogger(__name__)

PredictFn = Callable[[jax.Array], jax.Array]


@EVALUATORS.register("depth")
class DepthEvaluator:
    """Evaluates a depth predictor on a random-access source under one protocol.

    Args:
        config: one `config.evals.<name>` (see `configs/base.py` `depth_eval`): dataset, split,
            crop, kb_crop, min_depth, max_depth, flip_tta, batch_size, num_pictures, num_images,
            input_size (None: the frame as read), fit ("resize" | "pad" | "none").
        name: the evaluation's name (output folder `eval/<name>`, report title).
        source: random access, `len(source)` and `source[i]` -> {"image": uint8 (H, W, 3),
            "depth": float32 (H, W) metres with 0 = invalid, "focal", "id": str | bytes}.
        input_size: (h, w) the evaluation frame (`evaluate.data_frame`); default
            `config.input_size`. Records of another size (after the KB crop) are resized to it.
        mesh: the device mesh; batches are sharded over its "data" axis. Default: all devices.
        multiple: what the model's input sides must be multiples of (`frame.input_multiple`);
            a frame that is not is fitted as `config.fit` says.
        matmul_precision: the precision of the predictor's dots and convolutions
            (`config.eval_precision`, dgr_jax/precision.py), named in the protocol; None when
            the caller does not say.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        *,
        name: str,
        source: Any,
        input_size: Sequence[int] | None = None,
        mesh: Mesh | None = None,
        multiple: int = 1,
        matmul_precision: str | None = None,
    ):
        self.name = name
        self.matmul_precision = matmul_precision
        self.source = source
        configured = frame.configured_size(config.get("input_size"))
        if input_size is None:
            input_size = configured
        if input_size is None:
            raise ValueError(f"eval {name!r}: no evaluation frame (input_size) given")
        self.frame = (int(input_size[0]), int(input_size[1]))
        self.fit = str(config.get("fit", "resize"))
        self.model_size = frame.fitted_size(self.frame, int(multiple), self.fit)
        self._explicit = configured is not None
        self._pad = self.fit == "pad" and self.model_size != self.frame
        # The size images are resampled to on the host: the frame when padding, else the model's.
        self.input_size = self.frame if self._pad else self.model_size
        self.dataset, self.split = str(config.dataset), str(config.split)
        self.crop = str(config.crop)
        self.kb_crop = bool(config.get("kb_crop", False))
        self.min_depth, self.max_depth = float(config.min_depth), float(config.max_depth)
        self.flip_tta = str(config.flip_tta)
        # Depth Anything V2's protocol: bicubic image resize, prediction back align-corners.
        self.image_resize = str(config.get("image_resize", "bilinear"))
        self.align_corners = bool(config.get("pred_align_corners", False))
        self.references = str(config.get("references", ""))  # protocol.REFERENCE_NUMBERS key
        # Sobel edge thresholds hold at this width (0: per pixel, the metric before issue 29).
        self.edge_reference_width = int(
            config.get("edge_reference_width", protocol.EDGE_REFERENCE_WIDTH)
        )
        if self.image_resize not in ("bilinear", "bicubic"):
            raise ValueError(f"eval {name!r}: image_resize must be bilinear or bicubic")
        self.num_pictures = int(config.num_pictures)
        self.num_images = int(config.num_images)
        if self.crop not in crops.CROPS:
            raise ValueError(f"eval {name!r}: unknown crop {self.crop!r}; valid: {crops.CROPS}")
        if self.flip_tta not in FLIP_TTA_MODES:
            raise ValueError(f"eval {name!r}: unknown flip_tta {self.flip_tta!r}")
        if self.crop == "garg_full_res" and not self.kb_crop:
            raise ValueError(f"eval {name!r}: crop 'garg_full_res' needs kb_crop=True")
        if mesh is None:
            mesh = Mesh(np.asarray(jax.devices()), ("data",))
        self.mesh = mesh
        self._sharding = NamedSharding(mesh, P("data"))
        data_size = mesh.shape["data"]
        self.global_batch = global_batch_size(int(config.batch_size), data_size)
        if self.global_batch % jax.process_count():
            raise ValueError(f"eval {name!r}: batch {self.global_batch} not divisible by processes")
        self.local_batch = self.global_batch // jax.process_count()
        self._multiprocess = jax.process_count() > 1
        pad = (self.model_size[0] - self.frame[0], self.model_size[1] - self.frame[1])
        self._prepare = jitted_normalise(
            self._sharding, self.flip_tta != "none", pad if self._pad else (0, 0)
        )
        self._regions: dict[tuple[int, int], np.ndarray] = {}
        self._paste = self.crop == "garg_full_res"
        self._resized_images, self._resized_predictions = 0, False

    # ---------------------------------------------------------------------------------------
    # Data.
    # ---------------------------------------------------------------------------------------
    def _load(self, index: int) -> dict[str, Any]:
        """Read and preprocess record `index`: KB crop and resize of the model input."""
        record = self.source[index]
        image = np.asarray(record["image"])
        gt = np.asarray(record["depth"], np.float32)
        image_id = distributed.decode_id(record.get("id", str(index)))
        if self.kb_crop:
            try:
                image = crops.kb_crop(image)
                if not self._paste:
                    gt = crops.kb_crop(gt)
            except ValueError as e:
                raise ValueError(f"eval {self.name!r}, image {image_id!r}: {e}") from None
        model_input, resized = image, image.shape[:2] != self.input_size
        if resized:
            model_input = np.asarray(resize_image(image, self.input_size, self.image_resize))
        focal = record_focal(record, gt.shape[1])  # for the continuity normals
        return {
            "id": image_id,
            "image": image,
            "input": model_input,
            "gt": gt,
            "focal": focal,
            "resized": resized,
        }

    def _put(self, batch: np.ndarray) -> jax.Array:
        return jax.make_array_from_process_local_data(self._sharding, batch)

    def _predict(self, predict_fn: PredictFn, examples: list[dict]) -> tuple:
        """Model outputs (global arrays) for `examples`, padded to the local batch."""
        h, w = self.input_size
        dtype = np.result_type(*[e["input"].dtype for e in examples]) if examples else np.uint8
        images = np.zeros((self.local_batch, h, w, 3), dtype)
        for row, example in enumerate(examples):
            images[row] = example["input"]
        x, x_flipped = self._prepare(self._put(images))
        pred = predict_fn(x)
        pred_flipped = predict_fn(x_flipped) if self.flip_tta != "none" else None
        return pred, pred_flipped

    def _metric_fn(self, gt_size: tuple[int, int]) -> Callable:
        """The jitted metric step for one ground-truth size (compiled once per size)."""
        return jitted_metric_step(
            flip_tta=self.flip_tta,
            gt_size=tuple(gt_size),
            paste_kb=self._paste,
            min_depth=self.min_depth,
            max_depth=self.max_depth,
            crop_to=self.frame if self._pad else None,
            align_corners=self.align_corners,
            edge_reference_width=self.edge_reference_width,
        )

    def _region(self, gt_size: tuple[int, int]) -> np.ndarray:
        """Crop mask (and, for garg_full_res, the pasted KB window) of a ground-truth size."""
        if gt_size not in self._regions:
            region = crops.crop_mask(self.crop, *gt_size)
            if self._paste:
                window = np.zeros(gt_size, bool)
                top, left = crops.kb_crop_box(*gt_size)
                window[
                    top : top + protocol.KB_CROP_HEIGHT, left : left + protocol.KB_CROP_WIDTH
                ] = 1
                region = region & window
            self._regions[gt_size] = region
        return self._regions[gt_size]

    def _metric_inputs(self, pred, pred_flipped, gt: np.ndarray):
        """Place the metric step's inputs: sharded (one process) or on the local device."""
        if not self._multiprocess:
            return pred, pred_flipped, self._put(gt)
        device = jax.local_devices()[0]
        local = [None if a is None else distributed.local_rows(a) for a in (pred, pred_flipped)]
        return (*(None if a is None else jax.device_put(a, device) for a in local), gt)

    def _groups(self, examples: list[dict]) -> dict[tuple[int, int], list[int]]:
        groups: dict[tuple[int, int], list[int]] = {}
        for row, example in enumerate(examples):
            groups.setdefault(example["gt"].shape, []).append(row)
        return groups

    def _gt_batch(self, examples: list[dict], rows: list[int], size) -> tuple:
        """(ground truth (B, *size), focal (B,)) of `rows`, zeros elsewhere (focal 1)."""
        gt = np.zeros((self.local_batch, *size), np.float32)
        focal = np.ones((self.local_batch,), np.float32)
        for row in rows:
            gt[row] = examples[row]["gt"]
            focal[row] = examples[row]["focal"]
        return gt, focal

    # ---------------------------------------------------------------------------------------
    # The evaluation.
    # ---------------------------------------------------------------------------------------
    def _indices(self) -> range:
        total = len(self.source)
        return range(total if self.num_images < 0 else min(self.num_images, total))

    def run(self, predict_fn: PredictFn, *, out_dir: str | None = None, step: int | None = None):
        """Evaluate `predict_fn` and (process 0, `out_dir` given) write the outputs.

        Args:
            predict_fn: jitted, ImageNet-normalised float32 (B, H, W, 3) -> depth (B, H, W, 1)
                in metres (the caller closes over the parameters).
            out_dir: where to write metrics.json, report.md, per_image.csv and images/.
            step: the training step, recorded in the outputs.

        Returns:
            {metric: mean over images} for the nine metrics and the edge metrics, plus
            "num_images" (all images evaluated) and "num_valid_images" (with a valid pixel).
        """
        start = time.perf_counter()
        self._resized_images, self._resized_predictions = 0, False
        indices = self._indices()
        mine = indices[jax.process_index() :: jax.process_count()]
        per_process = math.ceil(len(indices) / jax.process_count())
        num_steps = math.ceil(per_process / self.local_batch)
        pending = []  # (dataset indices, ids, rows, device metrics) per group; fetched at the end
        for s in range(num_steps):
            chunk = mine[s * self.local_batch : (s + 1) * self.local_batch]
            examples = [self._load(i) for i in chunk]
            self._resized_images += sum(e["resized"] for e in examples)
            pred, pred_flipped = self._predict(predict_fn, examples)
            for size, rows in self._groups(examples).items():
                gt, focal = self._gt_batch(examples, rows, size)
                args = self._metric_inputs(pred, pred_flipped, gt)
                values = self._metric_fn(size)(*args, self._region(size), focal)
                ids = [examples[r]["id"] for r in rows]
                pending.append(([chunk[r] for r in rows], ids, rows, values))
                target = (protocol.KB_CROP_HEIGHT, protocol.KB_CROP_WIDTH) if self._paste else size
                shown = self.frame if self._pad else tuple(pred.shape[1:3])
                self._resized_predictions |= tuple(shown) != tuple(target)
        index, ids, per_image = self._collect(pending, per_process)
        means, counts = aggregate(per_image)
        seconds = time.perf_counter() - start
        num_valid = int(np.sum(~np.isnan(per_image["abs_rel"]))) if len(index) else 0
        result = {**means, "num_images": len(index), "num_valid_images": num_valid}
        log.info(
            "eval %s: %d images in %.1f s (%.1f img/s): %s",
            self.name,
            len(index),
            seconds,
            len(index) / max(seconds, 1e-9),
            ", ".join(f"{k} {means[k]:.4f}" for k in ("abs_rel", "rmse", "d1")),
        )
        if out_dir is not None:
            pictures = self._pictures(predict_fn, per_image, index, out_dir)
            if jax.process_index() == 0:
                self._write(out_dir, step, per_image, means, counts, index, ids, pictures, seconds)
        return result

    def _collect(self, pending: list, per_process: int) -> tuple:
        """Fetch the per-image metrics, gather them from every process, sort by image index.

        Returns:
            (dataset indices (N,), ids [N], {metric: (N,) float64}) over all processes.
        """
        names = ALL_METRIC_NAMES
        local = {n: [] for n in names}
        local_index, local_ids = [], []
        for idx, ids, rows, values in pending:
            values = jax.device_get(values)  # one process: fully addressable; else local
            for n in names:
                local[n].append(np.asarray(values[n])[rows])
            local_index += idx
            local_ids += ids
        gathered = {
            n: np.concatenate(v) if v else np.zeros(0, np.float32) for n, v in local.items()
        }
        gathered["_index"] = np.asarray(local_index, np.int64)
        gathered["_id"] = distributed.encode_strings(local_ids)
        gathered = distributed.gather_rows(gathered, per_process)
        order = np.argsort(gathered["_index"], kind="stable")
        index = gathered.pop("_index")[order]
        ids = distributed.decode_strings(gathered.pop("_id")[order])
        return index, ids, {n: np.asarray(gathered[n], np.float64)[order] for n in names}

    # ---------------------------------------------------------------------------------------
    # Outputs.
    # ---------------------------------------------------------------------------------------
    def protocol(self, num_images: int) -> dict[str, Any]:
        """The protocol object of metrics.json."""
        resize = frame.describe_resize(
            self.input_size,
            self._resized_images,
            self._resized_predictions,
            image_method=self.image_resize,
            align_corners=self.align_corners,
        )
        edge = self.edge_reference_width  # named only when not the default
        return {
            "dataset": self.dataset,
            "split": self.split,
            "crop": self.crop,
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "flip_tta": self.flip_tta,
            "resize": resize,
            "kb_crop": self.kb_crop,
            "num_images": num_images,
            "frame": list(self.frame),
            "fit": self.fit,
            "input": frame.describe(self.frame, self.model_size, self.fit, explicit=self._explicit),
            "input_size": list(self.model_size),
            **({"references": self.references} if self.references else {}),
            **({"edge_reference_width": edge} if edge != protocol.EDGE_REFERENCE_WIDTH else {}),
            "matmul_precision": self.matmul_precision,
        }

    def predictions(self, predict_fn: PredictFn, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The final predictions (TTA, resize, clamp: what the metrics see) of a few images.

        Returns per index {"id", "image" (H, W, 3) uint8, "gt" (H, W), "valid" (H, W) bool,
        "depth" (H, W)}; used for figures (the ablation study's). Multi-process: every process
        calls it with the same indices and predicts them in its own rows of the global batch.
        """
        out = []
        for s in range(0, len(indices), self.local_batch):
            examples = [self._load(int(i)) for i in indices[s : s + self.local_batch]]
            pred, pred_flipped = self._predict(predict_fn, examples)
            pred = distributed.local_rows(pred)
            pred_flipped = None if pred_flipped is None else distributed.local_rows(pred_flipped)
            for row, example in enumerate(examples):
                gt = example["gt"]
                depth = final_prediction(
                    pred[row : row + 1],
                    None if pred_flipped is None else pred_flipped[row : row + 1],
                    flip_tta=self.flip_tta,
                    gt_size=gt.shape,
                    paste_kb=self._paste,
                    min_depth=self.min_depth,
                    max_depth=self.max_depth,
                    crop_to=self.frame if self._pad else None,
                    align_corners=self.align_corners,
                )
                valid = (gt > self.min_depth) & (gt < self.max_depth) & self._region(gt.shape)
                out.append(
                    {
                        "id": example["id"],
                        "image": example["image"],
                        "gt": gt,
                        "valid": valid,
                        "depth": np.asarray(depth)[0],
                    }
                )
        return out

    def _pictures(self, predict_fn, per_image, index, out_dir) -> list[str]:
        """Panels for a few fixed images and the worst ones. Every process takes part."""
        if self.num_pictures <= 0 or len(index) == 0:
            return []
        k = min(self.num_pictures, len(index))
        fixed = np.unique(np.linspace(0, len(index) - 1, k).round().astype(int))
        worst = report.worst_indices(per_image, k)
        chosen = [("fixed", int(p)) for p in fixed] + [("worst", int(p)) for p in worst]
        paths = []
        for s in range(0, len(chosen), self.local_batch):
            part = chosen[s : s + self.local_batch]
            examples = [self._load(int(index[p])) for _, p in part]
            pred, pred_flipped = self._predict(predict_fn, examples)
            pred = distributed.local_rows(pred)
            pred_flipped = None if pred_flipped is None else distributed.local_rows(pred_flipped)
            if jax.process_index() != 0:
                continue
            for row, ((kind, pos), example) in enumerate(zip(part, examples)):
                size = example["gt"].shape
                depth = final_prediction(
                    pred[row : row + 1],
                    None if pred_flipped is None else pred_flipped[row : row + 1],
                    flip_tta=self.flip_tta,
                    gt_size=size,
                    paste_kb=self._paste,
                    min_depth=self.min_depth,
                    max_depth=self.max_depth,
                    crop_to=self.frame if self._pad else None,
                    align_corners=self.align_corners,
                )
                paths.append(self._save_panel(out_dir, kind, pos, example, np.asarray(depth)[0]))
        return paths

    def _save_panel(self, out_dir, kind, pos, example, depth) -> str:
        gt = example["gt"]
        valid = (gt > self.min_depth) & (gt < self.max_depth) & self._region(gt.shape)
        vmin, vmax = viz.depth_range(gt, valid=valid)
        err = viz.error_map(depth, gt, valid)
        err_max = float(np.nanmax(err)) if np.any(valid) else 1.0
        safe_id = "".join(c if c.isalnum() or c in "-._" else "_" for c in example["id"])[:80]
        rel = f"images/{kind}_{pos:05d}_{safe_id}.png"  # relative link in report.md
        viz.save_panel(
            storage.join(out_dir, rel),
            [
                ("RGB", example["image"]),
                ("ground truth", np.where(valid, gt, np.nan)),
                ("prediction", depth),
                (
                    "abs error",
                    err,
                    {
                        "vmin": 0.0,
                        "vmax": err_max,
                        "cmap": viz.ERROR_CMAP,
                        "label": "|pred - gt| (m)",
                    },
                ),
            ],
            vmin=vmin,
            vmax=vmax,
            suptitle=f"{example['id']} ({kind})",
        )
        return rel

    def _write(self, out_dir, step, per_image, means, counts, index, ids, pictures, seconds):
        storage.makedirs(out_dir)
        protocol = self.protocol(len(index))
        num_valid = counts.get("abs_rel", 0)
        payload = {
            "name": self.name,
            **({"step": int(step)} if step is not None else {}),
            "num_images": len(index),
            "num_valid_images": num_valid,
            **means,
            "num_defined": counts,
            "protocol": protocol,
            "timing": {"seconds": seconds, "images_per_s": len(index) / max(seconds, 1e-9)},
        }
        report.write_metrics_json(storage.join(out_dir, "metrics.json"), payload)
        report.write_per_image_csv(storage.join(out_dir, "per_image.csv"), index, ids, per_image)
        text = report.render_report(
            name=self.name,
            protocol=protocol,
            means=means,
            counts=counts,
            metric_names=METRIC_NAMES,
            edge_names=(*edge_metric_names(), *continuity_metric_names()),
            per_image=per_image,
            indices=index,
            ids=ids,
            pictures=pictures,
            step=step,
        )
        storage.write_text(storage.join(out_dir, "report.md"), text)
