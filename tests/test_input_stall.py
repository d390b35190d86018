"""Input that stops answering: the stall watchdog, and SIGTERM while the trainer waits for data.

Unit tests of the watchdog (blocking fake sources, fractions of a second), then the loopback
case of the issue: the dataset on a gs:// bucket (the local storage emulator), training started
with array_record's storage endpoint pointed at a socket that accepts connections and never
replies. The watchdog must stop the run within its timeout plus a margin, with a message naming
the data dir, split, reader and endpoint; a SIGTERM during the stall must end it in seconds.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from dgr_jax.data import watchdog
from dgr_jax.data.prefetch import Prefetcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
READER = watchdog.Reader("evaluator 'test'", "synthetic_depth/indoor", "test", "gs://b/tfds")


class _BlockingSource:
    """`source[i]` blocks until `release` is set (a reader on an endpoint that never answers)."""

    def __init__(self):
        self.release = threading.Event()

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        self.release.wait()
        return {"index": index}


def test_a_read_that_never_returns_stalls_with_a_message_naming_its_source():
    source = _BlockingSource()
    watched = watchdog.WatchedSource(source, watchdog.Watchdog(0.5), READER)
    start = time.monotonic()
    with pytest.raises(watchdog.InputStalled) as e:
        watched[0]
    assert 0.5 <= time.monotonic() - start < 1.5
    message = str(e.value)
    for part in ("synthetic_depth/indoor", "'test'", "gs://b/tfds", "stall_timeout_s"):
        assert part in message, message
    assert "storage client at" in message  # gs://: the endpoint array_record's client uses
    source.release.set()
    assert watched[1] == {"index": 1}  # a fresh reader thread; the stale result is never seen
    assert len(watched) == 4


def test_a_stop_request_ends_a_wait_at_once_and_zero_turns_the_watchdog_off():
    stop = threading.Event()
    watched = watchdog.WatchedSource(_BlockingSource(), watchdog.Watchdog(0, stop), READER)
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    with pytest.raises(watchdog.StopWaiting):
        watched[0]
    assert time.monotonic() - start < 0.3 + 2 * watchdog.POLL_S + 0.2


def test_prefetcher_waiting_for_a_batch_that_never_comes_stalls():
    class Never:
        def __next__(self):
            threading.Event().wait()

        def get_state(self):
            return {}

    reader = watchdog.Reader("training input", "d", "train", "/data")
    prefetch = Prefetcher(Never(), {}, watchdog=watchdog.Watchdog(0.4), reader=reader)
    start = time.monotonic()
    with pytest.raises(watchdog.InputStalled, match="training input reading d, split 'train'"):
        prefetch.next()
    prefetch.close()  # does not wait for the blocked thread
    assert time.monotonic() - start < 1.5


def test_items_that_arrive_are_returned_and_errors_are_raised():
    q: queue.Queue = queue.Queue()
    q.put(1)
    assert watchdog.Watchdog(1.0).get(q, READER) == 1

    class Failing(_BlockingSource):
        def __getitem__(self, index):
            raise KeyError(index)

    with pytest.raises(KeyError):
        watchdog.WatchedSource(Failing(), watchdog.Watchdog(1.0), READER)[3]


# ---- The blackhole endpoint, end to end ---------------------------------------------------------


@contextlib.contextmanager
def _blackhole():
    """A local endpoint that accepts connections (the kernel completes them) and never replies."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(128)  # never accept()ed: connections queue, requests go unanswered
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _train_cmd(workdir, data_dir, *extra):
    return [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        f"--config={os.path.join(ROOT, 'configs/synthetic_cnn.py')}:smoke",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        "--config.total_steps=4",
        "--config.eval_every=0",
        *extra,
    ]


