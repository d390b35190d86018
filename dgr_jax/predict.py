"""Predict depth for your own images.

    python -m dgr_jax.predict --workdir runs/quickstart --input photo.jpg --output out/
    python -m dgr_jax.predict --weights CONVERTED_DIR --input folder/ --output out/ --focal 518.8
    python -m dgr_jax.predict --workdir runs/mine --input M/test.txt --output out/

--input is an image, a folder of images, or a file list (the RGB column of each line).

Per image `<name>` it writes:
  <name>_depth.png   16-bit PNG, depth in millimetres (0 = no prediction; capped at 65.535 m)
  <name>_color.png   colourised depth, for looking at
  <name>.npy         float32 depth in metres at the input image's size
  <name>.ply         with --focal: a coloured point cloud (pinhole, principal point at the
                     image centre), in metres, camera frame x right / y down / z forward
The model sees each image as read, like the evaluation frame (the hosts' test.py feed the frame
unchanged): no resize when its sides are multiples of what the model needs (32 for the Swin
hosts, the patch for a ViT); otherwise it is resized (bilinear) to the nearest multiples and
the depth back, as the hosts' demo.py resize every frame. --input_size H W resizes every image
to H x W instead (and the depth back). Files
that cannot be read are reported by name and skipped; the others finish. --workdir, --weights,
--input and --output may be gs:// URLs.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from dgr_jax import precision, storage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MM_PER_M = 1000.0


def list_inputs(path: str) -> list[str]:
    """One image path, the image files of a folder (sorted), or the RGB column of a file list
    (`*.txt`, lines "<rgb> [<depth or None> [focal]]", paths relative to the list's folder
    unless absolute or gs://, as the depth_files builder reads them); local or gs://."""
    if path.lower().endswith(".txt") and storage.isfile(path):
        folder = os.path.dirname(path)
        rows = [r.split() for r in storage.read_text(path).splitlines()]
        columns = [r[0] for r in rows if r and not r[0].startswith("#")]
        return [
            c if storage.is_remote(c) or os.path.isabs(c) else os.path.join(folder, c)
            for c in columns
        ]
    if storage.isdir(path):
        # os.path.join keeps both "folder/x.png" and "gs://b/folder/x.png" as given.
        return [
            os.path.join(path, n)
            for n in storage.listdir(path)
            if n.lower().endswith(IMAGE_SUFFIXES)
        ]
    if not storage.exists(path):
        raise FileNotFoundError(f"--input {path!r} does not exist")
    return [path]


def output_stems(inputs: Sequence[str]) -> list[str]:
    """Output name stems: the file names, or, where two inputs share one (a file list over
    several folders), the paths below the inputs' common folder with "/" -> "_"."""
    names = [os.path.splitext(os.path.basename(p))[0] for p in inputs]
    if len(set(names)) == len(names):
        return names
    prefix = os.path.commonprefix([os.path.dirname(p) + "/" for p in inputs])
    prefix = prefix[: prefix.rfind("/") + 1]
    return [os.path.splitext(p[len(prefix) :])[0].replace("/", "_") for p in inputs]


def write_ply(path: storage.PathLike, depth: np.ndarray, image: np.ndarray, focal: float) -> int:
    """Back-project valid depth pixels to a binary little-endian PLY; returns the point count."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    z = depth[valid]
    x = (u[valid] + 0.5 - w / 2.0) / focal * z
    y = (v[valid] + 0.5 - h / 2.0) / focal * z
    rgb = image[valid].astype(np.uint8)
    vertex = np.empty(
        len(z),
        dtype=[
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
        ],
    )
    vertex["x"], vertex["y"], vertex["z"] = x, y, z
    vertex["red"], vertex["green"], vertex["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(z)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    storage.write_bytes(path, header.encode("ascii") + vertex.tobytes())
    return len(z)


def _config_from_workdir(workdir: str, config_path: str | None):
    import ml_collections

    from dgr_jax import configlib

    if config_path:
        return configlib.load(config_path)
    from dgr_jax import jsonio

    path = storage.join(workdir, "config.json")
    if not storage.exists(path):
        raise FileNotFoundError(f"{workdir} has no config.json; pass --config configs/X.py")
    return ml_collections.ConfigDict(jsonio.read(path))


def _config_from_weights(weights_dir: str):
    from dgr_jax import configlib
    from dgr_jax.convert.checkpoint import read_meta

    return configlib.inference_config(
        read_meta(weights_dir)["model"], init_from=storage.absolute(weights_dir), input_size=(0, 0)
    )


class Predictor:
    """Restored model + jitted flip-TTA prediction at a fixed model input size."""

    def __init__(
        self,
        config,
        workdir: str,
        checkpoint: str,
        flip_tta: str,
        matmul_precision: str = precision.DEFAULT_EVAL_PRECISION,
    ):
        import jax

        from dgr_jax import evaluate, sharding
        from dgr_jax.evaluators.tta import flip_blend

        model_def, mesh, state, state_sh, self.step = evaluate.restore_for_inference(
            config, workdir, checkpoint
        )
        self._predict = evaluate.make_predict_fn(
            model_def, state_sh, sharding.replicated(mesh), matmul_precision=matmul_precision
        )
        self._state = state
        self._flip = flip_tta

        def tta(depth, depth_flipped):
            return flip_blend(depth, depth_flipped, mode=flip_tta)

        self._tta = jax.jit(tta)

    def __call__(self, normalised: np.ndarray) -> np.ndarray:
        """(H, W, 3) ImageNet-normalised -> (H, W) metres."""
        batch = normalised[None]
        depth = self._predict(self._state["params"], self._state["rest"], batch)
        if self._flip != "none":
            flipped = self._predict(self._state["params"], self._state["rest"], batch[:, :, ::-1])
            depth = self._tta(depth, flipped)
        return np.asarray(depth)[0, ..., 0]


def model_input_size(image_size, model_cfg, input_size=None) -> tuple[int, int]:
    """(H, W) the model sees for an image: `input_size` if given, else the image as read,
    fitted to the model's multiple by resizing (`evaluators.frame`)."""
    from dgr_jax.evaluators import frame

    if input_size:
        return int(input_size[0]), int(input_size[1])
    return frame.fitted_size(image_size, frame.input_multiple(model_cfg), "resize")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dgr_jax.predict", description=__doc__.split("\n")[0]
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="a training workdir (config.json + checkpoints)")
    src.add_argument("--weights", help="converted weights (python -m dgr_jax.convert ...)")
    p.add_argument(
        "--config", default=None, help="config file instead of the workdir's config.json"
    )
    p.add_argument("--checkpoint", default="latest", help="latest | best | STEP (with --workdir)")
    p.add_argument(
        "--input", required=True, help="an image, a folder of images, or a file list (.txt)"
    )
    p.add_argument("--output", required=True, help="output folder (created)")
    p.add_argument("--focal", type=float, default=None, help="focal length in pixels: write .ply")
    p.add_argument("--flip_tta", default="blend", choices=("blend", "mean", "none"))
    p.add_argument(
        "--input_size", type=int, nargs=2, default=None, metavar=("H", "W"),
        help="resize every image to H x W for the model (default: the image as read)",
    )  # fmt: skip
    p.add_argument(
        "--precision",
        default=None,
        choices=precision.EVAL_PRECISIONS,
        help="matmul precision of the model's dots and convolutions (dgr_jax/precision.py); "
        "default: the config's eval_precision, else highest",
    )
    args = p.parse_args(argv)
    from dgr_jax import compile_cache

    compile_cache.enable()

    from dgr_jax import protocol, viz

    try:
        for flag in ("workdir", "weights", "input", "output"):
            if getattr(args, flag):
                storage.check(getattr(args, flag), f"--{flag}")
        inputs = list_inputs(args.input)
        if args.workdir:
            config = _config_from_workdir(args.workdir, args.config)
            workdir = args.workdir
        else:
            config = _config_from_weights(args.weights)
            workdir = args.output  # no checkpoints there: the weights are used
        matmul_precision = args.precision or precision.eval_precision(config)
    except (FileNotFoundError, KeyError, ValueError, storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not inputs:
        print(f"error: no images ({', '.join(IMAGE_SUFFIXES)}) in {args.input}", file=sys.stderr)
        return 2
    storage.makedirs(args.output)
    predictors: dict[tuple[int, int], Predictor] = {}
    mean = np.asarray(protocol.IMAGENET_MEAN, np.float32)
    std = np.asarray(protocol.IMAGENET_STD, np.float32)
    written, skipped = 0, []
    for path, name in zip(inputs, output_stems(inputs), strict=True):
        try:
            with Image.open(io.BytesIO(storage.read_bytes(path))) as im:
                image = np.asarray(im.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            skipped.append(path)
            print(f"skipped {path}: cannot read it as an image ({e})", file=sys.stderr)
            continue
        h, w = image.shape[:2]
        size = model_input_size((h, w), config.model, args.input_size)
        if size not in predictors:
            with config.unlocked():
                config.input.size = size
            predictors[size] = Predictor(
                config, workdir, args.checkpoint, args.flip_tta, matmul_precision
            )
        model_in = image
        if size != (h, w):
            model_in = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
        depth = predictors[size]((model_in.astype(np.float32) / 255.0 - mean) / std)
        if size != (h, w):
            depth = np.asarray(Image.fromarray(depth, mode="F").resize((w, h), Image.BILINEAR))
        stem = os.path.join(args.output, name)  # as given: a local folder or gs://
        mm = np.clip(np.round(depth * MM_PER_M), 0, np.iinfo(np.uint16).max).astype(np.uint16)
        viz.save_png(stem + "_depth.png", mm)
        viz.save_png(stem + "_color.png", viz.colorize(depth, *viz.depth_range(depth)))
        npy = io.BytesIO()
        np.save(npy, depth.astype(np.float32))
        storage.write_bytes(stem + ".npy", npy.getvalue())
        if args.focal:
            write_ply(stem + ".ply", depth, image, args.focal)
        written += 1
        print(f"{path} -> {stem}_depth.png ({depth.min():.2f}-{depth.max():.2f} m)")
    print(f"{written} written, {len(skipped)} skipped")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
