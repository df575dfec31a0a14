"""One driver at a time per tracking store and experiment on a machine.

Two sweeps of one file started at once against one store would each decide that the same trials are still to
run, and log each of them twice. The second driver instead stops with one line, before it writes anything. The
lock is an advisory `flock` on a file in the user's temporary folder named after the store and the experiment, so
it works whatever folder each shell runs in, and the kernel releases it when its driver ends, even by SIGKILL.
Drivers on two machines sharing one tracking server are not seen by it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grokbench.sweep.errors import SweepError


def lock_path(uri: str, experiment: str) -> Path:
    digest = hashlib.sha1(f"{uri}\n{experiment}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"grokbench-{os.getuid()}" / f"{digest}.lock"


@contextmanager
def experiment_lock(uri: str, experiment: str) -> Iterator[None]:
    """Hold the store's experiment for this driver, or refuse (SweepError) while another driver holds it."""
    path = lock_path(uri, experiment)
    path.parent.mkdir(exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SweepError(
                f"a grokbench driver ({holder}) is already running {experiment} against {uri}; wait for it to end "
                "(or stop it) and run again: the trials it finished are not run twice"
            ) from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
