"""The training loop: reproducibility, exact resume, events, censoring and divergence."""

import json

import pytest
import torch
from helpers import (
    CHEAPER_GROKALIGN,
    METHOD_SETTINGS,
    flat_tensors,
    parameters,
    run_collecting,
    saved_and_reloaded,
    straight_and_resumed,
)

from grokbench.resolve import config_of
from grokbench.train import Trial

SHORT = dict(task="xor", max_epochs=12, eval_every=4)


def test_same_seed_gives_identical_results():
    a_summary, a_seen = run_collecting(Trial(config_of(method="grokalign", lam=0.01, **SHORT)))
    b_summary, b_seen = run_collecting(Trial(config_of(method="grokalign", lam=0.01, **SHORT)))
    assert a_seen == b_seen
    drop_time = lambda s: {k: v for k, v in s.items() if "time" not in k and k != "wall_s"}  # noqa: E731
    assert drop_time(a_summary) == drop_time(b_summary)


def test_different_seeds_differ():
    a = Trial(config_of(seed=0, **SHORT))
    b = Trial(config_of(seed=1, **SHORT))
    assert not torch.equal(parameters(a), parameters(b))


SAVED = {**{m: {"method": m, **METHOD_SETTINGS[m]} for m in sorted(METHOD_SETTINGS)}, **CHEAPER_GROKALIGN}


@pytest.mark.parametrize("settings", SAVED.values(), ids=SAVED)
def test_save_restore_continue_equals_an_uninterrupted_run(settings):
    run = straight_and_resumed(config_of(**settings, **SHORT), stop_at_epoch=8)  # dies after saving at 8
    assert [s for s, _ in run.seen] == [s for s, _ in run.straight_seen]  # no evaluation repeated or lost
    assert run.seen == run.straight_seen
    assert torch.equal(parameters(run.resumed), parameters(run.straight))
    assert run.resumed_summary["steps"] == run.straight_summary["steps"]
    assert run.resumed_summary["status"] == run.straight_summary["status"]


GROKFAST_MA = {"method": "grokfast", **METHOD_SETTINGS["grokfast"]}


@pytest.mark.parametrize("settings", [{"optimizer": "adamw"}, GROKFAST_MA], ids=["adamw", "grokfast"])
def test_restore_leaves_the_state_it_was_given_unchanged(settings):
    first = Trial(config_of(**settings, **SHORT))
    run_collecting(first, stop_at_epoch=8)
    state = saved_and_reloaded(first)
    before = saved_and_reloaded(first)
    runs = [run_collecting(Trial.restore(state))[1] for _ in range(2)]
    assert runs[0] == runs[1]
    assert torch.equal(flat_tensors(state), flat_tensors(before))


