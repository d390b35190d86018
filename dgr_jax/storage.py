"""Every path the project reads or writes: local folders and object stores (gs://) alike.

One path type, `etils.epath.Path` (`path(p)`), and the few operations the project needs, so a
work directory, data dir or output folder can be `gs://bucket/...` on a TPU pod as well as a
local folder. Local paths behave as before (made absolute, `~` expanded).

- Small files (JSON, text, CSV, PNG, .npy) are written whole with `write_bytes` / `write_text`,
  atomically where the store allows it: locally through a temporary file and `os.replace`; on
  an object store an upload only becomes visible when complete, so the object is written
  directly (a rename there is a copy plus a delete, not atomic, and slow).
- Local files get the permissions an ordinary `open(path, "w")` gives them: 0666 less the
  process's umask (0644 under umask 022, 0600 under 077), or what the folder's default ACL
  says. The temporary file is created with mode 0666 and the kernel applies the umask or ACL,
  as for any new file (`tempfile.mkstemp` would give 0600 whatever the umask, and the rename
  would keep it). Objects on a store have no modes: access there is the bucket's IAM.
- Object stores cannot append. `Appender` (the JSONL logs, TensorBoard event files) buffers and
  appends a batch at a time: on gs:// by composing the object with an uploaded segment (one
  upload of the new bytes, never a rewrite of the file); on other object stores by rewriting
  the object; locally by appending to the file at once.
- Object stores have no folders: `makedirs` does nothing there (gcsfs would otherwise try to
  create a missing bucket).
- `check(...)` validates a gs:// location at start-up (credentials, bucket), so a typo or a
  missing login fails before anything is built or compiled, naming the path.

Only process 0 should write shared files; callers decide that (see the trainer).
"""

from __future__ import annotations

import io
import os
import secrets
import time
import uuid
from typing import Any

# gcsfs 2026.x probes each bucket's type over gRPC, which against a local emulator waits up to
# a minute per bucket before falling back (see README, "Running on a TPU pod"). Must be set
# before gcsfs is imported.
if os.environ.get("STORAGE_EMULATOR_HOST"):
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import fsspec.config
from etils import epath

# A bucket is written by several hosts and, for checkpoints, by tensorstore, none of which
# gcsfs sees: its cached folder listings would go stale (a file another writer added looks
# missing). Listings are therefore always fetched; the project lists little.
for _protocol in ("gs", "gcs"):
    fsspec.config.conf.setdefault(_protocol, {}).setdefault("use_listings_cache", False)

PathLike = str | os.PathLike
Path = epath.Path


class StorageError(OSError):
    """A path that cannot be used (no credentials, missing bucket, ...); the message says why."""


def is_remote(p: PathLike) -> bool:
    """True for object-store URLs (gs://, s3://, ...)."""
    return "://" in os.fspath(p)


def scheme(p: PathLike) -> str:
    """ "gs" for gs://bucket/x; "" for a local path."""
    text = os.fspath(p)
    return text.split("://", 1)[0] if "://" in text else ""


def path(p: PathLike) -> epath.Path:
    """The project's path type: object-store URLs as they are, local paths absolute."""
    text = os.fspath(p)
    if is_remote(text):
        return epath.Path(text)
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def absolute(p: PathLike) -> str:
    """`path(p)` as a string (for configs, logs and APIs that take strings)."""
    return os.fspath(path(p))


def join(p: PathLike, *parts: str) -> str:
    """`os.path.join` that keeps gs:// URLs intact (local paths are made absolute)."""
    return os.fspath(path(p).joinpath(*parts))


def exists(p: PathLike) -> bool:
    return path(p).exists()


def isdir(p: PathLike) -> bool:
    return path(p).is_dir()


def isfile(p: PathLike) -> bool:
    return path(p).is_file()


def listdir(p: PathLike) -> list[str]:
    """Names (not paths) in a folder, sorted; [] when it does not exist."""
    folder = path(p)
    if not folder.is_dir():
        return []
    return sorted(child.name for child in folder.iterdir())


