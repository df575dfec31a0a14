"""New settings at their defaults, and settings renamed, leave every stored trial's key as it was."""

from pathlib import Path

import pytest

from grokbench.sweep.archive import _is_parent, _records
from grokbench.sweep.keys import KEY_TAG, trial_key

ARCHIVES = sorted((Path(__file__).resolve().parents[2] / "results" / "runs").glob("*.jsonl.gz"))


@pytest.mark.slow  # reads every committed archive: about 10 s on one core
@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda path: path.name.removesuffix(".jsonl.gz"))
def test_the_key_of_every_archived_run_is_the_key_it_was_stored_under(archive):
    records = [r for r in _records(archive) if not _is_parent(r["tags"])]  # a sweep's parent run holds no trial
    assert records
    changed = [(r["tags"][KEY_TAG], trial_key(r["params"])) for r in records]
    assert [pair for pair in changed if pair[0] != pair[1]] == []
