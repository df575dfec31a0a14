"""StableMax, the softmax cross-entropy in a precision of its own, and the softmax-collapse metric."""

import json
import math
import subprocess
import sys

import pytest
import torch

from grokbench.config import ConfigError, identity
from grokbench.losses import cross_entropy_in, stablemax_cross_entropy, zero_loss_fraction
from grokbench.resolve import config_of, resolve, stored_config
from grokbench.tasks import TASKS


def test_stablemax_matches_the_formula_written_out():
    out = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]], dtype=torch.float32)
    y = torch.tensor([0, 2])
    # s = (3, 1/2, 3/2) and (1/4, 1, 2): p_y = 3/5 and 2/(13/4)
    expected = -(math.log(3 / 5) + math.log(2 / 3.25)) / 2
    loss = stablemax_cross_entropy(out, y)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected, rel=1e-15)


def test_stablemax_has_a_finite_gradient_where_one_branch_is_singular():
    out = torch.tensor([[1.0, -2.0, 0.0]], dtype=torch.float64, requires_grad=True)  # 1/(1 − x) is 1/0 at x = 1
    stablemax_cross_entropy(out, torch.tensor([1])).backward()
    # d/dx of log Σs − log s_y: s'(1) = 1, s'(0) = 1, s'(−2) = 1/9; Σs = 2 + 1/3 + 1
    total = 2 + 1 / 3 + 1
    expected = [1 / total, (1 / 9) / total - (1 / 9) / (1 / 3), 1 / total]
    torch.testing.assert_close(out.grad[0], torch.tensor(expected, dtype=torch.float64), rtol=1e-14, atol=0)


@pytest.mark.parametrize("bits, dtype", [(16, torch.float16), (32, torch.float32), (64, torch.float64)])
def test_the_cross_entropy_is_computed_in_the_precision_asked_for(bits, dtype):
    out, y = torch.randn(6, 5, dtype=torch.float64), torch.arange(6) % 5
    loss = cross_entropy_in(bits)(out, y)
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-2)


def test_softmax_collapse_float32_rounds_a_confident_loss_to_0_float64_does_not():
    out = torch.tensor([[20.0, 0.0], [3.0, 0.0], [0.0, 30.0]])  # e⁻²⁰ and e⁻³⁰: below float32's ε, above float64's
    y = torch.tensor([0, 0, 1])
    assert zero_loss_fraction(out, y).item() == pytest.approx(2 / 3)
    per_point64 = torch.nn.functional.cross_entropy(out.double(), y, reduction="none")
    assert (per_point64 > 0).all()


def test_stablemax_is_refused_on_a_scalar_output_with_the_reason():
    for task in ("xor", "polynomial"):
        reason = f"stablemax needs a class distribution, and task {task}'s model has a scalar output"
        with pytest.raises(ConfigError, match=f"loss: 'stablemax' is not one of: mse \\({reason}\\)"):
            resolve(config_of(task=task, loss="stablemax"))
    assert resolve(config_of(task="modarith", loss="stablemax")).loss == "stablemax"


def test_grokbench_run_xor_loss_stablemax_exits_2_with_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "grokbench.cli", "run", "xor", "--loss", "stablemax"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "scalar output" in done.stderr and "class distribution" in done.stderr


def test_the_precision_setting_takes_the_place_of_float64_loss_under_the_same_identity():
    nanda, grokfast = (resolve(config_of(task="modarith", preset=p)) for p in ("nanda", "grokfast"))
    assert (nanda.softmax_precision, grokfast.softmax_precision) == (64, 32)
    assert identity(nanda)["float64_loss"] is True and "softmax_precision" not in identity(nanda)
    assert identity(grokfast)["float64_loss"] is False
    # a stored config or a sweep file written with the former setting means the same trial
    stored = stored_config({**grokfast.to_dict(), "softmax_precision": None, "float64_loss": "False"})
    assert stored.softmax_precision == 32 and identity(stored) == identity(grokfast)
    assert config_of(task="modarith", float64_loss=True).softmax_precision == 64
    # a precision the former setting could not say keeps its own name; elsewhere the setting is neutral
    assert identity(resolve(config_of(task="modarith", softmax_precision=16)))["softmax_precision"] == 16
    assert "softmax_precision" not in identity(resolve(config_of(task="mnist")))
    with pytest.raises(ConfigError, match="softmax_precision: '8' is not one of: 16, 32, 64"):
        resolve(config_of(task="mnist", softmax_precision=8))


def test_every_class_task_logs_the_share_of_training_points_at_zero_loss():
    cfg = resolve(config_of(task="modarith", p=11, train_fraction=0.5, architecture="mlp"))
    data = TASKS["modarith"].load_data(cfg)
    torch.manual_seed(0)
    metrics = TASKS["modarith"].evaluator(cfg, data, torch.device("cpu"))(TASKS["modarith"].build_model(cfg))
    assert 0 <= metrics["train_zero_loss_fraction"].item() <= 1
    json.dumps({k: v.item() for k, v in metrics.items()})