@pytest.fixture(scope="module")
def stalled_bucket():
    """(environment, data_dir): the dataset in the emulator's bucket, array_record blackholed."""
    from gcs_emulator import running

    from dgr_jax import configlib
    from dgr_jax.data import datasets

    config = configlib.load(os.path.join(ROOT, "configs/synthetic_cnn.py:smoke"))
    with running() as gcs, _blackhole() as endpoint:
        data_dir = gcs.url("tfds")
        datasets.ensure_built(
            config.input.dataset, data_dir, build_args=dict(config.input.build)
        )  # built locally, uploaded through the (working) emulator
        env = gcs.env(
            {
                **os.environ,
                "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
                "PYTHONPATH": ROOT,
            }
        )
        env["CLOUD_STORAGE_EMULATOR_ENDPOINT"] = endpoint  # array_record's client only
        yield env, data_dir, endpoint


def _start_and_wait_for_training(cmd, env, log) -> subprocess.Popen:
    """Start train.py (output to `log`); return once it waits for its first batch."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if "training steps 0 -> 4" in log.read_text():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(log.read_text()[-3000:])


@pytest.mark.slow
def test_blackholed_data_endpoint_stops_the_run_with_a_message(stalled_bucket, tmp_path):
    env, data_dir, endpoint = stalled_bucket
    timeout_s, margin_s = 5, 20  # margin: polling, shutting down (seconds on a loaded machine)
    log = tmp_path / "train.log"
    cmd = _train_cmd(tmp_path / "run", data_dir, f"--config.input.stall_timeout_s={timeout_s}")
    proc = _start_and_wait_for_training(cmd, env, log)
    start = time.monotonic()
    proc.wait(timeout=120)
    elapsed = time.monotonic() - start
    text = log.read_text()
    assert proc.returncode == watchdog.EXIT_STALLED, text[-3000:]
    assert timeout_s <= elapsed <= timeout_s + margin_s, elapsed
    message = [line for line in text.splitlines() if line.startswith("error: input stalled")]
    assert len(message) == 1, text[-3000:]
    for part in (data_dir, "'train'", "synthetic_depth/indoor", "training input", endpoint):
        assert part in message[0], message[0]
    assert "last checkpoint (none) is intact" in message[0]
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # nothing half-written
    print(f"watchdog ({timeout_s} s): exited {elapsed:.1f} s after the wait began")


@pytest.mark.slow
def test_sigterm_while_waiting_for_a_blackholed_endpoint_exits_in_seconds(stalled_bucket, tmp_path):
    env, data_dir, _ = stalled_bucket
    log = tmp_path / "train.log"
    proc = _start_and_wait_for_training(_train_cmd(tmp_path / "run", data_dir), env, log)
    time.sleep(2)  # now blocked in the first read
    assert proc.poll() is None, log.read_text()
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    stopped = None
    while proc.poll() is None and time.monotonic() - sent < 60:
        if stopped is None and "SIGTERM: nothing new to save" in log.read_text():
            stopped = time.monotonic() - sent
        time.sleep(0.02)
    exited = time.monotonic() - sent
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "SIGTERM: nothing new to save (last checkpoint: none)" in text, text[-3000:]
    assert stopped is not None and stopped < 2, stopped  # the wait ended at once
    assert exited < 30, exited  # then the usual shutdown (seconds on a loaded machine)
    print(f"SIGTERM during the stall: stopped waiting after {stopped:.2f} s, exit {exited:.2f} s")


_SIGNAL_WORKER = """
import sys, threading
from dgr_jax import signals
stop = threading.Event()
signals.StopOnSignal(stop, "CKPTS").install()
print("ready", flush=True)
threading.Event().wait()  # blocked for good: only the signal thread can end the process
"""


def test_second_sigterm_exits_at_once_whatever_the_main_thread_does():
    proc = subprocess.Popen(
        [sys.executable, "-c", _SIGNAL_WORKER],
        env={**os.environ, "PYTHONPATH": ROOT},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().startswith("SIGTERM: stopping at the next step boundary")
    assert proc.poll() is None  # the first SIGTERM only asks to stop
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 2
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM again: exiting at once; the checkpoints committed under CKPTS" in (
        proc.stderr.read()
    )