def makedirs(p: PathLike) -> None:
    """Create a local folder and its parents; nothing on object stores (no folders there)."""
    if not is_remote(p):
        os.makedirs(path(p), exist_ok=True)


def read_bytes(p: PathLike) -> bytes:
    return path(p).read_bytes()


def read_text(p: PathLike) -> str:
    return read_bytes(p).decode("utf-8")


def write_bytes(p: PathLike, data: bytes) -> None:
    """Write a whole small file atomically: a reader sees the old content or the new one.

    Local: a temporary file in the same folder, then `os.replace` (folders are created); the
    file gets the mode a new file gets under the process's umask (see the module docstring),
    whatever the mode of the file it replaces. Object store: one upload, which becomes visible
    only once complete.
    """
    target = path(p)
    if is_remote(target):
        with target.open("wb") as f:
            f.write(data)
        return
    directory = os.path.dirname(os.fspath(target))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _new_temporary(directory, os.path.splitext(target.name)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# As tempfile.mkstemp (exclusive, no symlink followed, not inherited by children), but mode
# 0666: the kernel takes the umask (or the folder's default ACL) off it, as for any new file.
# Nothing reads or sets the umask here, so no thread can race on it (os.umask is process-wide).
_TEMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _new_temporary(directory: str, suffix: str) -> tuple[int, str]:
    """(fd, path) of a new empty file `.tmp-<random><suffix>` in `directory`."""
    for _ in range(100):
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}{suffix}")
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {directory}")


def write_text(p: PathLike, text: str) -> None:
    write_bytes(p, text.encode("utf-8"))


