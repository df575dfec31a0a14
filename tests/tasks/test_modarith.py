"""Modular arithmetic on a transformer: data, presets, the model's cheap paths against the plain computation, the
methods at the input embedding, and the Gini metrics against hand computations."""

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from helpers import parameters, run_collecting, straight_and_resumed
from torch.func import jacrev

from grokbench import jacobian
from grokbench.cli import main
from grokbench.fourier import FourierGini, cyclic_order, fourier_basis, gini, primitive_root
from grokbench.losses import LOSSES
from grokbench.methods.adversarial import noise_scale
from grokbench.methods.grokalign import ESTIMATORS
from grokbench.resolve import config_of, resolve
from grokbench.tasks import TASKS
from grokbench.tasks.modarith import ModArithSettings, equations
from grokbench.train import Trial

MODARITH = TASKS["modarith"]
# one small layer on p = 11: a trial of a few epochs takes a fraction of a second
TINY = dict(task="modarith", p=11, train_fraction=0.5, d_model=16, n_heads=2, d_mlp=32, max_epochs=4, eval_every=2)
# the Grokfast preset's architecture and loop at the same small size
TINY_GROKFAST = dict(TINY, preset="grokfast", batch_size=16)


def model_and_tokens(dtype="float64", **settings):
    cfg = resolve(config_of(**{**TINY, "dtype": dtype, **settings}))
    torch.manual_seed(0)
    return MODARITH.build_model(cfg), MODARITH.load_data(cfg).x_train[:20]


def every_position_then_last(model, tokens):
    """The plain computation: every layer at every position, then the logits at the last."""
    h = model.embed(tokens).unflatten(1, (model.arch.sequence_length, model.arch.d_model))
    for block in model.blocks:
        h = block(h, last_only=False)
    return model.unembed(h)[:, -1]


# ---- presets and settings -----------------------------------------------------------------------------------


def test_the_default_is_the_nanda_preset_with_full_batch():
    default, nanda = (resolve(config_of(task="modarith", **extra)) for extra in ({}, {"preset": "nanda"}))
    assert default.to_dict() == {**nanda.to_dict(), "preset": None}
    s = default.task_settings
    assert (s.p, s.op, s.train_fraction, s.n_layers, s.d_model, s.n_heads, s.d_mlp) == (113, "add", 0.3, 1, 128, 4, 512)
    assert (s.activation, s.layer_norm, s.op_token, s.init) == ("relu", False, False, "nanda")
    assert default.softmax_precision == 64
    assert (default.optimizer, default.lr, default.weight_decay, default.beta1, default.beta2) == (
        "adamw",
        1e-3,
        1.0,
        0.9,
        0.98,
    )
    assert (default.warmup_steps, default.batch_size, default.batch_order, default.dtype) == (
        10,
        3830,
        "fixed",
        "float32",
    )  # 30 % of 113² equations, all in one batch


