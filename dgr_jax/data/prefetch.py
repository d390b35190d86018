"""Background prefetch of the training input: local batches -> global sharded arrays.

    prefetch = Prefetcher(it, {"image": sh, "depth": sh}, size=2, watchdog=dog, reader=reader)
    batch, iterator_state = prefetch.next()
    prefetch.close()

Reading and assembling happen in a daemon thread; `next()` waits through the `Watchdog`, so a
reader that never returns ends in a clear error (or a stop) instead of a silent hang.
"""

from __future__ import annotations

import queue
import threading

import jax
import numpy as np

from dgr_jax.data.watchdog import Reader, Watchdog

_JOIN_S = 5.0  # how long close() waits for the thread (not at all after an abandoned wait)


class Prefetcher:
    """Background thread: next local batch -> global sharded arrays, with its iterator state.

    Each queued item carries the iterator state *after* that batch, so a checkpoint taken after
    consuming it resumes exactly at the following batch.
    """

    def __init__(
        self,
        it,
        shardings: dict,
        size: int = 2,
        *,
        watchdog: Watchdog | None = None,
        reader: Reader | None = None,
    ):
        self._it, self._shardings = it, shardings
        self._watchdog, self._reader = watchdog, reader
        self._q: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                local = next(self._it)
                state = self._it.get_state()
                batch = {
                    k: jax.make_array_from_process_local_data(
                        self._shardings[k], np.asarray(local[k])
                    )
                    for k in ("image", "depth")
                }
                self._put((batch, state))
        except BaseException as e:  # surfaced in the training thread
            self._put((e, None))

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def next(self) -> tuple[dict, dict]:
        if self._watchdog is None or self._reader is None:
            item, state = self._q.get()
        else:
            try:
                item, state = self._watchdog.get(self._q, self._reader)
            except BaseException:
                self._abandoned = True  # the thread may be blocked in a read: do not join it
                raise
        if isinstance(item, BaseException):
            raise item
        return item, state

    def close(self) -> None:
        self._stop.set()
        if not self._abandoned:
            self._thread.join(timeout=_JOIN_S)
