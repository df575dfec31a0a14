"""What a sweep's user reads: durations, the live line's end, Ray's notices, a dry run's plan and warnings, the
summary of a smoke sweep."""

import subprocess
import sys

import pytest
import torch

from grokbench.cli import main
from grokbench.progress import duration


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (0, "0:00"),
        (17.9, "0:17"),
        (62, "1:02"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (3725, "1:02:05"),
        (90061, "25:01:01"),
    ],
)
def test_durations_read_as_a_clock(seconds, shown):
    assert duration(seconds) == shown


def test_the_live_line_says_done_once_every_trial_has_ended(monkeypatch, capsys):
    from types import SimpleNamespace

    from grokbench.sweep import live

    clock = [0.0]
    monkeypatch.setattr(live.time, "monotonic", lambda: clock[0])
    trial = SimpleNamespace(
        trial_id="a", status="RUNNING", checkpoint=None, config={"trial": {"config": {"max_epochs": 9}}}
    )
    view = live.LiveView(total=1)
    view.on_trial_start(0, [trial], trial)
    clock[0] = 17.0
    view.on_trial_result(0, [trial], trial, {"summary": {"status": "grokked"}})
    view.on_trial_complete(0, [trial], trial)
    trial.status = "TERMINATED"
    view.on_experiment_end([trial])
    assert capsys.readouterr().err.strip().splitlines()[-1] == "[0:17] queued 0  running 0  grokked 1  done"


TOKEN_NOTICE_SCRIPT = """
import sys
from ray._private.authentication import authentication_token_setup as setup
if sys.argv[1] == "quiet":
    from grokbench.sweep.driver import quiet_ray
    quiet_ray()
setup._warn_token_auth_enabled()   # what ray.init says when it starts or joins a cluster with token authentication
setup._warn_token_auth_disabled()  # a cluster open to anyone on its network: that warning must stay
"""