def test_the_grokfast_preset():
    cfg = resolve(config_of(task="modarith", preset="grokfast"))
    s = cfg.task_settings
    assert (s.p, s.op, s.train_fraction, s.n_layers, s.activation, s.layer_norm, s.op_token) == (
        97,
        "mul",
        0.5,
        2,
        "gelu",
        True,
        True,
    )
    assert (s.attention_bias, s.init, cfg.softmax_precision) == (True, "torch", 32)
    assert (cfg.optimizer, cfg.weight_decay, cfg.beta2, cfg.warmup_steps, cfg.batch_size, cfg.batch_order) == (
        "adam",
        0.0,
        0.98,
        10,
        512,
        "shuffle",
    )
    assert MODARITH.train_size(cfg) == 97 * 96 // 2  # ten batches an epoch, the last of 48


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--p", "1"], "p: must be a prime ≥ 3, got 1"),
        (["--p", "21"], "p: must be a prime ≥ 3, got 21 (divisible by 3)"),
        (["--op", "pow"], "op: 'pow' is not one of: add, sub, mul, div"),
        (["--train-fraction", "1.5"], "train_fraction: must be between 0 and 1"),
        (["--preset", "nope"], "preset: 'nope' is not one of: nanda, grokfast"),
        (["--n-heads", "3"], "n_heads: must divide d_model (128), got 3"),
        (["--preset", "grokfast", "--p", "11"], "batch_size: must be at most 55 (the training points of modarith)"),
    ],
)
def test_bad_settings_give_one_clear_line_and_exit_code_2(flags, message, capsys):
    assert main(["run", "modarith", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokbench: error: ") and message in err and "Traceback" not in err


@pytest.mark.slow  # a real process per bad setting: seconds
def test_bad_settings_exit_2_in_a_real_process_from_another_directory(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "grokbench.cli", "run", "modarith", "--p", "21"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "grokbench: error: p: must be a prime ≥ 3, got 21 (divisible by 3)"


# ---- data ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, apply",
    [
        ("add", lambda a, b: a + b),
        ("sub", lambda a, b: a - b),
        ("mul", lambda a, b: a * b),
        ("div", lambda a, b: a * pow(b, -1, 7)),
    ],
)
def test_equations_are_every_pair_with_its_answer(op, apply):
    x, y = equations(ModArithSettings(p=7, op=op))
    pairs = sorted((int(a), int(b)) for a, b, _ in x)
    first_b = 1 if op in ("mul", "div") else 0
    assert pairs == [(a, b) for a in range(7) for b in range(first_b, 7)]
    assert all(int(c) == apply(int(a), int(b)) % 7 for (a, b, _), c in zip(x, y, strict=False))
    assert (x[:, 2] == 7).all()  # `=`


def test_the_operator_token_sits_between_the_numbers():
    x, _ = equations(ModArithSettings(p=7, op="add", op_token=True))
    assert x.shape == (49, 4) and (x[:, 1] == 8).all() and (x[:, 3] == 7).all()


def test_the_split_follows_the_trial_seed_unless_a_data_seed_fixes_it():
    def train_set(seed, **settings):
        cfg = resolve(config_of(**{**TINY, "seed": seed, **settings}))
        return {tuple(row.tolist()) for row in MODARITH.load_data(cfg).x_train}

    assert len(train_set(0)) == 60 and train_set(0) == train_set(0) and train_set(0) != train_set(1)
    assert train_set(0, data_seed=5) == train_set(1, data_seed=5)
    data = MODARITH.load_data(resolve(config_of(**TINY)))
    assert len(data.x_train) + len(data.x_test) == 121 and len(data.x_test) == 61


# ---- the model ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{}, {"n_layers": 2}, TINY_GROKFAST], ids=["nanda", "two-layers", "grokfast"])
def test_the_cheap_paths_compute_what_the_plain_computation_does(settings):
    """On tokens, per-(token, position) projections in the first layer and the last position alone in the last;
    on embeddings, the last position alone: both equal every layer at every position."""
    model, tokens = model_and_tokens(**settings)
    assert len(tokens) >= model.arch.vocabulary  # enough sequences for the per-(token, position) lookup
    plain = every_position_then_last(model, tokens)
    assert torch.allclose(model(tokens), plain, atol=1e-12, rtol=0)
    assert torch.allclose(model(tokens[:3]), plain[:3], atol=1e-12, rtol=0)  # too few: the embedding path
    assert torch.allclose(model.from_embeddings(model.embed(tokens)), plain, atol=1e-12, rtol=0)
    model32, tokens = model_and_tokens(dtype="float32", **settings)
    assert torch.allclose(model32(tokens), every_position_then_last(model32, tokens), atol=1e-5, rtol=1e-5)


def test_attention_is_causal():
    model, tokens = model_and_tokens(n_layers=2)
    changed = tokens.clone()
    changed[:, 1] = (changed[:, 1] + 1) % 11
    h, h_changed = (model.embed(t).unflatten(1, (3, 16)) for t in (tokens, changed))
    block = model.blocks[0]
    assert torch.equal(block(h, last_only=False)[:, 0], block(h_changed, last_only=False)[:, 0])
    assert not torch.equal(block(h, last_only=False)[:, 2], block(h_changed, last_only=False)[:, 2])


def test_nanda_and_torch_initialisations():
    torch.manual_seed(0)
    nanda = MODARITH.build_model(resolve(config_of(task="modarith")))
    assert nanda.token_embedding.std().item() == pytest.approx(128**-0.5, rel=0.03)
    assert nanda.unembedding.std().item() == pytest.approx(114**-0.5, rel=0.03)
    assert nanda.blocks[0].mlp_out_weight.std().item() == pytest.approx(128**-0.5, rel=0.03)  # 1/d_model, not 1/d_mlp
    assert nanda.blocks[0].q_bias is None and not nanda.blocks[0].mlp_in_bias.any()
    grokfast = MODARITH.build_model(resolve(config_of(task="modarith", preset="grokfast")))
    assert grokfast.token_embedding.std().item() == pytest.approx(1.0, rel=0.03)
    assert grokfast.blocks[0].q_weight.abs().max().item() <= math.sqrt(6 / (4 * 128))  # Xavier over the stack
    assert not grokfast.blocks[0].k_bias.any() and grokfast.blocks[0].mlp_in_bias.any()


def test_frozen_token_embedding_is_a_buffer_that_training_leaves_alone():
    trial = Trial(config_of(**TINY, method="grokalign", freeze_embeddings=True))
    before = trial.model.token_embedding.clone()
    position_before = trial.model.position_embedding.detach().clone()
    trial.train_epochs(2)
    assert "token_embedding" in dict(trial.model.named_buffers())
    assert torch.equal(trial.model.token_embedding, before)
    assert not torch.equal(trial.model.position_embedding, position_before)


def test_loss_precision_is_a_setting():
    out, y = torch.randn(5, 12) * 30, torch.arange(5)
    nanda = MODARITH.loss_fn(resolve(config_of(**TINY)))
    assert nanda(out, y).dtype == torch.float64
    assert nanda(out, y).item() == pytest.approx(F.cross_entropy(out.double(), y).item(), rel=1e-12)
    grokfast = MODARITH.loss_fn(resolve(config_of(**TINY_GROKFAST)))
    assert grokfast(out, y).dtype == torch.float32
    assert torch.equal(grokfast(out, y), LOSSES["ce"](out, y))


# ---- the methods at the input embedding -----------------------------------------------------------------------


def test_grokalign_takes_the_jacobian_of_the_logits_at_the_embedded_sequence():
    model, tokens = model_and_tokens(**TINY_GROKFAST)
    embedded = model.embed(tokens)
    reference = torch.stack([jacrev(model.from_embeddings)(e.unsqueeze(0)).squeeze(0).squeeze(1) for e in embedded])
    assert reference.shape == (20, 13, 4 * 16)
    out, squared = jacobian.exact(model.from_embeddings, embedded, torch.Generator())
    assert torch.allclose(squared.sqrt(), reference.flatten(1).norm(dim=1), atol=1e-10, rtol=0)

    trial = Trial(config_of(**TINY_GROKFAST, method="grokalign", lam=0.3, grokalign_estimator="exact", dtype="float64"))
    x, y = trial.batches[0]
    objective = trial.method.objective(trial.model, x, y, trial.loss_fn)
    model = trial.model
    norms = torch.stack([jacrev(model.from_embeddings)(e.unsqueeze(0)).norm() for e in model.embed(x)])
    assert objective.item() == pytest.approx((trial.loss_fn(model(x), y) + 0.3 * norms.mean()).item(), rel=1e-9)
    objective.backward()
    assert model.token_embedding.grad.abs().sum() > 0  # the embedding is trained through the embedded point


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_every_grokalign_estimator_trains_at_the_embedding(estimator):
    """The forward-mode (Hutchinson) estimators too: backpropagating after a forward-mode pass through the
    attention's softmax must work."""
    trial = Trial(config_of(**TINY_GROKFAST, method="grokalign", grokalign_estimator=estimator))
    before = parameters(trial)
    trial.train_epochs(1)
    assert torch.isfinite(parameters(trial)).all() and not torch.equal(parameters(trial), before)


def test_adversarial_noise_on_the_embedding_is_sigma_times_each_points_rms():
    trial = Trial(config_of(**{**TINY, "d_model": 64}, method="adversarial"))
    model = trial.model
    trial.method.on_epoch_start(model, trial.data)
    seen = []
    model.from_embeddings = lambda e: seen.append(e.detach()) or type(model).from_embeddings(model, e)
    x, y = trial.batches[0]
    trial.method.objective(model, x, y, trial.loss_fn)
    clean = model.embed(x).detach()
    rms = lambda t: t.square().mean(dim=1).sqrt()  # noqa: E731
    ratio = rms(seen[0] - clean) / rms(clean)
    assert 0.03 <= trial.method.sigma.item() <= noise_scale(torch.tensor(0.0)).item()
    assert ratio.mean().item() == pytest.approx(trial.method.sigma.item(), rel=0.03)


@pytest.mark.parametrize("method", ["baseline", "grokalign", "grokfast", "adversarial"])
def test_every_method_runs_and_the_summary_carries_the_final_gini_values(method):
    summary, seen = run_collecting(Trial(config_of(**TINY_GROKFAST, method=method)))
    assert [step for step, _ in seen] == [0, 8, 16]  # 55 equations in batches of 16: 4 updates an epoch
    assert {"gini_embed", "gini_unembed", "train_acc", "test_acc", "train_loss", "test_loss"} <= set(seen[-1][1])
    assert 0 < summary["final_gini_embed"] < 1 and 0 < summary["final_gini_unembed"] < 1
    assert summary["final_gini_embed"] == seen[-1][1]["gini_embed"]


def test_save_restore_continue_equals_an_uninterrupted_run():
    run = straight_and_resumed(config_of(**TINY_GROKFAST, method="adversarial"), stop_at_epoch=2)
    assert run.seen == run.straight_seen
    assert torch.equal(parameters(run.resumed), parameters(run.straight))


def test_run_json_ends_with_the_summary_and_its_gini_values(capsys):
    assert (
        main(
            [
                "run",
                "modarith",
                "--p",
                "23",
                "--op",
                "add",
                "--train-fraction",
                "0.5",
                "--max-epochs",
                "3",
                "--d-model",
                "32",
                "--d-mlp",
                "64",
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["task"] == "modarith" and summary["epochs"] == 3
    assert f"gini_embed {summary['final_gini_embed']:.4f}  gini_unembed" in out and "final           train_acc" in out
    assert {key for key in summary if "gini" in key} == {"final_gini_embed", "final_gini_unembed"}


# ---- Gini of Fourier-component norms --------------------------------------------------------------------------


def hand_gini(values):
    """Σᵢⱼ |xᵢ − xⱼ| / (2 n Σ x), term by term."""
    n = len(values)
    return sum(abs(a - b) for a in values for b in values) / (2 * n * sum(values))


def test_gini_by_hand():
    assert gini(torch.tensor([1.0, 2.0, 3.0, 4.0])).item() == pytest.approx(0.25)  # 20 / (2·4·10)
    assert gini(torch.tensor([3.0, 0.0, 1.0, 0.5, 2.5])).item() == pytest.approx(hand_gini([3, 0, 1, 0.5, 2.5]))
    assert gini(torch.ones(6)).item() == 0.0
    assert gini(torch.tensor([0.0, 0.0, 0.0, 5.0])).item() == pytest.approx(3 / 4)


@pytest.mark.parametrize("n", [7, 10])
def test_fourier_basis_is_orthonormal_with_the_alternating_component_for_even_n(n):
    basis = fourier_basis(n)
    assert torch.allclose(basis @ basis.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    k = torch.arange(n, dtype=torch.float64)
    assert torch.allclose(basis[1], torch.cos(2 * math.pi * k / n) / math.sqrt(n / 2))
    if n % 2 == 0:
        assert torch.allclose(basis[-1], (-1) ** k / math.sqrt(n))


def test_primitive_roots_and_the_cyclic_order_of_nonzero_tokens():
    assert [primitive_root(p) for p in (3, 7, 11, 23, 97, 113)] == [2, 3, 2, 5, 5, 3]
    assert cyclic_order(7, multiplicative=True) == [1, 3, 2, 6, 4, 5]  # 3⁰ … 3⁵ mod 7
    assert cyclic_order(7, multiplicative=False) == list(range(7))


def test_gini_of_matrices_with_known_fourier_content():
    p = 13
    a = torch.arange(p, dtype=torch.float64)
    wave = lambda f, trig=torch.cos: trig(2 * math.pi * f * a / p)  # noqa: E731
    extra_rows = torch.randn(2, 3, dtype=torch.float64)  # `=` and the operator: not number tokens
    additive = FourierGini(p, multiplicative=False, device=torch.device("cpu"))

    # one frequency (cos 2 in one column, sin 2 in another): two components of norm √(p/2), the rest zero
    one_frequency = torch.stack([wave(2), 3 * wave(2, torch.sin), torch.zeros(p)], dim=1)
    norms = [math.sqrt(p / 2), 3 * math.sqrt(p / 2)] + [0.0] * (p - 2)
    assert additive(torch.cat([one_frequency, extra_rows])).item() == pytest.approx(hand_gini(norms))

    # the identity holds every component equally: 0
    assert additive(torch.eye(p, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)

    # a single cosine: one component of p holds everything
    assert additive(wave(5).unsqueeze(1)).item() == pytest.approx((p - 1) / p)

    # multiplication: the Legendre symbol (a/p) = (−1)^(log a) is the alternating component of ℤ_(p−1) alone;
    # token 0 is left out. In token order (p ≡ 1 mod 4: an even sequence) it spreads evenly over the 6 cosines.
    legendre = torch.tensor(
        [0.0] + [1.0 if pow(int(t), (p - 1) // 2, p) == 1 else -1.0 for t in a[1:]], dtype=torch.float64
    )
    multiplicative = FourierGini(p, multiplicative=True, device=torch.device("cpu"))
    assert multiplicative(legendre.unsqueeze(1)).item() == pytest.approx((p - 2) / (p - 1))
    assert additive(legendre.unsqueeze(1)).item() == pytest.approx(hand_gini([0.0] * 7 + [1.0] * 6))


@pytest.mark.slow  # times every method's updates: seconds
def test_bench_gives_every_methods_ratio_to_the_baseline(capsys):
    assert main(["bench", "--task", "modarith", "--rounds", "2", "--threads", "1", "--device", "cpu", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("modarith, float32, batch 3830, cpu, 1 thread(s)")
    report = json.loads(out.strip().splitlines()[-1])
    methods = {"baseline", "grokalign", "grokfast", "adversarial", "orthograd", "muon", "norm_constraint"}
    assert set(report) == {*methods, "threads", "device"}
    assert report["baseline"]["ratio_to_baseline"] == 1.0 and report["grokalign"]["ratio_to_baseline"] > 1.0