def test_a_generator_state_from_another_kind_of_device_reseeds_reproducibly_with_a_warning(caplog):
    first = Trial(config_of(method="adversarial", device="cpu", **SHORT))
    run_collecting(first, stop_at_epoch=8)
    state = saved_and_reloaded(first)
    state["rng"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # the size of a CUDA (Philox) state
    moved = [Trial.restore(state) for _ in range(2)]
    assert [r.name for r in caplog.records if "written on another kind of device" in r.getMessage()] == [
        "grokbench.train"
    ] * 2
    seen = [run_collecting(trial)[1] for trial in moved]
    assert seen[0] == seen[1] and [s for s, _ in seen[0]] == [12 * len(moved[0].batches)]
    caplog.clear()
    Trial.restore(saved_and_reloaded(first))  # from the same kind of device: no warning
    assert not caplog.records


def test_restored_clock_continues_from_saved_training_time():
    trial = Trial(config_of(**SHORT))
    trial.train_epochs(4)
    state = trial.state_dict()
    resumed = Trial.restore(state)
    assert resumed.train_time_s == state["train_time_s"] > 0
    resumed.train_epochs(1)
    assert resumed.train_time_s > state["train_time_s"]


def test_xor_memorises_then_groks_and_stops_at_grokking():
    summary, seen = run_collecting(Trial(config_of(task="xor")))
    assert summary["status"] == "grokked"
    assert (summary["epochs_to_memorise"], summary["epochs_to_grok"]) == (54, 112)  # the README's, since 7ed46c0
    assert summary["steps_to_memorise"] < summary["steps_to_grok"]  # a delay: grokking, not plain learning
    assert summary["steps"] == summary["steps_to_grok"]
    assert summary["final_test_acc"] > 0.95
    assert 0 <= summary["time_to_memorise_s"] <= summary["time_to_grok_s"] == summary["train_time_s"]
    assert summary["grok_phase_time_s"] == pytest.approx(summary["time_to_grok_s"] - summary["time_to_memorise_s"])


@pytest.mark.slow
def test_training_continues_the_given_number_of_epochs_past_grokking():
    summary = Trial(config_of(task="xor", epochs_after_grok=6)).run()
    assert summary["status"] == "grokked"
    assert summary["epochs"] == summary["epochs_to_grok"] + 6


def test_budget_ends_a_run_that_has_not_grokked_as_censored():
    summary, seen = run_collecting(Trial(config_of(task="xor", max_epochs=9, eval_every=4)))
    assert summary["status"] == "censored"
    assert summary["steps_to_grok"] is None and summary["epochs"] == 9
    assert [step for step, _ in seen] == [0, 4, 8, 9]  # initial, every 4 epochs, and the budget's end


def test_nan_loss_ends_the_trial_as_diverged():
    summary = Trial(config_of(task="xor", lr=50.0, max_epochs=200)).run()
    assert summary["status"] == "diverged"
    assert summary["epochs"] < 200
    assert summary["final_test_acc"] is None  # no accuracy to report from a network full of NaNs
    json.dumps(summary, allow_nan=False)  # the --json line stays valid JSON


def test_a_diverged_trial_says_where_at_which_loss_and_the_usual_cause(caplog):
    trial = Trial(config_of(task="xor", lr=50.0, max_epochs=200, eval_every=4))
    summary = trial.run()
    assert (summary["status"], summary["steps"], summary["epochs"]) == ("diverged", 4, 4)  # xor: 1 batch an epoch
    assert summary["divergence"] == (
        "diverged by step 4 (epoch 4) with train loss nan (not finite: train_loss, test_loss, train_objective); "
        "usually a learning rate too large for this model's size and init scale (--lr 50, --init-scale 12): "
        "try a smaller one"
    )
    assert caplog.records[-1].name == "grokbench.train" and caplog.records[-1].levelname == "WARNING"
    assert caplog.records[-1].getMessage() == f"trial xor/baseline seed 0 {summary['divergence']}"


def test_a_trial_whose_initial_weights_overflow_blames_the_init_scale():
    summary = Trial(config_of(task="xor", init_scale=1e200, max_epochs=200)).run()
    assert summary["steps"] == 0 and summary["divergence"].startswith("diverged at initialisation with train loss")
    assert summary["divergence"].endswith("usually an init scale too large for this model (--init-scale 1e+200)")


def test_a_trial_that_did_not_diverge_has_no_divergence():
    assert Trial(config_of(**SHORT)).run()["divergence"] is None


def test_diverging_mnist_trial_is_diverged_not_a_crash(mnist_available):
    """Geometry of a NaN network would make the eigen-solver raise: the loop must stop before it."""
    summary = Trial(config_of(task="mnist", lr=1e4, max_epochs=30)).run()
    assert summary["status"] == "diverged" and summary["final_test_acc"] is None


def test_evaluation_reports_every_metric_and_train_time_excludes_evaluation():
    trial = Trial(config_of(**SHORT))
    metrics = trial.evaluate()
    expected = {
        "train_acc",
        "test_acc",
        "train_loss",
        "test_loss",
        "noisy_test_acc",
        "jacobian_norm",
        "centroid_norm",
        "centroid_alignment",
        "centroid_inner_product",
        "row_alignment_max",
        "row_alignment_min",
        "pc1_explained_variance",
    }
    assert expected <= set(metrics)
    assert trial.train_time_s == 0.0  # evaluating does not count as training


def test_warm_up_raises_the_learning_rate_linearly_then_holds_it():
    trial = Trial(config_of(task="xor", optimizer="adamw", lr=0.01, warmup_steps=4, max_epochs=6))
    rates = []
    for _ in range(6):  # full batch: one update an epoch
        trial.train_epochs(1)
        rates.append(trial.optimizer.param_groups[0]["lr"])
    # the rate used at update t is lr·min(t/4, 1): 0, 0.25, 0.5, 0.75, 1, 1 (times 0.01)
    assert rates == pytest.approx([0.0, 0.0025, 0.005, 0.0075, 0.01, 0.01])


def test_reshuffled_batches_are_the_same_for_every_method_and_differ_from_the_fixed_order():
    shuffled = dict(task="xor", batch_size=100, batch_order="shuffle")
    orders = {}
    for method, settings in (("baseline", {}), ("grokalign", {"lam": 0.01})):
        trial = Trial(config_of(method=method, **settings, **shuffled))
        orders[method] = [torch.cat([y for _, y in trial.epoch_batches()]) for _ in range(2)]
    fixed = Trial(config_of(task="xor", batch_size=100))
    assert all(torch.equal(a, b) for a, b in zip(orders["baseline"], orders["grokalign"], strict=False))
    assert not torch.equal(orders["baseline"][0], orders["baseline"][1])  # a new order each epoch
    assert not torch.equal(orders["baseline"][0], torch.cat([y for _, y in fixed.epoch_batches()]))
    assert torch.equal(orders["baseline"][0].sort().values, fixed.data.y_train.sort().values)  # a permutation


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_save_restore_is_exact_with_reshuffled_batches_and_warm_up(optimizer):
    cfg = config_of(
        method="grokalign",
        lam=0.01,
        batch_size=128,
        batch_order="shuffle",
        warmup_steps=10,
        optimizer=optimizer,
        beta2=0.98,
        **SHORT,
    )
    run = straight_and_resumed(cfg, stop_at_epoch=8)
    assert run.seen == run.straight_seen
    assert torch.equal(parameters(run.resumed), parameters(run.straight))


@pytest.mark.parametrize(
    "optimizer, kind", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_each_optimizer_gets_the_trials_lr_betas_and_weight_decay(optimizer, kind):
    settings = {} if optimizer == "sgd" else {"beta1": 0.8, "beta2": 0.98}
    trial = Trial(config_of(task="xor", optimizer=optimizer, lr=0.01, weight_decay=0.5, **settings))
    group = trial.optimizer.param_groups[0]
    assert type(trial.optimizer) is kind  # adam: weight decay as an L2 term in the gradient; adamw: decoupled
    assert (group["lr"], group["weight_decay"]) == (0.01, 0.5)
    assert group.get("betas", (0.8, 0.98)) == (0.8, 0.98)


@pytest.mark.slow  # a subprocess or seconds of training: kept out of the fast tier
def test_a_censored_trial_given_a_larger_budget_continues_where_it_stopped():
    short = Trial(config_of(task="xor", max_epochs=60))
    assert short.run()["status"] == "censored"
    longer = Trial.restore(saved_and_reloaded(short), max_epochs=300)
    summary, seen = run_collecting(longer)
    straight = Trial(config_of(task="xor", max_epochs=300)).run()
    assert seen[0][0] == 62  # full batch, evaluated every 2 epochs: the first evaluation after epoch 60
    assert (summary["status"], summary["steps_to_grok"], summary["max_epochs"]) == ("grokked", 112, 300)
    assert summary["steps_to_grok"] == straight["steps_to_grok"]
    assert summary["steps_to_memorise"] == straight["steps_to_memorise"]  # carried over from the first budget
    assert summary["train_time_s"] > short.train_time_s  # the clock carries on


@pytest.mark.slow  # trains two XOR trials past grokking: seconds
def test_a_grokked_trial_asked_to_train_further_past_grokking_continues():
    first = Trial(config_of(task="xor"))
    assert first.run()["epochs"] == 112
    summary = Trial.restore(saved_and_reloaded(first), epochs_after_grok=10).run()
    assert (summary["status"], summary["epochs"], summary["epochs_to_grok"]) == ("grokked", 122, 112)
    unchanged = Trial.restore(saved_and_reloaded(first)).run()  # nothing more asked: it stays as it was
    assert (unchanged["status"], unchanged["epochs"]) == ("grokked", 112)
