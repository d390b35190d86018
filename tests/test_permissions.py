"""Files the project writes get the modes an ordinary write gets under the umask (issue 31).

0644 / 0755 under umask 022, 0600 / 0700 under 077: results others on a shared disk can read
when the user's umask lets them, private when it does not. Each writer path runs in
tests/permissions_worker.py, one subprocess per umask (os.umask is process-wide: changing it
here would race the test process's other threads), shared by the pytest-xdist workers; one
test per writer path and umask reads its result. About 10 s per umask, no model compiled.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

from dgr_jax import compile_cache, storage

WORKER = pathlib.Path(__file__).with_name("permissions_worker.py")
UMASKS = [0o022, 0o077]
# Writer path -> files it must have written (so that a writer that wrote nothing fails).
EXPECTED = {
    "json": {"config.json", "eval/test/metrics.json"},
    "pictures": {"images/rgb.png", "images/depth16.png", "images/panel.png", "train_curves.png"},
    "logs": {"train_metrics.jsonl", "eval_metrics.jsonl", "copied/a/b.txt"},
    "reports": {"per_image.csv", "study.csv", "report.md", "mask_nets/arm/lambda_0.5.npz"},
    "converted_and_predictions": {
        "converted/model.json",
        "converted/state/_METADATA",
        "predictions/a_depth.png",
        "predictions/a_color.png",
        "predictions/a.npy",
        "predictions/a.ply",
    },
    "checkpoints": {"checkpoints/1/commit_success.txt", "checkpoints/1/state/_METADATA"},
    "compile_cache": set(),  # entry names are hashes: at least one "-cache" file, checked below
    "dataset": {"synthetic_depth/indoor_8x8_n2_t1_s0/1.0.0/dataset_info.json"},
}


def _modes_under(umask: int, tmp_path_factory, worker_id: str) -> dict:
    """The worker's result for `umask`, computed once per test session (file lock + cache)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent  # shared by the xdist workers of this session
    result = root / f"permissions_{umask:03o}" / "modes.json"
    with open(root / f"permissions_{umask:03o}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            out = result.parent
            shutil.rmtree(out, ignore_errors=True)  # what a failed earlier try left
            out.mkdir()
            run = subprocess.run(
                [sys.executable, str(WORKER), f"{umask:03o}", str(out)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(result.read_text())


@pytest.mark.parametrize("umask", UMASKS, ids=lambda u: f"umask{u:03o}")
@pytest.mark.parametrize("writer", list(EXPECTED))
def test_written_files_get_the_modes_of_an_ordinary_write(
    writer, umask, tmp_path_factory, worker_id
):
    outcome = _modes_under(umask, tmp_path_factory, worker_id)[writer]
    assert "error" not in outcome, outcome.get("error")
    modes = outcome["modes"]
    files = {p for p in modes if not p.endswith("/")}
    assert EXPECTED[writer] <= files, sorted(EXPECTED[writer] - files)
    if writer == "compile_cache":
        assert any(p.endswith("-cache") for p in files), sorted(files)
    assert not [p for p in files if ".tmp-" in p], "a temporary file was left behind"
    want_file, want_dir = oct(0o666 & ~umask), oct(0o777 & ~umask)
    wrong = {p: m for p, m in modes.items() if m != (want_dir if p.endswith("/") else want_file)}
    assert not wrong, f"want files {want_file}, folders {want_dir}; got {wrong}"


def test_atomic_write_matches_open_and_replaces_a_private_file(tmp_path):
    """Same mode as `open(path, "w")` in the same folder, whatever the umask of this process;
    an existing 0600 file (written before the fix) is replaced by one of that mode."""
    with open(tmp_path / "ordinary.txt", "w") as f:
        f.write("x")
    ordinary = os.stat(tmp_path / "ordinary.txt").st_mode
    target = tmp_path / "sub" / "atomic.json"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o600)
    storage.write_text(target, "new")
    assert target.read_text() == "new"
    assert oct(os.stat(target).st_mode) == oct(ordinary)
    assert os.listdir(target.parent) == ["atomic.json"]


def test_default_compile_cache_folder_is_private_and_an_existing_one_is_kept(tmp_path, monkeypatch):
    """The per-user cache holds executables JAX runs: only its owner may write (or read) it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = compile_cache.default_dir()
    assert path.startswith(str(tmp_path))
    compile_cache.make_private_dir(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    os.chmod(path, 0o750)  # the user's own choice
    compile_cache.make_private_dir(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
