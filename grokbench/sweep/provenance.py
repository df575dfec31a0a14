"""Where a run came from: grokbench's version with the commit of its checkout, and MLflow's own record of who
started a run from where."""

from __future__ import annotations

import subprocess
from pathlib import Path

import grokbench


def _git(*args: str) -> str:
    root = Path(grokbench.__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_version() -> str:
    """grokbench's version, with the short commit of the checkout it runs from (none when installed)."""
    sha = _git("rev-parse", "--short", "HEAD")
    return f"{grokbench.__version__}+{sha}" if sha else grokbench.__version__


def context_tags() -> dict[str, str]:
    """MLflow's own record of who started a run from where (user, source name and type, git commit), as
    `mlflow.start_run` sets it; the commit of grokbench's checkout where the entry point lies outside one (the
    `grokbench` console script)."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = resolve_tags()
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags.setdefault("mlflow.source.git.commit", commit)
    return tags