def save_figure(p: PathLike, fig: Any, **savefig_kwargs: Any) -> None:
    """A matplotlib figure as a PNG, written with `write_bytes`."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **savefig_kwargs)
    write_bytes(p, buf.getvalue())


def copy_tree(src: PathLike, dst: PathLike, *, last: tuple[str, ...] = ()) -> int:
    """Copy every file under local folder `src` to `dst` (any store); returns the file count.

    Files whose name is in `last` are copied after all others, so a reader that takes their
    presence as "complete" (TFDS's dataset_info.json) never sees a partial copy.
    """
    src = os.fspath(path(src))
    files = []
    for root, _, names in os.walk(src):
        files += [os.path.relpath(os.path.join(root, n), src) for n in names]
    files.sort(key=lambda rel: (os.path.basename(rel) in last, rel))
    for rel in files:
        target = path(dst).joinpath(*rel.split(os.sep))
        makedirs(os.fspath(target.parent))
        with open(os.path.join(src, rel), "rb") as f:
            write_bytes(target, f.read())
    return len(files)


def _fsspec(p: PathLike):
    """(fsspec filesystem, path without the protocol) of an object-store URL."""
    import fsspec

    return fsspec.core.url_to_fs(os.fspath(p))


_SEGMENT = ".append-"  # name part of the temporary objects composed onto a gs:// file


class Appender:
    """Appends bytes to one file: lines of a JSONL log, records of a TensorBoard event file.

    Locally every `write` is appended at once (as `open(path, "a")`). On object stores writes
    are buffered and appended together by `flush()`, which runs when `flush_secs` have passed
    since the last one and whenever the caller asks (before a checkpoint, at the end):

    - gs://: the buffer is uploaded as a temporary object and composed onto the end of the
      file (GCS "compose"; the composite replaces the object atomically), then deleted: each
      flush uploads only the new bytes.
    - other object stores: the object is rewritten with the buffer appended.

    A process killed between flushes loses only its buffer, i.e. lines after the last
    checkpoint, which a resumed run drops and writes again anyway. One killed during a compose
    may leave its segment object behind; the next `Appender` of that file deletes it (one
    process appends to a file at a time).
    """

    def __init__(self, p: PathLike, *, flush_secs: float = 60.0):
        self.path = path(p)
        self.remote = is_remote(self.path)
        self.flush_secs = flush_secs
        self._buffer: list[bytes] = []
        self._last_flush = time.monotonic()
        self._exists: bool | None = None
        if not self.remote:
            makedirs(os.fspath(self.path.parent))
        elif scheme(self.path) == "gs":
            for leftover in self.path.parent.glob(f"{self.path.name}{_SEGMENT}*"):
                leftover.unlink()

    def write(self, data: bytes) -> None:
        if not self.remote:
            with open(self.path, "ab") as f:
                f.write(data)
            return
        self._buffer.append(data)
        if time.monotonic() - self._last_flush >= self.flush_secs:
            self.flush()

    def flush(self) -> None:
        """Append the buffered bytes to the object (object stores; local writes are done)."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        data = b"".join(self._buffer)
        if self._exists is None:
            self._exists = self.path.exists()
        if not self._exists:
            write_bytes(self.path, data)
        elif scheme(self.path) == "gs":
            self._compose(data)
        else:
            write_bytes(self.path, self.path.read_bytes() + data)
        self._exists = True
        self._buffer = []

    def _compose(self, data: bytes) -> None:
        fs, target = _fsspec(self.path)
        segment = f"{target}{_SEGMENT}{uuid.uuid4().hex}"
        fs.pipe_file(segment, data)
        try:
            fs.merge(target, [target, segment])
        finally:
            fs.rm_file(segment)
        fs.invalidate_cache(target)

    def close(self) -> None:
        self.flush()


def check(p: PathLike, what: str, *, must_exist: bool = False) -> None:
    """Fail now, with the path and the reason, if `p` cannot be used.

    For gs:// URLs: credentials must be found (unless an emulator is configured with
    STORAGE_EMULATOR_HOST) and the bucket must exist and be listable with them. With
    `must_exist`, the path itself must exist too (inputs such as converted weights). Local
    paths are only checked with `must_exist`. Other object stores are left to their libraries.

    Args:
        p: the path.
        what: what it is, for the message ("--workdir", "config.data_dir", ...).
        must_exist: the path is an input that must be there.

    Raises:
        StorageError naming `what`, the path and what is wrong.
    """
    text = os.fspath(p)
    if not is_remote(text):
        if must_exist and not os.path.exists(os.path.expanduser(text)):
            raise StorageError(f"{what} {text} does not exist")
        return
    if scheme(text) != "gs":
        return
    bucket, _, key = text[len("gs://") :].partition("/")
    if not bucket:
        raise StorageError(f"{what} {text}: no bucket in the URL; use gs://BUCKET/path")
    if not os.environ.get("STORAGE_EMULATOR_HOST"):
        _check_credentials(text, what)
    fs, _ = _fsspec(text)
    try:
        # Lists at most one object: needs only storage.objects.list, unlike a bucket lookup,
        # and 404 means the bucket itself is missing (an empty prefix lists nothing).
        fs.call("GET", "b/{}/o", bucket, maxResults=1, prefix=key, json_out=True)
    except FileNotFoundError:
        raise StorageError(
            f"{what} {text}: bucket gs://{bucket} does not exist (create it with "
            f"`gcloud storage buckets create gs://{bucket} --location=REGION`, in the region of "
            "your TPUs, or fix the name)"
        ) from None
    except Exception as e:  # gcsfs: OSError("Forbidden ...") on 403, HttpError on 401, ...
        raise StorageError(
            f"{what} {text}: cannot list gs://{bucket} ({type(e).__name__}: {e}). If access is "
            "denied, grant the credentials storage access to the bucket "
            "(roles/storage.objectUser) or log in with an account that has it"
        ) from None
    if must_exist and not exists(text):
        raise StorageError(f"{what} {text} does not exist")


def _check_credentials(text: str, what: str) -> None:
    try:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError:
        raise StorageError(
            f"{what} {text}: gs:// paths need gcsfs (pip install -r requirements.txt)"
        ) from None
    try:
        google.auth.default()
    except DefaultCredentialsError as e:
        raise StorageError(
            f"{what} {text}: no Google Cloud credentials found ({e}). On a TPU VM the VM's "
            "service account is used (it needs storage access to the bucket); elsewhere run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS to "
            "a service-account key file"
        ) from None
