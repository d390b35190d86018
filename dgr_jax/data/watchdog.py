"""Bounded waits for input: a stall watchdog and a stop request that end any wait for data.

    dog = Watchdog(timeout_s=600, stop=stop_event)
    item = dog.get(q, reader)              # q: a queue another thread fills with input
    source = WatchedSource(src, dog, reader)   # src[i] read in a helper thread, waited on here

Every wait polls; it ends with
- the item, as soon as it arrives;
- `InputStalled` (the message names the data directory, split, reader and, for gs://, the
  storage endpoint) once `timeout_s` passed without one (0 turns the watchdog off);
- `StopWaiting` within `POLL_S` of `stop` being set (single process: the trainer's SIGTERM);
- in multi-process runs, once a preemption notice reached this process (any process's SIGTERM,
  seen through the coordination service) and the item still has not come `NOTICE_GRACE_S`
  later: `StalledAtPreemption`. That process cannot reach the agreed step (its input does not
  arrive), so the run cannot save it; the trainer then exits that process at once and JAX's
  coordination service ends the others (missing heartbeat) instead of leaving them in a
  collective.

A read blocked inside a C++ reader (array_record on an endpoint that never answers) never
returns to Python, so reads happen in helper threads and only the waiting happens here.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from typing import Any

import jax

POLL_S = 0.1  # how often a wait checks the stop request and the timeout
NOTICE_POLL_S = 1.0  # multi-process: how often a wait asks the coordinator for a notice
# Multi-process: how long a process still waits for its input after a preemption notice. Normal
# input latency is far below it; a process that waits longer cannot reach the agreed step.
NOTICE_GRACE_S = 10.0
# The key under which JAX's preemption notifier publishes a notice in the coordination
# service's key-value store (xla/tsl preemption_notifier; seen on every process once any
# process got SIGTERM). Not public API: if it changes, the watchdog's timeout still ends a wait.
_NOTICE_KEY = "RECEIVED_PREEMPTION_NOTICE"
EXIT_STALLED = 3  # exit status of a run stopped by the watchdog


class InputStalled(RuntimeError):
    """No input arrived within the watchdog's timeout; the message says from where."""


class StopWaiting(Exception):
    """A stop was requested (SIGTERM in a single process) while waiting for input."""


class StalledAtPreemption(RuntimeError):
    """Multi-process: a preemption notice came and this process's input still did not."""


@dataclasses.dataclass(frozen=True)
class Reader:
    """What waits for data, for the messages: "<role> of <dataset>, split <split>, in <dir>"."""

    role: str  # "training input (grain iterator, prefetch thread)", "evaluator 'test'"
    dataset: str
    split: str
    data_dir: str

    def describe(self) -> str:
        text = f"the {self.role} reading {self.dataset}, split {self.split!r}, in {self.data_dir}"
        if str(self.data_dir).startswith("gs://"):
            text += f" through array_record's storage client at {storage_endpoint()}"
        return text


def storage_endpoint() -> str:
    """The endpoint array_record's Cloud Storage client (google-cloud-cpp) talks to."""
    return os.environ.get("CLOUD_STORAGE_EMULATOR_ENDPOINT") or "https://storage.googleapis.com"


def preemption_notice_received() -> bool:
    """Multi-process: has any process received a preemption notice (SIGTERM)?"""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        return False
    try:
        client.key_value_try_get(_NOTICE_KEY)
    except Exception:  # NOT_FOUND (no notice yet) or the coordinator unreachable
        return False
    return True


class Watchdog:
    """Bounds every wait for input; see the module docstring."""

    def __init__(self, timeout_s: float, stop: threading.Event | None = None):
        self.timeout_s = float(timeout_s)
        self.stop = stop
        self.multiprocess = jax.process_count() > 1

    def get(self, q: queue.Queue, reader: Reader) -> Any:
        """The next item of `q`, or one of the exceptions above."""
        if self.stop is not None and self.stop.is_set():  # e.g. between an evaluation's reads
            raise StopWaiting(reader.describe())
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            pass
        start = time.monotonic()
        next_notice_check, grace_end = start + NOTICE_POLL_S, None
        while True:
            if self.stop is not None and self.stop.is_set():
                raise StopWaiting(reader.describe())
            now = time.monotonic()
            waited = now - start + POLL_S
            if self.timeout_s > 0 and waited >= self.timeout_s:
                raise InputStalled(
                    f"input stalled: no data for {waited:.0f} s "
                    f"(config.input.stall_timeout_s={self.timeout_s:g}) from "
                    f"{reader.describe()} (process {jax.process_index()}). Check that the data "
                    "directory is reachable from this host (network, credentials), or raise "
                    "config.input.stall_timeout_s (0 turns the watchdog off)"
                )
            if self.multiprocess and grace_end is None and now >= next_notice_check:
                next_notice_check = now + NOTICE_POLL_S
                if preemption_notice_received():
                    grace_end = now + NOTICE_GRACE_S
            if grace_end is not None and now >= grace_end:
                raise StalledAtPreemption(
                    f"preempted while waiting {waited:.0f} s for {reader.describe()} "
                    f"(process {jax.process_index()}): this process cannot reach the step the "
                    "processes agreed to save, so no checkpoint was saved"
                )
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                continue


class WatchedSource:
    """A random-access source whose reads are bounded by a `Watchdog`.

    `source[i]` runs in one helper (daemon) thread; the caller waits on the watchdog, so a read
    that never returns ends in `InputStalled` / `StopWaiting` instead of a hang. `len()` and
    other attributes are the wrapped source's.
    """

    def __init__(self, source, watchdog: Watchdog, reader: Reader):
        self._source, self._watchdog, self.reader = source, watchdog, reader
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._source)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._source, name)

    def _start(self) -> None:
        # Fresh queues with every thread: a thread left blocked by an abandoned wait keeps its
        # own, so its late result never answers a later read.
        self._requests: queue.Queue = queue.Queue()
        self._results: queue.Queue = queue.Queue()
        self._thread = threading.Thread(
            target=self._serve, args=(self._source, self._requests, self._results), daemon=True
        )
        self._thread.start()

    @staticmethod
    def _serve(source, requests: queue.Queue, results: queue.Queue) -> None:
        while True:
            index = requests.get()
            try:
                results.put((source[index], None))
            except BaseException as e:  # re-raised in the reading thread
                results.put((None, e))

    def __getitem__(self, index):
        if self._thread is None:
            self._start()
        self._requests.put(index)
        try:
            value, error = self._watchdog.get(self._results, self.reader)
        except BaseException:
            self._thread = None  # that thread may stay blocked; the next read gets a new one
            raise
        if error is not None:
            raise error
        return value
