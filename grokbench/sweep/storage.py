"""Where a sweep keeps its plan and Tune keeps its checkpoints: a local directory, or shared storage such as
`s3://bucket/path` on a multi-node cluster (checkpoints on a worker's disk are not synced to the head)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from grokbench.sweep.errors import SweepError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
NAME_RULE = "letters, digits, '.', '_' and '-' (starting with a letter or digit)"


def check_name(name: str, what: str = "sweep id") -> str:
    """A sweep's name or id as it may name a folder under the storage root and appear in an MLflow search, whose
    filters cannot quote every character (a value with both kinds of quote cannot be written at all)."""
    if not NAME.fullmatch(name):
        raise SweepError(f"{what} {name!r}: use only {NAME_RULE}")
    return name


class SweepStorage:
    def __init__(self, root: str | None):
        root = root or str(Path.cwd() / "grokbench_results")
        # relative paths would resolve per trial (each runs in its own directory): make them absolute here
        self.root = root.rstrip("/") if "://" in root else str(Path(root).expanduser().resolve())
        import pyarrow.fs

        self.fs, self._base = pyarrow.fs.FileSystem.from_uri(self.root if "://" in self.root else f"file://{self.root}")

    def uri(self, *parts: str) -> str:
        """A path or URI under the root, as Tune's `storage_path` and `Tuner.restore` take it."""
        return "/".join([self.root, *map(_part, parts)])

    def _path(self, *parts: str) -> str:
        return "/".join([self._base, *map(_part, parts)])

    def exists(self, *parts: str) -> bool:
        import pyarrow.fs

        return self.fs.get_file_info(self._path(*parts)).type != pyarrow.fs.FileType.NotFound

    def write_json(self, obj: Any, *parts: str) -> None:
        self.fs.create_dir(self._path(*parts[:-1]), recursive=True)
        with self.fs.open_output_stream(self._path(*parts)) as stream:
            stream.write(json.dumps(obj, indent=2).encode())

    def read_json(self, *parts: str) -> Any:
        with self.fs.open_input_stream(self._path(*parts)) as stream:
            return json.loads(stream.read().decode())

    def children_with(self, filename: str, *parts: str) -> list[str]:
        """Names of the sub-directories of `parts` that hold `filename`, oldest first."""
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self._path(*parts), allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            if info.type == pyarrow.fs.FileType.Directory:
                marker = self.fs.get_file_info(f"{info.path}/{filename}")
                if marker.type == pyarrow.fs.FileType.File:
                    found.append((marker.mtime, os.path.basename(info.path)))
        return [name for _, name in sorted(found)]


def _part(name: str) -> str:
    return check_name(name, "sweep name or id")
