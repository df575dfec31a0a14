"""A method (or task) from outside the package joins the registry through an entry point, without editing
grokbench."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from grokbench.methods import METHODS
from grokbench.methods.baseline import Baseline
from grokbench.plugins import plugged_in
from grokbench.resolve import config_of
from grokbench.train import Trial

PLUGIN = '''
"""A tiny example method from outside grokbench: the baseline with its gradients halved."""

from dataclasses import dataclass

import torch

from grokbench.methods.base import Method
from grokbench.settings import Settings, setting


@dataclass(frozen=True)
class HalvedSettings(Settings):
    halved_factor: float = setting(0.5, "what the gradients are multiplied by")


class Halved(Method):
    name = "halved"
    Settings = HalvedSettings

    def on_gradients(self, grads):
        torch._foreach_mul_(grads, self.settings.halved_factor)

'''
TASK_PLUGIN = '''
"""A tiny example task from outside grokbench (a module of its own: a task's module must not import
grokbench.methods, which loads the tasks first)."""

from grokbench.tasks.xor import Xor


class XorAgain(Xor):
    name = "xor_again"


TASK = XorAgain()
'''


def installed_plugin(root):
    """The plugin as an installed distribution would leave it on the path: its module and its entry points."""
    (root / "tiny_grokbench_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (root / "tiny_grokbench_task.py").write_text(textwrap.dedent(TASK_PLUGIN))
    info = root / "tiny_grokbench_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-grokbench-plugin\nVersion: 0.1\n")
    entry_points = (
        "[grokbench.methods]\nhalved = tiny_grokbench_plugin:Halved\nbaseline = tiny_grokbench_plugin:Halved\n"
        "[grokbench.tasks]\nxor_again = tiny_grokbench_task:TASK\n"
    )
    (info / "entry_points.txt").write_text(entry_points)
    return root


def test_an_entry_point_adds_a_method_and_cannot_replace_a_built_in_one(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(installed_plugin(tmp_path)))
    registry = plugged_in("grokbench.methods", {"baseline": Baseline})
    assert registry["baseline"] is Baseline
    assert registry["halved"].name == "halved"
    assert plugged_in("grokbench.tasks", {})["xor_again"].name == "xor_again"
    assert "halved" not in METHODS  # this process's registry was built before the plugin was on the path
    monkeypatch.setitem(METHODS, "halved", registry["halved"])  # as a process started now would have it
    trial = Trial(config_of(task="xor", method="halved", halved_factor=0.25, max_epochs=2))
    assert trial.method.settings.halved_factor == 0.25
    assert trial.run()["epochs"] == 2


@pytest.mark.slow  # a new process: about 4 s
def test_grokbench_runs_a_method_it_finds_through_an_entry_point(tmp_path):
    root = installed_plugin(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "grokbench.cli", "run", "xor", "--method", "halved", "--halved-factor", "0.25"]
    done = subprocess.run(
        [*command, "--max-epochs", "2", "--eval-every", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["method"], summary["epochs"]) == ("halved", 2)
