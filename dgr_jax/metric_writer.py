"""Where training progress goes: console, `train_metrics.jsonl`, TensorBoard event files.

TensorBoard files are written with the `tensorboard` package's record format and protos, so no
TensorFlow is needed. Only process 0 writes. On resume, JSONL lines of steps after the restored
checkpoint (logged by the killed run) are dropped, so the file reads as one uninterrupted run.

The work directory may be on an object store (gs://): the JSONL logs and the event file are then
appended a batch at a time (`storage.Appender`: every `flush_secs`, before each checkpoint and at
the end), never rewritten; locally every line is appended at once.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time

import numpy as np
from PIL import Image

from dgr_jax import jsonio, storage


def truncate_jsonl(path: str | os.PathLike, last_step: int) -> None:
    """Keep only the lines whose "step" is <= last_step (atomic rewrite)."""
    if not storage.exists(path):
        return
    lines = [ln + "\n" for ln in storage.read_text(path).splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= last_step]
    if len(kept) < len(lines):
        storage.write_text(path, "".join(kept))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a JSONL log (local or gs://); [] when it does not exist."""
    if not storage.exists(path):
        return []
    return [json.loads(ln) for ln in storage.read_text(path).splitlines() if ln.strip()]


def format_duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "-"
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricWriter:
    """Scalars and images to JSONL + TensorBoard (process 0 only).

    Args:
        workdir: the run's folder (local or gs://).
        enabled: False on every process but 0.
        resume_step: the restored checkpoint's step: log lines after it are dropped.
        flush_secs: object stores only: the longest time lines wait in memory (`flush()`
            writes them at once; the trainer calls it before every checkpoint).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        enabled: bool = True,
        resume_step: int | None = None,
        flush_secs: float = 60.0,
    ):
        self.enabled = enabled
        self.jsonl = storage.join(workdir, "train_metrics.jsonl")
        self.eval_jsonl = storage.join(workdir, "eval_metrics.jsonl")
        self._logs: dict[str, storage.Appender] = {}
        self._tb = None
        if not enabled:
            return
        storage.makedirs(workdir)
        if resume_step is not None:
            truncate_jsonl(self.jsonl, resume_step)
            truncate_jsonl(self.eval_jsonl, resume_step)
        self._logs = {
            "train": storage.Appender(self.jsonl, flush_secs=flush_secs),
            "eval": storage.Appender(self.eval_jsonl, flush_secs=flush_secs),
        }
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        # TensorBoard's file naming (it reads every "*tfevents*" file of a folder, in name order).
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        name += ".0"
        self._tb_file = storage.Appender(storage.join(workdir, "tb", name), flush_secs=flush_secs)
        self._tb = RecordWriter(self._tb_file)
        self._tb.write(
            event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )

    def _tb_event(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=values)
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._tb.write(event.SerializeToString())

    def write_scalars(self, step: int, scalars: dict[str, float], *, kind: str = "train") -> None:
        """Append one JSON line (`step` + scalars) and TensorBoard scalars under `kind/`."""
        if not self.enabled:
            return
        from tensorboard.compat.proto import summary_pb2

        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        log = self._logs["train" if kind == "train" else "eval"]
        log.write((jsonio.dumps(record) + "\n").encode("utf-8"))
        self._tb_event(
            step,
            [
                summary_pb2.Summary.Value(tag=f"{kind}/{k}", simple_value=float(v))
                for k, v in scalars.items()
                if np.isfinite(v)
            ],
        )

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

    def write_image_files(self, step: int, eval_root: str, per_eval: int = 4) -> None:
        """The first `per_eval` PNG panels of each <eval_root>/<name>/images as TB images."""
        if not self.enabled:
            return
        images = {}
        for name in storage.listdir(eval_root):
            folder = storage.join(eval_root, name, "images")
            for file in [f for f in storage.listdir(folder) if f.endswith(".png")][:per_eval]:
                data = storage.read_bytes(storage.join(folder, file))
                with Image.open(io.BytesIO(data)) as im:
                    images[f"eval/{name}/{file[:-4]}"] = np.asarray(im.convert("RGB"))
        self.write_images(step, images)

    def flush(self) -> None:
        """Write what is buffered (object stores); locally everything is written already."""
        for log in (*self._logs.values(), *([self._tb_file] if self._tb is not None else [])):
            log.flush()

    def close(self) -> None:
        if self._tb is not None:
            self.flush()
            self._tb = None


def plot_training_curves(workdir: str | os.PathLike) -> str | None:
    """train_curves.png: loss (and its terms) and learning rate against step."""
    rows = read_jsonl(storage.join(workdir, "train_metrics.jsonl"))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    out = storage.join(workdir, "train_curves.png")
    storage.save_figure(out, fig, dpi=100)
    plt.close(fig)
    return out
