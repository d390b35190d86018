"""The library stands alone: no module under dgr_jax/ imports the experiment folder `configs/`."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "dgr_jax"


def _configs_imports(path: pathlib.Path) -> list[str]:
    """'file:line' of every `import configs...` / `from configs... import` in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        if any(name == "configs" or name.startswith("configs.") for name in names):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_no_package_module_imports_configs():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 50  # the scan really walks the package
    offenders = [hit for path in modules for hit in _configs_imports(path)]
    assert not offenders, f"dgr_jax imports the experiment folder configs/: {offenders}"


def test_scan_catches_an_import_inside_a_function(tmp_path):
    bad = PACKAGE / "_probe_standalone.py"  # inside the package, so relative_to works
    try:
        bad.write_text("def f():\n    from configs import base\n    return base\n")
        assert _configs_imports(bad) == ["dgr_jax/_probe_standalone.py:2"]
    finally:
        bad.unlink()


@pytest.mark.slow
def test_every_module_imports_without_the_repository(tmp_path):
    """Import every dgr_jax module from a directory that holds the package and nothing else."""
    site = tmp_path / "site"
    site.mkdir()
    os.symlink(PACKAGE, site / "dgr_jax")
    script = (
        "import importlib, pkgutil, sys\n"
        "import dgr_jax\n"
        "names = [m.name for m in pkgutil.walk_packages(dgr_jax.__path__, 'dgr_jax.')]\n"
        "for name in names:\n"
        "    if name.endswith('__main__'):\n"
        "        continue\n"
        "    importlib.import_module(name)\n"
        "assert 'configs' not in sys.modules, 'configs was imported'\n"
        "print(len(names))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert int(out.stdout.split()[-1]) > 50
