"""The training loop on a CUDA device: the CPU's numbers, no host waits in the hot loop, and checkpoints that
continue on the same device exactly and on another device with the same state.

Skipped where torch sees no CUDA device (CI has none); run them on a GPU machine with
`python -m pytest tests/test_devices.py`.
"""

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

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHORT = dict(task="xor", dtype="float64", optimizer="adamw", max_epochs=12, eval_every=4)
# updates that draw no random numbers, so that runs on two devices can be compared step for step
DRAWLESS = {
    "baseline": {"method": "baseline"},
    "grokalign_exact": {"method": "grokalign", "lam": 0.01, "grokalign_estimator": "exact"},
    "grokfast_ema": {"method": "grokfast"},
    "grokfast_ma": {"method": "grokfast", **METHOD_SETTINGS["grokfast"]},
}
EVERY_METHOD = {
    **DRAWLESS,
    "grokalign": {"method": "grokalign", **METHOD_SETTINGS["grokalign"]},
    "adversarial": {"method": "adversarial"},
    **CHEAPER_GROKALIGN,
}


def assert_close_runs(seen, reference):
    """Same evaluation steps; every metric equal up to float64 rounding differences between devices."""
    assert [s for s, _ in seen] == [s for s, _ in reference]
    for (_, metrics), (_, expected) in zip(seen, reference, strict=False):
        assert metrics.keys() == expected.keys()
        for key in expected:
            assert metrics[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("settings", DRAWLESS.values(), ids=DRAWLESS)
def test_a_cuda_trial_follows_the_cpu_trial(settings):
    cpu = Trial(config_of(device="cpu", **SHORT, **settings))
    gpu = Trial(config_of(device="cuda", **SHORT, **settings))
    assert gpu.device.type == "cuda" and torch.equal(parameters(cpu), parameters(gpu))  # built on the CPU
    assert_close_runs(run_collecting(gpu)[1], run_collecting(cpu)[1])
    assert torch.allclose(parameters(gpu), parameters(cpu), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("task", ["xor", "mnist"])
@pytest.mark.parametrize("settings", EVERY_METHOD.values(), ids=EVERY_METHOD)
def test_the_hot_loop_never_waits_for_the_gpu(settings, task, request):
    if task == "mnist":
        request.getfixturevalue("mnist_available")
    trial = Trial(config_of(task=task, device="cuda", **settings))
    trial.train_epoch()  # the first epoch allocates optimiser state and buffers
    torch.cuda.set_sync_debug_mode("error")  # any operation that makes the host wait for the device raises
    try:
        for _ in range(3):
            trial.train_epoch()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trial.epoch == 4


@pytest.mark.parametrize("settings", EVERY_METHOD.values(), ids=EVERY_METHOD)
def test_save_restore_continue_on_cuda_equals_an_uninterrupted_run(settings):
    run = straight_and_resumed(config_of(device="cuda", **settings, **SHORT), stop_at_epoch=8)
    assert run.resumed.device.type == "cuda"
    assert run.seen == run.straight_seen
    assert torch.equal(parameters(run.resumed), parameters(run.straight))


@pytest.mark.parametrize("saved_on, resumed_on", [("cuda", "cpu"), ("cpu", "cuda")])
@pytest.mark.parametrize("name", sorted(EVERY_METHOD))
def test_a_checkpoint_moves_between_cpu_and_cuda(name, saved_on, resumed_on, caplog):
    settings = EVERY_METHOD[name]
    first = Trial(config_of(device=saved_on, **settings, **SHORT))
    run_collecting(first, stop_at_epoch=8)
    saved = saved_and_reloaded(first)

    def resume() -> tuple[Trial, list]:
        caplog.clear()
        trial = Trial.restore(saved, device=resumed_on)
        assert "written on another kind of device" in caplog.text
        assert trial.device.type == resumed_on
        for part in ("model", "optimizer", "method"):  # all of the saved state arrived, unchanged
            assert torch.equal(flat_tensors(getattr(trial, part).state_dict()), flat_tensors(saved[part])), part
        return trial, run_collecting(trial)[1]

    moved, moved_seen = resume()
    assert [s for s, _ in moved_seen] == [12 * len(moved.batches)]  # continues from epoch 8, loses nothing
    again, again_seen = resume()
    assert again_seen == moved_seen and torch.equal(parameters(again), parameters(moved))  # reproducibly
    if name in DRAWLESS:  # and as the trial would have gone on where it was
        stayed = Trial.restore(saved)
        assert_close_runs(moved_seen, run_collecting(stayed)[1])
