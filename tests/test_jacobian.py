"""The Jacobian, its norm estimators and the geometry metrics against exact references (torch.func.jacrev)."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import jacrev

from grokbench import jacobian
from grokbench.geometry import first_pc_explained_variance, geometry
from grokbench.tasks.base import mlp, scale_weights


@pytest.fixture
def model_and_points():
    torch.manual_seed(0)
    model = scale_weights(mlp([12, 9, 9, 5], torch.float64), 3.0)
    x = torch.randn(7, 12, dtype=torch.float64)
    return model, x


def jacrev_rows(model, x):
    """(B, C, D) from torch.func, one point at a time: the reference."""
    return torch.stack([jacrev(model)(xi) for xi in x])


def test_exact_jacobian_and_norm_equal_jacrev(model_and_points):
    model, x = model_and_points
    reference = jacrev_rows(model, x)
    xg = x.clone().requires_grad_(True)
    assert torch.allclose(jacobian.jacobian(model(xg), xg), reference, atol=1e-12, rtol=0)
    out, squared = jacobian.exact(model, x, torch.Generator())
    assert torch.allclose(out, model(x))
    assert torch.allclose(squared.sqrt(), reference.flatten(1).norm(dim=1), atol=1e-10, rtol=0)


def test_centroid_is_the_sum_of_jacobian_rows(model_and_points):
    model, x = model_and_points
    xg = x.clone().requires_grad_(True)
    centroid = jacobian.centroid(model(xg), xg)
    assert torch.allclose(centroid, jacrev_rows(model, x).sum(dim=1), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "name, n_proj", [("projection", 1), ("projection", 3), ("hutchinson", 1), ("hutchinson_shared", 1)]
)
def test_squared_estimates_are_unbiased(model_and_points, name, n_proj):
    """The mean of 3000 independent draws of the squared estimate lies within 4 standard errors of ‖J‖²_F
    (and within 10% of it), for every point."""
    model, x = model_and_points
    exact = jacrev_rows(model, x).flatten(1).square().sum(dim=1)
    estimate = jacobian.estimator(name, n_proj)
    generator = torch.Generator().manual_seed(1)
    draws = []
    for _ in range(3000):
        out, squared = estimate(model, x, generator)
        draws.append(squared.detach())
    assert torch.allclose(out, model(x))
    draws = torch.stack(draws)
    standard_error = draws.std(dim=0) / len(draws) ** 0.5
    error = (draws.mean(dim=0) - exact).abs()
    assert (error < 4 * standard_error).all(), error / standard_error
    assert (error / exact).max() < 0.1


def test_square_root_of_projection_estimate_is_biased_low(model_and_points):
    """The authors' choice, kept: E[sqrt(estimate)] ≤ sqrt(E[estimate]) = ‖J‖_F (Jensen)."""
    model, x = model_and_points
    norm = jacrev_rows(model, x).flatten(1).norm(dim=1)
    _, squared = jacobian.estimator("projection")(model, x.repeat(4000, 1), torch.Generator().manual_seed(2))
    assert (squared.detach().sqrt().reshape(4000, -1).mean(dim=0) < norm).all()


def test_penalty_gradient_flows_to_parameters(model_and_points):
    model, x = model_and_points
    _, squared = jacobian.estimator("projection")(model, x, torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(squared.sum(), list(model.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)


def test_geometry_matches_explicit_computation(model_and_points):
    model, x = model_and_points
    rows = jacrev_rows(model, x)  # (B, C, D)
    g = geometry(model, x)
    centroid = rows.sum(dim=1)
    row_cos = torch.stack(
        [torch.stack([F.cosine_similarity(r, xi, dim=0) for r in J]) for J, xi in zip(rows, x, strict=False)]
    )
    pc1 = []
    for J in rows:
        centred = J - J.mean(dim=0)
        eig = torch.linalg.eigvalsh(centred.T @ centred)  # covariance spectrum of the rows
        pc1.append(eig[-1] / eig.sum())
    expected = {
        "jacobian_norm": rows.flatten(1).norm(dim=1).mean(),
        "centroid_norm": centroid.norm(dim=1).mean(),
        "centroid_alignment": F.cosine_similarity(centroid, x, dim=1).mean(),
        "centroid_inner_product": (centroid * x).sum(dim=1).mean(),
        "row_alignment_max": row_cos.max(dim=1).values.mean(),
        "row_alignment_min": row_cos.min(dim=1).values.mean(),
        "pc1_explained_variance": torch.stack(pc1).mean(),
    }
    assert set(g) == set(expected)
    for name, value in expected.items():
        assert g[name].item() == pytest.approx(value.item(), rel=1e-9, abs=1e-12), name


def test_pc1_explained_variance_is_one_for_rank_one_rows():
    direction = torch.randn(1, 1, 6, dtype=torch.float64)
    rank_one = torch.randn(3, 4, 1, dtype=torch.float64) * direction
    assert torch.allclose(first_pc_explained_variance(rank_one), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(first_pc_explained_variance(torch.randn(3, 1, 6)), torch.ones(3))
