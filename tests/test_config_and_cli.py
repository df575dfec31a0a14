"""Configuration is checked at the boundary; the CLI turns bad input into one clear line and exit code 2."""

import json
import subprocess
import sys

import pytest

from grokbench.cli import main
from grokbench.config import ConfigError
from grokbench.resolve import config_from, config_of, resolve, stored_config


def test_task_and_method_defaults_fill_unset_fields():
    cfg = resolve(config_of(task="mnist", method="grokalign"))
    assert (cfg.loss, cfg.lam, cfg.init_scale, cfg.lr, cfg.weight_decay) == ("ce", 1e-3, 8.0, 1e-3, 0.01)
    assert (cfg.batch_size, cfg.eval_every, cfg.dtype, cfg.optimizer) == (256, 10, "float64", "adamw")
    assert resolve(config_of(task="mnist", method="grokalign", loss="mse")).lam == 1e-4
    assert resolve(config_of(task="mnist", method="grokfast")).lam == 0.1
    assert resolve(config_of(task="mnist", method="grokfast", lam=2.0, init_scale=1)).init_scale == 1.0


def test_from_dict_coerces_strings_and_rejects_unknown_fields():
    assert config_from({"lam": "0.1", "seed": "3", "threads": "none"}) == config_of(lam=0.1, seed=3)
    with pytest.raises(ConfigError, match="unknown setting; mnist with method baseline takes:.*init_scale"):
        config_from({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="seed: must be an integer"):
        config_from({"seed": 1.5})


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["run", "mnist", "--method", "sam"],
            "method: 'sam' is not one of: baseline, grokalign, grokfast, adversarial",
        ),
        (["run", "mnist", "--method", "grokalign", "--lam", "-1"], "lam: must be >= 0, got -1.0"),
        (["run", "mnist", "--init-scale", "0"], "init_scale: must be > 0, got 0.0"),
        (
            ["run", "mnist", "--batch-size", "2048"],
            "batch_size: must be at most 1024 (the training points of mnist), got 2048",
        ),
        (["run", "xor", "--loss", "ce"], "loss: 'ce' is not one of: mse"),
        (["run", "mnist", "--lam", "0.5"], "lam: baseline has no strength to set"),
        (["run", "mnist", "--threads", "two"], "threads: must be an integer, got 'two'"),
        (
            ["run", "mnist", "--method", "grokalign", "--grokalign-estimator", "magic"],
            "grokalign_estimator: 'magic' is not one of",
        ),
        (["run", "mnist", "--method", "grokalign", "--lam", "nan"], "lam: must be a finite number, got 'nan'"),
        (
            ["run", "mnist", "--method", "grokalign", "--grokalign-subset", "300"],
            "grokalign_subset: must be at most 255 (below the batch size of 256; "
            "0 puts the penalty on the whole batch), "
            "got 300",
        ),
        (["run", "mnist", "--method", "grokalign", "--grokalign-every", "0"], "grokalign_every: must be > 0, got 0"),
    ],
)
def test_bad_config_gives_one_clear_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokbench: error: ") and message in err
    assert "Traceback" not in err


