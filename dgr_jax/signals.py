"""SIGTERM / SIGINT in a single-process run: stop at the next step boundary, or at once.

    signals = StopOnSignal(stop, checkpoints_dir)
    signals.install()
    try:
        ...  # the loop checks `stop`; waits for input end when it is set
    finally:
        signals.restore()

Single process only: in multi-process runs JAX's preemption notifier owns SIGTERM (a Python
handler installed after `jax.distributed.initialize` would replace it, and the other processes
would never learn), so nothing is installed there and the trainer stops on the preemption sync
point instead.

The first SIGTERM sets `stop`. A second SIGTERM, or a SIGINT after the first SIGTERM, ends the
process at once (`os._exit(128 + signal)`), whatever the main thread is doing: the signal is
seen by a helper thread through `signal.set_wakeup_fd`, not by a Python handler, which would
only run once the main thread came back from a blocking C++ call. Checkpoints already committed
stay intact (orbax writes a step to a temporary location first; an interrupted one is ignored).
A SIGINT before any SIGTERM is Python's usual KeyboardInterrupt.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import jax


class StopOnSignal:
    """See the module docstring."""

    def __init__(self, stop: threading.Event, checkpoints: str):
        self.stop = stop
        self.checkpoints = checkpoints
        self.active = False

    def install(self) -> None:
        """Take over SIGTERM / SIGINT (single process, main thread; otherwise a no-op)."""
        if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
            return
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._old_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._old_term = signal.signal(signal.SIGTERM, lambda *_: None)  # the thread acts
        self._old_int = signal.signal(signal.SIGINT, self._on_sigint)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self.active = True

    def _on_sigint(self, signum, frame) -> None:
        if not self.stop.is_set():
            raise KeyboardInterrupt  # before any SIGTERM: as usual

    def _watch(self) -> None:
        while True:
            try:
                data = os.read(self._read_fd, 64)
            except OSError:
                return
            if not data or 0 in data:  # closed, or the wake-up written by __exit__
                return
            for signum in data:
                if signum not in (signal.SIGTERM, signal.SIGINT):
                    continue
                name = signal.Signals(signum).name
                if self.stop.is_set():
                    print(
                        f"{name} again: exiting at once; the checkpoints committed under "
                        f"{self.checkpoints} are intact (a save in progress is discarded)",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(128 + signum)
                if signum == signal.SIGTERM:
                    self.stop.set()
                    print(
                        "SIGTERM: stopping at the next step boundary (at once if waiting for "
                        "data or inside an evaluation) and saving it; a second SIGTERM or "
                        "Ctrl-C exits at once",
                        flush=True,
                    )

    def restore(self) -> None:
        """Give the signals back to the handlers found by `install`."""
        if not self.active:
            return
        signal.signal(signal.SIGTERM, self._old_term)
        signal.signal(signal.SIGINT, self._old_int)
        signal.set_wakeup_fd(self._old_wakeup)
        os.write(self._write_fd, b"\0")
        self._thread.join(timeout=1)
        os.close(self._write_fd)
        os.close(self._read_fd)
        self.active = False
