"""grokbench: Ray-distributed sweeps and benchmarks of grokking interventions."""

__version__ = "0.1.0"