def test_unknown_task_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "cifar100"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'cifar100'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "mnist", "--method", "baseline", "--grokfast-window", "5"], "it needs --method grokfast"),
        (["run", "mnist", "--p", "5"], "--p: a setting of task xor, not of mnist"),  # never --probe-size
        (["run", "mnist", "--no-such", "3"], "--no-such: no such setting of mnist (see grokbench run mnist --help)"),
        (["run", "mnist", "--method", "0", "--no-such", "3"], "--no-such: no such setting of mnist"),  # was a KeyError
        (["run", "mnist", "--learning-rate", "1"], "--learning-rate: no such setting of mnist"),
        (["run", "xor", "--preset", "nanda"], "preset: task xor has no presets"),
        (["run", "xor", "--p", "2"], "p: must be at least 3"),
        (["run", "mnist", "--train-size", "70000"], "train_size: must be at most 60000 (MNIST's train split)"),
        (["run", "mnist", "--optimizer", "sgd", "--beta2", "0.98"], "beta2: applies to adam and adamw"),
        (["run", "mnist", "--batch-order", "random"], "batch_order: 'random' is not one of: fixed, shuffle"),
    ],
)
def test_settings_of_other_components_and_unknown_flags_are_named(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokbench: error: ") and message in err and "Traceback" not in err


def test_every_setting_of_the_task_and_the_methods_is_a_flag_in_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "xor", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in (
        "--p",
        "--hidden",
        "--train-size",
        "--seed",
        "--warmup-steps",
        "--batch-order",
        "--grokfast-window",
        "--grokalign-estimator",
    ):
        assert f"{flag} " in help_text


def test_settings_are_owned_by_their_components():
    cfg = resolve(config_of(task="xor", method="grokfast", p=200, grokfast_window=7))
    assert cfg.task_settings.p == 200 and cfg.method_settings.grokfast_window == 7
    flat = cfg.to_dict()
    assert flat["p"] == 200 and flat["grokfast_window"] == 7 and "grokalign_estimator" not in flat
    assert config_from(flat) == cfg  # the flat view round-trips


def test_a_stored_config_of_any_version_is_read_leniently():
    """Configs stored by earlier versions carried every method's settings; they belong to no other trial."""
    old = {
        "task": "xor",
        "method": "baseline",
        "loss": "mse",
        "lam": "0.0",
        "grokfast_window": "100",
        "grokalign_estimator": "projection",
        "seed": "1",
    }
    cfg = stored_config(old)
    assert cfg.seed == 1 and cfg.task_settings.p == 1000 and cfg.method_settings.as_dict() == {}


def test_missing_mnist_offline_names_where_to_put_the_files_and_leaves_nothing_behind(tmp_path, capsys):
    # no network here: the download fails, and the message says where the IDX files go
    data = tmp_path / "not" / "yet"
    assert main(["run", "mnist", "--data-dir", str(data), "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert str(data / "MNIST" / "raw") in err and "train-images-idx3-ubyte" in err and "GROKBENCH_DATA" in err
    assert list(tmp_path.iterdir()) == []  # no lock file, no empty MNIST/raw/, not even the folders it made


@pytest.mark.slow
def test_run_json_last_line_is_the_summary():
    """The real console entry point, in its own process."""
    proc = subprocess.run(
        [sys.executable, "-m", "grokbench.cli", "run", "xor", "--seed", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    required = {
        "task",
        "method",
        "loss",
        "lam",
        "init_scale",
        "seed",
        "status",
        "steps_to_memorise",
        "steps_to_grok",
        "epochs_to_grok",
        "time_to_memorise_s",
        "time_to_grok_s",
        "train_time_s",
        "final_train_acc",
        "final_test_acc",
    }
    assert required <= set(summary)
    assert (summary["task"], summary["seed"], summary["status"]) == ("xor", 1, "grokked")
    assert "grokked at" in proc.stdout  # the human summary comes before the JSON line


def test_diverged_run_still_prints_its_summary_and_json(capsys):
    assert main(["run", "xor", "--lr", "50", "--json"]) == 0
    out, err = capsys.readouterr()
    assert "status          diverged" in out
    assert json.loads(out.strip().splitlines()[-1])["status"] == "diverged"
    # where, at which loss and why, said once as it happens (the summary's `divergence` holds it too)
    assert err.count("grokbench: trial xor/baseline seed 0 diverged by step 4 (epoch 4) with train loss nan") == 1
    assert "usually a learning rate too large for this model's size and init scale (--lr 50" in err


def test_bad_input_in_a_real_process_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "grokbench.cli", "run", "mnist", "--init-scale", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "grokbench: error: init_scale: must be > 0, got 0.0"


def test_resume_refuses_flags_it_would_ignore(capsys):
    assert main(["sweep", "xor_tiny", "--resume", "--max-epochs", "500"]) == 2
    err = capsys.readouterr().err
    assert "--max-epochs would be ignored" in err and "Traceback" not in err


def test_a_tasks_adam_betas_do_not_stop_sgd():
    cfg = resolve(config_of(task="modarith", optimizer="sgd", lr=0.1))  # the nanda preset's β₂ is 0.98
    assert (cfg.optimizer, cfg.beta1, cfg.beta2) == ("sgd", 0.9, 0.999)
    with pytest.raises(ConfigError, match="beta2: applies to adam and adamw"):
        resolve(config_of(task="modarith", optimizer="sgd", beta2=0.98))  # the user's own is refused


def test_a_method_a_task_cannot_support_is_refused_before_anything_runs(monkeypatch):
    from grokbench.tasks import TASKS
    from grokbench.tasks.xor import Xor

    class Discrete(Xor):  # a task whose inputs cannot be differentiated through or perturbed
        name = "discrete"
        capabilities = frozenset({"accuracy"})

    monkeypatch.setitem(TASKS, "discrete", Discrete())
    for method in ("grokalign", "adversarial"):
        with pytest.raises(ConfigError, match=f"method: {method} needs input .*which task discrete does not offer"):
            resolve(config_of(task="discrete", method=method))
    assert resolve(config_of(task="discrete", method="grokfast")).method == "grokfast"


def test_a_stored_config_is_read_as_stored_not_through_its_presets_values_of_today():
    """A setting a preset sets today but a stored trial lacks (stored before the setting existed) keeps its
    default: applying today's preset again would change what the stored trial was."""
    stored = resolve(config_of(task="modarith", preset="grokfast")).to_dict()
    assert stored["op"] == "mul"
    del stored["op"]
    assert stored_config(stored).task_settings.op == "add"  # the setting's default, not the preset's "mul"


def test_a_flag_argparse_refuses_is_one_line_not_the_usage(capsys):
    """Found by tests/test_fuzz.py: a value of the wrong type printed 11 lines of usage before its error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "xor_tiny", "--max-epochs", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == "grokbench sweep: error: argument --max-epochs: invalid int value: 'x' (see grokbench sweep --help)\n"
