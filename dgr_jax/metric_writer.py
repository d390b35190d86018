"""Where training progress goes: console, `train_metrics.jsonl`, TensorBoard event files.

TensorBoard files are written with the `tensorboard` package's event writer and protos, so no
TensorFlow is needed. Only process 0 writes. On resume, JSONL lines of steps after the restored
checkpoint (logged by the killed run) are dropped, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
from PIL import Image

from dgr_jax import jsonio


def truncate_jsonl(path: str, last_step: int) -> None:
    """Keep only the lines whose "step" is <= last_step (atomic rewrite)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= last_step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(kept)
    os.replace(tmp, path)


def format_duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "-"
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricWriter:
    """Scalars and images to JSONL + TensorBoard (process 0 only)."""

    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.jsonl = os.path.join(workdir, "train_metrics.jsonl")
        self.eval_jsonl = os.path.join(workdir, "eval_metrics.jsonl")
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if resume_step is not None:
            truncate_jsonl(self.jsonl, resume_step)
            truncate_jsonl(self.eval_jsonl, resume_step)
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._tb = EventFileWriter(os.path.join(workdir, "tb"))

    def _tb_event(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=values)
        self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: dict[str, float], *, kind: str = "train") -> None:
        """Append one JSON line (`step` + scalars) and TensorBoard scalars under `kind/`."""
        if not self.enabled:
            return
        from tensorboard.compat.proto import summary_pb2

        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        path = self.jsonl if kind == "train" else self.eval_jsonl
        with open(path, "a") as f:
            f.write(jsonio.dumps(record) + "\n")
        self._tb_event(
            step,
            [
                summary_pb2.Summary.Value(tag=f"{kind}/{k}", simple_value=float(v))
                for k, v in scalars.items()
                if np.isfinite(v)
            ],
        )
        self._tb.flush()

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """uint8 (H, W, 3) images as TensorBoard image summaries."""
        if not self.enabled or not images:
            return
        from tensorboard.compat.proto import summary_pb2

        values = []
        for tag, image in images.items():
            buf = io.BytesIO()
            Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
            h, w = image.shape[:2]
            img = summary_pb2.Summary.Image(
                height=h, width=w, colorspace=3, encoded_image_string=buf.getvalue()
            )
            values.append(summary_pb2.Summary.Value(tag=tag, image=img))
        self._tb_event(step, values)
        self._tb.flush()

    def write_image_files(self, step: int, eval_root: str, per_eval: int = 4) -> None:
        """The first `per_eval` PNG panels of each <eval_root>/<name>/images as TB images."""
        if not self.enabled or not os.path.isdir(eval_root):
            return
        images = {}
        for name in sorted(os.listdir(eval_root)):
            folder = os.path.join(eval_root, name, "images")
            if os.path.isdir(folder):
                for file in sorted(f for f in os.listdir(folder) if f.endswith(".png"))[:per_eval]:
                    with Image.open(os.path.join(folder, file)) as im:
                        images[f"eval/{name}/{file[:-4]}"] = np.asarray(im.convert("RGB"))
        self.write_images(step, images)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def plot_training_curves(workdir: str) -> str | None:
    """train_curves.png: loss (and its terms) and learning rate against step."""
    path = os.path.join(workdir, "train_metrics.jsonl")
    if not os.path.exists(path):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(1, 2, figsize=(11, 4))
    plotted = []
    for key in sorted({k for r in rows for k in r if k.startswith("loss")}):
        values = [jsonio.nan_if_none(r.get(key)) for r in rows]
        plotted += values
        ax_loss.plot(steps, values, label=key)
    # Log axis: the loss terms are logged unweighted and span orders of magnitude (OTDL ~1e-3
    # next to SILog ~5), so a linear axis shows the small ones as a flat line at zero.
    finite = np.asarray(plotted, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0:
        ax_loss.set_yscale("log")
    elif finite.size:
        ax_loss.set_yscale("symlog", linthresh=1e-4)
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss (terms unweighted)")
    ax_loss.legend()
    ax_lr.plot(steps, [jsonio.nan_if_none(r.get("lr")) for r in rows])
    ax_lr.set_xlabel("step")
    ax_lr.set_title("learning rate")
    fig.tight_layout()
    out = os.path.join(workdir, "train_curves.png")
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
