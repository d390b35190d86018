"""`python -m dgr_jax.analysis.sparse_pixel --config ... --workdir ...` (see `study.py`)."""

from dgr_jax.analysis.common import cli

if __name__ == "__main__":
    cli.run("dgr_jax.analysis.sparse_pixel")