@pytest.mark.slow  # a subprocess or seconds of training: kept out of the fast tier
@pytest.mark.parametrize("quiet", [False, True])
def test_a_sweep_silences_rays_token_notice_and_nothing_else(quiet):
    from grokbench.sweep.driver import RAY_TOKEN_NOTICE

    done = subprocess.run(
        [sys.executable, "-c", TOKEN_NOTICE_SCRIPT, "quiet" if quiet else "loud"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (RAY_TOKEN_NOTICE in done.stderr) is not quiet, done.stderr
    assert "Token authentication is disabled for this Ray cluster" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="plans a GPU sweep on a machine without a GPU")
def test_a_gpu_sweeps_dry_run_on_a_machine_without_one_plans_it_and_times_nothing(tmp_path, capsys):
    flags = ["--gpus-per-trial", "0.25", "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(["sweep", "mnist", *flags]) == 0
    out = capsys.readouterr().out
    assert "40 trials to run, 1 CPU(s) and 0.25 GPU(s) each; on the cluster's GPU nodes" in out
    assert "measuring" not in out and not (tmp_path / "mlflow.db").exists()


def smoke_summaries(*statuses: str) -> list[dict]:
    grokked = {"steps_to_grok": 900, "time_to_grok_s": 4.0}
    return [
        {"method": "baseline", "loss": "mse", "lam": 0.0, "init_scale": 8.0, "status": status}
        | (grokked if status == "grokked" else {})
        for status in statuses
    ]


@pytest.mark.parametrize(
    "smoke, statuses, noted",
    [
        (True, ("censored", "censored", "failed"), True),
        (True, ("censored", "grokked"), False),
        (False, ("censored", "censored"), False),
    ],
)
def test_a_smoke_sweep_where_nothing_grokked_says_its_budget_is_too_short(tmp_path, smoke, statuses, noted):
    import io

    from grokbench.sweep.mlflow_store import TrackingStore
    from grokbench.sweep.report import report_sweep
    from grokbench.sweep.spec import build_sweep

    spec = build_sweep("mnist", {"smoke": smoke})
    out = io.StringIO()
    store = TrackingStore(f"sqlite:///{tmp_path / 'mlflow.db'}")  # read only by a search's report
    report_sweep(spec, smoke_summaries(*statuses), None, store, "1", "s-1", 75.0, "--sweep s-1", out, smoke)
    note = (
        "no trial grokked: a --smoke budget (60 epochs) is too short to grok. It checks that the sweep runs end "
        "to end; run it without --smoke for its full budget."
    )
    assert (note in out.getvalue()) is noted, out.getvalue()
    assert "in 1:15." in out.getvalue()


ELSEWHERE = {
    "cpu": "AMD EPYC 7763 64-Core Processor",
    "cpus": "64",
    "gpu": "NVIDIA A100",
    "torch": "2.5.1",
    "threads": "1",
}


def store_run(client, experiment_id: str, cfg, machine_tags: dict[str, str]) -> None:
    """A finished trial's run as a sweep logs it: its settings as params, its outcome, and where it ran."""
    from grokbench.sweep.keys import KEY_TAG, SWEEP_TAG, trial_key

    run = client.create_run(experiment_id)
    params = {k: "None" if v is None else str(v) for k, v in cfg.to_dict().items()}
    for name, value in params.items():
        client.log_param(run.info.run_id, name, value)
    tags = {KEY_TAG: trial_key(cfg), SWEEP_TAG: "earlier", "status": "grokked", **machine_tags}
    for name, value in tags.items():
        client.set_tag(run.info.run_id, name, value)
    client.log_metric(run.info.run_id, "epochs", cfg.max_epochs)  # its whole budget: nothing left to continue
    client.log_metric(run.info.run_id, "epochs_to_grok", 80)
    client.set_terminated(run.info.run_id)


def test_a_dry_run_warns_of_reused_trials_that_ran_on_another_machine(tmp_path, migrated_store, capsys):
    import shutil

    import mlflow
    import yaml

    from grokbench.machine import as_tags, label
    from grokbench.sweep.plan import machine_here
    from grokbench.sweep.spec import build_sweep

    path = tmp_path / "machines.yaml"
    sweep = {"name": "machines", "description": "four xor trials", "task": "xor", "budget": {"max_epochs": 150}}
    path.write_text(yaml.safe_dump({**sweep, "grid": {"seed": [0, 1, 2, 3]}, "methods": {"baseline": {}}}))
    spec = build_sweep(str(path), {})
    here = machine_here(spec)
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("grokbench/machines")
    seed0, seed1, seed2, _ = spec.trials()  # seed 3 is not stored: it runs
    store_run(client, experiment_id, seed0, as_tags(ELSEWHERE))
    store_run(client, experiment_id, seed1, {})  # logged before machines were recorded
    store_run(client, experiment_id, seed2, as_tags(here))

    assert main(["sweep", str(path), "--dry-run", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "3 of them already have an outcome in the tracking store" in out
    warning = (
        f"warning: 2 trials it reuses ran on a machine other than this one or not recorded (this one: {label(here)}): "
        "AMD EPYC 7763 64-Core Processor ×64, NVIDIA A100, torch 2.5.1, 1 thread (1 trial); "
        "machine not recorded (1 trial). Their steps compare with this sweep's, their seconds do not (--rerun "
        "runs them all here)"
    )
    assert warning in out, out


@pytest.mark.parametrize("command", ["sweep", "benchmark"])
def test_a_file_that_is_not_utf8_is_refused_in_one_line(command, tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))  # was a UnicodeDecodeError traceback and exit 1
    assert main([command, str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    kind = "sweep" if command == "sweep" else "suite"
    assert err.endswith(f"not UTF-8 text (byte 9): a {kind} file is a YAML text file")
    assert "\n" not in err and not list(tmp_path.glob("*.db"))


@pytest.mark.parametrize("command", [["sweep", "xor_tiny"], ["benchmark", "smoke", "--measure-updates", "1"]])
def test_a_ray_address_that_does_not_answer_leaves_nothing_behind(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default store (./mlflow.db) and storage (./grokbench_results) live here
    assert main([*command, "--address", "127.0.0.1:1"]) == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # was an empty, migrated ./mlflow.db


def test_a_dry_run_with_measure_epochs_0_times_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("grokbench.sweep.plan.seconds_per_epoch", None)  # calling it (training) would fail
    assert main(["sweep", "xor_tiny", "--dry-run", "--measure-epochs", "0"]) == 0
    assert "no estimate: nothing timed (--measure-epochs 0)" in capsys.readouterr().out
    assert main(["sweep", "xor_tiny", "--measure-epochs", "0"]) == 2  # a run is not a dry run: refused, not ignored
    assert "--measure-epochs: a --dry-run's epochs to time" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_of_trials_wider_than_this_machine_times_nothing(tmp_path, capsys):
    """Found by tests/test_fuzz.py: --cpus-per-trial 1e9 timed a trial at a billion torch threads (a segfault)."""
    flags = ["--cpus-per-trial", "1e9", "--dry-run", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(["sweep", "xor_tiny", *flags]) == 0
    out = capsys.readouterr().out
    assert "4 trials to run, 1e+09 CPU(s) and 0 GPU(s) each; more CPUs than this machine has" in out
    assert "measuring" not in out


@pytest.mark.parametrize("command", ["sweep", "benchmark"])
@pytest.mark.parametrize(
    "content, said",
    [
        (b"\x00", 'not valid YAML: unacceptable character #x0000: special characters are not allowed in "<unicode'),
        (b"? '\n\n  '\n: null\n", "odd.yaml: '\\n': a key holds a newline"),
        (b'methods:\n  "a\\nb": {}\n', "odd.yaml: 'a\\nb': a key holds a newline"),  # was methods.a⏎b: ...
    ],
)
def test_a_file_that_is_not_yaml_or_has_a_key_with_a_newline_is_refused_in_one_line(
    command, content, said, tmp_path, capsys
):
    """Found by tests/test_fuzz.py: PyYAML's error, and a key holding a newline, each printed on two lines."""
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)
    assert main([command, str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1, err


@pytest.mark.slow
@pytest.mark.parametrize("command", [["sweep", "xor_tiny"], ["benchmark", "smoke", "--measure-updates", "1"]])
def test_a_gpu_no_node_has_leaves_nothing_behind(command, local_ray, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the local Ray of the tests has 2 CPUs and no GPU
    assert main([*command, "--address", local_ray, "--gpus-per-trial", "1"]) == 2
    assert "no node of the Ray cluster has the 1 CPU(s) and 1 GPU(s) one trial asks for" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no ./mlflow.db, no ./grokbench_results
