"""The training loop on a CUDA device: the CPU's numbers, no host waits in the hot loop, and checkpoints that
continue on the same device exactly and on another device reproducibly.

Skipped where torch sees no CUDA device (CI has none); run them on a GPU machine with
`python -m pytest tests/test_devices.py`.
"""

import io

import pytest
import torch

from grokbench.config import TrialConfig
from grokbench.train import Trial

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHORT = dict(task="xor", dtype="float64", max_epochs=12, eval_every=4)
METHOD_SETTINGS = {
    "baseline": {},
    "grokalign": {"lam": 0.01},
    "grokfast": {"grokfast_variant": "ma", "grokfast_window": 5},
    "adversarial": {},
}
# updates that draw no random numbers, so that a CPU and a GPU run can be compared step for step
DRAWLESS = {
    "baseline": {},
    "grokalign_exact": {"method": "grokalign", "lam": 0.01, "grokalign_estimator": "exact"},
    "grokfast": {"method": "grokfast", "grokfast_variant": "ma", "grokfast_window": 5},
}


def run_collecting(trial, stop_at_epoch=None):
    seen = []

    def collect(ev, t):
        seen.append((ev.step, ev.metrics))
        if ev.epoch == stop_at_epoch:
            raise StopIteration

    try:
        trial.run(callback=collect)
    except StopIteration:
        pass
    return seen


def parameters(trial):
    return torch.cat([p.detach().flatten() for p in trial.model.parameters()]).cpu()


def checkpoint_bytes(trial) -> bytes:
    buffer = io.BytesIO()
    torch.save(trial.state_dict(), buffer)
    return buffer.getvalue()


def load_like_the_sweep(data: bytes) -> dict:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # as trainable.py loads it


@pytest.mark.parametrize("settings", DRAWLESS.values(), ids=DRAWLESS)
def test_a_cuda_trial_follows_the_cpu_trial(settings):
    cpu = Trial(TrialConfig(device="cpu", **SHORT, **settings))
    gpu = Trial(TrialConfig(device="cuda", **SHORT, **settings))
    assert gpu.device.type == "cuda" and torch.equal(parameters(cpu), parameters(gpu))  # built on the CPU
    cpu_seen, gpu_seen = run_collecting(cpu), run_collecting(gpu)
    assert [s for s, _ in gpu_seen] == [s for s, _ in cpu_seen]
    for (_, c), (_, g) in zip(cpu_seen, gpu_seen):
        assert g.keys() == c.keys()
        for key in c:
            assert g[key] == pytest.approx(c[key], rel=1e-6, abs=1e-9), key
    assert torch.allclose(parameters(gpu), parameters(cpu), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("task", ["xor", "mnist"])
@pytest.mark.parametrize("method", sorted(METHOD_SETTINGS))
def test_the_hot_loop_never_waits_for_the_gpu(method, task, request):
    if task == "mnist":
        request.getfixturevalue("mnist_available")
    trial = Trial(TrialConfig(task=task, method=method, device="cuda", **METHOD_SETTINGS[method]))
    trial.train_epoch()  # the first epoch allocates optimiser state and buffers
    torch.cuda.set_sync_debug_mode("error")  # any operation that makes the host wait for the device raises
    try:
        for _ in range(3):
            trial.train_epoch()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trial.epoch == 4


@pytest.mark.parametrize("method", sorted(METHOD_SETTINGS))
def test_save_restore_continue_on_cuda_equals_an_uninterrupted_run(method):
    cfg = TrialConfig(method=method, device="cuda", **METHOD_SETTINGS[method], **SHORT)
    straight = Trial(cfg)
    straight_seen = run_collecting(straight)

    first = Trial(cfg)
    seen = run_collecting(first, stop_at_epoch=8)
    resumed = Trial.restore(load_like_the_sweep(checkpoint_bytes(first)))
    seen += run_collecting(resumed)

    assert resumed.device.type == "cuda"
    assert seen == straight_seen
    assert torch.equal(parameters(resumed), parameters(straight))


@pytest.mark.parametrize("saved_on, resumed_on", [("cuda", "cpu"), ("cpu", "cuda")])
@pytest.mark.parametrize("method", sorted(METHOD_SETTINGS))
def test_a_checkpoint_moves_between_cpu_and_cuda(method, saved_on, resumed_on):
    first = Trial(TrialConfig(method=method, device=saved_on, **METHOD_SETTINGS[method], **SHORT))
    run_collecting(first, stop_at_epoch=8)
    saved = load_like_the_sweep(checkpoint_bytes(first))

    def resume() -> tuple[Trial, list]:
        with pytest.warns(UserWarning, match="written on another kind of device"):
            trial = Trial.restore(saved, device=resumed_on)
        return trial, run_collecting(trial)

    moved, moved_seen = resume()
    assert moved.device.type == resumed_on
    assert [s for s, _ in moved_seen] == [12 * len(moved.batches)]  # continues from epoch 8, loses nothing
    again, again_seen = resume()
    assert again_seen == moved_seen and torch.equal(parameters(again), parameters(moved))  # reproducibly
