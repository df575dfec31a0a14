"""Where grokbench finds the sweep files it ships, from whatever folder it runs in.

The sweep files live at the top of the repository, in `sweeps/` (and its subfolders), the benchmark suites in
`sweeps/benchmarks/`. `grokbench sweep NAME` reads `sweeps/NAME.yaml`; NAME may name a subfolder: `grokbench sweep
extra/x` reads `sweeps/extra/x.yaml`. The folder is found next to the `grokbench` package itself, never in the current
directory:

- installed from a wheel (`pip install .`), the files travel inside the package as `grokbench/sweeps/`
  (pyproject.toml maps the package `grokbench.sweeps` onto the top-level folder `sweeps/`);
- in a checkout, or installed from one in editable mode (`pip install -e .`), they are read where they are:
  `sweeps/` beside the `grokbench/` folder, so an edited sweep file takes effect at once.

A path to a `.yaml` file (`grokbench sweep ./my_sweep.yaml`) is read as given, relative to the current directory.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SWEEPS_DIR = next(
    (folder for folder in (PACKAGE / "sweeps", PACKAGE.parent / "sweeps") if folder.is_dir()), PACKAGE / "sweeps"
)


SUITES_DIR = SWEEPS_DIR / "benchmarks"  # benchmark suites (`grokbench benchmark NAME`), not sweep files


def sweep_names() -> list[str]:
    """The shipped sweeps by name: their paths under `sweeps/` without `.yaml` (`mnist`, `extra/x`), the benchmark
    suites in `sweeps/benchmarks/` left out."""
    paths = (p for p in SWEEPS_DIR.rglob("*.yaml") if SUITES_DIR not in p.parents)
    return sorted(path.relative_to(SWEEPS_DIR).with_suffix("").as_posix() for path in paths)
