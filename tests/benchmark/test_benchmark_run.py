"""The smoke benchmark end to end, on a real local Ray and a real SQLite store: its driver killed with SIGKILL
part-way, resumed, every trial once under one parent run holding the leaderboard; then exported, imported elsewhere,
and its leaderboard rebuilt byte for byte. It runs the smoke suite under its paper ruleset only, half the trials
(the rulesets only differ in what the planner draws: tests/benchmark/test_benchmark_plan.py), on a narrower XOR net:
a Tune trial costs seconds here."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from grokbench.benchmark.suite import PHASE_TAG, load_suite
from grokbench.sweep.keys import KEY_TAG
from grokbench.sweep.mlflow_store import PARENT_RUN_TAG, PARENT_TAG

SUITE = "smoke_paper"
EXPERIMENT = f"grokbench/benchmark_{SUITE}"
TUNING = CONFIRMATION = 4  # 2 arms × 2 studies × 1 trial; 2 arms × 2 confirmation seeds


def paper_ruleset_smoke_suite(directory: Path) -> Path:
    suite = yaml.safe_load(load_suite("smoke").path.read_text())
    suite["name"], suite["rulesets"] = SUITE, {"paper": suite["rulesets"]["paper"]}
    suite["description"] = "the smoke suite under its paper ruleset only, on a narrower XOR net evaluated less often"
    # a quarter of the hidden units and a fifth of the evaluations: a trial's training is ≈ 5× cheaper; the
    # baseline at seed 0 still memorises, then groks (test accuracy 0.95 at update 100)
    xor = suite["workloads"]["xor"]
    xor["settings"], xor["expected_best_updates"] = {"hidden": 128, "eval_every": 10}, 100
    path = directory / f"{SUITE}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return path


def uri(directory: Path) -> str:
    return f"sqlite:///{directory / 'mlflow.db'}"


def runs(directory: Path):
    client = mlflow.MlflowClient(uri(directory))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


def grokbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "grokbench.cli", *args]


def kill_once_some_trials_finished(command: list[str], cwd: Path, env: dict) -> None:
    driver = subprocess.Popen(
        command, cwd=cwd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(1)
            _, found = runs(cwd) if (cwd / "mlflow.db").exists() else (None, [])
            finished = [r for r in found if r.data.tags.get("status") not in (None, "running")]
            if 1 <= len(finished) < TUNING:  # a tuning trial done, the tuning phase not over
                break
            if driver.poll() is not None:
                pytest.fail(f"the benchmark exited ({driver.returncode}) before the kill, {len(finished)} done")
        else:
            pytest.fail(f"no tuning trial ended within 300 s ({len(finished)} done)")
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_benchmark_resumes_to_every_trial_once_under_its_parent_and_its_leaderboard_rebuilds(
    local_ray, tmp_path, migrated_store
):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    for directory in (here, elsewhere):
        directory.mkdir()
        shutil.copy(migrated_store, directory / "mlflow.db")
    where = ["--address", local_ray, "--tracking-uri", uri(here), "--storage", str(here / "results")]
    suite = paper_ruleset_smoke_suite(tmp_path)
    command = grokbench("benchmark", str(suite), *where, "--benchmark-id", "smoke-1", "--measure-updates", "5")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kill_once_some_trials_finished(command + ["--out", str(here / "board")], here, env)

    resumed = subprocess.run(
        command + ["--resume", "--out", str(here / "board")], cwd=here, env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    client, found = runs(here)
    (parent,) = [r for r in found if PARENT_TAG in r.data.tags]
    trials = [r for r in found if KEY_TAG in r.data.tags]
    keys = [r.data.tags[KEY_TAG] for r in trials]
    assert len(keys) == len(set(keys)) == TUNING + CONFIRMATION  # none missing, none twice
    assert sorted(r.data.tags[PHASE_TAG] for r in trials) == ["confirmation"] * CONFIRMATION + ["tuning"] * TUNING
    assert {r.data.tags[PARENT_RUN_TAG] for r in trials} == {parent.info.run_id}  # direct children, one parent
    assert all(r.data.tags["status"] in ("grokked", "censored", "diverged") for r in trials)
    assert parent.info.status == "FINISHED"
    for run in trials:  # no point logged twice across the kill
        for metric in run.data.metrics:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert len(steps) == len(set(steps)), f"{run.info.run_name}: {metric} {steps}"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"suite.yaml", "costs.json", "leaderboard"} <= artifacts
    board = {a.path.removeprefix("leaderboard/") for a in client.list_artifacts(parent.info.run_id, "leaderboard")}
    assert {"leaderboard.md", "leaderboard.csv", "performance_profiles.png"} <= board

    archive = tmp_path / "smoke.jsonl.gz"
    export = grokbench("export", f"benchmark_{SUITE}", "--tracking-uri", uri(here), "--out", str(archive))
    subprocess.run(export, check=True)
    subprocess.run(grokbench("import", str(archive), "--tracking-uri", uri(elsewhere)), check=True)
    rebuild = [sys.executable, "-m", "analysis.leaderboard", "--tracking-uri", uri(elsewhere)]
    rebuild += ["--experiment", f"benchmark_{SUITE}", "--out", str(elsewhere / "board"), "--no-log"]
    subprocess.run(rebuild, check=True, capture_output=True)
    written = sorted(p.name for p in (here / "board").iterdir())
    assert written == sorted(p.name for p in (elsewhere / "board").iterdir())
    assert "performance_profiles.png" in written and "leaderboard.csv" in written
    for name in written:
        assert (here / "board" / name).read_bytes() == (elsewhere / "board" / name).read_bytes(), name
