"""`grokbench run TASK --help` says what each method does and lists the newer methods' settings."""

import pytest

from grokbench.cli import build_parser
from grokbench.methods import METHODS


def test_run_help_describes_every_method_and_shows_the_new_settings(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "mnist", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for method in METHODS.values():
        assert f"{method.name}: {method.description}" in text
    for flag in ("--muon-lr", "--muon-adjust-lr-fn", "--norm-constraint-multiple", "--softmax-precision", "--adam-eps"):
        assert flag in text
    assert "ce | mse | stablemax" in text
