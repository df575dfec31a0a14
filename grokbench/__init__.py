"""grokbench: Ray-distributed sweeps and benchmarks of grokking interventions."""

__version__ = "0.1.0"  # the one place the version is set: pyproject.toml reads it from here
