"""A local Google Cloud Storage emulator for the tests: `gcp-storage-emulator` on 127.0.0.1.

    with gcs_emulator.running() as gcs:      # started on a free port, stopped on exit
        gcs.url("run")                       # "gs://dgr-test/run"
        subprocess.run(cmd, env=gcs.env())   # the variables every library below reads

Each library is pointed at it through its own setting (verified in the project's dependency
notes): gcsfs (and so etils.epath, i.e. everything `dgr_jax.storage` does) reads
STORAGE_EMULATOR_HOST; tensorstore (orbax's array writer) TENSORSTORE_GCS_HTTP_URL plus a
test token; the google-cloud-cpp client inside array_record (TFDS's reader of gs:// data dirs)
CLOUD_STORAGE_EMULATOR_ENDPOINT. gcsfs' gRPC bucket-type probe, which waits a minute per bucket
against an emulator, is switched off, and google-auth never looks for a cloud metadata server.
The emulator runs from tests/gcs_emulator_server.py, which adds the object-generation headers
that tensorstore needs to write a checkpoint of more than a few arrays.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

BUCKET = "dgr-test"
# The emulator with the generation headers tensorstore needs (see that file).
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gcs_emulator_server.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One port per test process, reused by every start: some clients keep the endpoint they first
# saw for the life of the process (array_record's and tensorstore's GCS clients), and a test
# process may start the emulator several times (pytest-xdist interleaves test modules).
_port: int | None = None


class Emulator:
    """A running emulator: its endpoint, bucket and environment."""

    def __init__(self, port: int, bucket: str):
        self.port, self.bucket = port, bucket
        self.endpoint = f"http://127.0.0.1:{port}"

    def url(self, *parts: str) -> str:
        return "/".join([f"gs://{self.bucket}", *parts])

    def variables(self) -> dict[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "TENSORSTORE_GCS_HTTP_URL": self.endpoint,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
            "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.endpoint,
            # Never look for a cloud metadata server: no ping, and any lookup stays on loopback.
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
        }

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) plus the emulator's variables."""
        return {**(os.environ if base is None else base), **self.variables()}


def forget_clients() -> None:
    """Drop cached gcsfs clients, which keep the endpoint they were created with."""
    try:
        import gcsfs
        from etils.epath import backend

        gcsfs.GCSFileSystem.clear_instance_cache()
        backend.fsspec_backend._get_filesystem.cache_clear()
    except (ImportError, AttributeError):
        pass


@contextlib.contextmanager
def running(bucket: str = BUCKET) -> Iterator[Emulator]:
    """Start the emulator (in memory, with `bucket`), point this process at it, stop it after."""
    global _port
    proc = None
    for attempt in range(2):
        if _port is None or attempt or not _is_free(_port):
            _port = _free_port()
        proc = _start(_port, bucket)
        if proc is not None:
            break
    if proc is None:
        raise RuntimeError("the storage emulator did not start")
    emulator = Emulator(_port, bucket)
    saved = {k: os.environ.get(k) for k in emulator.variables()}
    try:
        os.environ.update(emulator.variables())
        forget_clients()
        yield emulator
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        forget_clients()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the emulator's server
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _start(port: int, bucket: str) -> subprocess.Popen | None:
    """The emulator process once it accepts connections; None if it exits (port taken)."""
    proc = subprocess.Popen(
        [sys.executable, SERVER, "start", "--host", "127.0.0.1", "--port", str(port)]
        + ["--in-memory", "--default-bucket", bucket, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                return None
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return None
            time.sleep(0.05)
